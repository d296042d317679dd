//! The export of verified diagnosis keys as files the app downloads.
//!
//! [`run`] streams the exportable keys from the database, sorted by key bytes
//! so upload order does not show, into `diagnosis-keys.json.gz`, then
//! publishes `index.json` last. The same clock and data give the same bytes.

use std::{
    io::{self, Write},
    path::PathBuf,
};

use anyhow::Context;
use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use flate2::{write::GzEncoder, Compression};
use futures::StreamExt;
use sea_orm::{
    sea_query::Expr, ColumnTrait, DatabaseConnection, EntityTrait, JoinType, QueryFilter,
    QueryOrder, QuerySelect, RelationTrait,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{
    diagnosis_keys::{interval_number, INTERVALS_PER_DAY},
    entity::{
        diagnosis_key_uploads::{self, UploadStatus},
        diagnosis_keys,
    },
    storage::ExportStore,
};

/// Name of the published index.
pub const INDEX_FILE: &str = "index.json";
/// Name of the gzip-compressed JSON file of keys.
pub const KEYS_FILE: &str = "diagnosis-keys.json.gz";

/// Which keys an export contains.
#[derive(Debug, Clone)]
pub struct ExportRules {
    /// Days after a key's period ends during which it is exported.
    pub retention_days: u32,
    /// Time after a key's period ends before it may be exported.
    pub embargo: std::time::Duration,
}

/// The published index of export files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportIndex {
    pub generated_at: DateTime<Utc>,
    pub files: Vec<ExportFile>,
}

/// One published export file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportFile {
    pub name: String,
    /// URL to download the file from: `/exports/{name}` on this server, or an absolute URL
    /// under `MAMORI_EXPORT_PUBLIC_URL` when the files are in a bucket.
    pub path: String,
    pub size: u64,
    /// Hex SHA-256 of the file's bytes.
    pub sha256: String,
    pub key_count: u64,
}

/// A key as it appears in the exported JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportedKey {
    pub key_data: String,
    pub rolling_start_interval_number: i64,
    pub rolling_period: i32,
    pub transmission_risk_level: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report_type: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub days_since_onset_of_symptoms: Option<i32>,
}

/// Rows sent from the database stream to the file writer at a time.
const BATCH_SIZE: usize = 1_000;

/// Writes the export files for time `now` and publishes their index.
pub async fn run(
    db: &DatabaseConnection,
    store: &ExportStore,
    rules: &ExportRules,
    now: DateTime<Utc>,
) -> anyhow::Result<ExportIndex> {
    let generated_at = DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now);
    let now_interval = interval_number(now.timestamp());
    let embargo_intervals = (rules.embargo.as_secs() as i64 + 599) / 600;
    let latest_end = now_interval - embargo_intervals;
    let earliest_end = now_interval - i64::from(rules.retention_days) * INTERVALS_PER_DAY;
    let end = Expr::col((
        diagnosis_keys::Entity,
        diagnosis_keys::Column::RollingStartIntervalNumber,
    ))
    .add(Expr::col((
        diagnosis_keys::Entity,
        diagnosis_keys::Column::RollingPeriod,
    )));

    let temporary = store.temporary_path(KEYS_FILE);
    let (sender, receiver) = tokio::sync::mpsc::channel::<Vec<diagnosis_keys::Model>>(4);
    let writer = {
        let temporary = temporary.clone();
        let header = format!(
            r#"{{"generatedAt":"{}","keys":["#,
            generated_at.to_rfc3339_opts(SecondsFormat::Secs, true)
        );
        tokio::task::spawn_blocking(move || write_keys_file(temporary, header, receiver))
    };

    let streamed = async {
        let mut rows = diagnosis_keys::Entity::find()
            .join(JoinType::InnerJoin, diagnosis_keys::Relation::Upload.def())
            .filter(diagnosis_key_uploads::Column::Status.eq(UploadStatus::Verified))
            .filter(Expr::expr(end.clone()).lte(latest_end))
            .filter(Expr::expr(end).gte(earliest_end))
            .order_by_asc(diagnosis_keys::Column::KeyData)
            .order_by_asc(diagnosis_keys::Column::Id)
            .stream(db)
            .await
            .context("failed to query exportable keys")?;
        let mut batch = Vec::with_capacity(BATCH_SIZE);
        while let Some(row) = rows.next().await {
            batch.push(row.context("failed to read an exportable key")?);
            if batch.len() == BATCH_SIZE
                && sender
                    .send(std::mem::replace(
                        &mut batch,
                        Vec::with_capacity(BATCH_SIZE),
                    ))
                    .await
                    .is_err()
            {
                break;
            }
        }
        if !batch.is_empty() {
            let _ = sender.send(batch).await;
        }
        drop(sender);
        anyhow::Ok(())
    }
    .await;
    let written = writer.await.context("export writer panicked")?;
    let (size, sha256, key_count) = match (streamed, written) {
        (Ok(()), Ok(written)) => written,
        (Err(error), _) | (_, Err(error)) => {
            let _ = std::fs::remove_file(&temporary);
            return Err(error);
        }
    };
    // The keys file is published whole before the index that names it, so an index never lists
    // a file that is missing or half written.
    store
        .publish(&temporary, KEYS_FILE)
        .await
        .with_context(|| format!("failed to publish {KEYS_FILE}"))?;

    let index = ExportIndex {
        generated_at,
        files: vec![ExportFile {
            name: KEYS_FILE.into(),
            path: store.download_url(KEYS_FILE),
            size,
            sha256,
            key_count,
        }],
    };
    let index_bytes = serde_json::to_vec_pretty(&index)?;
    // NOTE: The file names are fixed, so when this write fails after the keys file was replaced,
    // the old index lists the old size and SHA-256 until the next run succeeds.
    store
        .write_whole(INDEX_FILE, index_bytes)
        .await
        .with_context(|| format!("failed to publish {INDEX_FILE}"))?;
    Ok(index)
}

