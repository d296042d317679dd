//! Uploading and withdrawing diagnosis keys.

mod validate;

pub use validate::{
    interval_number, validate_keys, KeyInput, KeyRules, ValidKey, INTERVALS_PER_DAY,
};

use std::{net::IpAddr, time::Instant};

use chrono::{DateTime, Utc};
use sea_orm::{
    sea_query::{Expr, Query},
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    Set, SqlErr, TransactionTrait,
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{
    entity::{
        diagnosis_key_uploads::{self, UploadStatus},
        diagnosis_keys, health_center_tokens, users,
    },
    error::{Error, Result},
    health_center_tokens::{normalize, CodeHasher},
    rate_limit::FailureLimiter,
};

/// Verification mode of uploads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerificationMode {
    /// The codes issued by this server are checked at upload.
    Builtin,
    /// Uploads wait as PENDING until the health authority's service decides.
    Http,
}

/// Everything an upload needs besides the database.
pub struct UploadContext<'a> {
    pub hasher: &'a CodeHasher,
    pub rules: &'a KeyRules,
    pub mode: VerificationMode,
    /// Limits wrong token codes per user.
    pub attempts_by_user: &'a FailureLimiter,
    /// Limits wrong token codes per client address.
    pub attempts_by_address: &'a FailureLimiter,
    pub now: DateTime<Utc>,
}

/// Maximum length of a code accepted for external verification.
const MAX_EXTERNAL_CODE_CHARS: usize = 64;

/// Validates the keys, checks the health-center token and stores the keys, all or nothing.
///
/// In builtin mode the token is spent in the same transaction and the upload is VERIFIED; in
/// http mode the upload is PENDING until the verification job queries the health authority. A
/// retry by the same user with the same token and keys returns the first upload.
pub async fn upload(
    db: &DatabaseConnection,
    context: &UploadContext<'_>,
    user_id: Uuid,
    client_address: Option<IpAddr>,
    token_code: &str,
    keys: &[KeyInput],
) -> Result<diagnosis_key_uploads::Model> {
    let keys = validate_keys(
        keys,
        context.rules,
        interval_number(context.now.timestamp()),
    )?;
    // The attempt counts as a failure from here on unless it turns out not to be a wrong code,
    // so concurrent guesses cannot pass the limit together.
    let attempt = Attempt::reserve(context, user_id, client_address)?;
    let code = match context.mode {
        VerificationMode::Builtin => normalize(token_code),
        VerificationMode::Http => external_code(token_code),
    };
    let Some(code) = code else {
        return Err(unknown_token());
    };
    let upload = NewUpload {
        user_id,
        code_hash: context.hasher.hash(&code),
        digest: keys_digest(&keys),
        keys,
    };
    let stored = match context.mode {
        VerificationMode::Builtin => upload_builtin(db, &upload, context.now).await,
        VerificationMode::Http => upload_pending(db, &upload, &code, context.now).await,
    };
    if !matches!(
        &stored,
        Err(Error::BadUserInput {
            reason: Some("UNKNOWN_TOKEN"),
            ..
        })
    ) {
        attempt.release(context);
    }
    let stored = stored?;
    tracing::info!(upload_id = %stored.id, key_count = stored.key_count, status = ?stored.status, "diagnosis keys uploaded");
    Ok(stored)
}

/// An upload that passed validation, before it is stored.
struct NewUpload {
    user_id: Uuid,
    code_hash: String,
    digest: String,
    keys: Vec<ValidKey>,
}

impl NewUpload {
    fn model(
        &self,
        token_id: Option<Uuid>,
        prefecture: Option<i16>,
        status: UploadStatus,
        verification_code: Option<String>,
        now: DateTime<Utc>,
    ) -> diagnosis_key_uploads::ActiveModel {
        diagnosis_key_uploads::ActiveModel {
            id: Set(Uuid::now_v7()),
            user_id: Set(self.user_id),
            health_center_token_id: Set(token_id),
            code_hash: Set(self.code_hash.clone()),
            verification_code: Set(verification_code),
            prefecture: Set(prefecture),
            status: Set(status),
            key_count: Set(self.keys.len() as i32),
            keys_digest: Set(self.digest.clone()),
            created_at: Set(now),
            decided_at: Set((status != UploadStatus::Pending).then_some(now)),
        }
    }
}

