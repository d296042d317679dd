//! Users, sessions, admins, health-center tokens, uploads, keys and notices.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(uuid(Users::Id).primary_key())
                    .col(small_integer_null(Users::Prefecture))
                    .col(timestamp_with_time_zone(Users::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("users_created_at")
                    .table(Users::Table)
                    .col(Users::CreatedAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Admins::Table)
                    .col(uuid(Admins::Id).primary_key())
                    .col(string_len_uniq(Admins::Email, 320))
                    .col(string(Admins::PasswordHash))
                    .col(string_len(Admins::Role, 32))
                    .col(small_integer_null(Admins::Prefecture))
                    .col(timestamp_with_time_zone(Admins::CreatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(RefreshTokens::Table)
                    .col(uuid(RefreshTokens::Id).primary_key())
                    .col(string_len_uniq(RefreshTokens::TokenHash, 64))
                    .col(uuid(RefreshTokens::FamilyId))
                    .col(uuid(RefreshTokens::SubjectId))
                    .col(string_len(RefreshTokens::SubjectKind, 16))
                    .col(timestamp_with_time_zone(RefreshTokens::CreatedAt))
                    .col(timestamp_with_time_zone(RefreshTokens::ExpiresAt))
                    .col(timestamp_with_time_zone_null(RefreshTokens::UsedAt))
                    .col(timestamp_with_time_zone_null(RefreshTokens::RevokedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("refresh_tokens_family_id")
                    .table(RefreshTokens::Table)
                    .col(RefreshTokens::FamilyId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(HealthCenterTokens::Table)
                    .col(uuid(HealthCenterTokens::Id).primary_key())
                    .col(string_len_uniq(HealthCenterTokens::CodeHash, 64))
                    .col(small_integer(HealthCenterTokens::Prefecture))
                    .col(timestamp_with_time_zone(HealthCenterTokens::CreatedAt))
                    .col(timestamp_with_time_zone(HealthCenterTokens::ExpiresAt))
                    .col(timestamp_with_time_zone_null(
                        HealthCenterTokens::RedeemedAt,
                    ))
                    .col(uuid_null(HealthCenterTokens::RedeemedBy))
                    .col(timestamp_with_time_zone_null(HealthCenterTokens::RevokedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("health_center_tokens_prefecture_created_at")
                    .table(HealthCenterTokens::Table)
                    .col(HealthCenterTokens::Prefecture)
                    .col(HealthCenterTokens::CreatedAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(DiagnosisKeyUploads::Table)
                    .col(uuid(DiagnosisKeyUploads::Id).primary_key())
                    .col(uuid(DiagnosisKeyUploads::UserId))
                    .col(uuid_null(DiagnosisKeyUploads::HealthCenterTokenId))
                    .col(string_len_uniq(DiagnosisKeyUploads::CodeHash, 64))
                    .col(string_len_null(DiagnosisKeyUploads::VerificationCode, 64))
                    .col(small_integer_null(DiagnosisKeyUploads::Prefecture))
                    .col(string_len(DiagnosisKeyUploads::Status, 16))
                    .col(integer(DiagnosisKeyUploads::KeyCount))
                    .col(string_len(DiagnosisKeyUploads::KeysDigest, 64))
                    .col(timestamp_with_time_zone(DiagnosisKeyUploads::CreatedAt))
                    .col(timestamp_with_time_zone_null(
                        DiagnosisKeyUploads::DecidedAt,
                    ))
                    .foreign_key(
                        ForeignKey::create()
                            .from(DiagnosisKeyUploads::Table, DiagnosisKeyUploads::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(
                                DiagnosisKeyUploads::Table,
                                DiagnosisKeyUploads::HealthCenterTokenId,
                            )
                            .to(HealthCenterTokens::Table, HealthCenterTokens::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("diagnosis_key_uploads_user_id")
                    .table(DiagnosisKeyUploads::Table)
                    .col(DiagnosisKeyUploads::UserId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("diagnosis_key_uploads_status_created_at")
                    .table(DiagnosisKeyUploads::Table)
                    .col(DiagnosisKeyUploads::Status)
                    .col(DiagnosisKeyUploads::CreatedAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(DiagnosisKeys::Table)
                    .col(
                        big_integer(DiagnosisKeys::Id)
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(uuid(DiagnosisKeys::UploadId))
                    .col(binary_len(DiagnosisKeys::KeyData, 16))
                    .col(big_integer(DiagnosisKeys::RollingStartIntervalNumber))
                    .col(integer(DiagnosisKeys::RollingPeriod))
                    .col(integer(DiagnosisKeys::TransmissionRiskLevel))
                    .col(integer_null(DiagnosisKeys::ReportType))
                    .col(integer_null(DiagnosisKeys::DaysSinceOnsetOfSymptoms))
                    .foreign_key(
                        ForeignKey::create()
                            .from(DiagnosisKeys::Table, DiagnosisKeys::UploadId)
                            .to(DiagnosisKeyUploads::Table, DiagnosisKeyUploads::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("diagnosis_keys_upload_id")
                    .table(DiagnosisKeys::Table)
                    .col(DiagnosisKeys::UploadId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("diagnosis_keys_key_data")
                    .table(DiagnosisKeys::Table)
                    .col(DiagnosisKeys::KeyData)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(PrefectureNotices::Table)
                    .col(
                        big_integer(PrefectureNotices::Id)
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(small_integer(PrefectureNotices::Prefecture))
                    .col(text(PrefectureNotices::Message))
                    .col(uuid_null(PrefectureNotices::PublishedBy))
                    .col(timestamp_with_time_zone(PrefectureNotices::PublishedAt))
                    .col(timestamp_with_time_zone_null(
                        PrefectureNotices::WithdrawnAt,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("prefecture_notices_prefecture_id")
                    .table(PrefectureNotices::Table)
                    .col(PrefectureNotices::Prefecture)
                    .col(PrefectureNotices::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            PrefectureNotices::Table.into_iden(),
            DiagnosisKeys::Table.into_iden(),
            DiagnosisKeyUploads::Table.into_iden(),
            HealthCenterTokens::Table.into_iden(),
            RefreshTokens::Table.into_iden(),
            Admins::Table.into_iden(),
            Users::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Prefecture,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Admins {
    Table,
    Id,
    Email,
    PasswordHash,
    Role,
    Prefecture,
    CreatedAt,
}

#[derive(DeriveIden)]
enum RefreshTokens {
    Table,
    Id,
    TokenHash,
    FamilyId,
    SubjectId,
    SubjectKind,
    CreatedAt,
    ExpiresAt,
    UsedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum HealthCenterTokens {
    Table,
    Id,
    CodeHash,
    Prefecture,
    CreatedAt,
    ExpiresAt,
    RedeemedAt,
    RedeemedBy,
    RevokedAt,
}

#[derive(DeriveIden)]
enum DiagnosisKeyUploads {
    Table,
    Id,
    UserId,
    HealthCenterTokenId,
    CodeHash,
    VerificationCode,
    Prefecture,
    Status,
    KeyCount,
    KeysDigest,
    CreatedAt,
    DecidedAt,
}

#[derive(DeriveIden)]
enum DiagnosisKeys {
    Table,
    Id,
    UploadId,
    KeyData,
    RollingStartIntervalNumber,
    RollingPeriod,
    TransmissionRiskLevel,
    ReportType,
    DaysSinceOnsetOfSymptoms,
}

#[derive(DeriveIden)]
enum PrefectureNotices {
    Table,
    Id,
    Prefecture,
    Message,
    PublishedBy,
    PublishedAt,
    WithdrawnAt,
}
