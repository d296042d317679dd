//! Connecting to the database and applying migrations.

use std::{str::FromStr, time::Duration};

use anyhow::Context;
use migration::{Migrator, MigratorTrait};
use sea_orm::{
    sqlx::{
        postgres::{PgConnectOptions, PgPoolOptions},
        sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
    },
    DatabaseConnection, SqlxPostgresConnector, SqlxSqliteConnector,
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
            .connect_with(options)
            .await
            .context("failed to open the SQLite database")?;
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

/// Applies every pending migration.
pub async fn migrate(db: &DatabaseConnection) -> anyhow::Result<()> {
    Migrator::up(db, None)
        .await
        .context("failed to apply database migrations")
}
