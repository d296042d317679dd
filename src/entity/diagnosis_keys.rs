//! A stored diagnosis key (GAEN temporary exposure key) of an upload.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "diagnosis_keys")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub upload_id: Uuid,
    /// The 16 key bytes.
    pub key_data: Vec<u8>,
    pub rolling_start_interval_number: i64,
    pub rolling_period: i32,
    pub transmission_risk_level: i32,
    pub report_type: Option<i32>,
    pub days_since_onset_of_symptoms: Option<i32>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::diagnosis_key_uploads::Entity",
        from = "Column::UploadId",
        to = "super::diagnosis_key_uploads::Column::Id",
        on_delete = "Cascade"
    )]
    Upload,
}

impl Related<super::diagnosis_key_uploads::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Upload.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
