//! One accepted upload of diagnosis keys, tied to the token that allowed it.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "diagnosis_key_uploads")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub user_id: Uuid,
    /// The local token that allowed the upload; `None` when an external service verifies it.
    pub health_center_token_id: Option<Uuid>,
    /// Hex HMAC-SHA256 of the normalized code, unique, so one code allows one upload.
    pub code_hash: String,
    /// The code itself while an external service has yet to verify it; cleared once decided.
    pub verification_code: Option<String>,
    /// The token's prefecture, or the user's for externally verified uploads.
    pub prefecture: Option<i16>,
    pub status: UploadStatus,
    pub key_count: i32,
    /// Hex SHA-256 over the upload's keys, to recognise a retry of the same upload.
    pub keys_digest: String,
    pub created_at: DateTimeUtc,
    /// When the upload was verified, rejected or expired.
    pub decided_at: Option<DateTimeUtc>,
}

/// Verification state of an upload. Only `Verified` uploads are exported; the keys of
/// `Rejected` and `Expired` uploads are deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum UploadStatus {
    #[sea_orm(string_value = "PENDING")]
    Pending,
    #[sea_orm(string_value = "VERIFIED")]
    Verified,
    #[sea_orm(string_value = "REJECTED")]
    Rejected,
    #[sea_orm(string_value = "EXPIRED")]
    Expired,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::diagnosis_keys::Entity")]
    DiagnosisKeys,
}

impl Related<super::diagnosis_keys::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::DiagnosisKeys.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
