//! The retention job: deletes personal data once its purpose has ended.

use std::time::Instant;

use chrono::{DateTime, Utc};
use sea_orm::{
    sea_query::{Expr, Query},
    ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter,
};
use tracing::Instrument;

use super::lock::{self, WhenBusy};
use crate::{
    app::AppState,
    diagnosis_keys::{interval_number, INTERVALS_PER_DAY},
    entity::{diagnosis_key_uploads, diagnosis_keys, health_center_tokens, refresh_tokens},
};

/// Advisory lock key of the retention job.
const LOCK_KEY: i64 = 0x6d61_6d6f_7269_0003;

/// Rows deleted by one run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Deleted {
    pub diagnosis_keys: u64,
    pub uploads: u64,
    pub health_center_tokens: u64,
    pub refresh_tokens: u64,
}

/// Deletes what is past retention and logs the counts. Waits for another replica's run.
pub async fn delete_expired(app: &AppState) -> anyhow::Result<Deleted> {
    run(app, WhenBusy::Wait)
        .await
        .map(Option::unwrap_or_default)
}

/// Runs one scheduled tick; skips it when another replica is running the job.
pub async fn tick(app: &AppState) -> anyhow::Result<Option<Deleted>> {
    run(app, WhenBusy::Skip).await
}

async fn run(app: &AppState, when_busy: WhenBusy) -> anyhow::Result<Option<Deleted>> {
    let span = tracing::info_span!("job", name = "delete_expired");
    async {
        let started = Instant::now();
        let result = lock::exclusive(
            &app.db,
            &app.job_locks.delete_expired,
            LOCK_KEY,
            when_busy,
            delete(&app.db, app.clock.now(), app.config.key_retention_days),
        )
        .await;
        super::record_run("delete_expired", started, &result);
        match &result {
            Ok(Some(deleted)) => tracing::info!(
                diagnosis_keys = deleted.diagnosis_keys,
                uploads = deleted.uploads,
                health_center_tokens = deleted.health_center_tokens,
                refresh_tokens = deleted.refresh_tokens,
                "retention finished"
            ),
            Ok(None) => {
                tracing::debug!("another replica is deleting expired data; skipped this tick")
            }
            Err(error) => tracing::error!(error = format!("{error:#}"), "retention failed"),
        }
        result
    }
    .instrument(span)
    .await
}

/// Deletes keys that ended more than `retention_days` ago, uploads created before then, tokens
/// expired or spent before then that no upload still names, and refresh tokens past their
/// lifetime.
async fn delete(
    db: &DatabaseConnection,
    now: DateTime<Utc>,
    retention_days: u32,
) -> anyhow::Result<Deleted> {
    let retention = chrono::Duration::days(i64::from(retention_days));
    let cutoff = now - retention;
    let oldest_end =
        interval_number(now.timestamp()) - i64::from(retention_days) * INTERVALS_PER_DAY;
    let end = Expr::col(diagnosis_keys::Column::RollingStartIntervalNumber)
        .add(Expr::col(diagnosis_keys::Column::RollingPeriod));

    let diagnosis_keys = diagnosis_keys::Entity::delete_many()
        .filter(Expr::expr(end).lt(oldest_end))
        .exec(db)
        .await?
        .rows_affected;
    let old_uploads = Query::select()
        .column(diagnosis_key_uploads::Column::Id)
        .from(diagnosis_key_uploads::Entity)
        .and_where(diagnosis_key_uploads::Column::CreatedAt.lt(cutoff))
        .to_owned();
    let diagnosis_keys = diagnosis_keys
        + diagnosis_keys::Entity::delete_many()
            .filter(diagnosis_keys::Column::UploadId.in_subquery(old_uploads))
            .exec(db)
            .await?
            .rows_affected;
    let uploads = diagnosis_key_uploads::Entity::delete_many()
        .filter(diagnosis_key_uploads::Column::CreatedAt.lt(cutoff))
        .exec(db)
        .await?
        .rows_affected;

    let still_named = Query::select()
        .column(diagnosis_key_uploads::Column::HealthCenterTokenId)
        .from(diagnosis_key_uploads::Entity)
        .and_where(diagnosis_key_uploads::Column::HealthCenterTokenId.is_not_null())
        .to_owned();
    let health_center_tokens = health_center_tokens::Entity::delete_many()
        .filter(
            health_center_tokens::Column::ExpiresAt
                .lt(cutoff)
                .or(health_center_tokens::Column::RedeemedAt.lt(cutoff)),
        )
        .filter(health_center_tokens::Column::Id.not_in_subquery(still_named))
        .exec(db)
        .await?
        .rows_affected;
    let refresh_tokens = refresh_tokens::Entity::delete_many()
        .filter(refresh_tokens::Column::ExpiresAt.lt(now))
        .exec(db)
        .await?
        .rows_affected;
    Ok(Deleted {
        diagnosis_keys,
        uploads,
        health_center_tokens,
        refresh_tokens,
    })
}
