//! The `stats` query of the dashboard: counts per calendar day in Japan time, the small-count
//! rule for upload figures, prefecture scope and argument checks.

mod common;

use axum::{http::StatusCode, response::IntoResponse, routing::post, Json, Router};
use chrono::{DateTime, Duration, TimeZone, Utc};
use common::{daily_keys, error_code, TestServer};
use mamori::auth::Role;
use serde_json::{json, Value};

const STATS: &str = "query($prefecture: Int, $from: Date!, $to: Date!) {
  stats(prefecture: $prefecture, from: $from, to: $to) {
    days {
      date devicesRegistered profiles { prefecture { code } count }
      uploadFiguresWithheld uploadsPending uploadsVerified uploadsRejected uploadsExpired
      keysPublished tokensIssued tokensRedeemed tokensExpired
    }
    latestExport { generatedAt size keyCount }
  }
}";

/// Keys per upload made by [`upload_verified`].
const KEYS_PER_UPLOAD: i64 = 2;

fn utc(year: i32, month: u32, day: u32, hour: u32, minute: u32, second: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(year, month, day, hour, minute, second)
        .unwrap()
}

/// Runs `stats` and returns the response body.
async fn stats(
    server: &TestServer,
    token: &str,
    prefecture: Option<i32>,
    from: &str,
    to: &str,
) -> Value {
    server
        .graphql(
            Some(token),
            STATS,
            json!({ "prefecture": prefecture, "from": from, "to": to }),
        )
        .await
}

/// Runs `stats` and returns its days, keyed by date, failing on any error.
async fn days(
    server: &TestServer,
    token: &str,
    prefecture: Option<i32>,
    from: &str,
    to: &str,
) -> Vec<(String, Value)> {
    let body = stats(server, token, prefecture, from, to).await;
    body["data"]["stats"]["days"]
        .as_array()
        .unwrap_or_else(|| panic!("stats failed: {body}"))
        .iter()
        .map(|day| (day["date"].as_str().unwrap().to_owned(), day.clone()))
        .collect()
}

/// Returns the figures of `date` from a result of [`days`].
fn day<'a>(days: &'a [(String, Value)], date: &str) -> &'a Value {
    days.iter()
        .find(|(day, _)| day == date)
        .map(|(_, figures)| figures)
        .unwrap_or_else(|| panic!("no entry for {date} in {days:?}"))
}

