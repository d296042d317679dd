//! One-time health-center tokens: issuing codes and storing them as keyed hashes.
//!
//! A code is 12 characters from a 30-letter alphabet without look-alikes
//! (no 0/O, 1/I/L or U), about 58.9 bits, printed in groups of four so that it
//! reads aloud easily: `K7QM-3XRT-WP9C`. Only HMAC-SHA256 of the normalized
//! code is stored.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use rand::Rng;
use sea_orm::{
    sea_query::Expr, ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Set, Statement, TransactionTrait,
};
use sha2::Sha256;
use uuid::Uuid;

use crate::{
    admins::CurrentAdmin,
    audit::{self, AuditAction, AuditEntry},
    auth::{Action, Visibility},
    entity::health_center_tokens,
    error::{Error, Result},
    japan_time,
    pagination::{Page, PageRequest},
    prefectures::PrefectureCode,
    secrets::SecretBytes,
};

const ALPHABET: &[u8; 30] = b"23456789ABCDEFGHJKMNPQRSTVWXYZ";
const CODE_LENGTH: usize = 12;
const GROUP_LENGTH: usize = 4;

/// Maximum number of codes one call may issue.
pub const MAX_CODES_PER_CALL: u32 = 100;
/// First key of the advisory lock that serializes issuing per prefecture; the second is the code.
const QUOTA_LOCK_CLASS: i32 = 0x6d61_6d6f;
/// Maximum validity of a token, in days.
pub const MAX_VALID_DAYS: i64 = 90;

/// Hashes codes with the server's secret key, so a leaked table cannot be checked offline.
#[derive(Clone)]
pub struct CodeHasher {
    keyed: Hmac<Sha256>,
}

impl CodeHasher {
    /// Creates a hasher with the given secret key.
    pub fn new(key: &SecretBytes) -> anyhow::Result<Self> {
        let keyed = <Hmac<Sha256> as Mac>::new_from_slice(key.expose())
            .map_err(|error| anyhow::anyhow!("invalid token hash key: {error}"))?;
        Ok(CodeHasher { keyed })
    }

    /// Returns the hex HMAC-SHA256 of a normalized code.
    pub fn hash(&self, normalized_code: &str) -> String {
        let mut mac = self.keyed.clone();
        mac.update(normalized_code.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// Generates a fresh code in its printed form, `XXXX-XXXX-XXXX`.
pub fn generate_code() -> String {
    let mut rng = rand::rngs::OsRng;
    let mut code = String::with_capacity(CODE_LENGTH + CODE_LENGTH / GROUP_LENGTH);
    for index in 0..CODE_LENGTH {
        if index > 0 && index % GROUP_LENGTH == 0 {
            code.push('-');
        }
        code.push(char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]));
    }
    code
}

/// Normalizes a code as typed: case, hyphens and spaces do not matter.
/// Returns `None` when it cannot be a code.
pub fn normalize(input: &str) -> Option<String> {
    let code: String = input
        .chars()
        .map(to_half_width)
        .filter(|c| !c.is_whitespace() && !matches!(c, '-' | '\u{2010}'..='\u{2015}' | '\u{30FC}'))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (code.len() == CODE_LENGTH && code.bytes().all(|byte| ALPHABET.contains(&byte))).then_some(code)
}

/// Maps a full-width form (U+FF01 to U+FF5E), as Japanese keyboards type it, to its ASCII letter.
fn to_half_width(c: char) -> char {
    match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        other => other,
    }
}

/// Issues `count` tokens for `prefecture`, valid until `now + valid_for`, and returns the codes.
/// This is the command line's path; the dashboard's is [`issue_by`].
pub async fn issue(
    db: &DatabaseConnection,
    hasher: &CodeHasher,
    now: DateTime<Utc>,
    prefecture: PrefectureCode,
    count: u32,
    valid_for: chrono::Duration,
) -> Result<(Vec<String>, DateTime<Utc>)> {
    check_request(count, valid_for)?;
    let transaction = db.begin().await?;
    let issued = insert_codes(&transaction, hasher, now, prefecture, count, valid_for).await?;
    transaction.commit().await?;
    Ok(issued)
}

