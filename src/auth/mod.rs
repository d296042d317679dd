//! Access tokens (JWT, HS256), the caller of a request and its role.

mod access;
mod sessions;

pub use access::{scope, Action, AdminCaller, Scope, Visibility};
pub use sessions::{issue_session, login, refresh_session, revoke_sessions, Session, SubjectKind};

use std::time::Duration;

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    error::{Error, Result},
    prefectures::PrefectureCode,
};

/// Role of a token's bearer. Phone users have `User`; the rest are admin roles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Role {
    /// An anonymous phone user.
    User,
    /// Every permission.
    SuperAdmin,
    /// Every prefecture; may create national and prefecture admins.
    NationalAdmin,
    /// One prefecture's notices, tokens and statistics.
    PrefectureAdmin,
}

impl Role {
    /// Returns the stored and serialized name, such as `SUPER_ADMIN`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "USER",
            Role::SuperAdmin => "SUPER_ADMIN",
            Role::NationalAdmin => "NATIONAL_ADMIN",
            Role::PrefectureAdmin => "PREFECTURE_ADMIN",
        }
    }

    /// Parses a stored or typed role name.
    pub fn parse(name: &str) -> Option<Role> {
        [
            Role::User,
            Role::SuperAdmin,
            Role::NationalAdmin,
            Role::PrefectureAdmin,
        ]
        .into_iter()
        .find(|role| role.as_str() == name)
    }
}

/// Claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// The user's or admin's id.
    pub sub: Uuid,
    pub role: Role,
    /// The prefecture of a prefecture admin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefecture: Option<i16>,
    pub iat: i64,
    pub exp: i64,
}

/// Signs and verifies access tokens.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
    ttl: Duration,
    refresh_ttl: Duration,
}

impl TokenKeys {
    /// Builds the keys from the shared secret, the expected issuer and audience, and the
    /// lifetimes of access and refresh tokens.
    pub fn new(
        secret: &[u8],
        issuer: &str,
        audience: &str,
        ttl: Duration,
        refresh_ttl: Duration,
    ) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["iss", "aud", "sub", "exp", "iat"]);
        // Expiry is checked against the server's clock in `verify`, so tests can control it.
        validation.validate_exp = false;
        TokenKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            ttl,
            refresh_ttl,
        }
    }

    /// Returns how long a refresh token lives.
    pub fn refresh_ttl(&self) -> Duration {
        self.refresh_ttl
    }

    /// Issues an access token for `subject` and returns it with its expiry.
    pub fn issue(
        &self,
        subject: Uuid,
        role: Role,
        prefecture: Option<PrefectureCode>,
        now: DateTime<Utc>,
    ) -> Result<(String, DateTime<Utc>)> {
        let ttl =
            chrono::Duration::from_std(self.ttl).map_err(|error| Error::Internal(error.into()))?;
        let expires_at = now + ttl;
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: subject,
            role,
            prefecture: prefecture.map(PrefectureCode::get),
            iat: now.timestamp(),
            exp: expires_at.timestamp(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|error| Error::Internal(error.into()))?;
        Ok((token, expires_at))
    }

    /// Verifies a token's signature, issuer, audience and expiry.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Claims> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| Error::Unauthenticated("invalid access token; log in again".into()))?;
        if data.claims.exp <= now.timestamp() {
            return Err(Error::Unauthenticated(
                "access token expired; renew it with refreshSession".into(),
            ));
        }
        Ok(data.claims)
    }
}

/// Identity of the caller, read from the `Authorization` header or the WebSocket init payload.
#[derive(Clone, Debug)]
pub enum Caller {
    /// No credentials were sent.
    Anonymous,
    /// Credentials were sent but are invalid. The message gives the reason.
    Invalid(String),
    /// A phone user.
    User { id: Uuid },
    /// A health-authority account.
    Admin {
        id: Uuid,
        role: Role,
        prefecture: Option<PrefectureCode>,
    },
}

impl Caller {
    /// Reads the caller from an `Authorization` header value, if any.
    pub fn from_authorization(value: Option<&str>, keys: &TokenKeys, now: DateTime<Utc>) -> Caller {
        let Some(value) = value else {
            return Caller::Anonymous;
        };
        let Some(token) = value.strip_prefix("Bearer ").map(str::trim) else {
            return Caller::Invalid(
                "invalid Authorization header; expected `Bearer <accessToken>`".into(),
            );
        };
        match keys.verify(token, now) {
            Ok(claims) if claims.role == Role::User => Caller::User { id: claims.sub },
            Ok(claims) => Caller::Admin {
                id: claims.sub,
                role: claims.role,
                prefecture: claims.prefecture.and_then(PrefectureCode::from_stored),
            },
            Err(error) => Caller::Invalid(error.to_string()),
        }
    }

