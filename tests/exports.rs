//! The export job's files and their download: which keys are exported, stable bytes, and
//! `/exports/{file}` with revalidation.

mod common;

use chrono::{Duration, TimeZone, Utc};
use common::{
    base64_key, daily_keys, exported_key_data, gunzip_json, intervals, key_bytes, key_input,
    TestServer,
};
use mamori::{
    exports::{INDEX_FILE, KEYS_FILE},
    storage::ExportStore,
};
use reqwest::{header, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const EXPORT_INDEX: &str =
    "{ exportIndex { generatedAt files { name path size sha256 keyCount } } }";

/// Uploads `keys` as a new user of prefecture 13 and returns that user's access token.
async fn upload_as_new_user(server: &TestServer, keys: &[Value]) -> String {
    let user = server.login(Some(13)).await;
    let code = server.issue_tokens(13, 1).await.remove(0);
    let body = server.upload_keys(&user, &code, keys).await;
    assert!(
        body["data"]["uploadDiagnosisKeys"]["id"].is_string(),
        "upload failed: {body}"
    );
    user
}

/// Runs the export job at the current test time and returns the exported `keyData`, read with a
/// fresh login because the clock may have moved past earlier tokens' expiry.
async fn export_and_read(server: &TestServer) -> Vec<String> {
    mamori::jobs::export_keys(&server.app).await.unwrap();
    let reader = server.login(None).await;
    exported_key_data(&server.download_export(&reader).await)
}

/// Returns the export folder of a server that publishes to a folder, as the default does.
fn export_folder(server: &TestServer) -> &std::path::Path {
    match &server.app.exports {
        ExportStore::Folder(folder) => folder.path(),
        ExportStore::Bucket(_) => panic!("these tests publish to a folder"),
    }
}

fn read_published(server: &TestServer, name: &str) -> Vec<u8> {
    std::fs::read(export_folder(server).join(name)).unwrap()
}

async fn get_export(server: &TestServer, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = server.http.get(server.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn export_runs_are_byte_identical() {
    let server = TestServer::start().await;
    let now = server.clock.now();
    upload_as_new_user(&server, &daily_keys(1, &[5, 3, 1], now)).await;
    upload_as_new_user(&server, &daily_keys(2, &[4, 2], now)).await;

    let first_index = mamori::exports::run(
        &server.app.db,
        &server.app.exports,
        &server.app.export_rules,
        now,
    )
    .await
    .unwrap();
    let first_keys = read_published(&server, KEYS_FILE);
    let first_index_bytes = read_published(&server, INDEX_FILE);

    let second_index = mamori::jobs::export_keys(&server.app).await.unwrap();
    let second_keys = read_published(&server, KEYS_FILE);
    let second_index_bytes = read_published(&server, INDEX_FILE);

    assert_eq!(first_index.files[0].key_count, 5);
    assert_eq!(first_index, second_index);
    assert!(
        first_keys == second_keys,
        "{KEYS_FILE} differs between two runs"
    );
    assert!(
        first_index_bytes == second_index_bytes,
        "{INDEX_FILE} differs between two runs"
    );
    let document = gunzip_json(&second_keys);
    assert_eq!(document["generatedAt"], "2026-11-20T09:00:00Z");
}

#[tokio::test]
async fn key_waits_two_hours_after_ending() {
    let server = TestServer::start().await;
    let (today, _) = intervals(server.clock.now());
    // At 09:00 UTC, one key ended at 06:00, one at 08:00 and one runs until midnight.
    let ended_at_six = key_input(&key_bytes(1, 36), today, 36);
    let ended_at_eight = key_input(&key_bytes(1, 48), today, 48);
    let whole_day = key_input(&key_bytes(1, 144), today, 144);
    let [six, eight, day] = [&ended_at_six, &ended_at_eight, &whole_day]
        .map(|key| key["keyData"].as_str().unwrap().to_owned());
    upload_as_new_user(&server, &[ended_at_six, ended_at_eight, whole_day]).await;

    let exported = export_and_read(&server).await;
    assert_eq!(exported, [six], "only the key ended 3 hours ago");

    server.clock.advance(Duration::seconds(59 * 60 + 59));
    let exported = export_and_read(&server).await;
    assert!(!exported.contains(&eight), "09:59:59 is before 08:00 + 2h");

    server.clock.advance(Duration::seconds(1));
    let exported = export_and_read(&server).await;
    assert!(exported.contains(&eight), "10:00 is 08:00 + 2h");
    assert!(!exported.contains(&day));

    server
        .clock
        .set(Utc.with_ymd_and_hms(2026, 11, 21, 1, 59, 59).unwrap());
    let exported = export_and_read(&server).await;
    assert!(!exported.contains(&day), "01:59:59 is before midnight + 2h");

    server.clock.advance(Duration::seconds(1));
    let exported = export_and_read(&server).await;
    assert!(exported.contains(&day), "02:00 is midnight + 2h");
    assert_eq!(exported.len(), 3);
}

#[tokio::test]
async fn keys_past_retention_are_not_exported() {
    let server = TestServer::start().await;
    let now = server.clock.now();
    let days: Vec<i64> = (1..=14).collect();
    let keys = daily_keys(1, &days, now);
    let data_of = |days_ago: usize| keys[days_ago - 1]["keyData"].as_str().unwrap().to_owned();
    upload_as_new_user(&server, &keys).await;

    let exported = export_and_read(&server).await;
    assert_eq!(exported.len(), 14);

    // The key of 14 days ago ended at midnight 13 days ago. So at the next midnight it ended
    // exactly 14 days ago, and from the next 10-minute interval on it is older than that.
    server
        .clock
        .set(Utc.with_ymd_and_hms(2026, 11, 21, 0, 9, 59).unwrap());
    let exported = export_and_read(&server).await;
    assert!(exported.contains(&data_of(14)), "ended exactly 14 days ago");

    server.clock.advance(Duration::seconds(1));
    let exported = export_and_read(&server).await;
    assert!(
        !exported.contains(&data_of(14)),
        "ended 14 days and 10 minutes ago"
    );
    assert!(exported.contains(&data_of(13)));
    assert_eq!(exported.len(), 13);

    server.clock.advance(Duration::days(13));
    let exported = export_and_read(&server).await;
    assert!(
        exported.is_empty(),
        "every key is past retention: {exported:?}"
    );
}

#[tokio::test]
async fn export_sorts_keys_by_bytes() {
    let server = TestServer::start().await;
    let (today, _) = intervals(server.clock.now());
    let bytes_with_first = |first: u8| {
        let mut bytes = [7u8; 16];
        bytes[0] = first;
        bytes
    };
    upload_as_new_user(
        &server,
        &[
            key_input(&bytes_with_first(0x90), today - 144, 144),
            key_input(&bytes_with_first(0x10), today - 2 * 144, 144),
        ],
    )
    .await;
    upload_as_new_user(
        &server,
        &[
            key_input(&bytes_with_first(0xF0), today - 3 * 144, 144),
            key_input(&bytes_with_first(0x50), today - 144, 144),
        ],
    )
    .await;

    let exported = export_and_read(&server).await;
    let expected: Vec<String> = [0x10, 0x50, 0x90, 0xF0]
        .map(|first| base64_key(&bytes_with_first(first)))
        .into();
    assert_eq!(exported, expected);
}

#[tokio::test]
async fn withdrawn_keys_leave_next_export() {
    let server = TestServer::start().await;
    let now = server.clock.now();
    let withdrawing = upload_as_new_user(&server, &daily_keys(1, &[3, 2, 1], now)).await;
    upload_as_new_user(&server, &daily_keys(2, &[2, 1], now)).await;
    assert_eq!(export_and_read(&server).await.len(), 5);

    let body = server
        .graphql(
            Some(&withdrawing),
            "mutation { withdrawDiagnosisKeys }",
            json!({}),
        )
        .await;
    assert_eq!(body["data"]["withdrawDiagnosisKeys"], 3, "{body}");

    let exported = export_and_read(&server).await;
    let remaining: Vec<String> = daily_keys(2, &[2, 1], now)
        .iter()
        .map(|key| key["keyData"].as_str().unwrap().to_owned())
        .collect();
    let mut sorted_remaining = remaining.clone();
    sorted_remaining.sort_by_key(|data| {
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, data).unwrap()
    });
    assert_eq!(exported, sorted_remaining);
}

#[tokio::test]
async fn download_needs_an_access_token() {
    let server = TestServer::start().await;
    upload_as_new_user(&server, &daily_keys(1, &[1], server.clock.now())).await;
    mamori::jobs::export_keys(&server.app).await.unwrap();
    let path = format!("/exports/{KEYS_FILE}");

    let anonymous = get_export(&server, &path, None).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.headers()[header::WWW_AUTHENTICATE], "Bearer");

    let forged = get_export(&server, &path, Some("eyJhbGciOiJub25lIn0.e30.")).await;
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);

    let user = server.login(None).await;
    server.clock.advance(Duration::minutes(61));
    let expired = get_export(&server, &path, Some(&user)).await;
    assert_eq!(expired.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn download_revalidates_with_etag() {
    let server = TestServer::start().await;
    let now = server.clock.now();
    upload_as_new_user(&server, &daily_keys(1, &[1], now)).await;
    mamori::jobs::export_keys(&server.app).await.unwrap();
    let user = server.login(None).await;
    let path = format!("/exports/{KEYS_FILE}");

    let response = get_export(&server, &path, Some(&user)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert_eq!(headers[header::CACHE_CONTROL], "private, max-age=60");
    assert_eq!(headers[header::CONTENT_TYPE], "application/gzip");
    let etag = headers[header::ETAG].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"'), "a strong ETag is quoted: {etag}");
    assert!(etag.ends_with('"'), "a strong ETag is quoted: {etag}");
    let bytes = response.bytes().await.unwrap();
    assert!(bytes.as_ref() == read_published(&server, KEYS_FILE));

    let revalidated = server
        .http
        .get(server.url(&path))
        .bearer_auth(&user)
        .header(header::IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(revalidated.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(revalidated.headers()[header::ETAG], etag.as_str());
    assert!(revalidated.bytes().await.unwrap().is_empty());

    // A new export with another key replaces the file, so the old ETag no longer matches.
    upload_as_new_user(&server, &daily_keys(2, &[2], now)).await;
    mamori::jobs::export_keys(&server.app).await.unwrap();
    let replaced = server
        .http
        .get(server.url(&path))
        .bearer_auth(&user)
        .header(header::IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(replaced.status(), StatusCode::OK);
    assert_ne!(replaced.headers()[header::ETAG], etag.as_str());
    let document = gunzip_json(&replaced.bytes().await.unwrap());
    assert_eq!(exported_key_data(&document).len(), 2);
}

#[tokio::test]
async fn download_rejects_hidden_and_unknown_files() {
    let server = TestServer::start().await;
    mamori::jobs::export_keys(&server.app).await.unwrap();
    let user = server.login(None).await;
    let export_dir = export_folder(&server);
    // Files that exist, so a 404 shows the name was rejected rather than missing.
    std::fs::write(export_dir.join(".hidden"), b"not for download").unwrap();
    std::fs::write(
        server.app.config.data_dir.join("decoy.txt"),
        b"outside the export folder",
    )
    .unwrap();

    for path in [
        "/exports/.hidden",
        "/exports/..%2Fdecoy.txt",
        "/exports/%2e%2e%2Fdecoy.txt",
        "/exports/%2E%2E",
        "/exports/no-such-file.json",
    ] {
        let response = get_export(&server, path, Some(&user)).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let index = get_export(&server, &format!("/exports/{INDEX_FILE}"), Some(&user)).await;
    assert_eq!(index.status(), StatusCode::OK);
}

#[tokio::test]
async fn export_index_matches_download() {
    let server = TestServer::start().await;
    let user = server.login(None).await;
    let before = server.graphql(Some(&user), EXPORT_INDEX, json!({})).await;
    assert!(before["errors"].is_null(), "{before}");
    assert_eq!(before["data"]["exportIndex"], Value::Null);

    let anonymous = server.graphql(None, EXPORT_INDEX, json!({})).await;
    assert_eq!(common::error_code(&anonymous), "UNAUTHENTICATED");

    upload_as_new_user(&server, &daily_keys(1, &[3, 2, 1], server.clock.now())).await;
    mamori::jobs::export_keys(&server.app).await.unwrap();
    let body = server.graphql(Some(&user), EXPORT_INDEX, json!({})).await;
    let index = &body["data"]["exportIndex"];
    assert_eq!(index["generatedAt"], "2026-11-20T09:00:00+00:00", "{body}");
    let files = index["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{body}");
    let file = &files[0];
    assert_eq!(file["name"], KEYS_FILE);
    assert_eq!(file["path"], format!("/exports/{KEYS_FILE}"));

    let response = get_export(&server, file["path"].as_str().unwrap(), Some(&user)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response.bytes().await.unwrap();
    assert_eq!(file["size"], bytes.len());
    assert_eq!(file["sha256"], hex::encode(Sha256::digest(&bytes)));
    assert_eq!(file["keyCount"], 3);
    assert_eq!(exported_key_data(&gunzip_json(&bytes)).len(), 3);
}
