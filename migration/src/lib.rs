//! Database migrations of mamori, one file per change. The same files serve SQLite and PostgreSQL.

pub use sea_orm_migration::prelude::*;

mod m20261204_000001_create_tables;
mod m20261204_000002_create_audit_log;

/// Applies mamori's migrations in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261204_000001_create_tables::Migration),
            Box::new(m20261204_000002_create_audit_log::Migration),
        ]
    }
}
