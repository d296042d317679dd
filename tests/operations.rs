//! What an operator relies on: `/metrics`, the retention job, graceful shutdown, recovery from a
//! database outage, notice delivery after the listener reconnects, and migrations applied by
//! replicas that start together.
//!
//! The outage, listener and migration tests need PostgreSQL (`MAMORI_TEST_DATABASE_URL`).
//! Without it they print that they were skipped and pass.

mod common;

use std::time::{Duration, Instant};

use common::{daily_keys, error_code, key_bytes, TestDatabase, TestServer};
use futures::{SinkExt, StreamExt};
use mamori::{
    auth::Role,
    entity::{diagnosis_key_uploads, diagnosis_keys, health_center_tokens, refresh_tokens},
    jobs::Deleted,
};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter,
    QueryOrder, Set, Statement,
};
use serde_json::{json, Value};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpSocket, TcpStream},
    task::JoinHandle,
    time::timeout,
};
use tokio_tungstenite::{
    tungstenite::{client::IntoClientRequest, http::HeaderValue, Message},
    MaybeTlsStream, WebSocketStream,
};
use tokio_util::sync::CancellationToken;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

const ME: &str = "{ me { id } }";
const PUBLISH: &str = "mutation($p: Int!, $m: String!) { publishPrefectureNotice(input: {prefecture: $p, message: $m}) { id } }";
const SUBSCRIBE: &str = "subscription { prefectureNotices(prefecture: 13) { id message } }";

/// Bounds every wait for one message or response, so a missing one fails the test instead of
/// hanging it.
const WAIT: Duration = Duration::from_secs(10);

/// Bounds the polling for the server to recover after the database returns.
const RECOVERY: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Helpers

/// Returns whether `MAMORI_TEST_DATABASE_URL` is set, printing that `test` is skipped when not.
fn postgres_available(test: &str) -> bool {
    let set = std::env::var("MAMORI_TEST_DATABASE_URL").is_ok_and(|url| !url.is_empty());
    if !set {
        println!("{test}: skipped, it needs PostgreSQL through MAMORI_TEST_DATABASE_URL");
    }
    set
}

/// Returns the value of the samples of `name` whose labels include every pair of `labels`,
/// summed, or `None` when the text has no such sample.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut total = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (label_text, value) = if let Some(rest) = rest.strip_prefix('{') {
            match rest.split_once("} ") {
                Some(parts) => parts,
                None => continue,
            }
        } else if let Some(value) = rest.strip_prefix(' ') {
            ("", value)
        } else {
            continue;
        };
        let matches = labels.iter().all(|(key, value)| {
            let expected_pair = format!("{key}=\"{value}\"");
            label_text.split(',').any(|pair| pair == expected_pair)
        });
        if matches {
            let value: f64 = value
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("invalid sample: {line}"));
            *total.get_or_insert(0.0) += value;
        }
    }
    total
}

async fn scrape(server: &TestServer) -> String {
    let response = server
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "GET /metrics failed");
    response.text().await.unwrap()
}

