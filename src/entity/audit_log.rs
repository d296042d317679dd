//! One admin action, kept for accountability.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_log")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub admin_id: Uuid,
    /// The admin's email at the time, so the entry stays readable after the account is deleted.
    pub admin_email: String,
    /// Action name, such as `CREATE_ADMIN`.
    pub action: String,
    /// The prefecture the action concerned, if any.
    pub prefecture: Option<i16>,
    /// The id of the thing acted on, if any.
    pub target: Option<String>,
    /// Further facts, such as a count; never a secret.
    pub detail: Option<String>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
