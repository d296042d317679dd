//! Health-authority accounts: creating them and logging them in.

use std::{net::IpAddr, time::Instant};

use argon2::{
    password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
    Argon2,
};
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set, SqlErr, TransactionTrait,
};
use uuid::Uuid;

use crate::{
    audit::{self, AuditAction, AuditEntry},
    auth::{
        issue_session, revoke_sessions, Action, AdminCaller, Role, Session, SubjectKind, TokenKeys,
        Visibility,
    },
    entity::admins,
    error::{Error, Result},
    pagination::{Page, PageRequest},
    prefectures::PrefectureCode,
    rate_limit::FailureLimiter,
};

/// Minimum password length, in characters.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Maximum password length, in characters, so hashing stays bounded.
pub const MAX_PASSWORD_CHARS: usize = 256;

/// Checks an email address loosely and returns it lowercased.
pub fn parse_email(email: &str) -> Result<String> {
    let email = email.trim().to_lowercase();
    let valid = email.len() <= 320
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        })
        && !email
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || crate::notices::is_bidi_control(c));
    if !valid {
        return Err(Error::invalid(
            "email",
            format!("invalid email address {email:?}"),
        ));
    }
    Ok(email)
}

/// Checks a new password's length.
pub fn check_password(password: &str) -> Result<()> {
    let length = password.chars().count();
    if !(MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&length) {
        return Err(Error::invalid(
            "password",
            format!("invalid password: it must have {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters"),
        ));
    }
    Ok(())
}

/// Creates an admin account, as the command line does. A prefecture admin needs a prefecture;
/// other roles have none.
pub async fn create(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    email: &str,
    password: &str,
    role: Role,
    prefecture: Option<PrefectureCode>,
) -> Result<admins::Model> {
    let email = parse_email(email)?;
    check_password(password)?;
    check_role_prefecture(role, prefecture)?;
    let password_hash = hash_password(password.to_owned()).await?;
    let created = admins::ActiveModel {
        id: Set(Uuid::now_v7()),
        email: Set(email.clone()),
        password_hash: Set(password_hash),
        role: Set(role.as_str().to_owned()),
        prefecture: Set(prefecture.map(PrefectureCode::get)),
        created_at: Set(now),
    }
    .insert(db)
    .await;
    match created {
        Ok(admin) => Ok(admin),
        Err(error) if matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
            Err(Error::Conflict {
                message: format!("an admin with email {email} already exists"),
                reason: None,
            })
        }
        Err(error) => Err(error.into()),
    }
}

fn check_role_prefecture(role: Role, prefecture: Option<PrefectureCode>) -> Result<()> {
    match (role, prefecture) {
        (Role::User, _) => Err(Error::invalid(
            "role",
            "invalid role USER: an admin needs an admin role",
        )),
        (Role::PrefectureAdmin, None) => Err(Error::invalid(
            "prefecture",
            "a PREFECTURE_ADMIN needs a prefecture",
        )),
        (Role::SuperAdmin | Role::NationalAdmin, Some(code)) => Err(Error::invalid(
            "prefecture",
            format!(
                "a {} covers every prefecture; remove prefecture {code}",
                role.as_str()
            ),
        )),
        _ => Ok(()),
    }
}

/// The calling admin as currently stored, with its email for the audit log.
#[derive(Clone, Debug)]
pub struct CurrentAdmin {
    pub caller: AdminCaller,
    pub email: String,
}

/// Loads the calling admin's account, so a deleted or changed account loses its old rights at
/// once rather than when its access token expires.
pub async fn current(db: &impl ConnectionTrait, id: Uuid) -> Result<CurrentAdmin> {
    let admin = admins::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| {
            Error::Unauthenticated("the admin account of this access token no longer exists".into())
        })?;
    Ok(CurrentAdmin {
        caller: caller_of(&admin)?,
        email: admin.email,
    })
}

/// Returns the access facts of a stored admin.
pub fn caller_of(admin: &admins::Model) -> Result<AdminCaller> {
    let role = Role::parse(&admin.role).ok_or_else(|| {
        Error::Internal(anyhow::anyhow!(
            "unknown role {:?} on admin {}",
            admin.role,
            admin.id
        ))
    })?;
    Ok(AdminCaller {
        id: admin.id,
        role,
        prefecture: admin.prefecture.and_then(PrefectureCode::from_stored),
    })
}

