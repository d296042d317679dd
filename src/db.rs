//! Connecting to the database and applying migrations.

use std::{str::FromStr, time::Duration};

use anyhow::Context;
use migration::{Migrator, MigratorTrait};
use sea_orm::{
    sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
    ConnectOptions, Database, DatabaseConnection, SqlxSqliteConnector,
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
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .context("failed to open the SQLite database")?;
        return Ok(SqlxSqliteConnector::from_sqlx_sqlite_pool(pool));
    }
    if !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
        anyhow::bail!("invalid MAMORI_DATABASE_URL: expected sqlite://… or postgres://…");
    }
    let mut options = ConnectOptions::new(url);
    options
        .max_connections(config.database_max_connections)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(5))
        .sqlx_logging(false);
    Database::connect(options)
        .await
        .context("failed to connect to PostgreSQL (MAMORI_DATABASE_URL)")
}

/// Applies every pending migration.
pub async fn migrate(db: &DatabaseConnection) -> anyhow::Result<()> {
    Migrator::up(db, None)
        .await
        .context("failed to apply database migrations")
}