/// Issues tokens for an admin of that prefecture or above, within the prefecture's daily quota
/// (days in Japan time), and audits it.
#[allow(clippy::too_many_arguments)]
pub async fn issue_by(
    db: &DatabaseConnection,
    hasher: &CodeHasher,
    admin: &CurrentAdmin,
    now: DateTime<Utc>,
    prefecture: PrefectureCode,
    count: u32,
    valid_for: chrono::Duration,
    daily_quota: u32,
) -> Result<(Vec<String>, DateTime<Utc>)> {
    admin
        .caller
        .authorize(Action::IssueTokens, Some(prefecture))?;
    check_request(count, valid_for)?;
    let today = japan_time::date_of(now);
    let transaction = db.begin().await?;
    if transaction.get_database_backend() == DbBackend::Postgres {
        // Concurrent issues for one prefecture queue here, so each counts the others' tokens.
        let lock = Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock($1, $2)",
            [QUOTA_LOCK_CLASS.into(), i32::from(prefecture.get()).into()],
        );
        transaction.execute(lock).await?;
    }
    let issued_today = health_center_tokens::Entity::find()
        .filter(health_center_tokens::Column::Prefecture.eq(prefecture.get()))
        .filter(health_center_tokens::Column::CreatedAt.gte(japan_time::start_of(today)))
        .count(&transaction)
        .await?;
    if issued_today + u64::from(count) > u64::from(daily_quota) {
        let tomorrow = japan_time::start_of(today + chrono::Duration::days(1));
        return Err(Error::RateLimited {
            message: format!(
                "daily quota reached: prefecture {prefecture} issued {issued_today} of {daily_quota} tokens today (Japan time)"
            ),
            retry_after_seconds: (tomorrow - now).num_seconds().max(1) as u64,
        });
    }
    let issued = insert_codes(&transaction, hasher, now, prefecture, count, valid_for).await?;
    let entry = AuditEntry {
        admin: &admin.caller,
        admin_email: &admin.email,
        action: AuditAction::IssueTokens,
        prefecture: Some(prefecture),
        target: None,
        detail: Some(format!(
            "{count} tokens valid until {}",
            issued.1.to_rfc3339()
        )),
    };
    audit::record(&transaction, entry, now).await?;
    transaction.commit().await?;
    tracing::info!(admin_id = %admin.caller.id, %prefecture, count, "health-center tokens issued");
    Ok(issued)
}

fn check_request(count: u32, valid_for: chrono::Duration) -> Result<()> {
    if count == 0 || count > MAX_CODES_PER_CALL {
        return Err(Error::invalid(
            "count",
            format!("invalid count {count}: issue from 1 to {MAX_CODES_PER_CALL} codes at a time"),
        ));
    }
    if valid_for < chrono::Duration::hours(1) || valid_for > chrono::Duration::days(MAX_VALID_DAYS)
    {
        return Err(Error::invalid(
            "validForHours",
            format!("invalid validity: a token may be valid from 1 hour to {MAX_VALID_DAYS} days"),
        ));
    }
    Ok(())
}

