//! Two server processes on one PostgreSQL database, as replicas behind a load balancer run.
//! Needs `MAMORI_TEST_DATABASE_URL`. Without it each test prints a line and returns.

mod common;

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use common::TestDatabase;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::time::{sleep, timeout, Instant};
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, http::HeaderValue, Message};

const BINARY: &str = env!("CARGO_BIN_EXE_mamori");
const ADMIN_EMAIL: &str = "replicas@example.jp";
const ADMIN_PASSWORD: &str = "correct horse battery staple";
/// Bounds every wait, so a replica that never responds fails the test instead of hanging it.
const WAIT: Duration = Duration::from_secs(30);

/// Settings shared by both replicas: one database, one export folder, one set of secrets.
struct Shared {
    database_url: String,
    folder: tempfile::TempDir,
}

impl Shared {
    fn export_dir(&self) -> PathBuf {
        self.folder.path().join("exports")
    }

    fn command(&self, data_dir: &Path) -> Command {
        let mut command = Command::new(BINARY);
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("MAMORI_DATABASE_URL", &self.database_url)
            .env("MAMORI_DATA_DIR", data_dir)
            .env("MAMORI_EXPORT_DIR", self.export_dir())
            .env("MAMORI_JWT_SECRET_FILE", self.folder.path().join("jwt.key"))
            .env(
                "MAMORI_TOKEN_HASH_KEY_FILE",
                self.folder.path().join("token-hash.key"),
            )
            .env("MAMORI_EXPORT_SCHEDULE", "* * * * * *")
            .env("MAMORI_LOG_FORMAT", "json");
        command
    }
}

/// A replica process, stopped when dropped.
struct Replica {
    child: Child,
    base_url: String,
    address: String,
    log: PathBuf,
    _data_dir: tempfile::TempDir,
}

impl Replica {
    fn start(shared: &Shared) -> Self {
        let data_dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let address = format!("127.0.0.1:{port}");
        let log = data_dir.path().join("replica.log");
        let child = shared
            .command(data_dir.path())
            .env("MAMORI_LISTEN", &address)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Replica {
            child,
            base_url: format!("http://{address}"),
            address,
            log,
            _data_dir: data_dir,
        }
    }