/// Returns an admin the caller may see, or `NOT_FOUND`.
pub async fn find(
    db: &impl ConnectionTrait,
    caller: &AdminCaller,
    id: Uuid,
) -> Result<admins::Model> {
    let visibility = caller.visibility(Action::ViewAdmins)?;
    admins::Entity::find_by_id(id)
        .one(db)
        .await?
        .filter(|admin| visibility.includes(admin.prefecture.and_then(PrefectureCode::from_stored)))
        .ok_or_else(|| Error::NotFound(format!("admin {id} not found")))
}

/// Lists the admins the caller may see, oldest first.
pub async fn list(
    db: &impl ConnectionTrait,
    caller: &AdminCaller,
    page: &PageRequest,
) -> Result<Page<admins::Model>> {
    let mut query = admins::Entity::find().order_by_asc(admins::Column::Id);
    if let Visibility::Prefecture(code) = caller.visibility(Action::ViewAdmins)? {
        query = query.filter(admins::Column::Prefecture.eq(code.get()));
    }
    if let Some(after) = page.after_uuid()? {
        query = query.filter(admins::Column::Id.gt(after));
    }
    let rows = query.limit(page.first + 1).all(db).await?;
    Ok(Page::from_rows(rows, page))
}

/// Creates an admin on behalf of `admin`, within its role and prefecture, and audits it.
pub async fn create_by(
    db: &DatabaseConnection,
    admin: &CurrentAdmin,
    now: DateTime<Utc>,
    email: &str,
    password: &str,
    role: Role,
    prefecture: Option<PrefectureCode>,
) -> Result<admins::Model> {
    admin
        .caller
        .authorize_admin_management(Action::CreateAdmin, role, prefecture)?;
    let transaction = db.begin().await?;
    let created = create(&transaction, now, email, password, role, prefecture).await?;
    let entry = AuditEntry {
        admin: &admin.caller,
        admin_email: &admin.email,
        action: AuditAction::CreateAdmin,
        prefecture,
        target: Some(created.id.to_string()),
        detail: Some(format!("{} {}", role.as_str(), created.email)),
    };
    audit::record(&transaction, entry, now).await?;
    transaction.commit().await?;
    tracing::info!(admin_id = %admin.caller.id, created = %created.id, role = role.as_str(), "admin created");
    Ok(created)
}

/// Deletes an admin the caller may manage, ends its sessions and audits it.
pub async fn delete(
    db: &DatabaseConnection,
    admin: &CurrentAdmin,
    now: DateTime<Utc>,
    id: Uuid,
) -> Result<admins::Model> {
    let target = find(db, &admin.caller, id).await?;
    let target_caller = caller_of(&target)?;
    admin.caller.authorize_admin_management(
        Action::DeleteAdmin,
        target_caller.role,
        target_caller.prefecture,
    )?;
    if target.id == admin.caller.id {
        return Err(Error::invalid(
            "id",
            "you cannot delete your own account; ask another admin",
        ));
    }
    let transaction = db.begin().await?;
    admins::Entity::delete_by_id(target.id)
        .exec(&transaction)
        .await?;
    revoke_sessions(&transaction, target.id, now).await?;
    let entry = AuditEntry {
        admin: &admin.caller,
        admin_email: &admin.email,
        action: AuditAction::DeleteAdmin,
        prefecture: target_caller.prefecture,
        target: Some(target.id.to_string()),
        detail: Some(format!("{} {}", target.role, target.email)),
    };
    audit::record(&transaction, entry, now).await?;
    transaction.commit().await?;
    tracing::info!(admin_id = %admin.caller.id, deleted = %target.id, "admin deleted");
    Ok(target)
}

