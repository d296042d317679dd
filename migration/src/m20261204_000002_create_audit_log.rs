//! The audit log of admin actions.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuditLog::Table)
                    .col(big_integer(AuditLog::Id).auto_increment().primary_key())
                    .col(uuid(AuditLog::AdminId))
                    .col(string_len(AuditLog::AdminEmail, 320))
                    .col(string_len(AuditLog::Action, 64))
                    .col(small_integer_null(AuditLog::Prefecture))
                    .col(string_len_null(AuditLog::Target, 128))
                    .col(text_null(AuditLog::Detail))
                    .col(timestamp_with_time_zone(AuditLog::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("audit_log_prefecture_id")
                    .table(AuditLog::Table)
                    .col(AuditLog::Prefecture)
                    .col(AuditLog::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AuditLog::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Id,
    AdminId,
    AdminEmail,
    Action,
    Prefecture,
    Target,
    Detail,
    CreatedAt,
}
