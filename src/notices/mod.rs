//! Prefecture notices: storing them, finding each prefecture's current one and
//! delivering new ones to subscribers.
//!
//! On SQLite a notice is delivered to the subscribers of the process that published it. On
//! PostgreSQL it is announced with NOTIFY in the transaction that stores it, and every replica's
//! listener delivers it to its own subscribers.

mod bus;
mod listener;

pub use bus::NoticeBus;
pub use listener::{start_listener, CHANNEL};

use std::collections::HashMap;

use crate::{
    admins::CurrentAdmin,
    audit::{self, AuditAction, AuditEntry},
    auth::Action,
    entity::prefecture_notices,
    error::{Error, Result},
    pagination::{Page, PageRequest},
    prefectures::PrefectureCode,
};
use chrono::{DateTime, Utc};
use sea_orm::{
    sea_query::Expr, ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set, Statement, TransactionTrait,
};

/// Maximum length of a notice message, in characters.
pub const MAX_MESSAGE_CHARS: usize = 2_000;

/// A published notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub id: i64,
    pub prefecture: PrefectureCode,
    pub message: String,
    pub published_at: DateTime<Utc>,
    pub withdrawn_at: Option<DateTime<Utc>>,
}

impl Notice {
    pub(crate) fn from_model(model: prefecture_notices::Model) -> Result<Self> {
        let prefecture = PrefectureCode::from_stored(model.prefecture).ok_or_else(|| {
            Error::Internal(anyhow::anyhow!(
                "notice {} has invalid prefecture {}",
                model.id,
                model.prefecture
            ))
        })?;
        Ok(Notice {
            id: model.id,
            prefecture,
            message: model.message,
            published_at: model.published_at,
            withdrawn_at: model.withdrawn_at,
        })
    }
}

/// Checks a notice message: trimmed, not empty, at most [`MAX_MESSAGE_CHARS`] characters and no
/// control characters other than line breaks and tabs.
pub fn parse_message(message: &str) -> Result<String> {
    let message = message.trim();
    if message.is_empty() {
        return Err(Error::invalid("message", "invalid message: it is empty"));
    }
    let length = message.chars().count();
    if length > MAX_MESSAGE_CHARS {
        return Err(Error::invalid(
            "message",
            format!(
                "invalid message: {length} characters; at most {MAX_MESSAGE_CHARS} are allowed"
            ),
        ));
    }
    if message
        .chars()
        .any(|c| (c.is_control() && !matches!(c, '\n' | '\r' | '\t')) || is_bidi_control(c))
    {
        return Err(Error::invalid(
            "message",
            "invalid message: it contains control characters",
        ));
    }
    Ok(message.to_owned())
}

/// Returns whether `c` reorders text (U+202A to U+202E, U+2066 to U+2069), which could make a
/// message or an audit entry read differently from what it contains.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Stores a notice for an admin of that prefecture or above, audits it and delivers it to the
/// subscribers of its prefecture.
pub async fn publish(
    db: &DatabaseConnection,
    bus: &NoticeBus,
    now: DateTime<Utc>,
    admin: &CurrentAdmin,
    prefecture: PrefectureCode,
    message: &str,
) -> Result<Notice> {
    admin
        .caller
        .authorize(Action::PublishNotice, Some(prefecture))?;
    let message = parse_message(message)?;
    let transaction = db.begin().await?;
    let model = prefecture_notices::ActiveModel {
        prefecture: Set(prefecture.get()),
        message: Set(message),
        published_by: Set(Some(admin.caller.id)),
        published_at: Set(now),
        withdrawn_at: Set(None),
        ..Default::default()
    }
    .insert(&transaction)
    .await?;
    let entry = AuditEntry {
        admin: &admin.caller,
        admin_email: &admin.email,
        action: AuditAction::PublishNotice,
        prefecture: Some(prefecture),
        target: Some(model.id.to_string()),
        detail: None,
    };
    audit::record(&transaction, entry, now).await?;
    if db.get_database_backend() == DbBackend::Postgres {
        // Delivered to every replica's listener, this one's included, once the transaction commits.
        let notify = Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_notify($1, $2)",
            [CHANNEL.into(), model.id.to_string().into()],
        );
        transaction.execute(notify).await?;
    }
    transaction.commit().await?;
    let notice = Notice::from_model(model)?;
    tracing::info!(notice_id = notice.id, prefecture = %notice.prefecture, "notice published");
    if db.get_database_backend() != DbBackend::Postgres {
        bus.deliver(notice.clone());
    }
    Ok(notice)
}

