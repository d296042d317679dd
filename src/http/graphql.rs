//! GraphQL over HTTP, following the GraphQL-over-HTTP specification, and over WebSocket.
//!
//! - A POST is executed only with `Content-Type: application/json`; anything else is 415, so a
//!   web page cannot forge a request with a form or plain-text body.
//! - A GET runs queries only; a mutation or subscription by GET is 405.
//! - The response media type follows `Accept`: `application/graphql-response+json` when the
//!   client asks for it, otherwise `application/json`. Under the former, a request that fails to
//!   parse or validate is 400 and has no `data`.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use async_graphql::{
    http::ALL_WEBSOCKET_PROTOCOLS,
    parser::types::{DocumentOperations, OperationType, Selection},
    Data, ErrorExtensionValues, ServerError, Variables,
};
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::{
    body::Bytes,
    extract::{
        ws::{CloseFrame, Message, WebSocketUpgrade},
        ConnectInfo, RawQuery, State,
    },
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use futures::{SinkExt, StreamExt};

use super::{nesting, REQUEST_ID_HEADER};
use crate::{app::App, auth::Caller, graphql::MamoriSchema, graphql::RequestContext};

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";
const JSON: &str = "application/json";

/// State of the HTTP handlers.
#[derive(Clone)]
pub struct HttpState {
    pub app: App,
    pub schema: MamoriSchema,
}

/// The media type of a response, chosen from the request's `Accept` header.
#[derive(Clone, Copy, PartialEq, Eq)]
enum MediaType {
    GraphqlResponseJson,
    Json,
}

impl MediaType {
    fn as_str(self) -> &'static str {
        match self {
            MediaType::GraphqlResponseJson => GRAPHQL_RESPONSE_JSON,
            MediaType::Json => JSON,
        }
    }
}

/// Picks the response media type, or `None` when the client accepts neither JSON type.
/// A missing header or a wildcard gets `application/json`, which every client reads.
fn negotiate(headers: &HeaderMap) -> Option<MediaType> {
    let Some(accept) = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
    else {
        return Some(MediaType::Json);
    };
    let mut best: Option<(f32, MediaType)> = None;
    for entry in accept.split(',') {
        let mut parts = entry.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default().to_ascii_lowercase();
        let quality = parts
            .filter_map(|parameter| parameter.strip_prefix("q="))
            .find_map(|value| value.parse::<f32>().ok())
            .unwrap_or(1.0);
        let candidate = match media.as_str() {
            GRAPHQL_RESPONSE_JSON => MediaType::GraphqlResponseJson,
            JSON | "application/*" | "*/*" => MediaType::Json,
            _ => continue,
        };
        let better = match best {
            None => true,
            Some((best_quality, best_type)) => {
                quality > best_quality
                    || (quality == best_quality
                        && candidate == MediaType::GraphqlResponseJson
                        && best_type != candidate)
            }
        };
        if quality > 0.0 && better {
            best = Some((quality, candidate));
        }
    }
    best.map(|(_, media_type)| media_type)
}

/// Parameters of a GraphQL GET request.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct GetParameters {
    query: Option<String>,
    operation_name: Option<String>,
    variables: Option<String>,
    extensions: Option<String>,
}

/// Handles `GET /graphql`.
pub async fn get_graphql(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(raw_query): RawQuery,
) -> Response {
    let Some(media_type) = negotiate(&headers) else {
        return not_acceptable();
    };
    let parameters: GetParameters =
        match serde_urlencoded::from_str(raw_query.as_deref().unwrap_or_default()) {
            Ok(parameters) => parameters,
            Err(error) => {
                return request_error(media_type, &format!("invalid query string: {error}"))
            }
        };
    let Some(query) = parameters.query else {
        return request_error(media_type, "missing `query` parameter");
    };
    let mut request = async_graphql::Request::new(query);
    request.operation_name = parameters.operation_name;
    if let Some(variables) = parameters.variables {
        match serde_json::from_str::<serde_json::Value>(&variables) {
            Ok(value @ serde_json::Value::Object(_)) => {
                request.variables = Variables::from_json(value)
            }
            Ok(serde_json::Value::Null) => {}
            _ => {
                return request_error(
                    media_type,
                    "invalid `variables` parameter: expected a JSON object",
                )
            }
        }
    }
    if let Some(extensions) = parameters.extensions {
        if serde_json::from_str::<serde_json::Value>(&extensions).is_err() {
            return request_error(
                media_type,
                "invalid `extensions` parameter: expected a JSON object",
            );
        }
    }
    execute(&state, &headers, peer, request, media_type, true).await
}

