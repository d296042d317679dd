//! The index of published export files.

use async_graphql::{Context, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::{ContextExt, ResultExt};
use crate::{error::Error, exports};

/// The published export files and when they were generated.
#[derive(SimpleObject)]
pub struct ExportIndex {
    /// When the export job generated these files.
    pub generated_at: DateTime<Utc>,
    /// The files, each downloadable at its `path`: a path on this server needs the access token,
    /// an absolute URL (a CDN) does not.
    pub files: Vec<ExportFile>,
}

/// One published export file.
#[derive(SimpleObject)]
pub struct ExportFile {
    /// File name, such as `diagnosis-keys.json.gz`.
    pub name: String,
    /// URL to download the file from: a path on this server, such as
    /// `/exports/diagnosis-keys.json.gz`, or an absolute URL when the files are on a CDN.
    pub path: String,
    /// Size in bytes.
    pub size: i64,
    /// Hex SHA-256 of the file's bytes.
    pub sha256: String,
    /// Number of diagnosis keys in the file.
    pub key_count: i64,
}

#[derive(Default)]
pub struct ExportQuery;

#[Object]
impl ExportQuery {
    /// The latest published export, or null before the first export. Needs an access token.
    async fn export_index(
        &self,
        context: &Context<'_>,
    ) -> async_graphql::Result<Option<ExportIndex>> {
        context.request().caller.require_any().graphql(context)?;
        let index = exports::read_index(&context.app().exports)
            .await
            .map_err(Error::Internal)
            .graphql(context)?;
        Ok(index.map(|index| ExportIndex {
            generated_at: index.generated_at,
            files: index
                .files
                .into_iter()
                .map(|file| ExportFile {
                    name: file.name,
                    path: file.path,
                    size: i64::try_from(file.size).unwrap_or(i64::MAX),
                    sha256: file.sha256,
                    key_count: i64::try_from(file.key_count).unwrap_or(i64::MAX),
                })
                .collect(),
        }))
    }
}
