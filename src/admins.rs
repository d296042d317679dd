//! Health-authority accounts: creating them and logging them in.

use std::{net::IpAddr, time::Instant};

use argon2::{
    password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
    Argon2,
};
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, Set, SqlErr,
};
use uuid::Uuid;

use crate::{
    auth::{issue_session, Role, Session, SubjectKind, TokenKeys},
    entity::admins,
    error::{Error, Result},
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
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
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
    if length < MIN_PASSWORD_CHARS || length > MAX_PASSWORD_CHARS {
        return Err(Error::invalid(
            "password",
            format!("invalid password: it must have {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters"),
        ));
    }
    Ok(())
}

/// Creates an admin account. A prefecture admin needs a prefecture; other roles have none.
pub async fn create(
    db: &DatabaseConnection,
    now: DateTime<Utc>,
    email: &str,
    password: &str,
    role: Role,
    prefecture: Option<PrefectureCode>,
) -> Result<admins::Model> {
    let email = parse_email(email)?;
    check_password(password)?;
    match (role, prefecture) {
        (Role::User, _) => {
            return Err(Error::invalid(
                "role",
                "invalid role USER: an admin needs an admin role",
            ))
        }
        (Role::PrefectureAdmin, None) => {
            return Err(Error::invalid(
                "prefecture",
                "a PREFECTURE_ADMIN needs a prefecture",
            ))
        }
        (Role::SuperAdmin | Role::NationalAdmin, Some(code)) => {
            return Err(Error::invalid(
                "prefecture",
                format!(
                    "a {} covers every prefecture; remove prefecture {code}",
                    role.as_str()
                ),
            ))
        }
        _ => {}
    }
    let password_hash = hash_password(password.to_owned()).await?;
    let created = admins::ActiveModel {
        id: Set(Uuid::new_v4()),
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
    if let Some(retry_after_seconds) = limiter_keys
        .iter()
        .filter_map(|key| attempts.blocked_for(key, started))
        .max()
    {
        return Err(Error::RateLimited {
            message: format!("too many failed logins; retry in {retry_after_seconds} seconds"),
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
        for key in &limiter_keys {
            attempts.record_failure(key, started);
        }
        return Err(Error::Unauthenticated("invalid email or password".into()));
    };
    let role = Role::parse(&admin.role).ok_or_else(|| {
        Error::Internal(anyhow::anyhow!(
            "unknown role {:?} on admin {}",
            admin.role,
            admin.id
        ))
    })?;
    let prefecture = admin.prefecture.and_then(PrefectureCode::from_stored);
    tracing::info!(admin_id = %admin.id, "admin logged in");
    issue_session(
        db,
        keys,
        now,
        admin.id,
        SubjectKind::Admin,
        role,
        prefecture,
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
