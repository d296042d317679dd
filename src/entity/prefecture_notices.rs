//! A notice a health authority published for one prefecture.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "prefecture_notices")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub prefecture: i16,
    pub message: String,
    pub published_by: Option<Uuid>,
    pub published_at: DateTimeUtc,
    pub withdrawn_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
