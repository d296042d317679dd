//! The whole flow from phones' logins to every phone finding the exported keys, and prefecture
//! notices reaching only their prefecture's subscribers.

mod common;

use std::collections::BTreeSet;

use common::{daily_keys, exported_key_data, TestServer};
use futures::{stream, SinkExt, StreamExt};
use mamori::auth::Role;
use serde_json::{json, Value};
use tokio_tungstenite::{
    tungstenite::{client::IntoClientRequest, http::HeaderValue, Message},
    MaybeTlsStream, WebSocketStream,
};

const DEVICES: usize = 200;
const UPLOADERS: usize = 20;
/// Maximum requests in flight at once, twice the default database pool of 16 connections.
const CONCURRENCY: usize = 32;
const PREFECTURES: [i32; 5] = [1, 13, 23, 27, 47];
/// Uploaders that withdraw their upload before the export.
const WITHDRAWING: [usize; 2] = [3, 11];
/// The uploader that also sends a key of the current day, still under embargo at export time.
const CURRENT_DAY_UPLOADER: usize = 19;

struct Device {
    token: String,
    prefecture: i32,
}

/// Logs a device in, then picks its prefecture in its profile.
async fn log_in_device(server: &TestServer, prefecture: i32) -> Device {
    let token = server.login(None).await;
    let body = server
        .graphql(
            Some(&token),
            "mutation($p: Int) { updateProfile(input: {prefecture: $p}) { prefecture { code } } }",
            json!({ "p": prefecture }),
        )
        .await;
    assert_eq!(
        body["data"]["updateProfile"]["prefecture"]["code"], prefecture,
        "{body}"
    );
    Device { token, prefecture }
}

/// Returns the days, counted back from today, of the keys uploader `index` sends.
fn upload_days(index: usize) -> Vec<i64> {
    let oldest = 1 + (index % 14) as i64;
    let mut days: Vec<i64> = (1..=oldest).collect();
    if index == CURRENT_DAY_UPLOADER {
        days.insert(0, 0);
    }
    days
}