async fn connect_websocket(server: &TestServer) -> Socket {
    let mut request = format!("ws://{}/graphql/ws", server.address)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    let (socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    socket
}

async fn send(socket: &mut Socket, message: Value) {
    socket
        .send(Message::text(message.to_string()))
        .await
        .unwrap();
}

/// Returns the next GraphQL message within [`WAIT`], or `None` when the socket closes.
async fn receive(socket: &mut Socket) -> Option<Value> {
    timeout(WAIT, next_message(socket))
        .await
        .expect("timed out waiting for a WebSocket message")
}

/// Returns the next GraphQL message, skipping pings and pongs, or `None` when the socket closes.
async fn next_message(socket: &mut Socket) -> Option<Value> {
    loop {
        match socket.next().await? {
            Ok(Message::Text(text)) => {
                let message: Value = serde_json::from_str(&text).unwrap();
                if message["type"] != "ping" && message["type"] != "pong" {
                    return Some(message);
                }
            }
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// Connects anonymously and returns the socket once the server acknowledged `connection_init`.
async fn connect_acknowledged(server: &TestServer) -> Socket {
    let mut socket = connect_websocket(server).await;
    send(&mut socket, json!({ "type": "connection_init" })).await;
    let ack = receive(&mut socket)
        .await
        .expect("socket closed before ack");
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    socket
}

async fn publish(server: &TestServer, admin: &str, message: &str) -> String {
    let body = server
        .graphql(Some(admin), PUBLISH, json!({ "p": 13, "m": message }))
        .await;
    body["data"]["publishPrefectureNotice"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("publish failed: {body}"))
        .to_owned()
}

/// Returns the id of the notice in a `next` message.
fn notice_id(message: &Value) -> &str {
    assert_eq!(message["type"], "next", "{message}");
    message["payload"]["data"]["prefectureNotices"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("not a notice: {message}"))
}

/// Subscribes `socket` to the notices of prefecture 13 and returns once the subscription is
/// live and every notice published so far has been read, so the next message is the next
/// notice. Warm-up notices, published through `publisher` (this socket's server or another
/// replica), prove it live without guessing a delay, and a final marker drains any warm-up
/// still on its way.
async fn subscribe_and_sync(publisher: &TestServer, admin: &str, socket: &mut Socket) {
    send(
        socket,
        json!({ "id": "1", "type": "subscribe", "payload": { "query": SUBSCRIBE } }),
    )
    .await;
    let mut live = false;
    for attempt in 0..50 {
        publish(publisher, admin, &format!("warm-up {attempt}")).await;
        if let Ok(Some(message)) = timeout(Duration::from_millis(200), receive(socket)).await {
            notice_id(&message);
            live = true;
            break;
        }
    }
    assert!(live, "the subscription never delivered a warm-up notice");
    let marker = publish(publisher, admin, "marker").await;
    loop {
        let message = receive(socket).await.expect("socket closed while syncing");
        if notice_id(&message) == marker {
            return;
        }
    }
}

/// Asserts that no message arrives within a short time, so a duplicate would be seen.
async fn assert_no_further_message(socket: &mut Socket) {
    if let Ok(Some(message)) = timeout(Duration::from_millis(500), receive(socket)).await {
        panic!("unexpected message after the last notice: {message}");
    }
}

/// Returns the name of the database the server uses, from its URL.
fn database_name(server: &TestServer) -> String {
    let url = reqwest::Url::parse(&server.app.config.database_url()).unwrap();
    url.path().trim_start_matches('/').to_owned()
}

/// Opens a connection of the test's own to the database `MAMORI_TEST_DATABASE_URL` names.
async fn admin_connection() -> sea_orm::DatabaseConnection {
    let url = std::env::var("MAMORI_TEST_DATABASE_URL").unwrap();
    sea_orm::Database::connect(&url).await.unwrap()
}

/// Returns the process ids of the notice listener's backends connected to `database`.
async fn listener_backends(admin: &sea_orm::DatabaseConnection, database: &str) -> Vec<i32> {
    let statement = Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'mamori-notice-listener' AND datname = $1",
        [database.into()],
    );
    admin
        .query_all(statement)
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get_by_index::<i32>(0).unwrap())
        .collect()
}

/// Polls `me` until it succeeds and `/readyz` returns 200, failing after [`RECOVERY`].
async fn wait_until_serving(server: &TestServer, user: &str) {
    let deadline = Instant::now() + RECOVERY;
    loop {
        let me = timeout(WAIT, server.graphql(Some(user), ME, json!({}))).await;
        let ready = timeout(WAIT, server.http.get(server.url("/readyz")).send()).await;
        let me_works = matches!(&me, Ok(body) if body["data"]["me"]["id"].is_string());
        let is_ready = matches!(&ready, Ok(Ok(response)) if response.status() == 200);
        if me_works && is_ready {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not recover within {RECOVERY:?}: me = {me:?}, readyz = {ready:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A TCP forwarder on a loopback port to PostgreSQL, which the test cuts and restores to play
/// a network outage between one replica and the database.
struct Forwarder {
    port: u16,
    target: String,
    running: Option<(CancellationToken, JoinHandle<()>)>,
}

impl Forwarder {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut forwarder = Forwarder {
            port,
            target,
            running: None,
        };
        forwarder.run(listener);
        forwarder
    }

    fn run(&mut self, listener: TcpListener) {
        let cut = CancellationToken::new();
        let task = tokio::spawn(accept(listener, self.target.clone(), cut.clone()));
        self.running = Some((cut, task));
    }

    /// Closes the listening socket and every forwarded connection.
    async fn cut(&mut self) {
        let (cut, task) = self.running.take().expect("the forwarder is running");
        cut.cancel();
        task.await.unwrap();
    }

    /// Listens on the same port again.
    async fn restore(&mut self) {
        let socket = TcpSocket::new_v4().unwrap();
        // Connections closed by the cut may linger in TIME_WAIT on this port.
        socket.set_reuseaddr(true).unwrap();
        socket
            .bind(([127, 0, 0, 1], self.port).into())
            .expect("the forwarder's port is free again");
        self.run(socket.listen(128).unwrap());
    }
}

/// Accepts connections and forwards each to `target` until `cut` is cancelled, then drops the
/// listener and waits for every connection to be closed.
async fn accept(listener: TcpListener, target: String, cut: CancellationToken) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = cut.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let Ok((mut client, _)) = accepted else {
            continue;
        };
        let (target, cut) = (target.clone(), cut.clone());
        connections.spawn(async move {
            let Ok(mut server) = TcpStream::connect(&target).await else {
                return;
            };
            tokio::select! {
                _ = cut.cancelled() => {}
                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
            }
        });
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// Returns the `host:port` of the PostgreSQL server `MAMORI_TEST_DATABASE_URL` names.
fn postgres_address() -> String {
    let url = reqwest::Url::parse(&std::env::var("MAMORI_TEST_DATABASE_URL").unwrap()).unwrap();
    let host = url.host_str().expect("MAMORI_TEST_DATABASE_URL has a host");
    format!("{host}:{}", url.port().unwrap_or(5432))
}

/// Returns `url` with its host and port replaced by the forwarder's.
fn through_forwarder(url: &str, forwarder: &Forwarder) -> String {
    let mut url = reqwest::Url::parse(url).unwrap();
    url.set_host(Some("127.0.0.1")).unwrap();
    url.set_port(Some(forwarder.port)).unwrap();
    url.to_string()
}

// ---------------------------------------------------------------------------------------------
// Metrics

#[tokio::test]
async fn metrics_count_requests_operations_jobs_and_websockets() {
    let server = TestServer::start().await;
    let user = server.login(Some(13)).await;
    let me = server.graphql(Some(&user), ME, json!({})).await;
    assert!(me["data"]["me"]["id"].is_string(), "{me}");
    let anonymous_me = server.graphql(None, ME, json!({})).await;
    assert_eq!(error_code(&anonymous_me), "UNAUTHENTICATED");
    mamori::jobs::export_keys(&server.app).await.unwrap();
    let mut socket = connect_acknowledged(&server).await;

    let first = scrape(&server).await;
    let login_ok = [("operation", "mutation:login"), ("outcome", "ok")];
    let graphql_ok = [("route", "/graphql"), ("status", "200")];
    let expected: [(&str, &[(&str, &str)]); 11] = [
        ("mamori_graphql_operations_total", &login_ok),
        (
            "mamori_graphql_operations_total",
            &[("operation", "query:me"), ("outcome", "ok")],
        ),
        (
            "mamori_graphql_operations_total",
            &[("operation", "query:me"), ("outcome", "UNAUTHENTICATED")],
        ),
        ("mamori_http_requests_total", &graphql_ok),
        (
            "mamori_http_request_duration_seconds_bucket",
            &[("route", "/graphql"), ("le", "+Inf")],
        ),
        (
            "mamori_graphql_operation_duration_seconds_bucket",
            &[("operation", "mutation:login"), ("le", "+Inf")],
        ),
        (
            "mamori_job_runs_total",
            &[("job", "export_keys"), ("outcome", "completed")],
        ),
        (
            "mamori_job_duration_seconds_bucket",
            &[("job", "export_keys"), ("le", "+Inf")],
        ),
        ("mamori_exported_keys", &[]),
        ("mamori_websocket_connections", &[]),
        (
            "mamori_http_request_duration_seconds_bucket",
            &[("route", "/graphql"), ("le", "0.005")],
        ),
    ];
    for (name, labels) in expected {
        assert!(
            sample(&first, name, labels).is_some(),
            "/metrics has no {name} with {labels:?}:\n{first}"
        );
    }
    let open_sockets = sample(&first, "mamori_websocket_connections", &[]).unwrap();
    assert!(
        open_sockets >= 1.0,
        "mamori_websocket_connections is {open_sockets} while a socket is open"
    );

    server.login(None).await;
    let second = scrape(&server).await;
    for (name, labels) in [
        ("mamori_graphql_operations_total", &login_ok),
        ("mamori_http_requests_total", &graphql_ok),
    ] {
        let before = sample(&first, name, labels).unwrap();
        let after = sample(&second, name, labels).unwrap();
        assert!(
            after > before,
            "{name} {labels:?} did not grow: {before} then {after}"
        );
    }
    socket.close(None).await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Retention

#[tokio::test]
async fn retention_deletes_only_data_past_retention() {
    // Refresh tokens outlive the 14 days of retention by default, so a shorter lifetime lets one
    // session expire within the test's timeline.
    let server = TestServer::start_with(|config| {
        config.refresh_token_ttl = Duration::from_secs(20 * 24 * 3600);
    })
    .await;
    let start = server.clock.now();
    let day = chrono::Duration::days(1);

    // Day 0: user A uploads three old keys with one code, and a second code stays unused. Both
    // codes are valid for 7 days, and A's session for 20.
    let user_a = server.login(Some(13)).await;
    let day_0_codes = server.issue_tokens(13, 2).await;
    let old_upload = server
        .upload_keys(&user_a, &day_0_codes[0], &daily_keys(1, &[1, 2, 3], start))
        .await;
    let old_upload_id = old_upload["data"]["uploadDiagnosisKeys"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("upload failed: {old_upload}"))
        .to_owned();

    // Day 10: user B uploads a key of the day before and one of 13 days before.
    server.clock.advance(day * 10);
    let login_b = server
        .graphql(
            None,
            "mutation { login(input: {prefecture: 13}) { accessToken refreshToken } }",
            json!({}),
        )
        .await;
    let user_b = login_b["data"]["login"]["accessToken"].as_str().unwrap();
    let refresh_b = login_b["data"]["login"]["refreshToken"].as_str().unwrap();
    let day_10_codes = server.issue_tokens(13, 2).await;
    let recent_upload = server
        .upload_keys(
            user_b,
            &day_10_codes[0],
            &daily_keys(2, &[1, 13], server.clock.now()),
        )
        .await;
    let recent_upload_id = recent_upload["data"]["uploadDiagnosisKeys"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("upload failed: {recent_upload}"))
        .to_owned();

    // The token of B's upload is marked expired on day 0, which the API cannot do, to check
    // that a token an upload still refers to is kept whatever its dates.
    let named_token = health_center_tokens::Entity::find()
        .filter(health_center_tokens::Column::RedeemedAt.gt(start))
        .one(&server.app.db)
        .await
        .unwrap()
        .expect("the token of the recent upload");
    let mut expired = health_center_tokens::ActiveModel::from(named_token.clone());
    expired.expires_at = Set(start);
    expired.update(&server.app.db).await.unwrap();

    // Day 22: retention reaches back to day 8 (22 - 14), and A's session expired on day 20.
    server.clock.advance(day * 12);
    let deleted = mamori::jobs::delete_expired(&server.app).await.unwrap();

    assert_eq!(
        deleted.diagnosis_keys, 4,
        "A's three keys and B's key of day -3"
    );
    assert_eq!(deleted.uploads, 1, "A's upload");
    assert_eq!(
        deleted.health_center_tokens, 2,
        "the code A spent and the code unused since day 0"
    );
    assert_eq!(deleted.refresh_tokens, 1, "A's session");

    let db = &server.app.db;
    let uploads: Vec<String> = diagnosis_key_uploads::Entity::find()
        .all(db)
        .await
        .unwrap()
        .iter()
        .map(|upload| upload.id.to_string())
        .collect();
    assert_eq!(uploads.len(), 1, "A's upload {old_upload_id} is gone");
    assert_eq!(uploads[0], recent_upload_id);

    let keys = diagnosis_keys::Entity::find().all(db).await.unwrap();
    assert_eq!(keys.len(), 1, "only B's key of day 9 is left");
    assert_eq!(keys[0].key_data, key_bytes(2, 1));
    assert_eq!(keys[0].upload_id.to_string(), recent_upload_id);

    let tokens = health_center_tokens::Entity::find()
        .order_by_asc(health_center_tokens::Column::CreatedAt)
        .all(db)
        .await
        .unwrap();
    assert_eq!(tokens.len(), 2, "the two codes of day 10 are left");
    assert!(tokens.iter().any(|token| token.id == named_token.id));
    let day_10 = start + day * 10;
    assert!(tokens.iter().all(|token| token.created_at == day_10));

    let sessions = refresh_tokens::Entity::find().all(db).await.unwrap();
    assert_eq!(sessions.len(), 1, "B's session is left");
    assert!(sessions[0].expires_at > server.clock.now());
    let refreshed = server
        .graphql(
            None,
            "mutation($t: String!) { refreshSession(refreshToken: $t) { accessToken } }",
            json!({ "t": refresh_b }),
        )
        .await;
    assert!(
        refreshed["data"]["refreshSession"]["accessToken"].is_string(),
        "B's session still refreshes: {refreshed}"
    );

    let again = mamori::jobs::delete_expired(&server.app).await.unwrap();
    assert_eq!(again, Deleted::default(), "a second run finds nothing");
}

#[tokio::test]
async fn retention_keeps_everything_within_retention() {
    let server = TestServer::start().await;
    let user = server.login(Some(13)).await;
    let codes = server.issue_tokens(13, 2).await;
    let upload = server
        .upload_keys(
            &user,
            &codes[0],
            &daily_keys(3, &[1, 5], server.clock.now()),
        )
        .await;
    assert!(
        upload["data"]["uploadDiagnosisKeys"]["id"].is_string(),
        "{upload}"
    );

    // Six days later: the codes are still valid, and the keys ended at most 11 days ago.
    server.clock.advance(chrono::Duration::days(6));
    let deleted = mamori::jobs::delete_expired(&server.app).await.unwrap();

    assert_eq!(deleted, Deleted::default());
    let db = &server.app.db;
    let keys = diagnosis_keys::Entity::find().all(db).await.unwrap();
    assert_eq!(keys.len(), 2);
    let tokens = health_center_tokens::Entity::find().all(db).await.unwrap();
    assert_eq!(tokens.len(), 2);
}

// ---------------------------------------------------------------------------------------------
// Graceful shutdown

#[tokio::test]
async fn shutdown_closes_subscriptions_with_going_away() {
    let mut server = TestServer::start().await;
    let admin = server.admin_token(Role::SuperAdmin, None).await;
    let mut socket = connect_acknowledged(&server).await;
    subscribe_and_sync(&server, &admin, &mut socket).await;

    server.stop();

    let frame = loop {
        let next = timeout(WAIT, socket.next())
            .await
            .expect("no close frame within 10 s of the shutdown");
        match next {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            Some(Err(error)) => panic!("the socket failed without a close frame: {error}"),
            None => panic!("the socket ended without a close frame"),
        }
    };
    let frame = frame.expect("the close frame has a code");
    assert_eq!(u16::from(frame.code), 1001, "{frame:?}");
}

#[tokio::test]
async fn shutdown_finishes_request_in_flight() {
    let mut server = TestServer::start().await;
    let user = server.login(Some(13)).await;
    let body = json!({ "query": ME }).to_string();

    // With `Expect: 100-continue` the server sends `100 Continue` once the handler reads the body,
    // which proves the request is in flight before the shutdown starts.
    let mut connection = TcpStream::connect(server.address).await.unwrap();
    let head = format!(
        "POST /graphql HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Authorization: Bearer {user}\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        server.address,
        body.len()
    );
    connection.write_all(head.as_bytes()).await.unwrap();
    let mut interim = Vec::new();
    while !interim.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let read = timeout(WAIT, connection.read(&mut byte))
            .await
            .expect("no 100 Continue")
            .unwrap();
        assert_eq!(read, 1, "the connection closed before 100 Continue");
        interim.push(byte[0]);
    }
    let interim = String::from_utf8(interim).unwrap();
    assert!(interim.starts_with("HTTP/1.1 100"), "{interim}");

    server.stop();
    // The listener closes once the shutdown has started, so new connections are refused from then.
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect(server.address).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "the server still accepts connections"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    connection.write_all(body.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    timeout(WAIT, connection.read_to_end(&mut response))
        .await
        .expect("the request in flight did not finish")
        .unwrap();
    let response = String::from_utf8(response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let (_, json_body) = response.split_once("\r\n\r\n").unwrap();
    let json_body: Value = serde_json::from_str(json_body).unwrap();
    assert!(json_body["data"]["me"]["id"].is_string(), "{json_body}");
}

// ---------------------------------------------------------------------------------------------
// Database outage and notice listener (PostgreSQL)

/// Starts a server whose database connections all pass through a new forwarder, with a short
/// connect timeout. Returns the database too, which must outlive the server.
async fn start_behind_forwarder() -> (TestServer, Forwarder, TestDatabase) {
    let database = TestDatabase::create().await.unwrap();
    let forwarder = Forwarder::start(postgres_address()).await;
    let url = through_forwarder(&database.url, &forwarder);
    let server = TestServer::start_with(|config| {
        config.database_url = Some(url);
        config.database_connect_timeout = Duration::from_secs(1);
    })
    .await;
    (server, forwarder, database)
}

#[tokio::test]
async fn database_outage_is_unavailable_then_recovers() {
    if !postgres_available("database_outage_is_unavailable_then_recovers") {
        return;
    }
    let (server, mut forwarder, _database) = start_behind_forwarder().await;
    let user = server.login(Some(13)).await;
    wait_until_serving(&server, &user).await;

    forwarder.cut().await;

    let me = timeout(WAIT, server.graphql(Some(&user), ME, json!({})))
        .await
        .expect("me did not respond within 10 s while the database was unreachable");
    assert_eq!(error_code(&me), "UNAVAILABLE", "{me}");
    let ready = timeout(WAIT, server.http.get(server.url("/readyz")).send())
        .await
        .expect("/readyz did not respond within 10 s")
        .unwrap();
    assert_eq!(ready.status(), 503);

    forwarder.restore().await;
    wait_until_serving(&server, &user).await;
}

#[tokio::test]
async fn notice_listener_reconnects_and_delivers_once() {
    if !postgres_available("notice_listener_reconnects_and_delivers_once") {
        return;
    }
    let server = TestServer::start().await;
    let admin = server.admin_token(Role::SuperAdmin, None).await;
    let mut socket = connect_acknowledged(&server).await;
    subscribe_and_sync(&server, &admin, &mut socket).await;

    let database = database_name(&server);
    let postgres = admin_connection().await;
    let backends = listener_backends(&postgres, &database).await;
    assert_eq!(backends.len(), 1, "one listener connection: {backends:?}");
    let terminate = Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'mamori-notice-listener' AND datname = $1",
        [database.clone().into()],
    );
    let terminated = postgres.query_all(terminate).await.unwrap();
    assert_eq!(terminated.len(), 1);
    assert!(terminated[0].try_get_by_index::<bool>(0).unwrap());

    let first = publish(&server, &admin, "after the listener was terminated").await;
    let message = receive(&mut socket).await.expect("socket closed");
    assert_eq!(notice_id(&message), first, "{message}");
    let second = publish(&server, &admin, "the next notice").await;
    let message = receive(&mut socket).await.expect("socket closed");
    assert_eq!(notice_id(&message), second, "{message}");
    assert_no_further_message(&mut socket).await;

    let deadline = Instant::now() + WAIT;
    loop {
        let backends = listener_backends(&postgres, &database).await;
        if backends.len() == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "listener backends: {backends:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = postgres.close().await;
}

/// Cuts one replica off the database while another publishes, and checks that the cut replica's
/// subscriber receives the notice once it reconnects. `outage` sets how long the cut lasts.
async fn notice_published_during_outage_arrives(outage: Duration) {
    let (cut_off, mut forwarder, database) = start_behind_forwarder().await;
    let direct_url = database.url.clone();
    let publisher = TestServer::start_with(|config| config.database_url = Some(direct_url)).await;
    let admin = publisher.admin_token(Role::SuperAdmin, None).await;
    let user = cut_off.login(Some(13)).await;
    let mut socket = connect_acknowledged(&cut_off).await;
    subscribe_and_sync(&publisher, &admin, &mut socket).await;

    forwarder.cut().await;
    let during = publish(&publisher, &admin, "published during the outage").await;
    tokio::time::sleep(outage).await;
    forwarder.restore().await;
    wait_until_serving(&cut_off, &user).await;

    // The listener's pool retries with a backoff of at most 6 s (a fifth of its 30 s timeout).
    let message = timeout(Duration::from_secs(20), next_message(&mut socket))
        .await
        .expect("the notice published during the outage never arrived")
        .expect("socket closed");
    assert_eq!(notice_id(&message), during, "{message}");
    let after = publish(&publisher, &admin, "published after the outage").await;
    let message = receive(&mut socket).await.expect("socket closed");
    assert_eq!(notice_id(&message), after, "{message}");
    assert_no_further_message(&mut socket).await;
}

#[tokio::test]
async fn notice_published_during_short_outage_arrives() {
    if !postgres_available("notice_published_during_short_outage_arrives") {
        return;
    }
    notice_published_during_outage_arrives(Duration::from_secs(3)).await;
}

/// sqlx's listener pool waits 30 s (its default acquire timeout) for a connection before it
/// gives up and returns an error, so an outage longer than that takes the listener's error path.
#[tokio::test]
async fn notice_published_during_long_outage_arrives() {
    if !postgres_available("notice_published_during_long_outage_arrives") {
        return;
    }
    notice_published_during_outage_arrives(Duration::from_secs(40)).await;
}

/// Replicas of a new version start together and each applies the pending migrations at start,
/// as `mamori serve` does.
#[tokio::test]
async fn migrations_from_replicas_starting_together_succeed() {
    if !postgres_available("migrations_from_replicas_starting_together_succeed") {
        return;
    }
    let database = TestDatabase::create().await.unwrap();
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(sea_orm::Database::connect(&database.url).await.unwrap());
    }

    let results = futures::future::join_all(replicas.iter().map(mamori::db::migrate)).await;

    for (replica, result) in results.iter().enumerate() {
        assert!(
            result.is_ok(),
            "replica {replica} failed to migrate: {:#}",
            result.as_ref().unwrap_err()
        );
    }
    for replica in replicas {
        let _ = replica.close().await;
    }
}

#[test]
fn sample_reads_prometheus_text() {
    let text = "# TYPE a counter\na{x=\"1\",y=\"2\"} 3\na{x=\"1\",y=\"3\"} 4\nb 5\nab 6\n";
    assert_eq!(sample(text, "a", &[("x", "1")]), Some(7.0));
    assert_eq!(sample(text, "a", &[("y", "3")]), Some(4.0));
    assert_eq!(sample(text, "b", &[]), Some(5.0));
    assert_eq!(sample(text, "a", &[("x", "2")]), None);
}
