//! Uploading diagnosis keys: validation, health-center token rules, rate limiting, withdrawal
//! and racing uploads.

mod common;

use std::net::{IpAddr, Ipv4Addr};

use common::{daily_keys, error_code, intervals, key_bytes, key_input, TestServer, UPLOAD_KEYS};
use futures::StreamExt;
use mamori::{
    auth::Role,
    entity::{diagnosis_key_uploads, diagnosis_keys},
};
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{json, Value};

const WITHDRAW: &str = "mutation { withdrawDiagnosisKeys }";

/// A well-formed code that no test issues, so it matches no stored hash.
const NEVER_ISSUED_CODE: &str = "2345-6789-ABCD";

/// Returns the number of rows in `diagnosis_keys` and in `diagnosis_key_uploads`.
async fn stored_rows(server: &TestServer) -> (u64, u64) {
    let keys = diagnosis_keys::Entity::find()
        .count(&server.app.db)
        .await
        .unwrap();
    let uploads = diagnosis_key_uploads::Entity::find()
        .count(&server.app.db)
        .await
        .unwrap();
    (keys, uploads)
}

fn extension<'a>(body: &'a Value, name: &str) -> &'a Value {
    &body["errors"][0]["extensions"][name]
}

fn upload_id(body: &Value) -> String {
    body["data"]["uploadDiagnosisKeys"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an accepted upload: {body}"))
        .to_owned()
}

/// Returns a valid key of two days ago followed by a key of one day ago changed by `change`.
fn second_key_changed(
    now: chrono::DateTime<chrono::Utc>,
    change: impl Fn(&mut Value),
) -> Vec<Value> {
    let mut keys = daily_keys(7, &[2, 1], now);
    change(&mut keys[1]);
    keys
}

/// A client whose connections come from another loopback address. Linux routes all of
/// 127.0.0.0/8 to the loopback interface, so the server on 127.0.0.1 gets a second client address.
fn client_from(address: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(address))
        .build()
        .unwrap()
}