fn key_data(keys: &[Value]) -> Vec<String> {
    keys.iter()
        .map(|key| key["keyData"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn phones_find_exported_keys() {
    let server = TestServer::start().await;
    let now = server.clock.now();

    let mut devices: Vec<(usize, Device)> = stream::iter(0..DEVICES)
        .map(|index| {
            let server = &server;
            async move {
                let prefecture = PREFECTURES[index % PREFECTURES.len()];
                (index, log_in_device(server, prefecture).await)
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    devices.sort_by_key(|(index, _)| *index);
    let devices: Vec<Device> = devices.into_iter().map(|(_, device)| device).collect();

    let mut expected = BTreeSet::new();
    let mut embargoed = Vec::new();
    let mut withdrawn = Vec::new();
    let mut uploads = Vec::new();
    for (index, device) in devices.iter().enumerate().take(UPLOADERS) {
        let days = upload_days(index);
        let keys = daily_keys(index as u32, &days, now);
        let data = key_data(&keys);
        if WITHDRAWING.contains(&index) {
            withdrawn.extend(data);
        } else if index == CURRENT_DAY_UPLOADER {
            embargoed.push(data[0].clone());
            expected.extend(data[1..].iter().cloned());
        } else {
            expected.extend(data);
        }
        let prefecture = i16::try_from(device.prefecture).unwrap();
        let code = server.issue_tokens(prefecture, 1).await.remove(0);
        uploads.push((device, code, keys));
    }
    let accepted: Vec<Value> = stream::iter(&uploads)
        .map(|(device, code, keys)| server.upload_keys(&device.token, code, keys))
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    for body in &accepted {
        assert_eq!(
            body["data"]["uploadDiagnosisKeys"]["status"], "VERIFIED",
            "{body}"
        );
    }

    for index in WITHDRAWING {
        let body = server
            .graphql(
                Some(&devices[index].token),
                "mutation { withdrawDiagnosisKeys }",
                json!({}),
            )
            .await;
        assert_eq!(
            body["data"]["withdrawDiagnosisKeys"],
            upload_days(index).len(),
            "{body}"
        );
    }

    let index = mamori::jobs::export_keys(&server.app).await.unwrap();
    assert_eq!(index.files[0].key_count, expected.len() as u64);
    assert!(!withdrawn.is_empty());
    assert!(!embargoed.is_empty());

    let downloads: Vec<Vec<String>> = stream::iter(&devices)
        .map(|device| async { exported_key_data(&server.download_export(&device.token).await) })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    assert_eq!(downloads.len(), DEVICES);
    let expected: Vec<String> = expected.into_iter().collect();
    for exported in downloads {
        let found: BTreeSet<String> = exported.iter().cloned().collect();
        assert_eq!(found.len(), exported.len(), "no key appears twice");
        assert_eq!(found.into_iter().collect::<Vec<_>>(), expected);
    }
}

type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

async fn send_json(socket: &mut Socket, message: Value) {
    socket
        .send(Message::text(message.to_string()))
        .await
        .unwrap();
}

/// Returns the next `graphql-transport-ws` message other than ping and pong, or `None` when
/// none arrives within `wait`.
async fn receive_json(socket: &mut Socket, wait: std::time::Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let frame = tokio::time::timeout_at(deadline, socket.next())
            .await
            .ok()?;
        let frame = frame.expect("the server closed the socket").unwrap();
        let Message::Text(text) = frame else {
            continue;
        };
        let message: Value = serde_json::from_str(&text).unwrap();
        if !matches!(message["type"].as_str(), Some("ping" | "pong")) {
            return Some(message);
        }
    }
}

async fn publish(server: &TestServer, admin: &str, prefecture: i32, message: &str) -> String {
    let body = server
        .graphql(
            Some(admin),
            "mutation($input: PublishPrefectureNoticeInput!) { publishPrefectureNotice(input: $input) { id } }",
            json!({ "input": { "prefecture": prefecture, "message": message } }),
        )
        .await;
    body["data"]["publishPrefectureNotice"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("publish failed: {body}"))
        .to_owned()
}

#[tokio::test]
async fn subscriber_receives_only_its_prefecture() {
    let server = TestServer::start().await;
    let admin = server.admin_token(Role::SuperAdmin, None).await;

    let mut request = format!("ws://{}/graphql/ws", server.address)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    let (mut socket, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(
        response.headers()["sec-websocket-protocol"],
        "graphql-transport-ws"
    );
    send_json(
        &mut socket,
        json!({ "type": "connection_init", "payload": {} }),
    )
    .await;
    let ack = receive_json(&mut socket, std::time::Duration::from_secs(10)).await;
    assert_eq!(ack.unwrap()["type"], "connection_ack");
    send_json(
        &mut socket,
        json!({
            "id": "1",
            "type": "subscribe",
            "payload": {
                "query": "subscription { prefectureNotices(prefecture: 13) { id message prefecture { code } } }",
            },
        }),
    )
    .await;

    // The protocol does not confirm a subscription, so publish warm-up notices until one arrives.
    let mut live = false;
    for attempt in 0..50 {
        publish(&server, &admin, 13, &format!("warm-up {attempt}")).await;
        if let Some(message) =
            receive_json(&mut socket, std::time::Duration::from_millis(200)).await
        {
            assert_eq!(message["type"], "next", "{message}");
            live = true;
            break;
        }
    }
    assert!(live, "the subscription never delivered a warm-up notice");

    publish(&server, &admin, 27, "Osaka: clinics open late").await;
    let tokyo_id = publish(&server, &admin, 13, "Tokyo: clinics open late").await;

    let notice = loop {
        let message = receive_json(&mut socket, std::time::Duration::from_secs(10))
            .await
            .expect("the Tokyo notice arrives");
        assert_eq!(message["type"], "next", "{message}");
        assert_eq!(message["id"], "1");
        let notice = message["payload"]["data"]["prefectureNotices"].clone();
        // Warm-up notices published before the first one arrived may still be on their way.
        if !notice["message"].as_str().unwrap().starts_with("warm-up") {
            break notice;
        }
    };
    assert_eq!(notice["message"], "Tokyo: clinics open late");
    assert_eq!(notice["id"], tokyo_id.as_str());
    assert_eq!(notice["prefecture"]["code"], 13);

    send_json(&mut socket, json!({ "id": "1", "type": "complete" })).await;
    socket.close(None).await.unwrap();
}
