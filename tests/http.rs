//! GraphQL over HTTP as the specification requires: media types, methods and status codes.

mod common;

use common::TestServer;
use reqwest::header::{ACCEPT, ALLOW, CONTENT_TYPE};
use serde_json::{json, Value};

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";

#[tokio::test]
async fn post_without_json_content_type_is_415() {
    let server = TestServer::start().await;
    let body = r#"{"query":"mutation { login { accessToken } }"}"#;
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let mut request = server.http.post(server.url("/graphql")).body(body);
        if let Some(content_type) = content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 415, "{content_type:?}");
    }
    let users = sea_orm::PaginatorTrait::count(
        <mamori::entity::users::Entity as sea_orm::EntityTrait>::find(),
        &server.app.db,
    )
    .await
    .unwrap();
    assert_eq!(users, 0, "no rejected request ran its mutation");
}

#[tokio::test]
async fn post_accepts_json_with_charset() {
    let server = TestServer::start().await;
    let response = server
        .http
        .post(server.url("/graphql"))
        .header(CONTENT_TYPE, "application/json; charset=utf-8")
        .body(r#"{"query":"{ prefecture(code: 1) { nameEn } }"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"]["prefecture"]["nameEn"], "Hokkaido");
}

#[tokio::test]
async fn get_runs_queries_but_not_mutations() {
    let server = TestServer::start().await;
    let query = server
        .http
        .get(server.url("/graphql"))
        .query(&[
            ("query", "query Named { prefecture(code: 47) { nameEn } }"),
            ("operationName", "Named"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(query.status(), 200);
    let body: Value = query.json().await.unwrap();
    assert_eq!(body["data"]["prefecture"]["nameEn"], "Okinawa");

    let mutation = server
        .http
        .get(server.url("/graphql"))
        .query(&[("query", "mutation { login { accessToken } }")])
        .send()
        .await
        .unwrap();
    assert_eq!(mutation.status(), 405);
    assert_eq!(mutation.headers()[ALLOW], "POST");

    let selected = server
        .http
        .get(server.url("/graphql"))
        .query(&[
            (
                "query",
                "query Read { prefectures { code } } mutation Write { login { accessToken } }",
            ),
            ("operationName", "Write"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(selected.status(), 405);
}

#[tokio::test]
async fn get_with_invalid_variables_is_400() {
    let server = TestServer::start().await;
    let response = server
        .http
        .get(server.url("/graphql"))
        .query(&[
            (
                "query",
                "query($c: Int!) { prefecture(code: $c) { nameEn } }",
            ),
            ("variables", "{not json"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let missing_query = server
        .http
        .get(server.url("/graphql"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing_query.status(), 400);
}

async fn post_with_accept(server: &TestServer, accept: &str, body: &str) -> reqwest::Response {
    server
        .http
        .post(server.url("/graphql"))
        .header(CONTENT_TYPE, "application/json")
        .header(ACCEPT, accept)
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn request_errors_are_400_under_graphql_response_json() {
    let server = TestServer::start().await;
    for query in [
        r#"{"query":"{ prefectures { "}"#,
        r#"{"query":"{ noSuchField }"}"#,
        r#"{"query":""}"#,
    ] {
        let response = post_with_accept(&server, GRAPHQL_RESPONSE_JSON, query).await;
        assert_eq!(response.status(), 400, "{query}");
        assert_eq!(response.headers()[CONTENT_TYPE], GRAPHQL_RESPONSE_JSON);
        let body: Value = response.json().await.unwrap();
        assert!(
            body.get("data").is_none(),
            "a request error has no data: {body}"
        );
        assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
    }
}

#[tokio::test]
async fn request_errors_are_200_under_legacy_json() {
    let server = TestServer::start().await;
    let response = post_with_accept(
        &server,
        "application/json",
        r#"{"query":"{ noSuchField }"}"#,
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
    let body: Value = response.json().await.unwrap();
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("noSuchField"));
}

#[tokio::test]
async fn field_errors_keep_status_200() {
    let server = TestServer::start().await;
    let response = post_with_accept(
        &server,
        GRAPHQL_RESPONSE_JSON,
        r#"{"query":"{ me { id } }"}"#,
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"], Value::Null);
    assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
    assert_eq!(body["errors"][0]["path"], json!(["me"]));
}

#[tokio::test]
async fn malformed_json_body_is_400() {
    let server = TestServer::start().await;
    for accept in [GRAPHQL_RESPONSE_JSON, "application/json"] {
        let response = post_with_accept(&server, accept, "{\"query\": ").await;
        assert_eq!(response.status(), 400, "{accept}");
    }
}

#[tokio::test]
async fn unacceptable_accept_header_is_406() {
    let server = TestServer::start().await;
    let response = post_with_accept(
        &server,
        "text/html",
        r#"{"query":"{ prefectures { code } }"}"#,
    )
    .await;
    assert_eq!(response.status(), 406);
}

#[tokio::test]
async fn subscription_over_http_is_rejected() {
    let server = TestServer::start().await;
    let response = post_with_accept(
        &server,
        GRAPHQL_RESPONSE_JSON,
        r#"{"query":"subscription { prefectureNotices(prefecture: 13) { id } }"}"#,
    )
    .await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("/graphql/ws"));
}

#[tokio::test]
async fn oversized_body_is_413() {
    let server = TestServer::start_with(|config| config.max_body_bytes = 1024).await;
    let padding = "x".repeat(2048);
    let body = json!({ "query": format!("{{ prefectures {{ code }} }} # {padding}") }).to_string();
    let response = post_with_accept(&server, "application/json", &body).await;
    assert_eq!(response.status(), 413);
}

#[tokio::test]
async fn deeply_nested_query_is_rejected() {
    let server = TestServer::start().await;
    let mut selection = "code".to_owned();
    for _ in 0..10 {
        selection = format!("notice {{ prefecture {{ {selection} }} }}");
    }
    let query = json!({ "query": format!("{{ prefectures {{ {selection} }} }}") }).to_string();
    let response = post_with_accept(&server, GRAPHQL_RESPONSE_JSON, &query).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("nested"),
        "{body}"
    );
}

#[tokio::test]
async fn responses_carry_a_request_id() {
    let server = TestServer::start().await;
    let generated = server
        .http
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        generated.headers()["x-request-id"].to_str().unwrap().len(),
        36
    );
    let propagated = server
        .http
        .get(server.url("/healthz"))
        .header("x-request-id", "trace-123")
        .send()
        .await
        .unwrap();
    assert_eq!(propagated.headers()["x-request-id"], "trace-123");
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let server = TestServer::start().await;
    let health = server
        .http
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let ready = server.http.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
}

#[tokio::test]
async fn deeply_nested_arguments_are_rejected_safely() {
    let server = TestServer::start().await;
    // Thousands of nested brackets once overflowed the parser's stack and aborted the process.
    let depth = 5_000;
    let query = format!(
        "{{ prefecture(code: {}1{}) {{ code }} }}",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let response = post_with_accept(
        &server,
        GRAPHQL_RESPONSE_JSON,
        &json!({ "query": query }).to_string(),
    )
    .await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("nest"),
        "{body}"
    );

    let alive = post_with_accept(
        &server,
        "application/json",
        r#"{"query":"{ prefecture(code: 1) { code } }"}"#,
    )
    .await;
    assert_eq!(alive.status(), 200, "the server still serves requests");
}