/// Handles `POST /graphql`.
pub async fn post_graphql(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    if !essence.eq_ignore_ascii_case(JSON) {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            [(header::ACCEPT, HeaderValue::from_static(JSON))],
            "unsupported Content-Type: send GraphQL requests as application/json",
        )
            .into_response();
    }
    let Some(media_type) = negotiate(&headers) else {
        return not_acceptable();
    };
    let request = match serde_json::from_slice::<async_graphql::Request>(&body) {
        Ok(request) => request,
        Err(error) => return request_error(media_type, &format!("invalid JSON body: {error}")),
    };
    execute(&state, &headers, peer, request, media_type, false).await
}

async fn execute(
    state: &HttpState,
    headers: &HeaderMap,
    peer: SocketAddr,
    mut request: async_graphql::Request,
    media_type: MediaType,
    is_get: bool,
) -> Response {
    if nesting::nests_deeper_than(&request.query, nesting::MAX_NESTING) {
        record_operation("invalid", "BAD_USER_INPUT", Instant::now());
        return request_error(
            media_type,
            &format!(
                "invalid query: brackets nest deeper than {} levels",
                nesting::MAX_NESTING
            ),
        );
    }
    let operation_name = request.operation_name.clone();
    let (operation_type, label) = match request.parsed_query() {
        Ok(document) => selected_operation(&document.operations, operation_name.as_deref()),
        Err(error) => {
            record_operation("invalid", "BAD_USER_INPUT", Instant::now());
            return graphql_errors(media_type, vec![error]);
        }
    };
    let started = Instant::now();

    match operation_type {
        Some(OperationType::Mutation | OperationType::Subscription) if is_get => {
            return (
                StatusCode::METHOD_NOT_ALLOWED,
                [(header::ALLOW, HeaderValue::from_static("POST"))],
                "only queries may be sent by GET; send mutations by POST and subscriptions over /graphql/ws",
            )
                .into_response();
        }
        Some(OperationType::Subscription) => {
            return request_error(
                media_type,
                "subscriptions are served over WebSocket at /graphql/ws",
            );
        }
        _ => {}
    }

    let request_id = request_id(headers);
    let now = state.app.clock.now();
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    let caller = Caller::from_authorization(authorization, &state.app.keys, now);
    let client = client_address(peer, headers, &state.app.config.trusted_proxies);
    let request = request.data(RequestContext {
        caller,
        client_address: Some(client),
        request_id,
    });

    let mut response = state.schema.execute(request).await;
    // Errors raised before execution (parse, validation, variables) have no path.
    let is_request_error = !response.errors.is_empty()
        && response.data == async_graphql::Value::Null
        && response.errors.iter().all(|error| error.path.is_empty());
    if is_request_error {
        record_operation("invalid", "BAD_USER_INPUT", started);
        return graphql_errors(media_type, std::mem::take(&mut response.errors));
    }
    for error in &mut response.errors {
        add_default_code(error);
    }
    let outcome = response
        .errors
        .first()
        .and_then(|error| error.extensions.as_ref())
        .and_then(|extensions| extensions.get("code"))
        .and_then(|code| match code {
            async_graphql::Value::String(code) => Some(code.clone()),
            _ => None,
        })
        .unwrap_or_else(|| "ok".to_owned());
    record_operation(&label, &outcome, started);
    json_response(StatusCode::OK, media_type, &response)
}

