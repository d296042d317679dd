//! Prefecture notice subscriptions over `graphql-transport-ws` and the legacy `graphql-ws`.

mod common;

use std::time::Duration;

use common::TestServer;
use futures::{SinkExt, StreamExt};
use mamori::auth::Role;
use serde_json::{json, Value};
use tokio::{net::TcpStream, time::timeout};
use tokio_tungstenite::{
    tungstenite::{client::IntoClientRequest, http::HeaderValue, Message},
    MaybeTlsStream, WebSocketStream,
};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

const PUBLISH: &str = "mutation($p: Int!, $m: String!) { publishPrefectureNotice(input: {prefecture: $p, message: $m}) { id } }";
const SUBSCRIBE: &str = "subscription { prefectureNotices(prefecture: 13) { id message prefecture { code nameEn } publishedAt } }";

/// Bounds every wait, so a missing message fails the test instead of hanging it.
const WAIT: Duration = Duration::from_secs(10);

async fn connect(server: &TestServer, protocol: &str) -> Socket {
    let mut request = format!("ws://{}/graphql/ws", server.address)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_str(protocol).unwrap(),
    );
    let (socket, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], protocol);
    socket
}

async fn send(socket: &mut Socket, message: Value) {
    socket
        .send(Message::text(message.to_string()))
        .await
        .unwrap();
}