async fn upload_from(
    server: &TestServer,
    client: &reqwest::Client,
    token: &str,
    code: &str,
    keys: &[Value],
) -> Value {
    let response = client
        .post(server.url("/graphql"))
        .bearer_auth(token)
        .json(&json!({
            "query": UPLOAD_KEYS,
            "variables": { "input": { "healthCenterToken": code, "keys": keys } },
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn upload_rejects_each_invalid_key() {
    let server = TestServer::start().await;
    let now = server.clock.now();
    let (today, current) = intervals(now);
    let one_day_ago = today - 144;

    let overlapping = {
        let mut keys = daily_keys(7, &[1], now);
        keys.push(key_input(&key_bytes(7, 100), one_day_ago + 72, 144));
        keys
    };
    let too_many: Vec<Value> = (1..=11)
        .flat_map(|day| (0..3).map(move |copy| (day, copy)))
        .take(31)
        .map(|(day, copy)| key_input(&key_bytes(copy, day), today - day * 144, 144))
        .collect();
    let same_start: Vec<Value> = (0..4)
        .map(|copy| key_input(&key_bytes(copy, 1), one_day_ago, 144))
        .collect();
    let duplicate = {
        let mut keys = daily_keys(7, &[2, 1], now);
        keys[1]["keyData"] = keys[0]["keyData"].clone();
        keys
    };

    let cases: Vec<(&str, Vec<Value>, &str)> = vec![
        (
            "keyData not base64",
            second_key_changed(now, |key| key["keyData"] = json!("not base64!")),
            "keys[1].keyData",
        ),
        (
            "keyData of 15 bytes",
            second_key_changed(now, |key| {
                key["keyData"] = json!(common::base64_key(&[1; 15]))
            }),
            "keys[1].keyData",
        ),
        (
            "rollingPeriod 0",
            second_key_changed(now, |key| key["rollingPeriod"] = json!(0)),
            "keys[1].rollingPeriod",
        ),
        (
            "rollingPeriod 145",
            second_key_changed(now, |key| key["rollingPeriod"] = json!(145)),
            "keys[1].rollingPeriod",
        ),
        (
            "transmissionRiskLevel -1",
            second_key_changed(now, |key| key["transmissionRiskLevel"] = json!(-1)),
            "keys[1].transmissionRiskLevel",
        ),
        (
            "transmissionRiskLevel 9",
            second_key_changed(now, |key| key["transmissionRiskLevel"] = json!(9)),
            "keys[1].transmissionRiskLevel",
        ),
        (
            "daysSinceOnsetOfSymptoms -15",
            second_key_changed(now, |key| key["daysSinceOnsetOfSymptoms"] = json!(-15)),
            "keys[1].daysSinceOnsetOfSymptoms",
        ),
        (
            "daysSinceOnsetOfSymptoms 15",
            second_key_changed(now, |key| key["daysSinceOnsetOfSymptoms"] = json!(15)),
            "keys[1].daysSinceOnsetOfSymptoms",
        ),
        (
            "reportType -1",
            second_key_changed(now, |key| key["reportType"] = json!(-1)),
            "keys[1].reportType",
        ),
        (
            "reportType 6",
            second_key_changed(now, |key| key["reportType"] = json!(6)),
            "keys[1].reportType",
        ),
        ("31 keys", too_many, "keys"),
        (
            "4 keys with one start interval",
            same_start,
            "keys[3].rollingStartIntervalNumber",
        ),
        (
            "overlapping keys with different starts",
            overlapping,
            "keys[1].rollingStartIntervalNumber",
        ),
        (
            "key starting in the future",
            second_key_changed(now, |key| {
                key["rollingStartIntervalNumber"] = json!(current + 1)
            }),
            "keys[1].rollingStartIntervalNumber",
        ),
        (
            "key ended more than 14 days ago",
            second_key_changed(now, |key| {
                key["rollingStartIntervalNumber"] = json!(today - 15 * 144)
            }),
            "keys[1].rollingStartIntervalNumber",
        ),
        ("duplicate keyData", duplicate, "keys[1].keyData"),
        ("empty key list", Vec::new(), "keys"),
    ];

    for (case, keys, expected_field) in cases {
        let user = server.login(None).await;
        let code = server.issue_tokens(13, 1).await.remove(0);
        let before = stored_rows(&server).await;

        let rejected = server.upload_keys(&user, &code, &keys).await;
        assert_eq!(
            error_code(&rejected),
            "BAD_USER_INPUT",
            "{case}: {rejected}"
        );
        assert_eq!(
            extension(&rejected, "field"),
            expected_field,
            "{case}: {rejected}"
        );
        assert_eq!(
            rejected["data"],
            Value::Null,
            "{case}: no upload is returned"
        );
        assert_eq!(stored_rows(&server).await, before, "{case}: nothing stored");

        let valid = daily_keys(1_000, &[3, 2, 1], now);
        let accepted = server.upload_keys(&user, &code, &valid).await;
        assert_eq!(
            accepted["data"]["uploadDiagnosisKeys"]["keyCount"], 3,
            "{case}: the token was not spent by the rejected upload: {accepted}"
        );
        // The next case uploads the same valid keys, so withdraw them to keep each case alone.
        server.graphql(Some(&user), WITHDRAW, json!({})).await;
    }
}

#[tokio::test]
async fn upload_accepts_values_at_each_limit() {
    let server = TestServer::start().await;
    let now = server.clock.now();
    let (today, current) = intervals(now);

    // Ten days of three keys sharing each start make 30 keys, the default maximum.
    let thirty: Vec<Value> = (1..=10)
        .flat_map(|day| (0..3).map(move |copy| (day, copy)))
        .map(|(day, copy)| key_input(&key_bytes(copy, day), today - day * 144, 144))
        .collect();
    let user = server.login(None).await;
    let code = server.issue_tokens(13, 1).await.remove(0);
    let body = server.upload_keys(&user, &code, &thirty).await;
    assert_eq!(
        body["data"]["uploadDiagnosisKeys"]["keyCount"], 30,
        "{body}"
    );

    let mut lowest = key_input(&key_bytes(1, 1), today - 144, 1);
    lowest["transmissionRiskLevel"] = json!(0);
    lowest["reportType"] = json!(0);
    lowest["daysSinceOnsetOfSymptoms"] = json!(-14);
    let mut highest = key_input(&key_bytes(1, 2), today - 2 * 144, 144);
    highest["transmissionRiskLevel"] = json!(8);
    highest["reportType"] = json!(5);
    highest["daysSinceOnsetOfSymptoms"] = json!(14);
    let ended_at_retention = key_input(&key_bytes(1, 14), current - 14 * 144 - 144, 144);
    let starting_now = key_input(&key_bytes(1, 0), current, 144);
    let mut without_optional_fields = key_input(&key_bytes(1, 3), today - 3 * 144, 144);
    without_optional_fields["reportType"] = Value::Null;
    without_optional_fields["daysSinceOnsetOfSymptoms"] = Value::Null;
    let keys = [
        lowest,
        highest,
        ended_at_retention,
        starting_now,
        without_optional_fields,
    ];

    let other_user = server.login(None).await;
    let code = server.issue_tokens(13, 1).await.remove(0);
    let body = server.upload_keys(&other_user, &code, &keys).await;
    assert_eq!(body["data"]["uploadDiagnosisKeys"]["keyCount"], 5, "{body}");
    assert_eq!(stored_rows(&server).await, (35, 2));
}

#[tokio::test]
async fn upload_rejects_unknown_token() {
    let server = TestServer::start().await;
    let user = server.login(None).await;
    let keys = daily_keys(1, &[1], server.clock.now());
    for code in [NEVER_ISSUED_CODE, "hello", ""] {
        let body = server.upload_keys(&user, code, &keys).await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{code:?}: {body}");
        assert_eq!(extension(&body, "reason"), "UNKNOWN_TOKEN", "{code:?}");
        assert_eq!(extension(&body, "field"), "healthCenterToken", "{code:?}");
    }
    assert_eq!(stored_rows(&server).await, (0, 0));
}

#[tokio::test]
async fn upload_rejects_token_after_seven_days() {
    let server = TestServer::start().await;
    let codes = server.issue_tokens(13, 2).await;

    server
        .clock
        .advance(chrono::Duration::days(7) - chrono::Duration::minutes(1));
    let user = server.login(None).await;
    let keys = daily_keys(1, &[1], server.clock.now());
    let body = server.upload_keys(&user, &codes[0], &keys).await;
    assert_eq!(
        body["data"]["uploadDiagnosisKeys"]["keyCount"], 1,
        "a token is valid until its seventh day ends: {body}"
    );

    server.clock.advance(chrono::Duration::minutes(2));
    let user = server.login(None).await;
    let keys = daily_keys(2, &[1], server.clock.now());
    let body = server.upload_keys(&user, &codes[1], &keys).await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
    assert_eq!(extension(&body, "reason"), "EXPIRED_TOKEN");
    assert_eq!(stored_rows(&server).await, (1, 1));
}

#[tokio::test]
async fn upload_rejects_token_spent_by_another() {
    let server = TestServer::start().await;
    let code = server.issue_tokens(13, 1).await.remove(0);
    let keys = daily_keys(1, &[2, 1], server.clock.now());
    let first = server.login(None).await;
    let accepted = server.upload_keys(&first, &code, &keys).await;
    upload_id(&accepted);

    let second = server.login(None).await;
    // The same keys do not make it a retry, because the token belongs to the first user's upload.
    let body = server.upload_keys(&second, &code, &keys).await;
    assert_eq!(error_code(&body), "CONFLICT", "{body}");
    assert_eq!(extension(&body, "reason"), "SPENT_TOKEN");
    assert_eq!(stored_rows(&server).await, (2, 1));
}

#[tokio::test]
async fn retried_upload_returns_first_upload() {
    let server = TestServer::start().await;
    let code = server.issue_tokens(13, 1).await.remove(0);
    let user = server.login(None).await;
    let keys = daily_keys(1, &[3, 2, 1], server.clock.now());
    let first = upload_id(&server.upload_keys(&user, &code, &keys).await);

    let retry = upload_id(&server.upload_keys(&user, &code, &keys).await);
    assert_eq!(retry, first);
    let reversed: Vec<Value> = keys.iter().rev().cloned().collect();
    let reordered = upload_id(&server.upload_keys(&user, &code, &reversed).await);
    assert_eq!(
        reordered, first,
        "key order does not make a different upload"
    );
    assert_eq!(stored_rows(&server).await, (3, 1));
}

#[tokio::test]
async fn same_token_different_keys_conflicts() {
    let server = TestServer::start().await;
    let code = server.issue_tokens(13, 1).await.remove(0);
    let user = server.login(None).await;
    let now = server.clock.now();
    upload_id(
        &server
            .upload_keys(&user, &code, &daily_keys(1, &[2, 1], now))
            .await,
    );

    let mut changed = daily_keys(1, &[2, 1], now);
    changed[1]["transmissionRiskLevel"] = json!(6);
    for keys in [daily_keys(2, &[2, 1], now), changed] {
        let body = server.upload_keys(&user, &code, &keys).await;
        assert_eq!(error_code(&body), "CONFLICT", "{body}");
        assert_eq!(extension(&body, "reason"), "SPENT_TOKEN");
    }
    assert_eq!(stored_rows(&server).await, (2, 1));
}

#[tokio::test]
async fn token_code_ignores_case_and_hyphens() {
    let server = TestServer::start().await;
    let codes = server.issue_tokens(13, 3).await;
    let typed = [
        codes[0].to_lowercase(),
        codes[1].replace('-', ""),
        codes[2].to_lowercase().replace('-', " "),
    ];
    for (index, code) in typed.iter().enumerate() {
        let user = server.login(None).await;
        let keys = daily_keys(index as u32, &[1], server.clock.now());
        let body = server.upload_keys(&user, code, &keys).await;
        assert_eq!(
            body["data"]["uploadDiagnosisKeys"]["keyCount"], 1,
            "{code:?}: {body}"
        );
    }
}

#[tokio::test]
async fn rate_limit_follows_user_and_address() {
    let server = TestServer::start_with(|config| config.token_attempt_limit_per_address = 5).await;
    let codes = server.issue_tokens(13, 3).await;
    let now = server.clock.now();
    let keys = daily_keys(1, &[1], now);
    let local = client_from(Ipv4Addr::new(127, 0, 0, 1));

    let blocked_user = server.login(None).await;
    for attempt in 1..=5 {
        let body = upload_from(&server, &local, &blocked_user, NEVER_ISSUED_CODE, &keys).await;
        assert_eq!(
            extension(&body, "reason"),
            "UNKNOWN_TOKEN",
            "attempt {attempt}: {body}"
        );
    }
    let blocked = upload_from(&server, &local, &blocked_user, &codes[0], &keys).await;
    assert_eq!(error_code(&blocked), "RATE_LIMITED", "{blocked}");
    let retry_after = extension(&blocked, "retryAfterSeconds")
        .as_u64()
        .unwrap_or_else(|| panic!("retryAfterSeconds is a number: {blocked}"));
    assert!(
        (1..=15 * 60).contains(&retry_after),
        "retry within the 15-minute window, not {retry_after}"
    );

    let same_address = server.login(None).await;
    let body = upload_from(&server, &local, &same_address, &codes[1], &keys).await;
    assert_eq!(
        error_code(&body),
        "RATE_LIMITED",
        "another user on the blocked address is limited too: {body}"
    );

    let elsewhere = client_from(Ipv4Addr::new(127, 0, 0, 2));
    let body = upload_from(&server, &elsewhere, &blocked_user, &codes[1], &keys).await;
    assert_eq!(
        error_code(&body),
        "RATE_LIMITED",
        "the blocked user is limited from another address too: {body}"
    );

    let other_user = server.login(None).await;
    let body = upload_from(&server, &elsewhere, &other_user, &codes[0], &keys).await;
    assert_eq!(
        body["data"]["uploadDiagnosisKeys"]["keyCount"], 1,
        "another user on another address is not limited, and the blocked attempt did not spend \
         the token: {body}"
    );
}

#[tokio::test]
async fn rate_limit_counts_address_across_users() {
    let server = TestServer::start_with(|config| config.token_attempt_limit_per_address = 5).await;
    let code = server.issue_tokens(13, 1).await.remove(0);
    let keys = daily_keys(1, &[1], server.clock.now());

    // Five users fail once each, so only the address has used up its five failures.
    for _ in 0..5 {
        let user = server.login(None).await;
        let body = server.upload_keys(&user, NEVER_ISSUED_CODE, &keys).await;
        assert_eq!(extension(&body, "reason"), "UNKNOWN_TOKEN", "{body}");
    }
    let fresh_user = server.login(None).await;
    let body = server.upload_keys(&fresh_user, &code, &keys).await;
    assert_eq!(error_code(&body), "RATE_LIMITED", "{body}");
    assert!(extension(&body, "retryAfterSeconds").as_u64().is_some());
}

#[tokio::test]
async fn rate_limit_ends_with_its_window() {
    let server = TestServer::start_with(|config| {
        config.token_attempt_limit = 2;
        config.token_attempt_window = std::time::Duration::from_secs(1);
    })
    .await;
    let code = server.issue_tokens(13, 1).await.remove(0);
    let keys = daily_keys(1, &[1], server.clock.now());
    let user = server.login(None).await;
    for _ in 0..2 {
        server.upload_keys(&user, NEVER_ISSUED_CODE, &keys).await;
    }
    let blocked = server.upload_keys(&user, &code, &keys).await;
    assert_eq!(error_code(&blocked), "RATE_LIMITED", "{blocked}");
    assert_eq!(extension(&blocked, "retryAfterSeconds"), 1);

    // The limiter measures its window on the monotonic clock, not on the test clock.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let body = server.upload_keys(&user, &code, &keys).await;
    assert_eq!(body["data"]["uploadDiagnosisKeys"]["keyCount"], 1, "{body}");
}

#[tokio::test]
async fn upload_of_fourteen_days_then_withdraw() {
    let server = TestServer::start().await;
    let now = server.clock.now();
    let codes = server.issue_tokens(13, 2).await;
    let user = server.login(None).await;
    let days: Vec<i64> = (0..14).collect();
    let body = server
        .upload_keys(&user, &codes[0], &daily_keys(1, &days, now))
        .await;
    let upload = &body["data"]["uploadDiagnosisKeys"];
    assert_eq!(upload["keyCount"], 14, "{body}");
    assert_eq!(upload["status"], "VERIFIED");
    assert_eq!(stored_rows(&server).await, (14, 1));

    let bystander = server.login(None).await;
    upload_id(
        &server
            .upload_keys(&bystander, &codes[1], &daily_keys(2, &[2, 1], now))
            .await,
    );
    assert_eq!(stored_rows(&server).await, (16, 2));

    let withdrawn = server.graphql(Some(&user), WITHDRAW, json!({})).await;
    assert_eq!(
        withdrawn["data"]["withdrawDiagnosisKeys"], 14,
        "{withdrawn}"
    );
    assert_eq!(
        stored_rows(&server).await,
        (2, 1),
        "only the caller's upload is removed"
    );

    let again = server.graphql(Some(&user), WITHDRAW, json!({})).await;
    assert_eq!(again["data"]["withdrawDiagnosisKeys"], 0, "{again}");
    assert_eq!(stored_rows(&server).await, (2, 1));
}

#[tokio::test]
async fn withdraw_needs_a_user_token() {
    let server = TestServer::start().await;
    let anonymous = server.graphql(None, WITHDRAW, json!({})).await;
    assert_eq!(error_code(&anonymous), "UNAUTHENTICATED", "{anonymous}");

    let admin = server.admin_token(Role::SuperAdmin, None).await;
    let as_admin = server.graphql(Some(&admin), WITHDRAW, json!({})).await;
    assert_eq!(error_code(&as_admin), "FORBIDDEN", "{as_admin}");
}

#[tokio::test]
async fn racing_uploads_spend_token_once() {
    let server = TestServer::start().await;
    let now = server.clock.now();
    // Several rounds, because one round may not overlap the two transactions.
    for round in 0..10 {
        let code = server.issue_tokens(13, 1).await.remove(0);
        let first = server.login(None).await;
        let second = server.login(None).await;
        let first_keys = daily_keys(2 * round, &[2, 1], now);
        let second_keys = daily_keys(2 * round + 1, &[2, 1], now);

        let (first_body, second_body) = tokio::join!(
            server.upload_keys(&first, &code, &first_keys),
            server.upload_keys(&second, &code, &second_keys),
        );
        let accepted: Vec<&Value> = [&first_body, &second_body]
            .into_iter()
            .filter(|body| body["errors"].is_null())
            .collect();
        assert_eq!(
            accepted.len(),
            1,
            "round {round}: {first_body} / {second_body}"
        );
        let loser = if first_body["errors"].is_null() {
            &second_body
        } else {
            &first_body
        };
        assert_eq!(error_code(loser), "CONFLICT", "round {round}: {loser}");
        assert_eq!(extension(loser, "reason"), "SPENT_TOKEN");
        assert_eq!(
            stored_rows(&server).await,
            (2 * (u64::from(round) + 1), u64::from(round) + 1)
        );
    }
}

#[tokio::test]
async fn rate_limit_holds_under_concurrency() {
    // Wrong codes sent at once must not all reach the token check before the first failures are
    // counted, or the limit of five per window does not bound guessing.
    let server = TestServer::start().await;
    let user = server.login(None).await;
    let keys = daily_keys(1, &[1], server.clock.now());
    let codes: Vec<String> = (0..40)
        .map(|_| mamori::health_center_tokens::generate_code())
        .collect();

    let bodies: Vec<Value> = futures::stream::iter(&codes)
        .map(|code| server.upload_keys(&user, code, &keys))
        .buffer_unordered(40)
        .collect()
        .await;
    let checked = bodies
        .iter()
        .filter(|body| extension(body, "reason") == "UNKNOWN_TOKEN")
        .count();
    let limited = bodies
        .iter()
        .filter(|body| error_code(body) == "RATE_LIMITED")
        .count();
    assert_eq!(checked + limited, codes.len(), "{bodies:?}");
    assert!(
        checked <= 5,
        "{checked} codes were checked against the database, more than the limit of 5"
    );
}