/// Returns the type of the operation the request selects, or `None` when it selects none, and a
/// metrics label of its type and first root field, such as `mutation:login`. Field names come
/// from the schema once the request validates, so the label values stay bounded.
fn selected_operation(
    operations: &DocumentOperations,
    name: Option<&str>,
) -> (Option<OperationType>, String) {
    let operation = match (operations, name) {
        (DocumentOperations::Single(operation), None) => Some(operation),
        (DocumentOperations::Single(_), Some(_)) => None,
        (DocumentOperations::Multiple(operations), Some(name)) => operations.get(name),
        (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => {
            operations.values().next()
        }
        (DocumentOperations::Multiple(_), None) => None,
    };
    let Some(operation) = operation else {
        return (None, "invalid".to_owned());
    };
    let kind = match operation.node.ty {
        OperationType::Query => "query",
        OperationType::Mutation => "mutation",
        OperationType::Subscription => "subscription",
    };
    let field =
        operation
            .node
            .selection_set
            .node
            .items
            .iter()
            .find_map(|selection| match &selection.node {
                Selection::Field(field) => Some(field.node.name.node.as_str().to_owned()),
                _ => None,
            });
    (
        Some(operation.node.ty),
        format!("{kind}:{}", field.unwrap_or_else(|| "fragment".to_owned())),
    )
}

/// Counts a GraphQL operation by label and outcome (`ok` or the first error's code), and records
/// its latency.
fn record_operation(label: &str, outcome: &str, started: Instant) {
    let label = label.to_owned();
    metrics::counter!("mamori_graphql_operations_total", "operation" => label.clone(), "outcome" => outcome.to_owned())
        .increment(1);
    metrics::histogram!("mamori_graphql_operation_duration_seconds", "operation" => label)
        .record(started.elapsed().as_secs_f64());
}

/// Errors without a code come from GraphQL itself (syntax, validation, input coercion), so they
/// are the client's.
fn add_default_code(error: &mut ServerError) {
    let extensions = error
        .extensions
        .get_or_insert_with(ErrorExtensionValues::default);
    if extensions.get("code").is_none() {
        extensions.set("code", "BAD_USER_INPUT");
    }
}

fn graphql_errors(media_type: MediaType, mut errors: Vec<ServerError>) -> Response {
    for error in &mut errors {
        add_default_code(error);
    }
    let status = match media_type {
        MediaType::GraphqlResponseJson => StatusCode::BAD_REQUEST,
        MediaType::Json => StatusCode::OK,
    };
    json_response(status, media_type, &serde_json::json!({ "errors": errors }))
}

/// A request that is not a well-formed GraphQL-over-HTTP request: 400 under either media type.
fn request_error(media_type: MediaType, message: &str) -> Response {
    let mut error = ServerError::new(message, None);
    add_default_code(&mut error);
    json_response(
        StatusCode::BAD_REQUEST,
        media_type,
        &serde_json::json!({ "errors": [error] }),
    )
}

fn not_acceptable() -> Response {
    (
        StatusCode::NOT_ACCEPTABLE,
        format!("not acceptable: this endpoint answers {GRAPHQL_RESPONSE_JSON} or {JSON}"),
    )
        .into_response()
}

fn json_response(
    status: StatusCode,
    media_type: MediaType,
    body: &impl serde::Serialize,
) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(media_type.as_str()),
            )],
            bytes,
        )
            .into_response(),
        Err(error) => {
            tracing::error!(%error, "failed to serialize a GraphQL response");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Time a client has to send `connection_init` after the upgrade.
const CONNECTION_INIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Handles `GET /graphql/ws`, speaking `graphql-transport-ws` and the legacy `graphql-ws`.
/// A `connection_init` payload of `{"Authorization": "Bearer <accessToken>"}` authenticates.
pub async fn websocket(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    let request_id = request_id(&headers);
    let transport_ws = selected_subprotocol(&headers) == Some("graphql-transport-ws");
    let client = client_address(peer, &headers, &state.app.config.trusted_proxies);
    let websockets = state.app.websockets.clone();
    // A WebSocket message is held to the same size as a request body.
    let max_message_bytes = state.app.config.max_body_bytes;
    upgrade
        .max_message_size(max_message_bytes)
        .max_frame_size(max_message_bytes)
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| {
            websockets.track_future(async move {
                let (mut sink, mut stream) = socket.split();
                // The first message is read here, so a bad token or a silent client gets the close
                // codes of graphql-transport-ws (4403, 4408). async-graphql would close with 1002.
                let first = match tokio::time::timeout(CONNECTION_INIT_TIMEOUT, stream.next()).await
                {
                    Ok(Some(Ok(message))) => message,
                    Ok(_) => return,
                    Err(_) => {
                        let _ = sink
                            .send(close_message(4408, "connection initialisation timeout"))
                            .await;
                        return;
                    }
                };
                let caller = match &first {
                    Message::Text(text) => init_caller(&state.app, text),
                    _ => Caller::Anonymous,
                };
                if let (Caller::Invalid(reason), true) = (&caller, transport_ws) {
                    tracing::debug!(request_id, reason, "websocket connection_init rejected");
                    let _ = sink.send(close_message(4403, "Forbidden")).await;
                    return;
                }
                tracing::debug!(request_id, "websocket connected");
                // A message with a too deeply nested query ends the input, and the connection then
                // closes with 4400, before the parser could overflow its stack on it.
                let too_deep = Arc::new(AtomicBool::new(false));
                let flag = too_deep.clone();
                let replayed = futures::stream::once(async move { Ok(first) })
                    .chain(stream)
                    .take_while(move |message| {
                        let deep = matches!(message, Ok(Message::Text(text)) if message_nests_too_deep(text));
                        if deep {
                            flag.store(true, Ordering::Relaxed);
                        }
                        futures::future::ready(!deep)
                    });
                // The protocol handler writes to a channel, so this task keeps the socket and can
                // send the close frame itself when the server shuts down.
                let (outgoing, mut to_send) = futures::channel::mpsc::channel::<Message>(16);
                let session = GraphQLWebSocket::new_with_pair(
                    outgoing,
                    replayed,
                    state.schema.clone(),
                    protocol,
                )
                .on_connection_init(move |_payload| async move {
                    if let Caller::Invalid(message) = &caller {
                        return Err(async_graphql::Error::new(message.clone()));
                    }
                    let mut data = Data::default();
                    data.insert(RequestContext {
                        caller,
                        client_address: Some(client),
                        request_id,
                    });
                    Ok(data)
                })
                .serve();
                let connections = metrics::gauge!("mamori_websocket_connections");
                connections.increment(1.0);
                let shutting_down = {
                    let forward = async {
                        while let Some(message) = to_send.next().await {
                            if sink.send(message).await.is_err() {
                                break;
                            }
                        }
                    };
                    tokio::select! {
                        _ = futures::future::join(session, forward) => false,
                        _ = state.app.shutdown.cancelled() => true,
                    }
                };
                if shutting_down {
                    let _ = sink.send(close_message(1001, "server shutting down")).await;
                } else if too_deep.load(Ordering::Relaxed) {
                    let _ = sink.send(close_message(4400, "query nests too deeply")).await;
                }
                connections.decrement(1.0);
            })
        })
}

