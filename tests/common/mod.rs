//! Test harness: the real app on a random loopback port, each server with its own data folder
//! and SQLite database, and a clock the test controls.

#![allow(dead_code)]

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use chrono::{DateTime, TimeZone, Utc};
use clap::Parser;
use mamori::{
    admins,
    app::{App, AppState},
    auth::Role,
    clock::Clock,
    config::Config,
    health_center_tokens,
    prefectures::PrefectureCode,
};
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::sync::oneshot;

/// A time in the past with a whole day of intervals behind it: 2026-11-20 09:00 UTC.
pub fn default_now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 9, 0, 0).unwrap()
}

/// A clock the test sets and advances.
#[derive(Clone)]
pub struct TestClock(Arc<Mutex<DateTime<Utc>>>);

impl TestClock {
    pub fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }

    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().unwrap() = at;
    }

    pub fn advance(&self, by: chrono::Duration) {
        let mut now = self.0.lock().unwrap();
        *now += by;
    }
}

/// A running server.
pub struct TestServer {
    pub address: SocketAddr,
    pub base_url: String,
    pub app: App,
    pub clock: TestClock,
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    _database: Option<TestDatabase>,
    _data_dir: TempDir,
}

/// A PostgreSQL database of one test, created when `MAMORI_TEST_DATABASE_URL` is set and dropped
/// with the test. Without the variable, tests run on SQLite in their data folder.
pub struct TestDatabase {
    pub url: String,
    name: String,
    admin_url: String,
}

impl TestDatabase {
    /// Creates a fresh database next to the one `MAMORI_TEST_DATABASE_URL` names.
    pub async fn create() -> Option<Self> {
        let admin_url = std::env::var("MAMORI_TEST_DATABASE_URL")
            .ok()
            .filter(|url| !url.is_empty())?;
        let name = format!("mamori_test_{}", uuid::Uuid::new_v4().simple());
        let admin = sea_orm::Database::connect(&admin_url)
            .await
            .expect("MAMORI_TEST_DATABASE_URL is reachable");
        sea_orm::ConnectionTrait::execute_unprepared(
            &admin,
            &format!("CREATE DATABASE \"{name}\""),
        )
        .await
        .expect("the test user may create databases");
        let _ = admin.close().await;
        let mut url = reqwest::Url::parse(&admin_url).expect("MAMORI_TEST_DATABASE_URL is a URL");
        url.set_path(&name);
        Some(TestDatabase {
            url: url.to_string(),
            name,
            admin_url,
        })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Dropping needs async calls, and a test's runtime may be shutting down, so a thread of
        // its own does it.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let admin = sea_orm::Database::connect(&admin_url).await.ok()?;
                let statement = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                sea_orm::ConnectionTrait::execute_unprepared(&admin, &statement)
                    .await
                    .ok()?;
                admin.close().await.ok()
            })
        });
        let _ = dropped.join();
    }
}

#[derive(Parser)]
struct ConfigOnly {
    #[command(flatten)]
    config: Config,
}

impl TestServer {
    /// Starts a server with the default settings.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts a server after `adjust` changes the default settings.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let data_dir = tempfile::tempdir().unwrap();
        let mut config =
            ConfigOnly::try_parse_from(["mamori", "--data-dir", data_dir.path().to_str().unwrap()])
                .unwrap()
                .config;
        config.listen = "127.0.0.1:0".parse().unwrap();
        let database = TestDatabase::create().await;
        config.database_url = database.as_ref().map(|database| database.url.clone());
        adjust(&mut config);
        let clock = TestClock(Arc::new(Mutex::new(default_now())));
        let shared = clock.clone();
        let app = AppState::build(config, Clock::from_fn(move || shared.now()))
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(mamori::app::serve(app.clone(), listener, async move {
            let _ = stopped.await;
        }));
        TestServer {
            address,
            base_url: format!("http://{address}"),
            app,
            clock,
            http: reqwest::Client::new(),
            stop: Some(stop),
            _database: database,
            _data_dir: data_dir,
        }
    }

    /// Returns the full URL of a path.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Posts a GraphQL request and returns the JSON response body. Panics unless the status is 200.
    pub async fn graphql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let mut request = self
            .http
            .post(self.url("/graphql"))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "GraphQL request failed: {query}");
        response.json().await.unwrap()
    }

    /// Logs a new phone user in and returns its access token.
    pub async fn login(&self, prefecture: Option<i32>) -> String {
        let body = self
            .graphql(
                None,
                "mutation($p: Int) { login(input: {prefecture: $p}) { accessToken } }",
                json!({ "p": prefecture }),
            )
            .await;
        body["data"]["login"]["accessToken"]
            .as_str()
            .unwrap_or_else(|| panic!("login failed: {body}"))
            .to_owned()
    }

    /// Issues health-center token codes through the same function as `mamori tokens issue`.
    pub async fn issue_tokens(&self, prefecture: i16, count: u32) -> Vec<String> {
        let prefecture = PrefectureCode::parse(i32::from(prefecture), "prefecture").unwrap();
        health_center_tokens::issue(
            &self.app.db,
            &self.app.code_hasher,
            self.clock.now(),
            prefecture,
            count,
            chrono::Duration::days(7),
        )
        .await
        .unwrap()
        .0
    }

    /// Creates an admin account and returns an access token from `adminLogin`.
    pub async fn admin_token(&self, role: Role, prefecture: Option<i16>) -> String {
        let email = format!("{}@example.jp", uuid::Uuid::new_v4().simple());
        let password = "correct horse battery staple";
        let prefecture =
            prefecture.map(|code| PrefectureCode::parse(i32::from(code), "prefecture").unwrap());
        admins::create(
            &self.app.db,
            self.clock.now(),
            &email,
            password,
            role,
            prefecture,
        )
        .await
        .unwrap();
        let body = self
            .graphql(
                None,
                "mutation($e: String!, $p: String!) { adminLogin(email: $e, password: $p) { accessToken } }",
                json!({ "e": email, "p": password }),
            )
            .await;
        body["data"]["adminLogin"]["accessToken"]
            .as_str()
            .unwrap_or_else(|| panic!("admin login failed: {body}"))
            .to_owned()
    }
}

