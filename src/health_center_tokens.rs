//! One-time health-center tokens: issuing codes and storing them as keyed hashes.
//!
//! A code is 12 characters from a 30-letter alphabet without look-alikes
//! (no 0/O, 1/I/L or U), about 58.9 bits, printed in groups of four so that it
//! reads aloud easily: `K7QM-3XRT-WP9C`. Only HMAC-SHA256 of the normalized
//! code is stored.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use rand::Rng;
use sea_orm::{ActiveModelTrait, DatabaseConnection, Set, TransactionTrait};
use sha2::Sha256;
use uuid::Uuid;

use crate::{
    entity::health_center_tokens,
    error::{Error, Result},
    prefectures::PrefectureCode,
    secrets::SecretBytes,
};

const ALPHABET: &[u8; 30] = b"23456789ABCDEFGHJKMNPQRSTVWXYZ";
const CODE_LENGTH: usize = 12;
const GROUP_LENGTH: usize = 4;

/// Maximum number of codes one call may issue.
pub const MAX_CODES_PER_CALL: u32 = 100;

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
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (code.len() == CODE_LENGTH && code.bytes().all(|byte| ALPHABET.contains(&byte))).then_some(code)
}

/// Issues `count` tokens for `prefecture`, valid until `now + valid_for`, and returns the codes.
pub async fn issue(
    db: &DatabaseConnection,
    hasher: &CodeHasher,
    now: DateTime<Utc>,
    prefecture: PrefectureCode,
    count: u32,
    valid_for: chrono::Duration,
) -> Result<(Vec<String>, DateTime<Utc>)> {
    if count == 0 || count > MAX_CODES_PER_CALL {
        return Err(Error::invalid(
            "count",
            format!("invalid count {count}: issue from 1 to {MAX_CODES_PER_CALL} codes at a time"),
        ));
    }
    if valid_for <= chrono::Duration::zero() || valid_for > chrono::Duration::days(90) {
        return Err(Error::invalid(
            "validFor",
            "invalid validity: a token may be valid from 1 second to 90 days",
        ));
    }
    let expires_at = now + valid_for;
    let codes: Vec<String> = (0..count).map(|_| generate_code()).collect();
    let transaction = db.begin().await?;
    for code in &codes {
        let normalized = normalize(code).ok_or_else(|| {
            Error::Internal(anyhow::anyhow!("generated code failed to normalize"))
        })?;
        health_center_tokens::ActiveModel {
            id: Set(Uuid::new_v4()),
            code_hash: Set(hasher.hash(&normalized)),
            prefecture: Set(prefecture.get()),
            created_at: Set(now),
            expires_at: Set(expires_at),
            redeemed_at: Set(None),
            redeemed_by: Set(None),
            revoked_at: Set(None),
        }
        .insert(&transaction)
        .await?;
    }
    transaction.commit().await?;
    Ok((codes, expires_at))
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
