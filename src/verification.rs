//! Verification of PENDING uploads by the health authority's own service (`http` mode).
//!
//! For each pending upload the job POSTs `{"code", "uploadId", "keyCount", "uploadedAt"}` to
//! the configured URL and expects `200` with `{"status": "VERIFIED" | "REJECTED"}`. Any other
//! response, or none within the timeout, is retried with exponential backoff, and the upload stays
//! PENDING for the next run until it expires.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use sea_orm::{
    sea_query::Expr, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::entity::{
    diagnosis_key_uploads::{self, UploadStatus},
    diagnosis_keys,
};

/// Pending uploads asked about in one run; the rest wait for the next run.
const BATCH_SIZE: u64 = 200;
/// Wait before the second attempt; it doubles for each further attempt.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// Body of a request to the verification service.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationRequest {
    pub code: String,
    pub upload_id: Uuid,
    pub key_count: i32,
    pub uploaded_at: DateTime<Utc>,
}

/// Body of the service's response.
#[derive(Debug, Serialize, Deserialize)]
pub struct VerificationResponse {
    /// `VERIFIED` or `REJECTED`.
    pub status: String,
    /// Reason for a rejection, for the log.
    #[serde(default)]
    pub reason: Option<String>,
}

/// The service's decision on one upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Verified,
    Rejected(String),
}

/// A client of the verification service.
#[derive(Clone, Debug)]
pub struct Verifier {
    client: reqwest::Client,
    url: reqwest::Url,
    attempts: u32,
}

impl Verifier {
    /// Creates a client with a timeout per request and a number of attempts per upload.
    pub fn new(url: &str, timeout: Duration, attempts: u32) -> anyhow::Result<Self> {
        let url = reqwest::Url::parse(url).context("invalid MAMORI_VERIFICATION_URL")?;
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .context("failed to build the verification HTTP client")?;
        Ok(Verifier {
            client,
            url,
            attempts: attempts.max(1),
        })
    }

    /// Asks the service about one upload, retrying failures with exponential backoff.
    pub async fn decide(&self, request: &VerificationRequest) -> anyhow::Result<Decision> {
        let mut backoff = FIRST_BACKOFF;
        let mut last_error = None;
        for attempt in 1..=self.attempts {
            match self.ask(request).await {
                Ok(decision) => return Ok(decision),
                Err(error) => {
                    tracing::warn!(upload_id = %request.upload_id, attempt, error = format!("{error:#}"), "verification request failed");
                    last_error = Some(error);
                }
            }
            if attempt < self.attempts {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("no verification attempt was made")))
    }

    async fn ask(&self, request: &VerificationRequest) -> anyhow::Result<Decision> {
        let response = self
            .client
            .post(self.url.clone())
            .json(request)
            .send()
            .await
            .context("request failed")?;
        let status = response.status();
        if !status.is_success() {
            anyhow::bail!("verification service responded with HTTP {status}");
        }
        let answer: VerificationResponse =
            response.json().await.context("invalid response body")?;
        match answer.status.as_str() {
            "VERIFIED" => Ok(Decision::Verified),
            "REJECTED" => Ok(Decision::Rejected(answer.reason.unwrap_or_default())),
            other => anyhow::bail!("verification service returned unknown status {other:?}"),
        }
    }
}

/// Outcome counts of one run of the job.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RunSummary {
    pub verified: u64,
    pub rejected: u64,
    pub expired: u64,
    /// Uploads left PENDING because the service could not be asked.
    pub failed: u64,
}

/// Expires uploads pending longer than `pending_ttl`, then queries the service about the rest.
pub async fn run(
    db: &DatabaseConnection,
    verifier: &Verifier,
    now: DateTime<Utc>,
    pending_ttl: Duration,
) -> anyhow::Result<RunSummary> {
    let mut summary = RunSummary::default();
    let deadline = now - chrono::Duration::from_std(pending_ttl).context("invalid pending TTL")?;
    let expired: Vec<Uuid> = diagnosis_key_uploads::Entity::find()
        .select_only()
        .column(diagnosis_key_uploads::Column::Id)
        .filter(diagnosis_key_uploads::Column::Status.eq(UploadStatus::Pending))
        .filter(diagnosis_key_uploads::Column::CreatedAt.lte(deadline))
        .into_tuple()
        .all(db)
        .await?;
    for id in expired {
        if decide(db, id, UploadStatus::Expired, now).await? {
            summary.expired += 1;
        }
    }

    let pending = diagnosis_key_uploads::Entity::find()
        .filter(diagnosis_key_uploads::Column::Status.eq(UploadStatus::Pending))
        .order_by_asc(diagnosis_key_uploads::Column::CreatedAt)
        .limit(BATCH_SIZE)
        .all(db)
        .await?;
    for upload in pending {
        let Some(code) = upload.verification_code.clone() else {
            tracing::error!(upload_id = %upload.id, "pending upload has no code to verify; rejecting it");
            decide(db, upload.id, UploadStatus::Rejected, now).await?;
            summary.rejected += 1;
            continue;
        };
        let request = VerificationRequest {
            code,
            upload_id: upload.id,
            key_count: upload.key_count,
            uploaded_at: upload.created_at,
        };
        match verifier.decide(&request).await {
            Ok(Decision::Verified) => {
                if decide(db, upload.id, UploadStatus::Verified, now).await? {
                    summary.verified += 1;
                }
            }
            Ok(Decision::Rejected(reason)) => {
                tracing::info!(upload_id = %upload.id, reason, "upload rejected by the verification service");
                if decide(db, upload.id, UploadStatus::Rejected, now).await? {
                    summary.rejected += 1;
                }
            }
            Err(error) => {
                tracing::error!(upload_id = %upload.id, error = format!("{error:#}"), "verification failed; the upload stays pending");
                summary.failed += 1;
            }
        }
    }
    Ok(summary)
}

/// Records a decision on a still-pending upload, clears its code and deletes its keys unless it
/// was verified. Returns false when the upload was no longer pending (withdrawn or decided).
async fn decide(
    db: &DatabaseConnection,
    id: Uuid,
    status: UploadStatus,
    now: DateTime<Utc>,
) -> anyhow::Result<bool> {
    let transaction = db.begin().await?;
    let updated = diagnosis_key_uploads::Entity::update_many()
        .col_expr(diagnosis_key_uploads::Column::Status, Expr::value(status))
        .col_expr(diagnosis_key_uploads::Column::DecidedAt, Expr::value(now))
        .col_expr(
            diagnosis_key_uploads::Column::VerificationCode,
            Expr::value(Option::<String>::None),
        )
        .filter(diagnosis_key_uploads::Column::Id.eq(id))
        .filter(diagnosis_key_uploads::Column::Status.eq(UploadStatus::Pending))
        .exec(&transaction)
        .await?;
    if updated.rows_affected == 0 {
        return Ok(false);
    }
    if status != UploadStatus::Verified {
        delete_keys(&transaction, id).await?;
    }
    transaction.commit().await?;
    Ok(true)
}

async fn delete_keys(db: &impl ConnectionTrait, upload_id: Uuid) -> anyhow::Result<()> {
    diagnosis_keys::Entity::delete_many()
        .filter(diagnosis_keys::Column::UploadId.eq(upload_id))
        .exec(db)
        .await?;
    Ok(())
}