impl TestServer {
    /// Stops the server as SIGTERM stops `mamori serve`: it stops accepting connections and
    /// finishes the requests in flight. The data folder and database stay until the drop.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Returns the `extensions.code` of the first error of a response, panicking when there is none.
pub fn error_code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error: {body}"))
}

/// Returns today's first interval number and the interval number of `now`.
pub fn intervals(now: DateTime<Utc>) -> (i64, i64) {
    let current = now.timestamp() / 600;
    (current - current % 144, current)
}

/// The upload mutation, selecting the upload's id, key count and status.
pub const UPLOAD_KEYS: &str = "mutation($input: UploadDiagnosisKeysInput!) { uploadDiagnosisKeys(input: $input) { id keyCount status } }";

impl TestServer {
    /// Uploads `keys` with a health-center token code as the user of `token` and returns the JSON
    /// response body.
    pub async fn upload_keys(&self, token: &str, code: &str, keys: &[Value]) -> Value {
        self.graphql(
            Some(token),
            UPLOAD_KEYS,
            json!({ "input": { "healthCenterToken": code, "keys": keys } }),
        )
        .await
    }

    /// Downloads `/exports/diagnosis-keys.json.gz` with `token` and returns the gunzipped JSON.
    pub async fn download_export(&self, token: &str) -> Value {
        let response = self
            .http
            .get(self.url("/exports/diagnosis-keys.json.gz"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "export download failed");
        gunzip_json(&response.bytes().await.unwrap())
    }
}

/// Decompresses gzip bytes and parses them as JSON.
pub fn gunzip_json(bytes: &[u8]) -> Value {
    let mut json = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(bytes), &mut json)
        .expect("the export is valid gzip");
    serde_json::from_slice(&json).expect("the export is valid JSON")
}

/// Returns the `keyData` of each key of an export document, in file order.
pub fn exported_key_data(document: &Value) -> Vec<String> {
    document["keys"]
        .as_array()
        .unwrap_or_else(|| panic!("export without a key list: {document}"))
        .iter()
        .map(|key| key["keyData"].as_str().unwrap().to_owned())
        .collect()
}

/// Derives 16 distinct-looking key bytes from a seed and a number, so tests can tell keys apart
/// and their byte order differs from the order they were built in.
pub fn key_bytes(seed: u32, number: i64) -> [u8; 16] {
    use sha2::Digest;
    let digest = sha2::Sha256::new()
        .chain_update(seed.to_be_bytes())
        .chain_update(number.to_be_bytes())
        .finalize();
    digest[..16].try_into().unwrap()
}

/// Returns `bytes` in standard base64, as `keyData` carries them.
pub fn base64_key(bytes: &[u8]) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes)
}

/// Builds one upload input key with transmission risk 4, report type CONFIRMED_TEST (1) and
/// symptom onset on the key's day.
pub fn key_input(
    key_data: &[u8],
    rolling_start_interval_number: i64,
    rolling_period: i32,
) -> Value {
    json!({
        "keyData": base64_key(key_data),
        "rollingStartIntervalNumber": rolling_start_interval_number,
        "rollingPeriod": rolling_period,
        "transmissionRiskLevel": 4,
        "reportType": 1,
        "daysSinceOnsetOfSymptoms": 0,
    })
}

/// Builds one whole-day key (144 intervals) per entry of `days_ago`, counted back from the UTC day
/// of `now`, with key bytes from [`key_bytes`] of `seed` and the day.
pub fn daily_keys(seed: u32, days_ago: &[i64], now: DateTime<Utc>) -> Vec<Value> {
    let (today, _) = intervals(now);
    days_ago
        .iter()
        .map(|&days| key_input(&key_bytes(seed, days), today - days * 144, 144))
        .collect()
}
