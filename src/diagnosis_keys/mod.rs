//! Uploading and withdrawing diagnosis keys.

mod validate;

pub use validate::{
    interval_number, validate_keys, KeyInput, KeyRules, ValidKey, INTERVALS_PER_DAY,
};

use std::{net::IpAddr, time::Instant};

use chrono::{DateTime, Utc};
use sea_orm::{
    sea_query::{Expr, Query},
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, Set,
    TransactionTrait,
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{
    entity::{
        diagnosis_key_uploads::{self, UploadStatus},
        diagnosis_keys, health_center_tokens,
    },
    error::{Error, Result},
    health_center_tokens::{normalize, CodeHasher},
    rate_limit::FailureLimiter,
};

/// Everything an upload needs besides the database.
pub struct UploadContext<'a> {
    pub hasher: &'a CodeHasher,
    pub rules: &'a KeyRules,
    /// Limits wrong token codes per user and per client address.
    pub attempts: &'a FailureLimiter,
    pub now: DateTime<Utc>,
}

/// Validates the keys, spends the health-center token and stores the keys, all or nothing.
///
/// A retry by the same user with the same token and keys returns the first upload.
pub async fn upload(
    db: &DatabaseConnection,
    context: &UploadContext<'_>,
    user_id: Uuid,
    client_address: Option<IpAddr>,
    token_code: &str,
    keys: &[KeyInput],
) -> Result<diagnosis_key_uploads::Model> {
    let now = context.now;
    let keys = validate_keys(keys, context.rules, interval_number(now.timestamp()))?;
    let limiter_keys = attempt_keys(user_id, client_address);
    let started = Instant::now();
    if let Some(retry_after_seconds) = limiter_keys
        .iter()
        .filter_map(|key| context.attempts.blocked_for(key, started))
        .max()
    {
        return Err(Error::RateLimited {
            message: format!(
                "too many wrong health-center tokens; retry in {retry_after_seconds} seconds"
            ),
            retry_after_seconds,
        });
    }
    let Some(code) = normalize(token_code) else {
        record_failure(context.attempts, &limiter_keys, started);
        return Err(token_error(
            "UNKNOWN_TOKEN",
            "unknown health-center token; check the code you were given",
        ));
    };
    let code_hash = context.hasher.hash(&code);
    let digest = keys_digest(&keys);

    let transaction = db.begin().await?;
    // Spending the token is the first statement, so two uploads racing for one token cannot both
    // win, and on SQLite the write lock is taken before any read.
    let spent = health_center_tokens::Entity::update_many()
        .col_expr(health_center_tokens::Column::RedeemedAt, Expr::value(now))
        .col_expr(
            health_center_tokens::Column::RedeemedBy,
            Expr::value(user_id),
        )
        .filter(health_center_tokens::Column::CodeHash.eq(&code_hash))
        .filter(health_center_tokens::Column::RedeemedAt.is_null())
        .filter(health_center_tokens::Column::RevokedAt.is_null())
        .filter(health_center_tokens::Column::ExpiresAt.gt(now))
        .exec(&transaction)
        .await?;
    let token = health_center_tokens::Entity::find()
        .filter(health_center_tokens::Column::CodeHash.eq(&code_hash))
        .one(&transaction)
        .await?;
    let Some(token) = token else {
        record_failure(context.attempts, &limiter_keys, started);
        return Err(token_error(
            "UNKNOWN_TOKEN",
            "unknown health-center token; check the code you were given",
        ));
    };
    if spent.rows_affected == 0 {
        drop(transaction);
        return unusable_token(db, &token, user_id, &digest, now).await;
    }

    let upload = diagnosis_key_uploads::ActiveModel {
        id: Set(Uuid::new_v4()),
        user_id: Set(user_id),
        health_center_token_id: Set(token.id),
        status: Set(UploadStatus::Verified),
        key_count: Set(keys.len() as i32),
        keys_digest: Set(digest),
        created_at: Set(now),
    }
    .insert(&transaction)
    .await?;
    diagnosis_keys::Entity::insert_many(keys.iter().map(|key| diagnosis_keys::ActiveModel {
        upload_id: Set(upload.id),
        key_data: Set(key.key_data.to_vec()),
        rolling_start_interval_number: Set(key.rolling_start_interval_number),
        rolling_period: Set(key.rolling_period),
        transmission_risk_level: Set(key.transmission_risk_level),
        report_type: Set(key.report_type),
        days_since_onset_of_symptoms: Set(key.days_since_onset_of_symptoms),
        ..Default::default()
    }))
    .exec(&transaction)
    .await?;
    transaction.commit().await?;
    tracing::info!(upload_id = %upload.id, key_count = upload.key_count, "diagnosis keys uploaded");
    Ok(upload)
}

/// Explains why an existing token could not be spent, or returns the earlier upload of a retry.
async fn unusable_token(
    db: &DatabaseConnection,
    token: &health_center_tokens::Model,
    user_id: Uuid,
    digest: &str,
    now: DateTime<Utc>,
) -> Result<diagnosis_key_uploads::Model> {
    if token.revoked_at.is_some() {
        return Err(token_error(
            "REVOKED_TOKEN",
            "this health-center token was revoked; ask the health center for a new one",
        ));
    }
    if token.redeemed_at.is_some() {
        if token.redeemed_by == Some(user_id) {
            let earlier = diagnosis_key_uploads::Entity::find()
                .filter(diagnosis_key_uploads::Column::HealthCenterTokenId.eq(token.id))
                .one(db)
                .await?;
            if let Some(earlier) = earlier.filter(|earlier| earlier.keys_digest == digest) {
                return Ok(earlier);
            }
        }
        return Err(Error::Conflict {
            message: "this health-center token was already used for an upload".into(),
            reason: Some("SPENT_TOKEN"),
        });
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

fn attempt_keys(user_id: Uuid, client_address: Option<IpAddr>) -> Vec<String> {
    let mut keys = vec![format!("user:{user_id}")];
    if let Some(address) = client_address {
        keys.push(format!("address:{address}"));
    }
    keys
}

fn record_failure(limiter: &FailureLimiter, keys: &[String], now: Instant) {
    for key in keys {
        limiter.record_failure(key, now);
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
