//! The export store in an S3-compatible bucket, against moto's S3 server on loopback.
//!
//! Each test starts `moto_server` as a child process with a bucket of its own, and points mamori
//! at it through a proxy in the test. The proxy records every request and rejects the uploads a
//! test chooses, so the tests can see the order of uploads and make one of them fail.

mod common;

use std::{
    net::TcpListener as StdTcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    body::{Body, Bytes},
    extract::{Request, State},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    Router,
};
use clap::Parser;
use common::{daily_keys, exported_key_data, gunzip_json, TestServer};
use mamori::{
    config::Config,
    exports::{ExportIndex, INDEX_FILE, KEYS_FILE},
    storage::{ExportLocation, ExportStore, S3Credentials, PART_SIZE},
};
use object_store::{
    aws::{AmazonS3, AmazonS3Builder},
    path::Path as ObjectPath,
    Attribute, ObjectStore, ObjectStoreExt,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

/// The moto version `.ci/run` installs.
const MOTO_INSTALL: &str = "python3 -m pip install 'moto[server]==5.2.1'";
/// Key prefix of the export files in each test's bucket.
const PREFIX: &str = "exports/v1";
/// Dummy credentials: moto accepts any.
const ACCESS_KEY_ID: &str = "mamori-test";
const SECRET_ACCESS_KEY: &str = "mamori-test-secret";

const EXPORT_INDEX: &str = "{ exportIndex { files { name path size sha256 keyCount } } }";

/// A `moto_server` child process on a free loopback port, killed on drop.
struct Moto {
    endpoint: String,
    child: Child,
    _log_dir: TempDir,
}

impl Moto {
    /// Starts moto and waits until it responds. Fails the test when `moto_server` is missing.
    async fn start() -> Self {
        let mut last_log = String::new();
        // A port found free may be taken by another test before moto binds it, so retry.
        for _ in 0..3 {
            let log_dir = tempfile::tempdir().unwrap();
            let log_path = log_dir.path().join("moto.log");
            let port = free_port();
            let child = Command::new("moto_server")
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log_path).unwrap())
                .spawn();
            let child = match child {
                Ok(child) => child,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => panic!(
                    "moto_server is not installed, and the export store tests need its S3 \
                     server: run `{MOTO_INSTALL}` and make sure moto_server is on PATH"
                ),
                Err(error) => panic!("failed to start moto_server: {error}"),
            };
            let mut moto = Moto {
                endpoint: format!("http://127.0.0.1:{port}"),
                child,
                _log_dir: log_dir,
            };
            if moto.wait_until_ready().await {
                return moto;
            }
            last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
        }
        panic!("moto_server did not start on loopback; its last output:\n{last_log}");
    }

    /// Polls moto's own API until it responds, and returns false when the process exits first.
    async fn wait_until_ready(&mut self) -> bool {
        let client = loopback_client();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            let answered = client
                .get(format!("{}/moto-api/", self.endpoint))
                .send()
                .await;
            if answered.is_ok_and(|response| response.status().is_success()) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// Creates a bucket with an unsigned PUT, which moto accepts.
    async fn create_bucket(&self, bucket: &str) {
        let response = loopback_client()
            .put(format!("{}/{bucket}", self.endpoint))
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "creating bucket {bucket} failed"
        );
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    StdTcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Builds an HTTP client that ignores proxy variables and never follows a redirect, so it only
/// reaches the loopback addresses it is given.
fn loopback_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Requests seen by the proxy, and the request line a test wants rejected.
struct ProxyState {
    upstream: String,
    client: reqwest::Client,
    /// `METHOD /path?query` of each request, pushed once moto responded.
    log: Mutex<Vec<String>>,
    /// Requests whose line contains this text get 403 without reaching moto.
    reject: Mutex<Option<String>>,
}

/// A recording, fault-injecting HTTP proxy on loopback in front of moto.
struct FaultProxy {
    endpoint: String,
    state: Arc<ProxyState>,
}

impl FaultProxy {
    async fn start(upstream: &str) -> Self {
        let state = Arc::new(ProxyState {
            upstream: upstream.to_owned(),
            client: loopback_client(),
            log: Mutex::default(),
            reject: Mutex::default(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let router = Router::new().fallback(forward).with_state(state.clone());
        // The task ends with the test's runtime.
        tokio::spawn(async move { axum::serve(listener, router).await });
        FaultProxy { endpoint, state }
    }

    /// Rejects every later request whose `METHOD /path?query` contains `text`.
    fn reject(&self, text: &str) {
        *self.state.reject.lock().unwrap() = Some(text.to_owned());
    }

    fn allow_all(&self) {
        *self.state.reject.lock().unwrap() = None;
    }

    fn log(&self) -> Vec<String> {
        self.state.log.lock().unwrap().clone()
    }
}

async fn forward(State(state): State<Arc<ProxyState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", |value| value.as_str())
        .to_owned();
    let line = format!("{} {path_and_query}", parts.method);
    let rejected = state
        .reject
        .lock()
        .unwrap()
        .as_deref()
        .is_some_and(|text| line.contains(text));
    if rejected {
        state.log.lock().unwrap().push(format!("rejected {line}"));
        let error =
            "<Error><Code>AccessDenied</Code><Message>rejected by the test proxy</Message></Error>";
        return (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "application/xml")],
            error,
        )
            .into_response();
    }

    let body: Bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let mut upstream = state
        .client
        .request(parts.method, format!("{}{path_and_query}", state.upstream))
        .body(body);
    for (name, value) in &parts.headers {
        if name != header::HOST && name != header::CONTENT_LENGTH {
            upstream = upstream.header(name, value);
        }
    }
    let answered = match upstream.send().await {
        Ok(answered) => answered,
        Err(error) => return (StatusCode::BAD_GATEWAY, error.to_string()).into_response(),
    };
    let status = answered.status();
    let mut headers = answered.headers().clone();
    headers.remove(header::TRANSFER_ENCODING);
    headers.remove(header::CONNECTION);
    let bytes = answered.bytes().await.unwrap_or_default();
    state.log.lock().unwrap().push(line);
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// A test's bucket: moto, the proxy in front of it, a direct client, and the mamori server.
struct BucketSetup {
    moto: Moto,
    proxy: FaultProxy,
    bucket: String,
    direct: AmazonS3,
    server: TestServer,
}

impl BucketSetup {
    async fn start() -> Self {
        let moto = Moto::start().await;
        let bucket = format!("mamori-{}", uuid::Uuid::new_v4().simple());
        moto.create_bucket(&bucket).await;
        let proxy = FaultProxy::start(&moto.endpoint).await;
        let server = start_server(&proxy.endpoint, &bucket, &public_url(&moto, &bucket)).await;
        let direct = AmazonS3Builder::new()
            .with_endpoint(&moto.endpoint)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_bucket_name(&bucket)
            .with_access_key_id(ACCESS_KEY_ID)
            .with_secret_access_key(SECRET_ACCESS_KEY)
            .build()
            .unwrap();
        BucketSetup {
            moto,
            proxy,
            bucket,
            direct,
            server,
        }
    }

    fn public_url(&self) -> String {
        public_url(&self.moto, &self.bucket)
    }

    /// Returns the path of an export file in proxy requests, such as `/bucket/exports/v1/index.json`.
    fn request_path(&self, name: &str) -> String {
        format!("/{}/{PREFIX}/{name}", self.bucket)
    }

    /// Reads an object straight from moto, or `None` when it does not exist.
    async fn object(&self, name: &str) -> Option<Bytes> {
        match self
            .direct
            .get(&ObjectPath::from(format!("{PREFIX}/{name}")))
            .await
        {
            Ok(fetched) => Some(fetched.bytes().await.unwrap()),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(error) => panic!("reading {name} from moto failed: {error}"),
        }
    }

    async fn index_object(&self) -> ExportIndex {
        let bytes = self
            .object(INDEX_FILE)
            .await
            .expect("index.json is in the bucket");
        serde_json::from_slice(&bytes).expect("index.json is valid")
    }

    /// Returns the keys of every object in the bucket.
    async fn object_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> =
            futures::TryStreamExt::try_collect::<Vec<_>>(self.direct.list(None))
                .await
                .unwrap()
                .into_iter()
                .map(|meta| meta.location.to_string())
                .collect();
        keys.sort();
        keys
    }

    /// Uploads `days_ago` daily keys of `seed` as a new user of prefecture 13.
    async fn upload(&self, seed: u32, days_ago: &[i64]) {
        let server = &self.server;
        let user = server.login(Some(13)).await;
        let code = server.issue_tokens(13, 1).await.remove(0);
        let keys = daily_keys(seed, days_ago, server.clock.now());
        let body = server.upload_keys(&user, &code, &keys).await;
        assert!(
            body["data"]["uploadDiagnosisKeys"]["id"].is_string(),
            "upload failed: {body}"
        );
    }

    async fn export_index_query(&self) -> Value {
        let user = self.server.login(None).await;
        let body = self
            .server
            .graphql(Some(&user), EXPORT_INDEX, json!({}))
            .await;
        assert!(body["errors"].is_null(), "{body}");
        body["data"]["exportIndex"].clone()
    }
}

/// The bucket's own URL on moto plays the CDN, so no URL in these tests leaves loopback.
fn public_url(moto: &Moto, bucket: &str) -> String {
    format!("{}/{bucket}/{PREFIX}/", moto.endpoint)
}

async fn start_server(endpoint: &str, bucket: &str, public_url: &str) -> TestServer {
    let (endpoint, public_url) = (endpoint.to_owned(), public_url.to_owned());
    let store = format!("s3://{bucket}/{PREFIX}");
    TestServer::start_with(move |config| {
        config.export_store = Some(store);
        config.export_s3_endpoint = Some(endpoint);
        config.export_public_url = Some(public_url);
        config.export_s3_credentials = Some(S3Credentials {
            access_key_id: ACCESS_KEY_ID.into(),
            secret_access_key: SECRET_ACCESS_KEY.into(),
            session_token: None,
        });
    })
    .await
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Returns the position of the last log line that is exactly `line`.
fn last_position(log: &[String], line: &str) -> Option<usize> {
    log.iter().rposition(|entry| entry == line)
}

#[tokio::test]
async fn bucket_export_uploads_keys_then_index() {
    let setup = BucketSetup::start().await;
    setup.upload(1, &[3, 2, 1]).await;

    let index = mamori::jobs::export_keys(&setup.server.app).await.unwrap();

    let keys_bytes = setup
        .object(KEYS_FILE)
        .await
        .expect("keys file is in the bucket");
    let file = &index.files[0];
    assert_eq!(file.name, KEYS_FILE);
    assert_eq!(file.size, keys_bytes.len() as u64);
    assert_eq!(file.sha256, sha256_hex(&keys_bytes));
    assert_eq!(file.key_count, 3);
    assert_eq!(exported_key_data(&gunzip_json(&keys_bytes)).len(), 3);
    assert_eq!(file.path, format!("{}{KEYS_FILE}", setup.public_url()));
    assert_eq!(setup.index_object().await, index);

    let keys_put = format!("PUT {}", setup.request_path(KEYS_FILE));
    let index_put = format!("PUT {}", setup.request_path(INDEX_FILE));
    let log = setup.proxy.log();
    let keys_done = last_position(&log, &keys_put).expect("the keys file was uploaded");
    let index_done = last_position(&log, &index_put).expect("the index was uploaded");
    assert!(
        keys_done < index_done,
        "index uploaded before keys file: {log:#?}"
    );

    assert_eq!(
        setup.object_keys().await,
        [
            format!("{PREFIX}/{KEYS_FILE}"),
            format!("{PREFIX}/{INDEX_FILE}")
        ],
        "only the two export files, no temporary objects"
    );
    let data_dir = &setup.server.app.config.data_dir;
    assert!(
        !data_dir.join("exports").exists(),
        "no local export folder with a bucket"
    );
}

#[tokio::test]
async fn bucket_objects_have_media_types() {
    let setup = BucketSetup::start().await;
    mamori::jobs::export_keys(&setup.server.app).await.unwrap();

    for (name, content_type) in [
        (KEYS_FILE, "application/gzip"),
        (INDEX_FILE, "application/json"),
    ] {
        let path = ObjectPath::from(format!("{PREFIX}/{name}"));
        let fetched = setup.direct.get(&path).await.unwrap();
        let attributes = &fetched.attributes;
        assert_eq!(
            attributes
                .get(&Attribute::ContentType)
                .map(|value| value.as_ref()),
            Some(content_type),
            "{name}"
        );
        assert_eq!(
            attributes
                .get(&Attribute::CacheControl)
                .map(|value| value.as_ref()),
            Some("public, max-age=60"),
            "{name}"
        );
    }
}

#[tokio::test]
async fn export_index_lists_public_urls() {
    let setup = BucketSetup::start().await;
    setup.upload(1, &[2, 1]).await;
    mamori::jobs::export_keys(&setup.server.app).await.unwrap();

    let index = setup.export_index_query().await;
    let file = &index["files"][0];
    assert_eq!(file["name"], KEYS_FILE);
    assert_eq!(file["path"], format!("{}{KEYS_FILE}", setup.public_url()));
    assert_eq!(file["keyCount"], 2);
    let keys_bytes = setup.object(KEYS_FILE).await.unwrap();
    assert_eq!(file["sha256"], sha256_hex(&keys_bytes));
    assert_eq!(file["size"], keys_bytes.len());
}

#[tokio::test]
async fn second_bucket_export_replaces_objects() {
    let setup = BucketSetup::start().await;
    setup.upload(1, &[1]).await;
    let first = mamori::jobs::export_keys(&setup.server.app).await.unwrap();
    let first_keys = setup.object(KEYS_FILE).await.unwrap();

    setup.upload(2, &[3, 2]).await;
    let second = mamori::jobs::export_keys(&setup.server.app).await.unwrap();
    let second_keys = setup.object(KEYS_FILE).await.unwrap();

    assert_eq!(first.files[0].key_count, 1);
    assert_eq!(second.files[0].key_count, 3);
    assert_ne!(first_keys, second_keys, "the keys file was replaced");
    assert_eq!(second.files[0].sha256, sha256_hex(&second_keys));
    assert_eq!(setup.index_object().await, second);
    assert_eq!(setup.export_index_query().await["files"][0]["keyCount"], 3);
    assert_eq!(setup.object_keys().await.len(), 2, "replaced, not added");
}

#[tokio::test]
async fn failed_keys_upload_keeps_old_index() {
    let setup = BucketSetup::start().await;
    setup.upload(1, &[1]).await;
    let old_index = mamori::jobs::export_keys(&setup.server.app).await.unwrap();
    let old_keys = setup.object(KEYS_FILE).await.unwrap();
    let old_index_bytes = setup.object(INDEX_FILE).await.unwrap();

    setup.upload(2, &[3, 2]).await;
    setup
        .proxy
        .reject(&format!("PUT {}", setup.request_path(KEYS_FILE)));
    let error = mamori::jobs::export_keys(&setup.server.app)
        .await
        .expect_err("the export fails when the keys file cannot be uploaded");

    assert!(format!("{error:#}").contains(KEYS_FILE), "{error:#}");
    assert_eq!(setup.object(KEYS_FILE).await.unwrap(), old_keys);
    assert_eq!(setup.object(INDEX_FILE).await.unwrap(), old_index_bytes);
    let index_put = format!("PUT {}", setup.request_path(INDEX_FILE));
    let index_puts = setup
        .proxy
        .log()
        .iter()
        .filter(|line| **line == index_put)
        .count();
    assert_eq!(index_puts, 1, "only the first export uploaded the index");
    assert_eq!(setup.export_index_query().await["files"][0]["keyCount"], 1);

    setup.proxy.allow_all();
    let recovered = mamori::jobs::export_keys(&setup.server.app).await.unwrap();
    assert_eq!(recovered.files[0].key_count, 3);
    assert_ne!(recovered, old_index);
    assert_eq!(setup.index_object().await, recovered);
}

#[tokio::test]
async fn failed_index_upload_keeps_old_index() {
    let setup = BucketSetup::start().await;
    setup.upload(1, &[1]).await;
    let old_index = mamori::jobs::export_keys(&setup.server.app).await.unwrap();
    let old_keys = setup.object(KEYS_FILE).await.unwrap();

    setup.upload(2, &[3, 2]).await;
    setup
        .proxy
        .reject(&format!("PUT {}", setup.request_path(INDEX_FILE)));
    let error = mamori::jobs::export_keys(&setup.server.app)
        .await
        .expect_err("the export fails when the index cannot be uploaded");

    assert!(format!("{error:#}").contains(INDEX_FILE), "{error:#}");
    assert_eq!(setup.index_object().await, old_index);
    // The keys file went up first, so it is already the new one.
    let new_keys = setup.object(KEYS_FILE).await.unwrap();
    assert_ne!(new_keys, old_keys);
    assert_eq!(exported_key_data(&gunzip_json(&new_keys)).len(), 3);
}

#[tokio::test]
async fn large_file_uploads_in_parts() {
    let setup = BucketSetup::start().await;
    let store = &setup.server.app.exports;
    // Two whole parts and a short last one, in bytes that differ from part to part.
    let size = 2 * PART_SIZE + 1024 * 1024;
    let content: Vec<u8> = (0..size)
        .map(|i| (i % 251) as u8 ^ (i / PART_SIZE) as u8)
        .collect();
    let temporary = store.temporary_path("large.bin");
    std::fs::write(&temporary, &content).unwrap();

    store.publish(&temporary, "large.bin").await.unwrap();

    assert!(!temporary.exists(), "the temporary file is removed");
    let uploaded = setup
        .object("large.bin")
        .await
        .expect("large.bin is in the bucket");
    assert_eq!(uploaded.len(), size);
    assert!(
        sha256_hex(&uploaded) == sha256_hex(&content),
        "uploaded bytes differ"
    );
    let log = setup.proxy.log();
    let object = setup.request_path("large.bin");
    let part_puts = log
        .iter()
        .filter(|line| line.starts_with(&format!("PUT {object}?")) && line.contains("partNumber="))
        .count();
    assert_eq!(part_puts, 3, "{log:#?}");
    assert!(
        !log.contains(&format!("PUT {object}")),
        "no single PUT of the whole file: {log:#?}"
    );
}

#[tokio::test]
async fn failed_part_aborts_multipart_upload() {
    let setup = BucketSetup::start().await;
    let store = &setup.server.app.exports;
    let temporary = store.temporary_path("large.bin");
    std::fs::write(&temporary, vec![7u8; 2 * PART_SIZE + 1]).unwrap();
    setup.proxy.reject("partNumber=2&");

    let result = store.publish(&temporary, "large.bin").await;

    assert!(result.is_err(), "the upload fails when a part is rejected");
    assert!(!temporary.exists(), "the temporary file is removed");
    assert!(setup.object("large.bin").await.is_none());
    let object = setup.request_path("large.bin");
    let log = setup.proxy.log();
    assert!(
        log.iter()
            .any(|line| line.starts_with(&format!("DELETE {object}?uploadId="))),
        "the multipart upload is aborted: {log:#?}"
    );
}

#[tokio::test]
async fn download_redirects_to_public_url() {
    let setup = BucketSetup::start().await;
    mamori::jobs::export_keys(&setup.server.app).await.unwrap();
    let user = setup.server.login(None).await;
    let client = loopback_client();
    let get = |path: &str| client.get(setup.server.url(path));

    let redirected = get(&format!("/exports/{KEYS_FILE}"))
        .bearer_auth(&user)
        .send()
        .await
        .unwrap();
    assert_eq!(redirected.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(
        redirected.headers()[header::LOCATION],
        format!("{}{KEYS_FILE}", setup.public_url()).as_str()
    );

    let anonymous = get(&format!("/exports/{KEYS_FILE}")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    let hidden = get("/exports/.hidden")
        .bearer_auth(&user)
        .send()
        .await
        .unwrap();
    assert_eq!(hidden.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn readyz_checks_bucket() {
    let setup = BucketSetup::start().await;
    let client = loopback_client();
    let ready = client
        .get(setup.server.url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);

    let missing = start_server(
        &setup.moto.endpoint,
        "mamori-missing-bucket",
        &setup.public_url(),
    )
    .await;
    let response = client.get(missing.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.text().await.unwrap(), "export store unavailable");

    drop(setup.moto);
    let stopped = client
        .get(setup.server.url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(stopped.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn readyz_checks_export_folder() {
    let server = TestServer::start().await;
    let client = loopback_client();
    let ready = client.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);

    std::fs::remove_dir(server.app.config.data_dir.join("exports")).unwrap();
    let response = client.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.text().await.unwrap(), "export store unavailable");
}

#[derive(Parser)]
struct ConfigOnly {
    #[command(flatten)]
    config: Config,
}

/// Parses flags as the binary would, ignoring the settings of the environment the test runs in.
fn config_from(flags: &[&str]) -> Config {
    let mut arguments = vec!["mamori", "--data-dir", "/srv/mamori"];
    arguments.extend_from_slice(flags);
    ConfigOnly::try_parse_from(arguments).unwrap().config
}

#[test]
fn export_dir_still_selects_folder() {
    let config = config_from(&["--export-dir", "/srv/exports"]);
    assert_eq!(
        ExportLocation::from_config(&config).unwrap(),
        ExportLocation::Folder(PathBuf::from("/srv/exports"))
    );
    let default = config_from(&[]);
    assert_eq!(
        ExportLocation::from_config(&default).unwrap(),
        ExportLocation::Folder(PathBuf::from("/srv/mamori/exports"))
    );
}

#[test]
fn bad_store_settings_fail_validation() {
    let bucket = ["--export-store", "s3://mamori-exports/v1"];
    let public = ["--export-public-url", "https://cdn.example.jp/exports/"];
    let cases: [(Vec<&str>, &str); 6] = [
        (bucket.to_vec(), "MAMORI_EXPORT_PUBLIC_URL is missing"),
        (
            public.to_vec(),
            "MAMORI_EXPORT_PUBLIC_URL is set, but the export store is a folder",
        ),
        (
            vec!["--export-store", "/srv/a", "--export-dir", "/srv/b"],
            "MAMORI_EXPORT_STORE and MAMORI_EXPORT_DIR are both set",
        ),
        (
            vec!["--export-store", "gs://mamori/v1"],
            "MAMORI_EXPORT_STORE \"gs://mamori/v1\" is invalid",
        ),
        (
            [
                &bucket[..],
                &public[..],
                &["--export-s3-endpoint", "127.0.0.1:9000"],
            ]
            .concat(),
            "MAMORI_EXPORT_S3_ENDPOINT",
        ),
        (
            [&bucket[..], &["--export-public-url", "cdn.example.jp"]].concat(),
            "MAMORI_EXPORT_PUBLIC_URL",
        ),
    ];
    for (flags, expected) in cases {
        let error = config_from(&flags)
            .validate()
            .expect_err(&format!("{flags:?} is rejected"));
        assert!(
            format!("{error:#}").contains(expected),
            "{flags:?}: expected {expected:?} in {error:#}"
        );
    }
    let valid = config_from(&[&bucket[..], &public[..]].concat());
    valid.validate().unwrap();
}

#[test]
fn bucket_store_opens_without_contacting_it() {
    let mut config = config_from(&[
        "--export-store",
        "s3://mamori-exports/v1",
        "--export-public-url",
        "https://cdn.example.jp/exports",
        "--export-s3-endpoint",
        "http://127.0.0.1:9",
    ]);
    config.export_s3_credentials = Some(S3Credentials {
        access_key_id: ACCESS_KEY_ID.into(),
        secret_access_key: SECRET_ACCESS_KEY.into(),
        session_token: None,
    });
    let store = ExportStore::open(&config).unwrap();
    assert_eq!(store.to_string(), "s3://mamori-exports/v1");
    assert_eq!(
        store.download_url(KEYS_FILE),
        format!("https://cdn.example.jp/exports/{KEYS_FILE}")
    );
    let debug = format!("{:?}", config.export_s3_credentials);
    assert!(!debug.contains(SECRET_ACCESS_KEY), "secret in {debug}");
}