async fn insert_codes(
    db: &impl ConnectionTrait,
    hasher: &CodeHasher,
    now: DateTime<Utc>,
    prefecture: PrefectureCode,
    count: u32,
    valid_for: chrono::Duration,
) -> Result<(Vec<String>, DateTime<Utc>)> {
    let expires_at = now + valid_for;
    let codes: Vec<String> = (0..count).map(|_| generate_code()).collect();
    let rows = codes
        .iter()
        .map(|code| {
            let normalized = normalize(code).ok_or_else(|| {
                Error::Internal(anyhow::anyhow!("generated code failed to normalize"))
            })?;
            Ok(health_center_tokens::ActiveModel {
                id: Set(Uuid::now_v7()),
                code_hash: Set(hasher.hash(&normalized)),
                prefecture: Set(prefecture.get()),
                created_at: Set(now),
                expires_at: Set(expires_at),
                redeemed_at: Set(None),
                redeemed_by: Set(None),
                revoked_at: Set(None),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    health_center_tokens::Entity::insert_many(rows)
        .exec(db)
        .await?;
    Ok((codes, expires_at))
}

/// The state of an issued token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenStatus {
    /// Usable for one upload until it expires.
    Issued,
    /// Spent by an upload.
    Redeemed,
    /// Expired before anyone used it.
    Expired,
    /// Revoked before anyone used it.
    Revoked,
}

impl TokenStatus {
    /// Returns the status of a stored token at time `now`.
    pub fn of(token: &health_center_tokens::Model, now: DateTime<Utc>) -> Self {
        if token.redeemed_at.is_some() {
            TokenStatus::Redeemed
        } else if token.revoked_at.is_some() {
            TokenStatus::Revoked
        } else if token.expires_at <= now {
            TokenStatus::Expired
        } else {
            TokenStatus::Issued
        }
    }
}

/// Lists issued tokens newest first, without their codes, limited to what the admin may see.
pub async fn list(
    db: &DatabaseConnection,
    admin: &CurrentAdmin,
    now: DateTime<Utc>,
    prefecture: Option<PrefectureCode>,
    status: Option<TokenStatus>,
    page: &PageRequest,
) -> Result<Page<health_center_tokens::Model>> {
    use health_center_tokens::Column;
    let mut query = health_center_tokens::Entity::find().order_by_desc(Column::Id);
    match prefecture {
        Some(code) => {
            admin.caller.authorize(Action::ViewTokens, Some(code))?;
            query = query.filter(Column::Prefecture.eq(code.get()));
        }
        None => {
            if let Visibility::Prefecture(code) = admin.caller.visibility(Action::ViewTokens)? {
                query = query.filter(Column::Prefecture.eq(code.get()));
            }
        }
    }
    query = match status {
        None => query,
        Some(TokenStatus::Redeemed) => query.filter(Column::RedeemedAt.is_not_null()),
        Some(TokenStatus::Revoked) => query
            .filter(Column::RedeemedAt.is_null())
            .filter(Column::RevokedAt.is_not_null()),
        Some(TokenStatus::Expired) => query
            .filter(Column::RedeemedAt.is_null())
            .filter(Column::RevokedAt.is_null())
            .filter(Column::ExpiresAt.lte(now)),
        Some(TokenStatus::Issued) => query
            .filter(Column::RedeemedAt.is_null())
            .filter(Column::RevokedAt.is_null())
            .filter(Column::ExpiresAt.gt(now)),
    };
    if let Some(after) = page.after_uuid()? {
        query = query.filter(Column::Id.lt(after));
    }
    let rows = query.limit(page.first + 1).all(db).await?;
    Ok(Page::from_rows(rows, page))
}

/// Revokes an unused token, so no upload can spend it, and audits it.
pub async fn revoke(
    db: &DatabaseConnection,
    admin: &CurrentAdmin,
    now: DateTime<Utc>,
    id: Uuid,
) -> Result<health_center_tokens::Model> {
    use health_center_tokens::Column;
    let not_found = || Error::NotFound(format!("health-center token {id} not found"));
    let token = health_center_tokens::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(not_found)?;
    let prefecture = PrefectureCode::from_stored(token.prefecture);
    if admin
        .caller
        .authorize(Action::RevokeToken, prefecture)
        .is_err()
    {
        return Err(not_found());
    }
    let transaction = db.begin().await?;
    let revoked = health_center_tokens::Entity::update_many()
        .col_expr(Column::RevokedAt, Expr::value(now))
        .filter(Column::Id.eq(id))
        .filter(Column::RedeemedAt.is_null())
        .filter(Column::RevokedAt.is_null())
        .filter(Column::ExpiresAt.gt(now))
        .exec(&transaction)
        .await?;
    if revoked.rows_affected == 0 {
        let state = match TokenStatus::of(&token, now) {
            TokenStatus::Redeemed => "already redeemed",
            TokenStatus::Revoked => "already revoked",
            TokenStatus::Expired => "already expired",
            TokenStatus::Issued => "changed meanwhile; retry",
        };
        return Err(Error::Conflict {
            message: format!("health-center token {id} is {state}"),
            reason: None,
        });
    }
    let entry = AuditEntry {
        admin: &admin.caller,
        admin_email: &admin.email,
        action: AuditAction::RevokeToken,
        prefecture,
        target: Some(id.to_string()),
        detail: None,
    };
    audit::record(&transaction, entry, now).await?;
    let revoked = health_center_tokens::Entity::find_by_id(id)
        .one(&transaction)
        .await?
        .ok_or_else(not_found)?;
    transaction.commit().await?;
    tracing::info!(admin_id = %admin.caller.id, token_id = %id, "health-center token revoked");
    Ok(revoked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_code_has_groups_and_normalizes() {
        let code = generate_code();
        assert_eq!(code.len(), 14);
        assert_eq!(&code[4..5], "-");
        assert_eq!(&code[9..10], "-");
        assert_eq!(normalize(&code).unwrap(), code.replace('-', ""));
    }

    #[test]
    fn normalize_ignores_case_and_separators() {
        assert_eq!(normalize("k7qm 3xrt-wp9c").as_deref(), Some("K7QM3XRTWP9C"));
        assert_eq!(
            normalize("\tK7QM-3XRT-WP9C\t\n").as_deref(),
            Some("K7QM3XRTWP9C")
        );
        assert_eq!(
            normalize("Ｋ７ＱＭ－３ＸＲＴ－ＷＰ９Ｃ").as_deref(),
            Some("K7QM3XRTWP9C")
        );
    }

    #[test]
    fn normalize_rejects_ambiguous_or_short_codes() {
        assert_eq!(
            normalize("K7QM-3XRT-WP9O"),
            None,
            "O is not in the alphabet"
        );
        assert_eq!(
            normalize("K7QM-3XRT-WP91"),
            None,
            "1 is not in the alphabet"
        );
        assert_eq!(normalize("K7QM-3XRT"), None);
        assert_eq!(normalize("12345678"), None);
        assert_eq!(normalize(""), None);
    }

    #[test]
    fn alphabet_has_no_look_alikes_and_enough_entropy() {
        for ambiguous in [b'0', b'O', b'1', b'I', b'L', b'U'] {
            assert!(!ALPHABET.contains(&ambiguous));
        }
        let bits = (CODE_LENGTH as f64) * (ALPHABET.len() as f64).log2();
        assert!(bits >= 50.0, "{bits} bits");
    }

    #[test]
    fn hash_depends_on_key() {
        let first = CodeHasher::new(&SecretBytes::new(vec![1; 32]))
            .unwrap()
            .hash("K7QM3XRTWP9C");
        let second = CodeHasher::new(&SecretBytes::new(vec![2; 32]))
            .unwrap()
            .hash("K7QM3XRTWP9C");
        assert_eq!(first.len(), 64);
        assert_ne!(first, second);
    }
}