/// Returns whether a WebSocket message carries a query nested deeper than the limit.
fn message_nests_too_deep(text: &str) -> bool {
    let Ok(message) = serde_json::from_str::<serde_json::Value>(text) else {
        return false;
    };
    message["payload"]["query"]
        .as_str()
        .is_some_and(|query| nesting::nests_deeper_than(query, nesting::MAX_NESTING))
}

/// Returns the request id set by `SetRequestIdLayer`, or an empty string.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Returns the GraphQL subprotocol the upgrade selects: the first one the client offers.
fn selected_subprotocol(headers: &HeaderMap) -> Option<&'static str> {
    let offered = headers.get(header::SEC_WEBSOCKET_PROTOCOL)?.to_str().ok()?;
    offered
        .split(',')
        .map(str::trim)
        .find_map(|protocol| match protocol {
            "graphql-transport-ws" => Some("graphql-transport-ws"),
            "graphql-ws" => Some("graphql-ws"),
            _ => None,
        })
}

/// Reads the caller from a `connection_init` message; any other first message is anonymous,
/// and the protocol handler rejects it.
fn init_caller(app: &App, text: &str) -> Caller {
    let Ok(message) = serde_json::from_str::<serde_json::Value>(text) else {
        return Caller::Anonymous;
    };
    if message["type"] != "connection_init" {
        return Caller::Anonymous;
    }
    let authorization = authorization_from_payload(&message["payload"]);
    Caller::from_authorization(authorization.as_deref(), &app.keys, app.clock.now())
}