/// Reads the published index, or `None` before the first export.
pub async fn read_index(store: &ExportStore) -> anyhow::Result<Option<ExportIndex>> {
    let Some(bytes) = store
        .read(INDEX_FILE)
        .await
        .context("failed to read the export index")?
    else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .context("failed to parse the export index")
        .map(Some)
}

/// Writes the gzip JSON file from batches of rows, skipping repeated key bytes, and returns its
/// size, SHA-256 and key count.
fn write_keys_file(
    path: PathBuf,
    header: String,
    mut receiver: tokio::sync::mpsc::Receiver<Vec<diagnosis_keys::Model>>,
) -> anyhow::Result<(u64, String, u64)> {
    let file = std::fs::File::create(&path)
        .with_context(|| format!("failed to create {}", path.display()))?;
    let hashing = HashingWriter {
        inner: io::BufWriter::with_capacity(1 << 16, file),
        hasher: Sha256::new(),
        size: 0,
    };
    // The gzip header carries no name or time, so the bytes depend on the keys alone.
    // serde_json writes each key in many small pieces, and flate2 1.1 with its miniz_oxide
    // backend zero-fills a 32 KiB output buffer on every write, so the writes are buffered.
    let mut gzip =
        io::BufWriter::with_capacity(1 << 16, GzEncoder::new(hashing, Compression::default()));
    gzip.write_all(header.as_bytes())?;
    let mut count: u64 = 0;
    let mut previous: Option<Vec<u8>> = None;
    while let Some(batch) = receiver.blocking_recv() {
        for row in batch {
            if previous.as_deref() == Some(row.key_data.as_slice()) {
                continue;
            }
            if count > 0 {
                gzip.write_all(b",")?;
            }
            serde_json::to_writer(&mut gzip, &exported(&row))?;
            count += 1;
            previous = Some(row.key_data);
        }
    }
    gzip.write_all(b"]}")?;
    let mut hashing = gzip
        .into_inner()
        .map_err(io::IntoInnerError::into_error)?
        .finish()?;
    hashing.inner.flush()?;
    Ok((hashing.size, hex::encode(hashing.hasher.finalize()), count))
}

fn exported(row: &diagnosis_keys::Model) -> ExportedKey {
    ExportedKey {
        key_data: base64::engine::general_purpose::STANDARD.encode(&row.key_data),
        rolling_start_interval_number: row.rolling_start_interval_number,
        rolling_period: row.rolling_period,
        transmission_risk_level: row.transmission_risk_level,
        report_type: row.report_type,
        days_since_onset_of_symptoms: row.days_since_onset_of_symptoms,
    }
}

/// Passes bytes through while counting and hashing them.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(bytes)?;
        self.hasher.update(&bytes[..written]);
        self.size += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