/// Spends a locally issued token and stores the keys as VERIFIED, in one transaction.
async fn upload_builtin(
    db: &DatabaseConnection,
    upload: &NewUpload,
    now: DateTime<Utc>,
) -> Result<diagnosis_key_uploads::Model> {
    let transaction = db.begin().await?;
    // Spending the token is the first statement, so two uploads racing for one token cannot both
    // win, and on SQLite the write lock is taken before any read.
    let spent = health_center_tokens::Entity::update_many()
        .col_expr(health_center_tokens::Column::RedeemedAt, Expr::value(now))
        .col_expr(
            health_center_tokens::Column::RedeemedBy,
            Expr::value(upload.user_id),
        )
        .filter(health_center_tokens::Column::CodeHash.eq(&upload.code_hash))
        .filter(health_center_tokens::Column::RedeemedAt.is_null())
        .filter(health_center_tokens::Column::RevokedAt.is_null())
        .filter(health_center_tokens::Column::ExpiresAt.gt(now))
        .exec(&transaction)
        .await?;
    let token = health_center_tokens::Entity::find()
        .filter(health_center_tokens::Column::CodeHash.eq(&upload.code_hash))
        .one(&transaction)
        .await?;
    let Some(token) = token else {
        return Err(unknown_token());
    };
    if spent.rows_affected == 0 {
        drop(transaction);
        return unusable_token(db, &token, upload, now).await;
    }
    let stored = upload
        .model(
            Some(token.id),
            Some(token.prefecture),
            UploadStatus::Verified,
            None,
            now,
        )
        .insert(&transaction)
        .await?;
    insert_keys(&transaction, stored.id, &upload.keys).await?;
    transaction.commit().await?;
    Ok(stored)
}

/// Stores the keys as PENDING with the code, for the verification job to check.
async fn upload_pending(
    db: &DatabaseConnection,
    upload: &NewUpload,
    code: &str,
    now: DateTime<Utc>,
) -> Result<diagnosis_key_uploads::Model> {
    let pending = diagnosis_key_uploads::Entity::find()
        .filter(diagnosis_key_uploads::Column::UserId.eq(upload.user_id))
        .filter(diagnosis_key_uploads::Column::Status.eq(UploadStatus::Pending))
        .one(db)
        .await?;
    if let Some(pending) = pending {
        // One pending upload per user bounds how many codes a user can try on the health
        // authority's service, since wrong codes there are not counted here.
        if pending.code_hash == upload.code_hash {
            return earlier_upload(db, upload).await;
        }
        return Err(Error::Conflict {
            message:
                "an earlier upload is still waiting for verification; retry once it is decided"
                    .into(),
            reason: Some("UPLOAD_PENDING"),
        });
    }
    let transaction = db.begin().await?;
    let inserted = upload
        .model(
            None,
            None,
            UploadStatus::Pending,
            Some(code.to_owned()),
            now,
        )
        .insert(&transaction)
        .await;
    let stored = match inserted {
        Ok(stored) => stored,
        Err(error) if matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
            drop(transaction);
            return earlier_upload(db, upload).await;
        }
        Err(error) => return Err(error.into()),
    };
    // The prefecture of an externally verified upload is the user's, for statistics.
    let prefecture = users::Entity::find_by_id(upload.user_id)
        .one(&transaction)
        .await?
        .and_then(|user| user.prefecture);
    let stored = if prefecture.is_some() {
        let mut active: diagnosis_key_uploads::ActiveModel = stored.into();
        active.prefecture = Set(prefecture);
        active.update(&transaction).await?
    } else {
        stored
    };
    insert_keys(&transaction, stored.id, &upload.keys).await?;
    transaction.commit().await?;
    Ok(stored)
}

async fn insert_keys(db: &impl ConnectionTrait, upload_id: Uuid, keys: &[ValidKey]) -> Result<()> {
    diagnosis_keys::Entity::insert_many(keys.iter().map(|key| diagnosis_keys::ActiveModel {
        upload_id: Set(upload_id),
        key_data: Set(key.key_data.to_vec()),
        rolling_start_interval_number: Set(key.rolling_start_interval_number),
        rolling_period: Set(key.rolling_period),
        transmission_risk_level: Set(key.transmission_risk_level),
        report_type: Set(key.report_type),
        days_since_onset_of_symptoms: Set(key.days_since_onset_of_symptoms),
        ..Default::default()
    }))
    .exec(db)
    .await?;
    Ok(())
}

/// Explains why an existing token could not be spent, or returns the earlier upload of a retry.
async fn unusable_token(
    db: &DatabaseConnection,
    token: &health_center_tokens::Model,
    upload: &NewUpload,
    now: DateTime<Utc>,
) -> Result<diagnosis_key_uploads::Model> {
    if token.redeemed_at.is_some() {
        return earlier_upload(db, upload).await;
    }
    if token.revoked_at.is_some() {
        return Err(token_error(
            "REVOKED_TOKEN",
            "this health-center token was revoked; ask the health center for a new one",
        ));
    }
    if token.expires_at <= now {
        return Err(token_error(
            "EXPIRED_TOKEN",
            "this health-center token has expired; ask the health center for a new one",
        ));
    }
    Err(Error::Internal(anyhow::anyhow!(
        "token {} is usable but was not spent",
        token.id
    )))
}