/// Returns the next JSON message, skipping keep-alives, or `None` when the socket closes.
async fn receive(socket: &mut Socket) -> Option<Value> {
    loop {
        match timeout(WAIT, socket.next())
            .await
            .expect("timed out waiting for a message")?
        {
            Ok(Message::Text(text)) => {
                let message: Value = serde_json::from_str(&text).unwrap();
                if message["type"] != "ka" && message["type"] != "ping" && message["type"] != "pong"
                {
                    return Some(message);
                }
            }
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

async fn publish(server: &TestServer, admin: &str, prefecture: i32, message: &str) -> String {
    let body = server
        .graphql(
            Some(admin),
            PUBLISH,
            json!({ "p": prefecture, "m": message }),
        )
        .await;
    body["data"]["publishPrefectureNotice"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("publish failed: {body}"))
        .to_owned()
}

/// Publishes warm-up notices to prefecture 13 until the subscriber receives one, so the
/// subscription is known to be live without guessing a delay.
async fn wait_until_live(server: &TestServer, admin: &str, socket: &mut Socket, data_type: &str) {
    for attempt in 0..50 {
        publish(server, admin, 13, &format!("warm-up {attempt}")).await;
        if let Ok(Some(message)) = timeout(Duration::from_millis(200), receive(socket)).await {
            assert_eq!(message["type"], data_type, "{message}");
            return;
        }
    }
    panic!("the subscription never delivered a warm-up notice");
}

#[tokio::test]
async fn transport_ws_delivers_only_subscribed_prefecture() {
    let server = TestServer::start().await;
    let admin = server.admin_token(Role::SuperAdmin, None).await;
    let user = server.login(Some(13)).await;
    let mut socket = connect(&server, "graphql-transport-ws").await;
    send(&mut socket, json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {user}") } })).await;
    assert_eq!(
        receive(&mut socket).await.unwrap()["type"],
        "connection_ack"
    );
    send(
        &mut socket,
        json!({ "id": "1", "type": "subscribe", "payload": { "query": SUBSCRIBE } }),
    )
    .await;
    wait_until_live(&server, &admin, &mut socket, "next").await;

    publish(&server, &admin, 27, "for Osaka").await;
    let tokyo_id = publish(&server, &admin, 13, "for Tokyo").await;
    let message = receive(&mut socket).await.unwrap();
    assert_eq!(message["type"], "next");
    assert_eq!(message["id"], "1");
    let notice = &message["payload"]["data"]["prefectureNotices"];
    assert_eq!(notice["id"], tokyo_id.as_str());
    assert_eq!(notice["message"], "for Tokyo");
    assert_eq!(notice["prefecture"]["nameEn"], "Tokyo");
}

#[tokio::test]
async fn legacy_graphql_ws_delivers_notices() {
    let server = TestServer::start().await;
    let admin = server.admin_token(Role::SuperAdmin, None).await;
    let mut socket = connect(&server, "graphql-ws").await;
    send(
        &mut socket,
        json!({ "type": "connection_init", "payload": {} }),
    )
    .await;
    assert_eq!(
        receive(&mut socket).await.unwrap()["type"],
        "connection_ack"
    );
    send(
        &mut socket,
        json!({ "id": "7", "type": "start", "payload": { "query": SUBSCRIBE } }),
    )
    .await;
    wait_until_live(&server, &admin, &mut socket, "data").await;

    publish(&server, &admin, 1, "for Hokkaido").await;
    publish(&server, &admin, 13, "second for Tokyo").await;
    let message = receive(&mut socket).await.unwrap();
    assert_eq!(message["type"], "data");
    assert_eq!(message["id"], "7");
    assert_eq!(
        message["payload"]["data"]["prefectureNotices"]["message"],
        "second for Tokyo"
    );
}

#[tokio::test]
async fn invalid_token_in_connection_init_is_rejected() {
    let server = TestServer::start().await;
    let mut socket = connect(&server, "graphql-transport-ws").await;
    send(
        &mut socket,
        json!({ "type": "connection_init", "payload": { "Authorization": "Bearer forged" } }),
    )
    .await;
    let closed = loop {
        match timeout(WAIT, socket.next())
            .await
            .expect("timed out waiting for the close")
        {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(Message::Text(text))) => panic!("expected a close, got {text}"),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => break None,
        }
    };
    let frame = closed.expect("the server closes with a code");
    assert_eq!(u16::from(frame.code), 4403);
}

#[tokio::test]
async fn subscription_rejects_invalid_prefecture() {
    let server = TestServer::start().await;
    let mut socket = connect(&server, "graphql-transport-ws").await;
    send(&mut socket, json!({ "type": "connection_init" })).await;
    assert_eq!(
        receive(&mut socket).await.unwrap()["type"],
        "connection_ack"
    );
    let query = "subscription { prefectureNotices(prefecture: 0) { id } }";
    send(
        &mut socket,
        json!({ "id": "1", "type": "subscribe", "payload": { "query": query } }),
    )
    .await;
    let message = receive(&mut socket).await.unwrap();
    let error = match message["type"].as_str() {
        Some("error") => message["payload"][0].clone(),
        Some("next") => message["payload"]["errors"][0].clone(),
        _ => panic!("expected an error: {message}"),
    };
    assert_eq!(error["extensions"]["code"], "BAD_USER_INPUT", "{message}");
}

#[tokio::test]
async fn websocket_without_graphql_subprotocol_is_refused() {
    let server = TestServer::start().await;
    let request = format!("ws://{}/graphql/ws", server.address)
        .into_client_request()
        .unwrap();
    assert!(tokio_tungstenite::connect_async(request).await.is_err());
}

#[tokio::test]
async fn legacy_invalid_token_gets_connection_error() {
    let server = TestServer::start().await;
    let mut socket = connect(&server, "graphql-ws").await;
    send(
        &mut socket,
        json!({ "type": "connection_init", "payload": { "authorization": "Bearer forged" } }),
    )
    .await;
    let message = receive(&mut socket).await.unwrap();
    assert_eq!(message["type"], "connection_error", "{message}");
    assert!(
        message["payload"]["message"]
            .as_str()
            .unwrap()
            .contains("invalid access token"),
        "{message}"
    );
}

#[tokio::test]
async fn deeply_nested_subscription_closes_connection() {
    let server = TestServer::start().await;
    let mut socket = connect(&server, "graphql-transport-ws").await;
    send(&mut socket, json!({ "type": "connection_init" })).await;
    assert_eq!(
        receive(&mut socket).await.unwrap()["type"],
        "connection_ack"
    );
    let depth = 5_000;
    let query = format!(
        "subscription {{ prefectureNotices(prefecture: {}1{}) {{ id }} }}",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    send(
        &mut socket,
        json!({ "id": "1", "type": "subscribe", "payload": { "query": query } }),
    )
    .await;
    let frame = loop {
        match timeout(WAIT, socket.next())
            .await
            .expect("timed out waiting for the close")
        {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => break None,
        }
    };
    assert_eq!(
        u16::from(frame.expect("the server closes with a code").code),
        4400
    );
    let alive = server
        .graphql(None, "{ prefecture(code: 1) { code } }", json!({}))
        .await;
    assert_eq!(alive["data"]["prefecture"]["code"], 1);
}