fn close_message(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// Returns the client's address: the TCP peer, or, when the peer is a trusted proxy, the
/// nearest address in `X-Forwarded-For` that is not a trusted proxy itself.
fn client_address(peer: SocketAddr, headers: &HeaderMap, trusted: &[ipnet::IpNet]) -> IpAddr {
    let is_trusted = |address: &IpAddr| trusted.iter().any(|network| network.contains(address));
    if !is_trusted(&peer.ip()) {
        return peer.ip();
    }
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .collect();
    // Walk from the nearest hop; an entry that is not an address ends what can be trusted.
    for entry in entries.into_iter().rev() {
        match entry.trim().parse::<IpAddr>() {
            Ok(address) if is_trusted(&address) => continue,
            Ok(address) => return address,
            Err(_) => break,
        }
    }
    peer.ip()
}

/// Reads `Authorization` (any case) from a `connection_init` payload.
fn authorization_from_payload(payload: &serde_json::Value) -> Option<String> {
    let object = payload.as_object()?;
    let fields: HashMap<String, &serde_json::Value> = object
        .iter()
        .map(|(key, value)| (key.to_ascii_lowercase(), value))
        .collect();
    fields.get("authorization")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> Option<MediaType> {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        negotiate(&headers)
    }

    #[test]
    fn client_address_trusts_only_configured_proxies() {
        let proxies: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.9, 198.51.100.7, 10.1.2.3"),
        );
        let from_proxy: SocketAddr = "10.0.0.5:4000".parse().unwrap();
        let direct: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        assert_eq!(
            client_address(from_proxy, &headers, &proxies),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_address(direct, &headers, &proxies),
            direct.ip(),
            "a direct client cannot spoof"
        );
        assert_eq!(client_address(from_proxy, &headers, &[]), from_proxy.ip());
        assert_eq!(
            client_address(from_proxy, &HeaderMap::new(), &proxies),
            from_proxy.ip()
        );
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.9, garbage"),
        );
        assert_eq!(
            client_address(from_proxy, &headers, &proxies),
            from_proxy.ip(),
            "garbage ends the walk"
        );
    }

    #[test]
    fn negotiate_prefers_graphql_response_json() {
        assert!(
            accept("application/graphql-response+json") == Some(MediaType::GraphqlResponseJson)
        );
        assert!(
            accept("application/json, application/graphql-response+json")
                == Some(MediaType::GraphqlResponseJson)
        );
        assert!(
            accept("application/graphql-response+json;q=0.5, application/json")
                == Some(MediaType::Json)
        );
        assert!(accept("*/*") == Some(MediaType::Json));
        assert!(accept("text/html").is_none());
        assert!(negotiate(&HeaderMap::new()) == Some(MediaType::Json));
    }
}
