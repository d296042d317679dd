//! The HTTP router: `/graphql`, `/graphql/ws`, `/exports/{file}`, `/healthz` and `/readyz`.

mod exports;
mod graphql;
mod nesting;

use std::time::Duration;

use axum::{
    extract::{MatchedPath, Request, State},
    http::{HeaderName, StatusCode},
    middleware::{self, Next},
    response::Response,
    routing::get,
    Router,
};
use tower_http::{
    limit::RequestBodyLimitLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::TraceLayer,
};

use crate::app::App;

/// Header carrying the request id, set by a proxy or generated here, and echoed in the response.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Builds the router over the application state.
pub fn router(app: App) -> Router {
    let schema = app.schema();
    let max_body_bytes = app.config.max_body_bytes;
    Router::new()
        .route("/graphql", get(graphql::get_graphql).post(graphql::post_graphql))
        .route("/graphql/ws", get(graphql::websocket))
        .route("/exports/{file}", get(exports::download))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(|| async { crate::metrics::render() }))
        .with_state(graphql::HttpState { app, schema })
        .layer(RequestBodyLimitLayer::new(max_body_bytes))
        .layer(middleware::from_fn(record_request))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &axum::http::Request<_>| {
                let request_id = request
                    .headers()
                    .get(REQUEST_ID_HEADER)
                    .and_then(|value| value.to_str().ok())
                    .unwrap_or("-");
                tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id)
            }),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID_HEADER))
        .layer(SetRequestIdLayer::new(REQUEST_ID_HEADER, MakeRequestUuid))
}

/// How long each readiness check may take.
const READY_TIMEOUT: Duration = Duration::from_secs(1);

/// Reports whether the database and the export store respond within a second each.
async fn ready(State(state): State<graphql::HttpState>) -> (StatusCode, &'static str) {
    match tokio::time::timeout(READY_TIMEOUT, state.app.db.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness check failed: database");
            return (StatusCode::SERVICE_UNAVAILABLE, "database unavailable");
        }
        Err(_) => {
            tracing::warn!("readiness check failed: database timed out");
            return (StatusCode::SERVICE_UNAVAILABLE, "database timed out");
        }
    }
    match tokio::time::timeout(READY_TIMEOUT, state.app.exports.check_ready()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready"),
        Ok(Err(error)) => {
            tracing::warn!(
                error = format!("{error:#}"),
                "readiness check failed: export store"
            );
            (StatusCode::SERVICE_UNAVAILABLE, "export store unavailable")
        }
        Err(_) => {
            tracing::warn!(store = %state.app.exports, "readiness check failed: export store timed out");
            (StatusCode::SERVICE_UNAVAILABLE, "export store timed out")
        }
    }
}

/// Counts each request by route and status, and records its latency.
async fn record_request(request: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    // The matched route, not the raw path, so the number of label values stays bounded.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("mamori_http_requests_total", "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("mamori_http_request_duration_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}