    async fn wait_ready(&self, http: &reqwest::Client) {
        let deadline = Instant::now() + WAIT;
        loop {
            let ready = http.get(format!("{}/readyz", self.base_url)).send().await;
            if ready.is_ok_and(|response| response.status() == 200) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "replica never became ready: {}",
                self.logs()
            );
            sleep(Duration::from_millis(100)).await;
        }
    }

    async fn graphql(
        &self,
        http: &reqwest::Client,
        token: Option<&str>,
        query: &str,
        variables: Value,
    ) -> Value {
        let mut request = http
            .post(format!("{}/graphql", self.base_url))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap().json().await.unwrap()
    }

    /// Sends SIGTERM and waits for a clean exit.
    fn terminate(&mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        assert!(
            exit.success(),
            "replica exited with {exit}: {}",
            self.logs()
        );
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_command(shared: &Shared, arguments: &[&str], stdin: &str) -> String {
    let data_dir = tempfile::tempdir().unwrap();
    let mut child = shared
        .command(data_dir.path())
        .args(arguments)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "mamori {arguments:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

async fn shared_setup() -> Option<(TestDatabase, Shared)> {
    let Some(database) = TestDatabase::create().await else {
        eprintln!("skipped: set MAMORI_TEST_DATABASE_URL to run the replica tests on PostgreSQL");
        return None;
    };
    let folder = tempfile::tempdir().unwrap();
    for name in ["jwt.key", "token-hash.key"] {
        std::fs::write(
            folder.path().join(name),
            uuid::Uuid::new_v4().simple().to_string().repeat(2),
        )
        .unwrap();
    }
    let shared = Shared {
        database_url: database.url.clone(),
        folder,
    };
    // Migrating once up front keeps the two replicas from racing to create the tables.
    run_command(&shared, &["migrate"], "");
    Some((database, shared))
}

#[tokio::test]
async fn notice_published_on_one_replica_reaches_another() {
    let Some((_database, shared)) = shared_setup().await else {
        return;
    };
    run_command(
        &shared,
        &[
            "admin",
            "create",
            "--email",
            ADMIN_EMAIL,
            "--role",
            "SUPER_ADMIN",
        ],
        ADMIN_PASSWORD,
    );
    let (a, b) = (Replica::start(&shared), Replica::start(&shared));
    let http = reqwest::Client::new();
    a.wait_ready(&http).await;
    b.wait_ready(&http).await;

    let login = "mutation($e: String!, $p: String!) { adminLogin(email: $e, password: $p) { accessToken } }";
    let body = a
        .graphql(
            &http,
            None,
            login,
            json!({ "e": ADMIN_EMAIL, "p": ADMIN_PASSWORD }),
        )
        .await;
    let admin = body["data"]["adminLogin"]["accessToken"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned();

    let mut request = format!("ws://{}/graphql/ws", b.address)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    socket
        .send(Message::text(
            json!({ "type": "connection_init" }).to_string(),
        ))
        .await
        .unwrap();
    let subscribe = "subscription { prefectureNotices(prefecture: 13) { id message } }";
    socket
        .send(Message::text(
            json!({ "id": "1", "type": "subscribe", "payload": { "query": subscribe } })
                .to_string(),
        ))
        .await
        .unwrap();

    let publish = "mutation($m: String!) { publishPrefectureNotice(input: {prefecture: 13, message: $m}) { id } }";
    let mut received = Vec::new();
    let deadline = Instant::now() + WAIT;
    // Warm-up notices until one arrives, so the subscription is known to be live on B.
    'live: while Instant::now() < deadline {
        let body = a
            .graphql(&http, Some(&admin), publish, json!({ "m": "warm-up" }))
            .await;
        assert!(body["errors"].is_null(), "{body}");
        while let Ok(Some(Ok(Message::Text(text)))) =
            timeout(Duration::from_millis(300), socket.next()).await
        {
            let message: Value = serde_json::from_str(&text).unwrap();
            if message["type"] == "next" {
                break 'live;
            }
        }
    }
    let body = a
        .graphql(
            &http,
            Some(&admin),
            publish,
            json!({ "m": "published on A" }),
        )
        .await;
    let id = body["data"]["publishPrefectureNotice"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    while let Ok(Some(Ok(Message::Text(text)))) =
        timeout(Duration::from_secs(5), socket.next()).await
    {
        let message: Value = serde_json::from_str(&text).unwrap();
        if message["type"] == "next" {
            received.push(message["payload"]["data"]["prefectureNotices"].clone());
            if received.last().unwrap()["id"] == id.as_str() {
                break;
            }
        }
    }
    let matching: Vec<&Value> = received
        .iter()
        .filter(|notice| notice["id"] == id.as_str())
        .collect();
    assert_eq!(
        matching.len(),
        1,
        "B's subscriber got the notice once: {received:?}\nA: {}\nB: {}",
        a.logs(),
        b.logs()
    );
    assert_eq!(matching[0]["message"], "published on A");
}

#[tokio::test]
async fn concurrent_export_ticks_publish_consistent_files() {
    let Some((_database, shared)) = shared_setup().await else {
        return;
    };
    let codes = run_command(
        &shared,
        &["tokens", "issue", "--prefecture", "13", "--count", "4"],
        "",
    );
    let codes: Vec<&str> = codes.lines().collect();
    assert_eq!(codes.len(), 4);
    let (mut a, mut b) = (Replica::start(&shared), Replica::start(&shared));
    let http = reqwest::Client::new();
    a.wait_ready(&http).await;
    b.wait_ready(&http).await;

    // Yesterday's keys, exportable at once, uploaded through both replicas.
    let yesterday = chrono::Utc::now().timestamp() / 600 / 144 * 144 - 144;
    let upload = "mutation($t: String!, $k: String!, $r: Int!) { uploadDiagnosisKeys(input: {healthCenterToken: $t, \
                  keys: [{keyData: $k, rollingStartIntervalNumber: $r, rollingPeriod: 144, transmissionRiskLevel: 4}]}) { id } }";
    for (index, code) in codes.iter().enumerate() {
        let replica = if index % 2 == 0 { &a } else { &b };
        let body = replica
            .graphql(&http, None, "mutation { login { accessToken } }", json!({}))
            .await;
        let token = body["data"]["login"]["accessToken"]
            .as_str()
            .unwrap()
            .to_owned();
        let key = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            [index as u8 + 1; 16],
        );
        let body = replica
            .graphql(
                &http,
                Some(&token),
                upload,
                json!({ "t": code, "k": key, "r": yesterday }),
            )
            .await;
        assert!(body["errors"].is_null(), "{body}");
    }

    // Both replicas tick every second; A dies abruptly mid-way, as a crashed replica would.
    sleep(Duration::from_millis(2_500)).await;
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    sleep(Duration::from_millis(2_500)).await;
    b.terminate();

    let export_dir = shared.export_dir();
    let index: Value =
        serde_json::from_slice(&std::fs::read(export_dir.join("index.json")).unwrap()).unwrap();
    let file = &index["files"][0];
    let bytes = std::fs::read(export_dir.join(file["name"].as_str().unwrap())).unwrap();
    assert_eq!(
        file["size"],
        bytes.len() as u64,
        "the index describes the published file"
    );
    assert_eq!(file["sha256"], hex::encode(Sha256::digest(&bytes)));
    assert_eq!(file["keyCount"], 4);
    let mut gunzipped = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(bytes.as_slice()),
        &mut gunzipped,
    )
    .unwrap();
    let document: Value = serde_json::from_str(&gunzipped).unwrap();
    assert_eq!(document["keys"].as_array().unwrap().len(), 4);
    assert_eq!(
        document["generatedAt"], index["generatedAt"],
        "file and index come from one run"
    );
    let b_logs = b.logs();
    assert!(b_logs.contains("export finished"), "B exported: {b_logs}");
    assert!(!b_logs.contains("export failed"), "{b_logs}");
}
