//! One run at a time per job: a lock in this process, and across replicas a PostgreSQL advisory
//! lock held for the run.
//!
//! The advisory lock is transaction-scoped, so it is released when the run ends or when the
//! replica holding it dies and its connection closes. SQLite serves one process, which needs
//! only the local lock.

use std::future::Future;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait};
use tokio::sync::Mutex;

/// Whether to wait for another replica's run to end or to skip this run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhenBusy {
    Wait,
    Skip,
}

/// Runs `job` while holding `local` and, on PostgreSQL, the advisory lock `key`. Returns `None`
/// when another run holds either and `when_busy` is `Skip`.
pub async fn exclusive<T>(
    db: &DatabaseConnection,
    local: &Mutex<()>,
    key: i64,
    when_busy: WhenBusy,
    job: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<Option<T>> {
    let _local = match when_busy {
        WhenBusy::Wait => local.lock().await,
        WhenBusy::Skip => match local.try_lock() {
            Ok(guard) => guard,
            Err(_) => return Ok(None),
        },
    };
    if db.get_database_backend() != DbBackend::Postgres {
        return job.await.map(Some);
    }
    let transaction = db.begin().await?;
    let sql = match when_busy {
        WhenBusy::Wait => "SELECT pg_advisory_xact_lock($1) IS NULL",
        WhenBusy::Skip => "SELECT pg_try_advisory_xact_lock($1)",
    };
    let row = transaction
        .query_one(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            [key.into()],
        ))
        .await?
        .ok_or_else(|| anyhow::anyhow!("advisory lock query returned no row"))?;
    let acquired: bool = row.try_get_by_index(0)?;
    // pg_advisory_xact_lock returns void, read as NULL: once it returns, the lock is held.
    if !acquired && when_busy == WhenBusy::Skip {
        return Ok(None);
    }
    let result = job.await;
    transaction.commit().await?;
    result.map(Some)
}

/// The local locks of the jobs, one per job, held by the application state.
#[derive(Debug, Default)]
pub struct JobLocks {
    pub export_keys: Mutex<()>,
    pub verify_uploads: Mutex<()>,
    pub delete_expired: Mutex<()>,
}
