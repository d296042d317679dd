//! Sessions: an access token and a rotating refresh token.
//!
//! A refresh token is opaque, stored only as its SHA-256, and spent on use.
//! Tokens rotated from one login form a family; presenting a spent token
//! again means it leaked, so the whole family is revoked.

use chrono::{DateTime, Utc};
use rand::RngCore;
use sea_orm::{
    sea_query::Expr, ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection,
    EntityTrait, QueryFilter, Set, TransactionTrait,
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{Role, TokenKeys};
use crate::{
    entity::{admins, refresh_tokens, users},
    error::{Error, Result},
    prefectures::PrefectureCode,
};

/// A pair of tokens returned at login and refresh.
#[derive(Debug, Clone)]
pub struct Session {
    pub access_token: String,
    pub refresh_token: String,
    /// When the access token expires.
    pub expires_at: DateTime<Utc>,
}

/// Whose session a refresh token belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubjectKind {
    User,
    Admin,
}

impl SubjectKind {
    fn as_str(self) -> &'static str {
        match self {
            SubjectKind::User => "user",
            SubjectKind::Admin => "admin",
        }
    }
}

/// Creates an anonymous user with an optional prefecture and returns its first session.
pub async fn login(
    db: &DatabaseConnection,
    keys: &TokenKeys,
    now: DateTime<Utc>,
    prefecture: Option<PrefectureCode>,
) -> Result<Session> {
    let user_id = Uuid::new_v4();
    let transaction = db.begin().await?;
    users::ActiveModel {
        id: Set(user_id),
        prefecture: Set(prefecture.map(PrefectureCode::get)),
        created_at: Set(now),
    }
    .insert(&transaction)
    .await?;
    let session = issue_session(
        &transaction,
        keys,
        now,
        user_id,
        SubjectKind::User,
        Role::User,
        None,
        Uuid::new_v4(),
    )
    .await?;
    transaction.commit().await?;
    Ok(session)
}

/// Issues an access token and a new refresh token in `family`, storing the refresh token's hash.
#[allow(clippy::too_many_arguments)]
pub async fn issue_session(
    db: &impl ConnectionTrait,
    keys: &TokenKeys,
    now: DateTime<Utc>,
    subject: Uuid,
    kind: SubjectKind,
    role: Role,
    prefecture: Option<PrefectureCode>,
    family: Uuid,
) -> Result<Session> {
    let (access_token, expires_at) = keys.issue(subject, role, prefecture, now)?;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let refresh_token =
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes);
    let refresh_ttl = chrono::Duration::from_std(keys.refresh_ttl())
        .map_err(|error| Error::Internal(error.into()))?;
    refresh_tokens::ActiveModel {
        id: Set(Uuid::new_v4()),
        token_hash: Set(hash_refresh_token(&refresh_token)),
        family_id: Set(family),
        subject_id: Set(subject),
        subject_kind: Set(kind.as_str().to_owned()),
        created_at: Set(now),
        expires_at: Set(now + refresh_ttl),
        used_at: Set(None),
        revoked_at: Set(None),
    }
    .insert(db)
    .await?;
    Ok(Session {
        access_token,
        refresh_token,
        expires_at,
    })
}

/// Spends a refresh token and returns a new session in the same family.
pub async fn refresh_session(
    db: &DatabaseConnection,
    keys: &TokenKeys,
    now: DateTime<Utc>,
    refresh_token: &str,
) -> Result<Session> {
    let token_hash = hash_refresh_token(refresh_token.trim());
    let transaction = db.begin().await?;
    // Spend the token first: the conditional update is the race-free check that it was unspent,
    // and on SQLite it takes the write lock before anything is read.
    let spent = refresh_tokens::Entity::update_many()
        .col_expr(refresh_tokens::Column::UsedAt, Expr::value(now))
        .filter(refresh_tokens::Column::TokenHash.eq(&token_hash))
        .filter(refresh_tokens::Column::UsedAt.is_null())
        .filter(refresh_tokens::Column::RevokedAt.is_null())
        .filter(refresh_tokens::Column::ExpiresAt.gt(now))
        .exec(&transaction)
        .await?;
    let stored = refresh_tokens::Entity::find()
        .filter(refresh_tokens::Column::TokenHash.eq(&token_hash))
        .one(&transaction)
        .await?;
    let Some(stored) = stored else {
        return Err(Error::Unauthenticated(
            "invalid refresh token; log in again".into(),
        ));
    };
    if spent.rows_affected == 0 {
        let message = if stored.used_at.is_some() && stored.revoked_at.is_none() {
            refresh_tokens::Entity::update_many()
                .col_expr(refresh_tokens::Column::RevokedAt, Expr::value(now))
                .filter(refresh_tokens::Column::FamilyId.eq(stored.family_id))
                .filter(refresh_tokens::Column::RevokedAt.is_null())
                .exec(&transaction)
                .await?;
            transaction.commit().await?;
            tracing::warn!(family_id = %stored.family_id, "refresh token reused; revoked its family");
            "refresh token was already used, so every session from that login is revoked; log in again"
        } else if stored.revoked_at.is_some() {
            "refresh token was revoked; log in again"
        } else {
            "refresh token expired; log in again"
        };
        return Err(Error::Unauthenticated(message.into()));
    }
    let (role, prefecture) = subject_role(&transaction, &stored).await?;
    let session = issue_session(
        &transaction,
        keys,
        now,
        stored.subject_id,
        kind_of(&stored)?,
        role,
        prefecture,
        stored.family_id,
    )
    .await?;
    transaction.commit().await?;
    Ok(session)
}

fn kind_of(token: &refresh_tokens::Model) -> Result<SubjectKind> {
    match token.subject_kind.as_str() {
        "user" => Ok(SubjectKind::User),
        "admin" => Ok(SubjectKind::Admin),
        other => Err(Error::Internal(anyhow::anyhow!(
            "unknown subject kind {other:?} on refresh token {}",
            token.id
        ))),
    }
}

/// Reads the current role of the token's subject, so a changed or deleted admin cannot refresh.
async fn subject_role(
    db: &impl ConnectionTrait,
    token: &refresh_tokens::Model,
) -> Result<(Role, Option<PrefectureCode>)> {
    let gone = || {
        Error::Unauthenticated("the account of this session no longer exists; log in again".into())
    };
    match kind_of(token)? {
        SubjectKind::User => {
            users::Entity::find_by_id(token.subject_id)
                .one(db)
                .await?
                .ok_or_else(gone)?;
            Ok((Role::User, None))
        }
        SubjectKind::Admin => {
            let admin = admins::Entity::find_by_id(token.subject_id)
                .one(db)
                .await?
                .ok_or_else(gone)?;
            let role = Role::parse(&admin.role).ok_or_else(|| {
                Error::Internal(anyhow::anyhow!(
                    "unknown role {:?} on admin {}",
                    admin.role,
                    admin.id
                ))
            })?;
            Ok((role, admin.prefecture.and_then(PrefectureCode::from_stored)))
        }
    }
}

fn hash_refresh_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Revokes every unrevoked refresh token of a subject, ending all its sessions at their next
/// refresh.
pub async fn revoke_sessions(
    db: &impl ConnectionTrait,
    subject: Uuid,
    now: DateTime<Utc>,
) -> Result<u64> {
    let revoked = refresh_tokens::Entity::update_many()
        .col_expr(refresh_tokens::Column::RevokedAt, Expr::value(now))
        .filter(refresh_tokens::Column::SubjectId.eq(subject))
        .filter(refresh_tokens::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(revoked.rows_affected)
}