/// Changes the caller's own password after checking the current one, and revokes every refresh
/// token of the account, the caller's included.
pub async fn change_password(
    db: &DatabaseConnection,
    admin: &CurrentAdmin,
    now: DateTime<Utc>,
    current_password: &str,
    new_password: &str,
) -> Result<()> {
    check_password(new_password).map_err(|_| {
        Error::invalid(
            "newPassword",
            format!("invalid new password: it must have {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters"),
        )
    })?;
    let stored = admins::Entity::find_by_id(admin.caller.id)
        .one(db)
        .await?
        .ok_or_else(|| {
            Error::Unauthenticated("the admin account of this access token no longer exists".into())
        })?;
    if !verify_password(
        current_password.to_owned(),
        Some(stored.password_hash.clone()),
    )
    .await?
    {
        return Err(Error::invalid(
            "currentPassword",
            "the current password is wrong",
        ));
    }
    let password_hash = hash_password(new_password.to_owned()).await?;
    let transaction = db.begin().await?;
    let mut active: admins::ActiveModel = stored.into();
    active.password_hash = Set(password_hash);
    active.update(&transaction).await?;
    revoke_sessions(&transaction, admin.caller.id, now).await?;
    let entry = AuditEntry {
        admin: &admin.caller,
        admin_email: &admin.email,
        action: AuditAction::ChangePassword,
        prefecture: admin.caller.prefecture,
        target: Some(admin.caller.id.to_string()),
        detail: None,
    };
    audit::record(&transaction, entry, now).await?;
    transaction.commit().await?;
    Ok(())
}

/// Checks an admin's password and returns a new session. Repeated failures for one account or
/// from one address are rejected for a while.
pub async fn login(
    db: &DatabaseConnection,
    keys: &TokenKeys,
    attempts: &FailureLimiter,
    now: DateTime<Utc>,
    client_address: Option<IpAddr>,
    email: &str,
    password: &str,
) -> Result<Session> {
    let email = email.trim().to_lowercase();
    let mut limiter_keys = vec![format!("email:{email}")];
    if let Some(address) = client_address {
        limiter_keys.push(format!("address:{address}"));
    }
    let started = Instant::now();
    if let Err(retry_after_seconds) = attempts.reserve(&limiter_keys, started) {
        return Err(Error::RateLimited {
            message: format!(
                "too many failed logins; locked for {retry_after_seconds} more seconds"
            ),
            retry_after_seconds,
        });
    }
    let admin = admins::Entity::find()
        .filter(admins::Column::Email.eq(&email))
        .one(db)
        .await?;
    // An unknown email still costs one hash check, so timing does not reveal which emails exist.
    let stored_hash = admin.as_ref().map(|admin| admin.password_hash.clone());
    let valid = verify_password(password.to_owned(), stored_hash).await?;
    let Some(admin) = admin.filter(|_| valid) else {
        let delay = attempts.delay_for(&limiter_keys, started);
        tracing::debug!(delay_ms = delay.as_millis() as u64, "admin login failed");
        tokio::time::sleep(delay).await;
        return Err(Error::Unauthenticated("invalid email or password".into()));
    };
    attempts.release(&limiter_keys);
    let caller = caller_of(&admin)?;
    tracing::info!(admin_id = %admin.id, "admin logged in");
    issue_session(
        db,
        keys,
        now,
        admin.id,
        SubjectKind::Admin,
        caller.role,
        caller.prefecture,
        Uuid::new_v4(),
    )
    .await
}

async fn hash_password(password: String) -> Result<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
    })
    .await
    .map_err(|error| Error::Internal(error.into()))?
    .map_err(|error| Error::Internal(anyhow::anyhow!("failed to hash password: {error}")))
}

/// A valid Argon2id hash of a random password, checked when the email is unknown.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$JrnN1Krs5VAIhYy5nxR6E9mnH6c9uuJdXnOgb6tXVa8";

async fn verify_password(password: String, stored_hash: Option<String>) -> Result<bool> {
    tokio::task::spawn_blocking(move || {
        let known = stored_hash.is_some();
        let stored = stored_hash.unwrap_or_else(|| DUMMY_HASH.to_owned());
        let Ok(parsed) = PasswordHash::new(&stored) else {
            return false;
        };
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
            && known
    })
    .await
    .map_err(|error| Error::Internal(error.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_email_lowercases_and_checks() {
        assert_eq!(
            parse_email(" Admin@Example.JP ").unwrap(),
            "admin@example.jp"
        );
        for bad in [
            "",
            "admin",
            "@example.jp",
            "admin@",
            "admin@localhost",
            "ad min@example.jp",
        ] {
            assert!(parse_email(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn check_password_requires_twelve_characters() {
        assert!(check_password("short-pass1").is_err());
        assert!(check_password("long-enough-1").is_ok());
        assert!(check_password(&"x".repeat(MAX_PASSWORD_CHARS + 1)).is_err());
    }

    #[test]
    fn dummy_hash_parses() {
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
    }
}
