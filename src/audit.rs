//! The audit log: who did what, on which prefecture, when.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};

use crate::{
    auth::{AdminCaller, Visibility},
    entity::audit_log,
    error::Result,
    pagination::{Page, PageRequest},
    prefectures::PrefectureCode,
};

/// An audited admin action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditAction {
    CreateAdmin,
    DeleteAdmin,
    ChangePassword,
    PublishNotice,
    WithdrawNotice,
    IssueTokens,
    RevokeToken,
}

impl AuditAction {
    /// Returns the stored name, such as `CREATE_ADMIN`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::CreateAdmin => "CREATE_ADMIN",
            AuditAction::DeleteAdmin => "DELETE_ADMIN",
            AuditAction::ChangePassword => "CHANGE_PASSWORD",
            AuditAction::PublishNotice => "PUBLISH_NOTICE",
            AuditAction::WithdrawNotice => "WITHDRAW_NOTICE",
            AuditAction::IssueTokens => "ISSUE_TOKENS",
            AuditAction::RevokeToken => "REVOKE_TOKEN",
        }
    }
}

/// An entry to record.
pub struct AuditEntry<'a> {
    pub admin: &'a AdminCaller,
    pub admin_email: &'a str,
    pub action: AuditAction,
    pub prefecture: Option<PrefectureCode>,
    pub target: Option<String>,
    pub detail: Option<String>,
}

/// Records an entry, in the caller's transaction when it passes one.
pub async fn record(
    db: &impl ConnectionTrait,
    entry: AuditEntry<'_>,
    now: DateTime<Utc>,
) -> Result<()> {
    audit_log::ActiveModel {
        admin_id: Set(entry.admin.id),
        admin_email: Set(entry.admin_email.to_owned()),
        action: Set(entry.action.as_str().to_owned()),
        prefecture: Set(entry.prefecture.map(PrefectureCode::get)),
        target: Set(entry.target),
        detail: Set(entry.detail),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(())
}

/// Lists entries newest first, limited to what the caller may see.
pub async fn list(
    db: &impl ConnectionTrait,
    visibility: Visibility,
    page: &PageRequest,
) -> Result<Page<audit_log::Model>> {
    let mut query = audit_log::Entity::find().order_by_desc(audit_log::Column::Id);
    if let Visibility::Prefecture(code) = visibility {
        query = query.filter(audit_log::Column::Prefecture.eq(code.get()));
    }
    if let Some(after) = page.after_number()? {
        query = query.filter(audit_log::Column::Id.lt(after));
    }
    let rows = query.limit(page.first + 1).all(db).await?;
    Ok(Page::from_rows(rows, page))
}
