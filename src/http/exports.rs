//! `GET /exports/{file}`: published export files for logged-in callers, with ETag revalidation.
//!
//! When the files are in a bucket, the handler redirects to their public URL instead of relaying
//! them. The CDN serves them closer to the phones, and old app versions that request
//! `/exports/{file}` keep working.

use std::time::UNIX_EPOCH;

use axum::{
    body::Body,
    extract::{Path, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use tokio_util::io::ReaderStream;

use super::graphql::HttpState;
use crate::{
    auth::Caller,
    storage::{self, ExportStore, S3Bucket},
};

/// Clients may reuse a file for a minute before revalidating it with its ETag.
const CACHE_CONTROL: &str = "private, max-age=60";

/// Streams a published export file, or returns 304 when the client's copy is current. With a
/// bucket, redirects to the file's public URL.
pub async fn download(
    State(state): State<HttpState>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Response {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    match Caller::from_authorization(authorization, &state.app.keys, state.app.clock.now()) {
        Caller::User { .. } | Caller::Admin { .. } => {}
        Caller::Anonymous => {
            return unauthorized("log in first: export files need an access token")
        }
        Caller::Invalid(message) => return unauthorized(&message),
    }
    let folder = match &state.app.exports {
        ExportStore::Folder(folder) => folder,
        ExportStore::Bucket(bucket) => return redirect_to_bucket(bucket, &file),
    };
    let Some(path) = folder.path_of(&file) else {
        return not_found();
    };
    let opened = match tokio::fs::File::open(&path).await {
        Ok(opened) => opened,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return not_found(),
        Err(error) => {
            tracing::error!(%error, file, "failed to open export file");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let metadata = match opened.metadata().await {
        Ok(metadata) => metadata,
        Err(error) => {
            tracing::error!(%error, file, "failed to read export file metadata");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    // A published file is never modified in place, only replaced by rename, so its size and
    // modification time identify its content.
    let modified = metadata
        .modified()
        .ok()
        .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
        .unwrap_or_default();
    let etag = format!("\"{:x}-{:x}\"", metadata.len(), modified.as_nanos());
    let content_type = storage::content_type_of(&file);
    let mut response_headers = HeaderMap::new();
    response_headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(CACHE_CONTROL),
    );
    if let Ok(value) = HeaderValue::from_str(&etag) {
        response_headers.insert(header::ETAG, value);
    }
    if if_none_match(&headers, &etag) {
        return (StatusCode::NOT_MODIFIED, response_headers).into_response();
    }
    response_headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response_headers.insert(header::CONTENT_LENGTH, HeaderValue::from(metadata.len()));
    (
        StatusCode::OK,
        response_headers,
        Body::from_stream(ReaderStream::new(opened)),
    )
        .into_response()
}

/// Redirects to the public URL of a file in the bucket. The redirect is temporary (307) because
/// the operator may move the CDN. A name that is valid but not published gets the CDN's 404.
fn redirect_to_bucket(bucket: &S3Bucket, file: &str) -> Response {
    if !storage::is_valid_name(file) {
        return not_found();
    }
    match HeaderValue::from_str(&bucket.download_url(file)) {
        Ok(location) => (
            StatusCode::TEMPORARY_REDIRECT,
            [(header::LOCATION, location)],
        )
            .into_response(),
        Err(error) => {
            tracing::error!(%error, file, "public URL of an export file is not a valid header");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Returns whether `If-None-Match` lists `etag` or is `*`.
fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|candidate| candidate.trim().trim_start_matches("W/"))
        .any(|candidate| candidate == etag || candidate == "*")
}

fn unauthorized(message: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        message.to_owned(),
    )
        .into_response()
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "export file not found").into_response()
}
