//! The `http` verification mode against a fake health-authority service on 127.0.0.1: pending
//! uploads, the verification job's decisions, retries, expiry and retried uploads.

mod common;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
    Json, Router,
};
use clap::Parser;
use common::{daily_keys, error_code, exported_key_data, TestServer};
use mamori::{
    app::AppState,
    clock::Clock,
    config::Config,
    entity::{
        diagnosis_key_uploads::{self, UploadStatus},
        diagnosis_keys,
    },
    verification::RunSummary,
};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{json, Value};
use uuid::Uuid;

/// Timeout of one request to the fake service. Requests with a `SLOW-` code wait far longer.
const TIMEOUT: Duration = Duration::from_secs(1);
const ATTEMPTS: u32 = 3;
/// The server's default `MAMORI_VERIFICATION_PENDING_TTL`.
const PENDING_TTL_HOURS: i64 = 24;

/// One request the fake service received.
#[derive(Clone, Debug)]
struct Received {
    content_type: Option<String>,
    body: Value,
}

/// The health authority's verification service, played by an axum router on 127.0.0.1. It
/// decides by the code's prefix: `VERIFY-` is verified, `REJECT-` rejected, `FAIL-` gets HTTP
/// 500, `UNSURE-` an unknown status and `SLOW-` waits longer than the client's timeout.
struct FakeAuthority {
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
    server: tokio::task::JoinHandle<()>,
}

impl FakeAuthority {
    async fn start() -> Self {
        let received = Arc::new(Mutex::new(Vec::new()));
        let router = Router::new()
            .route("/verify", post(respond))
            .with_state(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/verify", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        FakeAuthority {
            url,
            received,
            server,
        }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Returns the number of requests received with `code`.
    fn requests_for(&self, code: &str) -> usize {
        self.received()
            .iter()
            .filter(|request| request.body["code"] == code)
            .count()
    }
}

impl Drop for FakeAuthority {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn respond(
    State(received): State<Arc<Mutex<Vec<Received>>>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let code = body["code"].as_str().unwrap_or_default().to_owned();
    received.lock().unwrap().push(Received {
        content_type: headers
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned),
        body,
    });
    let prefix = code.split('-').next().unwrap_or_default();
    match prefix {
        "VERIFY" => Json(json!({ "status": "VERIFIED" })).into_response(),
        "REJECT" => {
            Json(json!({ "status": "REJECTED", "reason": "not a positive test" })).into_response()
        }
        "UNSURE" => Json(json!({ "status": "MAYBE" })).into_response(),
        "SLOW" => {
            tokio::time::sleep(TIMEOUT * 60).await;
            Json(json!({ "status": "VERIFIED" })).into_response()
        }
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "verification backend down",
        )
            .into_response(),
    }
}

/// Starts mamori in `http` mode against `authority`.
async fn start_http_mode(authority: &FakeAuthority) -> TestServer {
    let url = authority.url.clone();
    TestServer::start_with(|config| {
        config.verification_mode = "http".into();
        config.verification_url = Some(url);
        config.verification_timeout = TIMEOUT;
        config.verification_attempts = ATTEMPTS;
    })
    .await
}

/// Uploads keys of one and two days ago with `code` as the user of `user`, and returns the body.
async fn upload(server: &TestServer, user: &str, code: &str, seed: u32) -> Value {
    let keys = daily_keys(seed, &[2, 1], server.clock.now());
    server.upload_keys(user, code, &keys).await
}

fn accepted(body: &Value) -> &Value {
    let upload = &body["data"]["uploadDiagnosisKeys"];
    assert!(
        upload["id"].is_string(),
        "expected an accepted upload: {body}"
    );
    upload
}

fn upload_id(body: &Value) -> Uuid {
    accepted(body)["id"].as_str().unwrap().parse().unwrap()
}

async fn stored_upload(server: &TestServer, id: Uuid) -> diagnosis_key_uploads::Model {
    diagnosis_key_uploads::Entity::find_by_id(id)
        .one(&server.app.db)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("upload {id} is not stored"))
}

async fn stored_key_count(server: &TestServer, id: Uuid) -> u64 {
    diagnosis_keys::Entity::find()
        .filter(diagnosis_keys::Column::UploadId.eq(id))
        .count(&server.app.db)
        .await
        .unwrap()
}