/// Returns the earlier upload with the same code when it is this user's with the same keys,
/// and `CONFLICT` otherwise.
async fn earlier_upload(
    db: &DatabaseConnection,
    upload: &NewUpload,
) -> Result<diagnosis_key_uploads::Model> {
    let earlier = diagnosis_key_uploads::Entity::find()
        .filter(diagnosis_key_uploads::Column::CodeHash.eq(&upload.code_hash))
        .one(db)
        .await?;
    match earlier {
        Some(earlier)
            if earlier.user_id == upload.user_id && earlier.keys_digest == upload.digest =>
        {
            Ok(earlier)
        }
        _ => Err(Error::Conflict {
            message: "this health-center token was already used for an upload".into(),
            reason: Some("SPENT_TOKEN"),
        }),
    }
}

/// Accepts a code for external verification as typed, without spaces: its format is the
/// health authority's.
fn external_code(input: &str) -> Option<String> {
    let code = input.trim();
    let valid = !code.is_empty()
        && code.chars().count() <= MAX_EXTERNAL_CODE_CHARS
        && code.chars().all(|c| c.is_ascii_graphic());
    valid.then(|| code.to_owned())
}

fn unknown_token() -> Error {
    token_error(
        "UNKNOWN_TOKEN",
        "unknown health-center token; check the code you were given",
    )
}

/// Deletes all of the user's uploads and their keys, and returns how many keys were removed.
pub async fn withdraw(db: &DatabaseConnection, user_id: Uuid) -> Result<u64> {
    let transaction = db.begin().await?;
    let removed = diagnosis_keys::Entity::delete_many()
        .filter(
            diagnosis_keys::Column::UploadId.in_subquery(
                Query::select()
                    .column(diagnosis_key_uploads::Column::Id)
                    .from(diagnosis_key_uploads::Entity)
                    .and_where(diagnosis_key_uploads::Column::UserId.eq(user_id))
                    .to_owned(),
            ),
        )
        .exec(&transaction)
        .await?
        .rows_affected;
    diagnosis_key_uploads::Entity::delete_many()
        .filter(diagnosis_key_uploads::Column::UserId.eq(user_id))
        .exec(&transaction)
        .await?;
    transaction.commit().await?;
    tracing::info!(%user_id, removed, "diagnosis keys withdrawn");
    Ok(removed)
}

fn token_error(reason: &'static str, message: &str) -> Error {
    Error::BadUserInput {
        message: message.to_owned(),
        field: Some("healthCenterToken".into()),
        reason: Some(reason),
    }
}

/// An upload attempt reserved against the per-user and per-address limits.
struct Attempt {
    user: Vec<String>,
    address: Vec<String>,
}

impl Attempt {
    fn reserve(
        context: &UploadContext<'_>,
        user_id: Uuid,
        client_address: Option<IpAddr>,
    ) -> Result<Self> {
        let now = Instant::now();
        let attempt = Attempt {
            user: vec![user_id.to_string()],
            address: client_address
                .map(|address| address.to_string())
                .into_iter()
                .collect(),
        };
        let limited = |retry_after_seconds| Error::RateLimited {
            message: format!(
                "too many wrong health-center tokens; retry in {retry_after_seconds} seconds"
            ),
            retry_after_seconds,
        };
        context
            .attempts_by_user
            .reserve(&attempt.user, now)
            .map_err(limited)?;
        if let Err(retry_after_seconds) = context.attempts_by_address.reserve(&attempt.address, now)
        {
            context.attempts_by_user.release(&attempt.user);
            return Err(limited(retry_after_seconds));
        }
        Ok(attempt)
    }

    fn release(&self, context: &UploadContext<'_>) {
        context.attempts_by_user.release(&self.user);
        context.attempts_by_address.release(&self.address);
    }
}

/// Digests the keys independent of their order, to recognise a retried upload.
fn keys_digest(keys: &[ValidKey]) -> String {
    let mut sorted: Vec<&ValidKey> = keys.iter().collect();
    sorted.sort_by_key(|key| key.key_data);
    let mut hasher = Sha256::new();
    for key in sorted {
        hasher.update(key.key_data);
        hasher.update(key.rolling_start_interval_number.to_be_bytes());
        hasher.update(key.rolling_period.to_be_bytes());
        hasher.update(key.transmission_risk_level.to_be_bytes());
        hasher.update(key.report_type.unwrap_or(-1).to_be_bytes());
        hasher.update(
            key.days_since_onset_of_symptoms
                .unwrap_or(i32::MIN)
                .to_be_bytes(),
        );
    }
    hex::encode(hasher.finalize())
}
