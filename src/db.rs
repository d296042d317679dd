//! Connecting to the database and applying migrations.

use std::{str::FromStr, time::Duration};

use anyhow::Context;
use migration::{Migrator, MigratorTrait};
use sea_orm::{
    sqlx::{
        postgres::{PgConnectOptions, PgPoolOptions},
        sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
    },
    ConnectionTrait, DatabaseConnection, DbBackend, SqlxPostgresConnector, SqlxSqliteConnector,
    Statement, TransactionTrait,
};

use crate::config::Config;

/// Connects to the configured database. SQLite runs in WAL mode with foreign keys on.
pub async fn connect(config: &Config) -> anyhow::Result<DatabaseConnection> {
    let url = config.database_url();
    if url.starts_with("sqlite:") {
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!("failed to create data folder {}", config.data_dir.display())
        })?;
        let options = SqliteConnectOptions::from_str(&url)
            .with_context(|| "invalid MAMORI_DATABASE_URL for SQLite".to_owned())?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(config.database_max_connections)
            .acquire_timeout(config.database_connect_timeout)
            // A SQLite connection has no network link that can break, so a ping before each
            // acquire only adds a round trip to the connection's worker thread.
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .context("failed to open the SQLite database")?;
        restrict_to_owner(&url);
        return Ok(SqlxSqliteConnector::from_sqlx_sqlite_pool(pool));
    }
    if !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
        anyhow::bail!("invalid MAMORI_DATABASE_URL: expected sqlite://… or postgres://…");
    }
    let statement_timeout = format!("{}ms", config.database_statement_timeout.as_millis());
    let options = PgConnectOptions::from_str(&url)
        .context("invalid MAMORI_DATABASE_URL for PostgreSQL")?
        .application_name("mamori")
        .options([("statement_timeout", statement_timeout.as_str())]);
    // The pool opens connections lazily, so the server starts while PostgreSQL is down and
    // recovers by itself once it returns; migrations at start still need it.
    let pool = PgPoolOptions::new()
        .max_connections(config.database_max_connections)
        .acquire_timeout(config.database_connect_timeout)
        .connect_lazy_with(options);
    Ok(SqlxPostgresConnector::from_sqlx_postgres_pool(pool))
}

/// Advisory lock key held while migrations run, next to the jobs' keys.
const MIGRATION_LOCK_KEY: i64 = 0x6d61_6d6f_7269_0000;

/// Makes the SQLite file readable by its owner only; SQLite gives its WAL files the same mode.
fn restrict_to_owner(url: &str) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let path = url
            .trim_start_matches("sqlite://")
            .trim_start_matches("sqlite:");
        let path = path.split('?').next().unwrap_or(path);
        if let Err(error) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
            tracing::warn!(path, %error, "could not restrict the database file to its owner");
        }
    }
}

/// Applies every pending migration. On PostgreSQL an advisory lock makes replicas that start
/// together apply them one after the other, so the later ones find nothing pending.
pub async fn migrate(db: &DatabaseConnection) -> anyhow::Result<()> {
    if db.get_database_backend() != DbBackend::Postgres {
        return Migrator::up(db, None)
            .await
            .context("failed to apply database migrations");
    }
    let transaction = db.begin().await?;
    transaction
        .execute(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock($1)",
            [MIGRATION_LOCK_KEY.into()],
        ))
        .await
        .context("failed to take the migration lock")?;
    Migrator::up(&transaction, None)
        .await
        .context("failed to apply database migrations")?;
    transaction
        .commit()
        .await
        .context("failed to commit database migrations")
}