/// Runs the export job and returns the exported `keyData`.
async fn export(server: &TestServer) -> Vec<String> {
    mamori::jobs::export_keys(&server.app).await.unwrap();
    let reader = server.login(None).await;
    exported_key_data(&server.download_export(&reader).await)
}

async fn verify(server: &TestServer) -> RunSummary {
    mamori::jobs::verify_uploads(&server.app).await.unwrap()
}

fn key_data_of(seed: u32, server: &TestServer) -> Vec<String> {
    daily_keys(seed, &[2, 1], server.clock.now())
        .iter()
        .map(|key| key["keyData"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn http_upload_waits_as_pending() {
    let authority = FakeAuthority::start().await;
    let server = start_http_mode(&authority).await;
    let user = server.login(Some(13)).await;

    let body = upload(&server, &user, "VERIFY-1", 1).await;
    let id = upload_id(&body);

    assert_eq!(accepted(&body)["status"], "PENDING");
    assert_eq!(accepted(&body)["keyCount"], 2);
    let stored = stored_upload(&server, id).await;
    assert_eq!(stored.status, UploadStatus::Pending);
    assert_eq!(stored.verification_code.as_deref(), Some("VERIFY-1"));
    assert_eq!(stored.prefecture, Some(13), "the user's prefecture");
    assert_eq!(stored_key_count(&server, id).await, 2);
    let exported = export(&server).await;
    for key in key_data_of(1, &server) {
        assert!(!exported.contains(&key), "pending key {key} was exported");
    }
    assert!(
        authority.received().is_empty(),
        "the service is asked by the job only"
    );
}

#[tokio::test]
async fn verified_upload_joins_next_export() {
    let authority = FakeAuthority::start().await;
    let server = start_http_mode(&authority).await;
    let user = server.login(Some(13)).await;
    let id = upload_id(&upload(&server, &user, "VERIFY-1", 1).await);

    let summary = verify(&server).await;

    assert_eq!(
        summary,
        RunSummary {
            verified: 1,
            ..RunSummary::default()
        }
    );
    let stored = stored_upload(&server, id).await;
    assert_eq!(stored.status, UploadStatus::Verified);
    assert_eq!(stored.decided_at, Some(server.clock.now()));
    assert_eq!(stored.verification_code, None, "code kept after decision");
    assert_eq!(stored_key_count(&server, id).await, 2);
    let exported = export(&server).await;
    for key in key_data_of(1, &server) {
        assert!(exported.contains(&key), "verified key {key} not exported");
    }
}

#[tokio::test]
async fn service_receives_documented_request() {
    let authority = FakeAuthority::start().await;
    let server = start_http_mode(&authority).await;
    let user = server.login(Some(13)).await;
    let id = upload_id(&upload(&server, &user, "  VERIFY-7  ", 1).await);

    verify(&server).await;

    let received = authority.received();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(
        received[0].content_type.as_deref(),
        Some("application/json")
    );
    let body = &received[0].body;
    assert_eq!(body["code"], "VERIFY-7", "code without surrounding spaces");
    assert_eq!(body["uploadId"], id.to_string());
    assert_eq!(body["keyCount"], 2);
    let uploaded_at: chrono::DateTime<chrono::Utc> =
        body["uploadedAt"].as_str().unwrap().parse().unwrap();
    assert_eq!(uploaded_at, common::default_now());
    assert_eq!(
        body.as_object().unwrap().len(),
        4,
        "unexpected fields: {body}"
    );
}

#[tokio::test]
async fn rejected_upload_loses_its_keys() {
    let authority = FakeAuthority::start().await;
    let server = start_http_mode(&authority).await;
    let user = server.login(Some(13)).await;
    let id = upload_id(&upload(&server, &user, "REJECT-1", 1).await);

    let summary = verify(&server).await;

    assert_eq!(
        summary,
        RunSummary {
            rejected: 1,
            ..RunSummary::default()
        }
    );
    let stored = stored_upload(&server, id).await;
    assert_eq!(stored.status, UploadStatus::Rejected);
    assert_eq!(stored.verification_code, None, "code kept after decision");
    assert_eq!(stored_key_count(&server, id).await, 0);
    let exported = export(&server).await;
    for key in key_data_of(1, &server) {
        assert!(!exported.contains(&key), "rejected key {key} was exported");
    }
    let retried = upload(&server, &user, "REJECT-1", 1).await;
    assert_eq!(accepted(&retried)["status"], "REJECTED");
}

#[tokio::test]
async fn failing_service_leaves_upload_pending() {
    let authority = FakeAuthority::start().await;
    let server = start_http_mode(&authority).await;
    let user = server.login(Some(13)).await;

    for (code, seed) in [("FAIL-1", 1), ("SLOW-1", 2), ("UNSURE-1", 3)] {
        let id = upload_id(&upload(&server, &user, code, seed).await);

        let summary = verify(&server).await;

        assert_eq!(
            summary,
            RunSummary {
                failed: 1,
                ..RunSummary::default()
            },
            "{code}"
        );
        assert_eq!(
            authority.requests_for(code),
            ATTEMPTS as usize,
            "attempts for {code}"
        );
        let stored = stored_upload(&server, id).await;
        assert_eq!(stored.status, UploadStatus::Pending, "{code}");
        assert_eq!(stored.verification_code.as_deref(), Some(code));
        assert_eq!(stored_key_count(&server, id).await, 2, "{code}");
        // Withdrawing the upload leaves the next case's upload the only pending one.
        server
            .graphql(Some(&user), "mutation { withdrawDiagnosisKeys }", json!({}))
            .await;
    }
}

#[tokio::test]
async fn next_run_asks_again() {
    let authority = FakeAuthority::start().await;
    let server = start_http_mode(&authority).await;
    let user = server.login(Some(13)).await;
    let id = upload_id(&upload(&server, &user, "FAIL-1", 1).await);

    verify(&server).await;
    verify(&server).await;

    assert_eq!(authority.requests_for("FAIL-1"), 2 * ATTEMPTS as usize);
    assert_eq!(
        stored_upload(&server, id).await.status,
        UploadStatus::Pending
    );
}

#[tokio::test]
async fn overlapping_runs_ask_only_once() {
    let authority = FakeAuthority::start().await;
    let server = start_http_mode(&authority).await;
    let user = server.login(Some(13)).await;
    upload_id(&upload(&server, &user, "FAIL-1", 1).await);

    // A run can outlast the schedule's interval while the service fails, so the scheduler
    // starts the next run before the previous one ends.
    let (first, second) = tokio::join!(
        mamori::jobs::verify_uploads_tick(&server.app),
        mamori::jobs::verify_uploads_tick(&server.app)
    );

    let runs: Vec<_> = [first.unwrap(), second.unwrap()]
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(
        runs.len(),
        1,
        "one tick ran and the other skipped: {runs:?}"
    );
    assert_eq!(runs[0].failed, 1);
    assert_eq!(authority.requests_for("FAIL-1"), ATTEMPTS as usize);
}

#[tokio::test]
async fn pending_upload_expires_after_ttl() {
    let authority = FakeAuthority::start().await;
    let server = start_http_mode(&authority).await;
    let user = server.login(Some(13)).await;
    let id = upload_id(&upload(&server, &user, "FAIL-1", 1).await);

    server
        .clock
        .advance(chrono::Duration::hours(PENDING_TTL_HOURS) - chrono::Duration::seconds(1));
    let before = verify(&server).await;
    assert_eq!(before.expired, 0, "expired before the TTL");
    assert_eq!(
        stored_upload(&server, id).await.status,
        UploadStatus::Pending
    );
    let requests_before = authority.requests_for("FAIL-1");

    server.clock.advance(chrono::Duration::seconds(1));
    let summary = verify(&server).await;

    assert_eq!(
        summary,
        RunSummary {
            expired: 1,
            ..RunSummary::default()
        }
    );
    assert_eq!(
        authority.requests_for("FAIL-1"),
        requests_before,
        "an expired upload is not asked about"
    );
    let stored = stored_upload(&server, id).await;
    assert_eq!(stored.status, UploadStatus::Expired);
    assert_eq!(stored.verification_code, None, "code kept after expiry");
    assert_eq!(stored_key_count(&server, id).await, 0);
}

#[tokio::test]
async fn same_user_retry_returns_same_upload() {
    let authority = FakeAuthority::start().await;
    let server = start_http_mode(&authority).await;
    let user = server.login(Some(13)).await;
    let first = upload_id(&upload(&server, &user, "VERIFY-1", 1).await);

    let pending_retry = upload(&server, &user, "VERIFY-1", 1).await;
    assert_eq!(upload_id(&pending_retry), first);
    assert_eq!(accepted(&pending_retry)["status"], "PENDING");
    assert_eq!(stored_key_count(&server, first).await, 2, "keys doubled");

    verify(&server).await;
    let verified_retry = upload(&server, &user, "VERIFY-1", 1).await;

    assert_eq!(upload_id(&verified_retry), first);
    assert_eq!(accepted(&verified_retry)["status"], "VERIFIED");
    let uploads = diagnosis_key_uploads::Entity::find()
        .count(&server.app.db)
        .await
        .unwrap();
    assert_eq!(uploads, 1);
    assert_eq!(authority.requests_for("VERIFY-1"), 1);
}

#[tokio::test]
async fn code_reuse_by_another_user_conflicts() {
    let authority = FakeAuthority::start().await;
    let server = start_http_mode(&authority).await;
    let first_user = server.login(Some(13)).await;
    let other_user = server.login(Some(13)).await;
    upload_id(&upload(&server, &first_user, "VERIFY-1", 1).await);

    let while_pending = upload(&server, &other_user, "VERIFY-1", 1).await;
    let other_keys = upload(&server, &first_user, "VERIFY-1", 2).await;
    verify(&server).await;
    let after_decision = upload(&server, &other_user, "VERIFY-1", 1).await;

    for (case, body) in [
        ("another user while pending", &while_pending),
        ("same user with other keys", &other_keys),
        ("another user after the decision", &after_decision),
    ] {
        assert_eq!(error_code(body), "CONFLICT", "{case}: {body}");
        assert_eq!(
            body["errors"][0]["extensions"]["reason"], "SPENT_TOKEN",
            "{case}"
        );
    }
    let keys = diagnosis_keys::Entity::find()
        .count(&server.app.db)
        .await
        .unwrap();
    assert_eq!(keys, 2, "a conflicting upload stored keys");
}

#[tokio::test]
async fn malformed_codes_are_rejected() {
    let authority = FakeAuthority::start().await;
    let server = start_http_mode(&authority).await;
    let user = server.login(Some(13)).await;
    let too_long = format!("VERIFY-{}", "9".repeat(58));

    for code in ["", "   ", "VERIFY 1", "VERIFY-é", too_long.as_str()] {
        let body = upload(&server, &user, code, 1).await;

        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{code:?}: {body}");
        assert_eq!(
            body["errors"][0]["extensions"]["field"], "healthCenterToken",
            "{code:?}"
        );
    }
    let uploads = diagnosis_key_uploads::Entity::find()
        .count(&server.app.db)
        .await
        .unwrap();
    assert_eq!(uploads, 0);
}

#[derive(Parser)]
struct ConfigOnly {
    #[command(flatten)]
    config: Config,
}

/// Builds the app with default settings in a fresh data folder after `adjust`, and returns the
/// error of a failed start.
async fn start_error(adjust: impl FnOnce(&mut Config)) -> String {
    let data_dir = tempfile::tempdir().unwrap();
    let mut config =
        ConfigOnly::try_parse_from(["mamori", "--data-dir", data_dir.path().to_str().unwrap()])
            .unwrap()
            .config;
    config.database_url = None;
    adjust(&mut config);
    match AppState::build(config, Clock::fixed(common::default_now())).await {
        Ok(_) => panic!("the app started despite the bad setting"),
        Err(error) => format!("{error:#}"),
    }
}

#[tokio::test]
async fn http_mode_needs_verification_url() {
    let error = start_error(|config| {
        config.verification_mode = "http".into();
        config.verification_url = None;
    })
    .await;

    assert!(error.contains("MAMORI_VERIFICATION_URL"), "{error}");
}

#[tokio::test]
async fn invalid_verification_url_fails_start() {
    let error = start_error(|config| {
        config.verification_mode = "http".into();
        config.verification_url = Some("not a url".into());
    })
    .await;

    assert!(error.contains("MAMORI_VERIFICATION_URL"), "{error}");
}

#[tokio::test]
async fn zero_verification_attempts_fail_start() {
    let url = FakeAuthority::start().await.url.clone();
    let error = start_error(|config| {
        config.verification_mode = "http".into();
        config.verification_url = Some(url);
        config.verification_attempts = 0;
    })
    .await;

    assert!(error.contains("MAMORI_VERIFICATION_ATTEMPTS"), "{error}");
}