    /// Returns the phone user's id, or the error for any other caller.
    pub fn require_user(&self) -> Result<Uuid> {
        match self {
            Caller::User { id } => Ok(*id),
            Caller::Anonymous => Err(Error::Unauthenticated(
                "log in first: this operation needs an access token".into(),
            )),
            Caller::Invalid(message) => Err(Error::Unauthenticated(message.clone())),
            Caller::Admin { .. } => Err(Error::Forbidden(
                "this operation is for phone users, not admin accounts".into(),
            )),
        }
    }

    /// Returns the admin's id as the token states it, or the error for any other caller.
    /// Admin operations then read the account's current role with `admins::current`.
    pub fn require_admin(&self) -> Result<Uuid> {
        match self {
            Caller::Admin { id, .. } => Ok(*id),
            Caller::Anonymous => Err(Error::Unauthenticated(
                "log in first: this operation needs an admin access token".into(),
            )),
            Caller::Invalid(message) => Err(Error::Unauthenticated(message.clone())),
            Caller::User { .. } => Err(Error::Forbidden(
                "this operation is for health-authority admins".into(),
            )),
        }
    }

    /// Succeeds for any logged-in caller, phone user or admin.
    pub fn require_any(&self) -> Result<()> {
        match self {
            Caller::User { .. } | Caller::Admin { .. } => Ok(()),
            Caller::Anonymous => Err(Error::Unauthenticated(
                "log in first: this operation needs an access token".into(),
            )),
            Caller::Invalid(message) => Err(Error::Unauthenticated(message.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> TokenKeys {
        TokenKeys::new(
            &[7u8; 32],
            "mamori",
            "mamori-app",
            Duration::from_secs(3600),
            Duration::from_secs(86400),
        )
    }

    #[test]
    fn issued_token_verifies_with_claims() {
        let now = Utc::now();
        let subject = Uuid::new_v4();
        let (token, expires_at) = keys().issue(subject, Role::User, None, now).unwrap();
        let claims = keys().verify(&token, now).unwrap();
        assert_eq!(claims.sub, subject);
        assert_eq!(claims.role, Role::User);
        assert_eq!(claims.iss, "mamori");
        assert_eq!(claims.aud, "mamori-app");
        assert_eq!(claims.exp, expires_at.timestamp());
    }

    #[test]
    fn expired_token_is_rejected() {
        let now = Utc::now();
        let (token, _) = keys().issue(Uuid::new_v4(), Role::User, None, now).unwrap();
        let error = keys()
            .verify(&token, now + chrono::Duration::hours(2))
            .unwrap_err();
        assert_eq!(error.code(), "UNAUTHENTICATED");
        assert!(error.to_string().contains("expired"));
    }

    #[test]
    fn token_of_other_audience_or_secret_is_rejected() {
        let now = Utc::now();
        let other_audience = TokenKeys::new(
            &[7u8; 32],
            "mamori",
            "dashboard",
            Duration::from_secs(60),
            Duration::from_secs(60),
        );
        let (token, _) = other_audience
            .issue(Uuid::new_v4(), Role::User, None, now)
            .unwrap();
        assert!(keys().verify(&token, now).is_err());

        let other_secret = TokenKeys::new(
            &[8u8; 32],
            "mamori",
            "mamori-app",
            Duration::from_secs(60),
            Duration::from_secs(60),
        );
        let (token, _) = other_secret
            .issue(Uuid::new_v4(), Role::User, None, now)
            .unwrap();
        assert!(keys().verify(&token, now).is_err());
    }

    #[test]
    fn unsigned_token_is_rejected() {
        // A token with `alg: none` must never pass, whatever its claims.
        let header = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            br#"{"alg":"none","typ":"JWT"}"#,
        );
        let now = Utc::now().timestamp();
        let body = format!(
            r#"{{"iss":"mamori","aud":"mamori-app","sub":"{}","role":"SUPER_ADMIN","iat":{now},"exp":{}}}"#,
            Uuid::new_v4(),
            now + 600
        );
        let body = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, body);
        assert!(keys()
            .verify(&format!("{header}.{body}."), Utc::now())
            .is_err());
    }

    #[test]
    fn admin_token_cannot_act_as_user() {
        let now = Utc::now();
        let (token, _) = keys()
            .issue(Uuid::new_v4(), Role::SuperAdmin, None, now)
            .unwrap();
        let caller = Caller::from_authorization(Some(&format!("Bearer {token}")), &keys(), now);
        assert_eq!(caller.require_user().unwrap_err().code(), "FORBIDDEN");
        assert!(caller.require_admin().is_ok());
    }
}
