//! Login, refresh-token rotation and reuse detection, profiles and admin login.

mod common;

use common::{error_code, TestServer};
use mamori::auth::Role;
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{json, Value};

const REFRESH: &str = "mutation($t: String!) { refreshSession(refreshToken: $t) { accessToken refreshToken expiresAt } }";

async fn login_session(server: &TestServer) -> Value {
    let body = server
        .graphql(
            None,
            "mutation { login { accessToken refreshToken expiresAt } }",
            json!({}),
        )
        .await;
    body["data"]["login"].clone()
}

#[tokio::test]
async fn login_returns_jwt_with_required_claims() {
    let server = TestServer::start().await;
    let session = login_session(&server).await;
    let token = session["accessToken"].as_str().unwrap();
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .unwrap(),
    )
    .unwrap();
    for claim in ["iss", "aud", "sub", "role", "iat", "exp"] {
        assert!(
            claims.get(claim).is_some(),
            "missing claim {claim}: {claims}"
        );
    }
    assert_eq!(claims["role"], "USER");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600
    );
    let header: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            token.split('.').next().unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "HS256");
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_family() {
    let server = TestServer::start().await;
    let first = login_session(&server).await;
    let first_refresh = first["refreshToken"].as_str().unwrap();

    let second = server
        .graphql(None, REFRESH, json!({ "t": first_refresh }))
        .await;
    let second_refresh = second["data"]["refreshSession"]["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(second_refresh, first_refresh);

    let reused = server
        .graphql(None, REFRESH, json!({ "t": first_refresh }))
        .await;
    assert_eq!(error_code(&reused), "UNAUTHENTICATED");
    assert!(reused["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("already used"));

    // The reuse revoked the whole family, including the token rotated from it.
    let after_revocation = server
        .graphql(None, REFRESH, json!({ "t": second_refresh }))
        .await;
    assert_eq!(error_code(&after_revocation), "UNAUTHENTICATED");
    assert!(after_revocation["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("revoked"));
}

#[tokio::test]
async fn refresh_rejects_unknown_and_expired_tokens() {
    let server = TestServer::start().await;
    let unknown = server
        .graphql(None, REFRESH, json!({ "t": "not-a-token" }))
        .await;
    assert_eq!(error_code(&unknown), "UNAUTHENTICATED");

    let session = login_session(&server).await;
    server.clock.advance(chrono::Duration::days(31));
    let expired = server
        .graphql(None, REFRESH, json!({ "t": session["refreshToken"] }))
        .await;
    assert_eq!(error_code(&expired), "UNAUTHENTICATED");
    assert!(expired["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("expired"));
}

#[tokio::test]
async fn access_token_expires_after_an_hour() {
    let server = TestServer::start().await;
    let token = server.login(Some(1)).await;
    server.clock.advance(chrono::Duration::minutes(61));
    let body = server
        .graphql(Some(&token), "{ me { id } }", json!({}))
        .await;
    assert_eq!(error_code(&body), "UNAUTHENTICATED");
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("expired"));
}

#[tokio::test]
async fn me_needs_a_user_token() {
    let server = TestServer::start().await;
    let anonymous = server.graphql(None, "{ me { id } }", json!({})).await;
    assert_eq!(error_code(&anonymous), "UNAUTHENTICATED");

    let forged = server
        .graphql(Some("eyJhbGciOiJub25lIn0.e30."), "{ me { id } }", json!({}))
        .await;
    assert_eq!(error_code(&forged), "UNAUTHENTICATED");

    let admin = server.admin_token(Role::SuperAdmin, None).await;
    let as_admin = server
        .graphql(Some(&admin), "{ me { id } }", json!({}))
        .await;
    assert_eq!(error_code(&as_admin), "FORBIDDEN");
}

#[tokio::test]
async fn update_profile_sets_and_clears_prefecture() {
    let server = TestServer::start().await;
    let token = server.login(None).await;
    let update = "mutation($p: Int) { updateProfile(input: {prefecture: $p}) { prefecture { code nameEn } } }";

    let set = server
        .graphql(Some(&token), update, json!({ "p": 27 }))
        .await;
    assert_eq!(
        set["data"]["updateProfile"]["prefecture"]["nameEn"],
        "Osaka"
    );

    let me = server
        .graphql(Some(&token), "{ me { prefecture { code } } }", json!({}))
        .await;
    assert_eq!(me["data"]["me"]["prefecture"]["code"], 27);

    let cleared = server
        .graphql(Some(&token), update, json!({ "p": null }))
        .await;
    assert_eq!(cleared["data"]["updateProfile"]["prefecture"], Value::Null);

    let unchanged = server
        .graphql(
            Some(&token),
            "mutation { updateProfile(input: {}) { prefecture { code } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        unchanged["data"]["updateProfile"]["prefecture"],
        Value::Null
    );
}

#[tokio::test]
async fn invalid_prefecture_names_value() {
    let server = TestServer::start().await;
    let token = server.login(None).await;
    for value in [0, 48, -5] {
        let body = server
            .graphql(
                Some(&token),
                "mutation($p: Int) { updateProfile(input: {prefecture: $p}) { id } }",
                json!({ "p": value }),
            )
            .await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT");
        assert!(
            body["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains(&value.to_string()),
            "{body}"
        );
    }
    let login = server
        .graphql(
            None,
            "mutation { login(input: {prefecture: 99}) { accessToken } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&login), "BAD_USER_INPUT");
    let count = mamori::entity::users::Entity::find()
        .count(&server.app.db)
        .await
        .unwrap();
    assert_eq!(count, 1, "the rejected login created no user");
}

#[tokio::test]
async fn admin_login_rejects_wrong_password_then_limits() {
    let server = TestServer::start_with(|config| {
        config.admin_login_delay_step = std::time::Duration::from_millis(1)
    })
    .await;
    server.admin_token(Role::SuperAdmin, None).await;
    let login = "mutation($e: String!, $p: String!) { adminLogin(email: $e, password: $p) { accessToken } }";
    let mut codes = Vec::new();
    for _ in 0..11 {
        let body = server
            .graphql(
                None,
                login,
                json!({ "e": "nobody@example.jp", "p": "wrong password!" }),
            )
            .await;
        codes.push(error_code(&body).to_owned());
    }
    assert!(
        codes[..10].iter().all(|code| code == "UNAUTHENTICATED"),
        "{codes:?}"
    );
    assert_eq!(codes[10], "RATE_LIMITED");
}

#[tokio::test]
async fn prefectures_list_all_without_login() {
    let server = TestServer::start().await;
    let body = server
        .graphql(
            None,
            "{ prefectures { code nameJa nameEn notice { id } } }",
            json!({}),
        )
        .await;
    let list = body["data"]["prefectures"].as_array().unwrap();
    assert_eq!(list.len(), 47);
    assert_eq!(list[0]["nameEn"], "Hokkaido");
    assert_eq!(list[46]["nameJa"], "沖縄県");

    let one = server
        .graphql(None, "{ prefecture(code: 13) { nameEn } }", json!({}))
        .await;
    assert_eq!(one["data"]["prefecture"]["nameEn"], "Tokyo");
    let missing = server
        .graphql(None, "{ prefecture(code: 48) { nameEn } }", json!({}))
        .await;
    assert_eq!(error_code(&missing), "BAD_USER_INPUT");
}