/// Returns the `profiles` of a day as (prefecture code, count) pairs.
fn profiles(day: &Value) -> Vec<(i64, i64)> {
    day["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            (
                entry["prefecture"]["code"].as_i64().unwrap(),
                entry["count"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// Logs a new user of `prefecture` in and uploads two keys with a freshly issued token.
async fn upload_verified(server: &TestServer, prefecture: i16, seed: u32) {
    let user = server.login(Some(i32::from(prefecture))).await;
    let code = server.issue_tokens(prefecture, 1).await.remove(0);
    let keys = daily_keys(seed, &[2, 1], server.clock.now());
    let body = server.upload_keys(&user, &code, &keys).await;
    assert_eq!(
        body["data"]["uploadDiagnosisKeys"]["status"], "VERIFIED",
        "upload failed: {body}"
    );
}

fn assert_withheld(day: &Value, context: &str) {
    assert_eq!(day["uploadFiguresWithheld"], true, "{context}: {day}");
    for field in [
        "uploadsPending",
        "uploadsVerified",
        "uploadsRejected",
        "uploadsExpired",
        "keysPublished",
        "tokensRedeemed",
    ] {
        assert_eq!(day[field], Value::Null, "{context}: {field} shown");
    }
}

#[tokio::test]
async fn days_split_at_japan_midnight() {
    let server = TestServer::start().await;

    // 23:59:59 on 2026-11-20 in Japan.
    server.clock.set(utc(2026, 11, 20, 14, 59, 59));
    upload_verified(&server, 13, 1).await;
    upload_verified(&server, 13, 2).await;
    server.login(Some(13)).await;
    server.issue_tokens(13, 3).await;
    // 00:00:00 on 2026-11-21 in Japan.
    server.clock.set(utc(2026, 11, 20, 15, 0, 0));
    upload_verified(&server, 13, 3).await;
    server.issue_tokens(13, 1).await;

    let admin = server.admin_token(Role::NationalAdmin, None).await;
    let before = days(&server, &admin, None, "2026-11-19", "2026-11-22").await;

    let dates: Vec<&str> = before.iter().map(|(date, _)| date.as_str()).collect();
    assert_eq!(
        dates,
        ["2026-11-19", "2026-11-20", "2026-11-21", "2026-11-22"]
    );
    let expected = [
        ("2026-11-19", 0, 0, vec![]),
        ("2026-11-20", 3, 5, vec![(13, 3)]),
        ("2026-11-21", 1, 2, vec![(13, 4)]),
        ("2026-11-22", 0, 0, vec![(13, 4)]),
    ];
    for (date, devices, issued, by_prefecture) in expected {
        let figures = day(&before, date);
        assert_eq!(figures["devicesRegistered"], devices, "{date}");
        assert_eq!(figures["tokensIssued"], issued, "{date}");
        assert_eq!(figures["tokensExpired"], 0, "{date}");
        assert_eq!(profiles(figures), by_prefecture, "{date}");
    }
    assert_withheld(day(&before, "2026-11-20"), "3 uploads on the day");
    assert_withheld(day(&before, "2026-11-21"), "1 upload on the day");
    assert_eq!(day(&before, "2026-11-19")["uploadFiguresWithheld"], false);
    assert_eq!(day(&before, "2026-11-19")["uploadsVerified"], 0);

    // 48 hours after 2026-11-21 ends in Japan, both days are released.
    server.clock.set(utc(2026, 11, 23, 15, 0, 0));
    let admin = server.admin_token(Role::NationalAdmin, None).await;
    let released = days(&server, &admin, None, "2026-11-20", "2026-11-21").await;

    for (date, uploads) in [("2026-11-20", 2), ("2026-11-21", 1)] {
        let figures = day(&released, date);
        assert_eq!(figures["uploadFiguresWithheld"], false, "{date}");
        assert_eq!(figures["uploadsVerified"], uploads, "{date}");
        assert_eq!(
            figures["keysPublished"],
            uploads * KEYS_PER_UPLOAD,
            "{date}"
        );
        assert_eq!(figures["tokensRedeemed"], uploads, "{date}");
        assert_eq!(figures["uploadsPending"], 0, "{date}");
        assert_eq!(figures["uploadsRejected"], 0, "{date}");
        assert_eq!(figures["uploadsExpired"], 0, "{date}");
    }
}

#[tokio::test]
async fn unused_tokens_expire_by_japan_day() {
    let server = TestServer::start().await;
    server.clock.set(utc(2026, 11, 20, 14, 59, 59));
    server.issue_tokens(13, 3).await;
    upload_verified(&server, 13, 1).await;
    server.clock.set(utc(2026, 11, 20, 15, 0, 0));
    server.issue_tokens(13, 1).await;

    // The tokens are valid for 7 days: until 23:59:59 on 11-27 and 00:00:00 on 11-28 in Japan.
    server.clock.set(utc(2026, 11, 27, 14, 0, 0));
    let admin = server.admin_token(Role::NationalAdmin, None).await;
    let before = days(&server, &admin, None, "2026-11-27", "2026-11-28").await;
    server.clock.set(utc(2026, 11, 28, 0, 0, 0));
    let admin = server.admin_token(Role::NationalAdmin, None).await;
    let after = days(&server, &admin, None, "2026-11-27", "2026-11-28").await;

    assert_eq!(day(&before, "2026-11-27")["tokensExpired"], 0, "not yet");
    assert_eq!(day(&before, "2026-11-28")["tokensExpired"], 0, "not yet");
    assert_eq!(
        day(&after, "2026-11-27")["tokensExpired"],
        3,
        "the redeemed token does not expire"
    );
    assert_eq!(day(&after, "2026-11-28")["tokensExpired"], 1);
}

#[tokio::test]
async fn small_day_withheld_for_48_hours() {
    let server = TestServer::start().await;
    // 18:00 on 2026-11-20 in Japan. The day ends at 15:00 UTC.
    for seed in 1..=3 {
        upload_verified(&server, 13, seed).await;
    }

    let admin = server.admin_token(Role::NationalAdmin, None).await;
    let same_day = days(&server, &admin, None, "2026-11-20", "2026-11-20").await;
    server.clock.set(utc(2026, 11, 22, 14, 59, 59));
    let admin = server.admin_token(Role::NationalAdmin, None).await;
    let almost = days(&server, &admin, None, "2026-11-20", "2026-11-20").await;
    server.clock.set(utc(2026, 11, 22, 15, 0, 0));
    let admin = server.admin_token(Role::NationalAdmin, None).await;
    let released = days(&server, &admin, None, "2026-11-20", "2026-11-20").await;

    let same_day = day(&same_day, "2026-11-20");
    assert_withheld(same_day, "on the day");
    assert_eq!(same_day["devicesRegistered"], 3, "not an upload figure");
    assert_eq!(same_day["tokensIssued"], 3, "not an upload figure");
    assert_withheld(day(&almost, "2026-11-20"), "a second before 48 hours");
    let released = day(&released, "2026-11-20");
    assert_eq!(released["uploadFiguresWithheld"], false);
    assert_eq!(released["uploadsVerified"], 3);
    assert_eq!(released["keysPublished"], 3 * KEYS_PER_UPLOAD);
    assert_eq!(released["tokensRedeemed"], 3);
}

#[tokio::test]
async fn ten_uploads_shown_at_once() {
    let server = TestServer::start().await;
    for seed in 1..=10 {
        upload_verified(&server, 13, seed).await;
    }

    let national = server.admin_token(Role::NationalAdmin, None).await;
    let tokyo = server.admin_token(Role::PrefectureAdmin, Some(13)).await;
    let national_days = days(&server, &national, None, "2026-11-20", "2026-11-20").await;
    let tokyo_days = days(&server, &tokyo, None, "2026-11-20", "2026-11-20").await;

    for (viewer, result) in [("national", &national_days), ("Tokyo", &tokyo_days)] {
        let figures = day(result, "2026-11-20");
        assert_eq!(figures["uploadFiguresWithheld"], false, "{viewer}");
        assert_eq!(figures["uploadsVerified"], 10, "{viewer}");
        assert_eq!(figures["keysPublished"], 10 * KEYS_PER_UPLOAD, "{viewer}");
        assert_eq!(figures["tokensRedeemed"], 10, "{viewer}");
    }
}

#[tokio::test]
async fn small_prefecture_withholds_national_day() {
    let server = TestServer::start().await;
    for seed in 1..=10 {
        upload_verified(&server, 13, seed).await;
    }
    upload_verified(&server, 27, 11).await;

    let admin = server.admin_token(Role::NationalAdmin, None).await;
    let national = days(&server, &admin, None, "2026-11-20", "2026-11-20").await;
    let tokyo = days(&server, &admin, Some(13), "2026-11-20", "2026-11-20").await;
    let osaka = days(&server, &admin, Some(27), "2026-11-20", "2026-11-20").await;

    assert_withheld(day(&national, "2026-11-20"), "Osaka had 1 upload");
    assert_eq!(day(&tokyo, "2026-11-20")["uploadsVerified"], 10);
    assert_withheld(day(&osaka, "2026-11-20"), "Osaka alone");
}

#[tokio::test]
async fn prefecture_admin_sees_only_own() {
    let server = TestServer::start().await;
    upload_verified(&server, 13, 1).await;
    upload_verified(&server, 13, 2).await;
    upload_verified(&server, 27, 3).await;
    server.login(Some(27)).await;
    server.issue_tokens(27, 2).await;

    let osaka = server.admin_token(Role::PrefectureAdmin, Some(27)).await;
    let national = server.admin_token(Role::NationalAdmin, None).await;
    let own_by_default = days(&server, &osaka, None, "2026-11-20", "2026-11-20").await;
    let own_by_name = days(&server, &osaka, Some(27), "2026-11-20", "2026-11-20").await;
    let other = stats(&server, &osaka, Some(13), "2026-11-20", "2026-11-20").await;
    let everything = days(&server, &national, None, "2026-11-20", "2026-11-20").await;

    for (case, result) in [("default", &own_by_default), ("named", &own_by_name)] {
        let figures = day(result, "2026-11-20");
        assert_eq!(figures["devicesRegistered"], 2, "{case}");
        assert_eq!(figures["tokensIssued"], 3, "{case}");
        assert_eq!(profiles(figures), vec![(27, 2)], "{case}");
    }
    assert_eq!(error_code(&other), "FORBIDDEN", "{other}");
    assert_eq!(other["data"], Value::Null);
    let all = day(&everything, "2026-11-20");
    assert_eq!(all["devicesRegistered"], 4);
    assert_eq!(all["tokensIssued"], 5);
    assert_eq!(profiles(all), vec![(13, 2), (27, 2)]);
}

#[tokio::test]
async fn invalid_ranges_are_rejected() {
    let server = TestServer::start().await;
    let admin = server.admin_token(Role::SuperAdmin, None).await;

    let reversed = stats(&server, &admin, None, "2026-11-20", "2026-11-19").await;
    let too_long = stats(&server, &admin, None, "2024-01-01", "2025-01-01").await;
    let leap_year = days(&server, &admin, None, "2024-01-01", "2024-12-31").await;
    let one_day = days(&server, &admin, None, "2026-11-20", "2026-11-20").await;

    for (case, body) in [("to before from", &reversed), ("367 days", &too_long)] {
        assert_eq!(error_code(body), "BAD_USER_INPUT", "{case}: {body}");
        assert_eq!(body["errors"][0]["extensions"]["field"], "to", "{case}");
        assert_eq!(body["data"], Value::Null, "{case}");
    }
    assert_eq!(leap_year.len(), 366);
    assert_eq!(leap_year[365].0, "2024-12-31");
    assert_eq!(one_day.len(), 1);
}

#[tokio::test]
async fn bad_arguments_are_rejected() {
    let server = TestServer::start().await;
    let admin = server.admin_token(Role::SuperAdmin, None).await;
    let cases = [
        (
            "month 13",
            json!({ "from": "2026-13-01", "to": "2026-12-01" }),
        ),
        (
            "November 31",
            json!({ "from": "2026-11-31", "to": "2026-12-01" }),
        ),
        (
            "no hyphens",
            json!({ "from": "20261120", "to": "2026-11-20" }),
        ),
        (
            "date and time",
            json!({ "from": "2026-11-20T00:00:00Z", "to": "2026-11-20" }),
        ),
        ("empty", json!({ "from": "2026-11-20", "to": "" })),
        ("a number", json!({ "from": 20261120, "to": "2026-11-20" })),
        (
            "prefecture 0",
            json!({ "prefecture": 0, "from": "2026-11-20", "to": "2026-11-20" }),
        ),
        (
            "prefecture 48",
            json!({ "prefecture": 48, "from": "2026-11-20", "to": "2026-11-20" }),
        ),
    ];

    for (case, variables) in cases {
        let body = server.graphql(Some(&admin), STATS, variables).await;

        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{case}: {body}");
        assert!(
            body["data"].is_null() || body["data"]["stats"].is_null(),
            "{case}: {body}"
        );
    }
}

#[tokio::test]
async fn latest_export_after_export_run() {
    let server = TestServer::start().await;
    let admin = server.admin_token(Role::SuperAdmin, None).await;
    upload_verified(&server, 13, 1).await;
    upload_verified(&server, 27, 2).await;

    let before = stats(&server, &admin, None, "2026-11-20", "2026-11-20").await;
    let index = mamori::jobs::export_keys(&server.app).await.unwrap();
    let after = stats(&server, &admin, None, "2026-11-20", "2026-11-20").await;

    assert_eq!(
        before["data"]["stats"]["latestExport"],
        Value::Null,
        "{before}"
    );
    let latest = &after["data"]["stats"]["latestExport"];
    let generated_at: DateTime<Utc> = latest["generatedAt"].as_str().unwrap().parse().unwrap();
    assert_eq!(generated_at, index.generated_at);
    assert_eq!(latest["keyCount"], 2 * KEYS_PER_UPLOAD);
    let size: u64 = index.files.iter().map(|file| file.size).sum();
    assert!(size > 0);
    assert_eq!(latest["size"], size);
}

/// Starts a verification service on 127.0.0.1 that verifies `VERIFY-` codes, rejects `REJECT-`
/// codes and fails with HTTP 500 for any other, and returns its URL.
async fn start_verification_service() -> String {
    let router = Router::new().route(
        "/verify",
        post(|Json(body): Json<Value>| async move {
            match body["code"].as_str().unwrap_or_default() {
                code if code.starts_with("VERIFY-") => {
                    Json(json!({ "status": "VERIFIED" })).into_response()
                }
                code if code.starts_with("REJECT-") => {
                    Json(json!({ "status": "REJECTED" })).into_response()
                }
                _ => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/verify", listener.local_addr().unwrap());
    // The task ends with the test's runtime.
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    url
}

#[tokio::test]
async fn upload_statuses_counted_in_http_mode() {
    let url = start_verification_service().await;
    let server = TestServer::start_with(|config| {
        config.verification_mode = "http".into();
        config.verification_url = Some(url);
        config.verification_pending_ttl = std::time::Duration::from_secs(3600);
    })
    .await;
    let upload = |prefecture: Option<i32>, code: &'static str, seed: u32| {
        let server = &server;
        async move {
            let user = server.login(prefecture).await;
            let keys = daily_keys(seed, &[2, 1], server.clock.now());
            let body = server.upload_keys(&user, code, &keys).await;
            assert_eq!(
                body["data"]["uploadDiagnosisKeys"]["status"], "PENDING",
                "{body}"
            );
        }
    };

    // All on 2026-11-20 in Japan, 18:00 to 19:00.
    upload(Some(13), "FAIL-1", 1).await;
    server.clock.advance(Duration::hours(1));
    upload(Some(13), "VERIFY-1", 2).await;
    upload(Some(13), "REJECT-1", 3).await;
    upload(Some(13), "FAIL-2", 4).await;
    mamori::jobs::verify_uploads(&server.app).await.unwrap();
    upload(Some(13), "VERIFY-2", 5).await;
    upload(None, "VERIFY-3", 6).await;

    server.clock.set(utc(2026, 11, 22, 15, 0, 0));
    let admin = server.admin_token(Role::NationalAdmin, None).await;
    let tokyo = days(&server, &admin, Some(13), "2026-11-20", "2026-11-20").await;
    let national = days(&server, &admin, None, "2026-11-20", "2026-11-20").await;

    let tokyo = day(&tokyo, "2026-11-20");
    assert_eq!(tokyo["uploadFiguresWithheld"], false);
    assert_eq!(tokyo["uploadsPending"], 2);
    assert_eq!(tokyo["uploadsVerified"], 1);
    assert_eq!(tokyo["uploadsRejected"], 1);
    assert_eq!(tokyo["uploadsExpired"], 1);
    assert_eq!(tokyo["keysPublished"], KEYS_PER_UPLOAD);
    assert_eq!(tokyo["tokensRedeemed"], 0, "no local token was spent");
    assert_eq!(tokyo["devicesRegistered"], 5);
    let national = day(&national, "2026-11-20");
    assert_eq!(
        national["uploadsPending"], 3,
        "with the one of no prefecture"
    );
    assert_eq!(national["devicesRegistered"], 6);
}

#[tokio::test]
async fn dates_at_calendar_limits_are_rejected() {
    let server = TestServer::start().await;
    let admin = server.admin_token(Role::SuperAdmin, None).await;
    let cases = [
        ("last representable date", "+262142-12-31", "+262142-12-31"),
        ("first representable date", "-262143-01-01", "-262143-01-01"),
    ];

    for (case, from, to) in cases {
        let response = server
            .http
            .post(server.url("/graphql"))
            .bearer_auth(&admin)
            .json(&json!({ "query": STATS, "variables": { "from": from, "to": to } }))
            .send()
            .await;

        let response = response.unwrap_or_else(|error| panic!("{case}: no response: {error}"));
        let body: Value = response.json().await.unwrap();
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{case}: {body}");
    }
    let after = days(&server, &admin, None, "2026-11-20", "2026-11-20").await;
    assert_eq!(after.len(), 1, "the server still answers");
}
