//! SeaORM entities, one per table. They never double as GraphQL types.

pub mod admins;
pub mod audit_log;
pub mod diagnosis_key_uploads;
pub mod diagnosis_keys;
pub mod health_center_tokens;
pub mod prefecture_notices;
pub mod refresh_tokens;
pub mod users;