/// Withdraws a notice, so it is no longer its prefecture's current notice, and audits it.
pub async fn withdraw(
    db: &DatabaseConnection,
    now: DateTime<Utc>,
    admin: &CurrentAdmin,
    id: i64,
) -> Result<Notice> {
    let not_found = || Error::NotFound(format!("notice {id} not found"));
    let model = prefecture_notices::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(not_found)?;
    let prefecture = PrefectureCode::from_stored(model.prefecture);
    if admin
        .caller
        .authorize(Action::WithdrawNotice, prefecture)
        .is_err()
    {
        return Err(not_found());
    }
    if model.withdrawn_at.is_some() {
        return Err(Error::Conflict {
            message: format!("notice {id} is already withdrawn"),
            reason: None,
        });
    }
    let transaction = db.begin().await?;
    let mut active: prefecture_notices::ActiveModel = model.into();
    active.withdrawn_at = Set(Some(now));
    let model = active.update(&transaction).await?;
    let entry = AuditEntry {
        admin: &admin.caller,
        admin_email: &admin.email,
        action: AuditAction::WithdrawNotice,
        prefecture,
        target: Some(id.to_string()),
        detail: None,
    };
    audit::record(&transaction, entry, now).await?;
    transaction.commit().await?;
    tracing::info!(notice_id = id, "notice withdrawn");
    Notice::from_model(model)
}

/// Lists a prefecture's notices newest first, withdrawn ones included.
pub async fn history(
    db: &DatabaseConnection,
    admin: &CurrentAdmin,
    prefecture: PrefectureCode,
    page: &PageRequest,
) -> Result<Page<Notice>> {
    admin
        .caller
        .authorize(Action::ViewNoticeHistory, Some(prefecture))?;
    let mut query = prefecture_notices::Entity::find()
        .filter(prefecture_notices::Column::Prefecture.eq(prefecture.get()))
        .order_by_desc(prefecture_notices::Column::Id);
    if let Some(after) = page.after_number()? {
        query = query.filter(prefecture_notices::Column::Id.lt(after));
    }
    let rows = query.limit(page.first + 1).all(db).await?;
    let notices = rows
        .into_iter()
        .map(Notice::from_model)
        .collect::<Result<Vec<_>>>()?;
    Ok(Page::from_rows(notices, page))
}

/// Returns the current (latest, not withdrawn) notice of each given prefecture that has one,
/// in two queries whatever the number of prefectures.
pub async fn current_notices(
    db: &DatabaseConnection,
    prefectures: &[PrefectureCode],
) -> Result<HashMap<PrefectureCode, Notice>> {
    let codes: Vec<i16> = prefectures.iter().map(|code| code.get()).collect();
    let latest_ids: Vec<i64> = prefecture_notices::Entity::find()
        .select_only()
        .column_as(Expr::col(prefecture_notices::Column::Id).max(), "id")
        .filter(prefecture_notices::Column::Prefecture.is_in(codes))
        .filter(prefecture_notices::Column::WithdrawnAt.is_null())
        .group_by(prefecture_notices::Column::Prefecture)
        .into_tuple()
        .all(db)
        .await?;
    if latest_ids.is_empty() {
        return Ok(HashMap::new());
    }
    prefecture_notices::Entity::find()
        .filter(prefecture_notices::Column::Id.is_in(latest_ids))
        .all(db)
        .await?
        .into_iter()
        .map(|model| Notice::from_model(model).map(|notice| (notice.prefecture, notice)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_message_trims_and_checks() {
        assert_eq!(parse_message("  Stay home  ").unwrap(), "Stay home");
        assert_eq!(parse_message("   ").unwrap_err().code(), "BAD_USER_INPUT");
        assert!(parse_message(&"あ".repeat(MAX_MESSAGE_CHARS)).is_ok());
        assert!(parse_message(&"あ".repeat(MAX_MESSAGE_CHARS + 1)).is_err());
        assert!(parse_message("bell\u{7}").is_err());
        assert!(parse_message("line one\nline two").is_ok());
    }
}
