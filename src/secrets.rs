//! Secrets the server needs: the access-token signing key and the token hash key.
//!
//! An operator supplies them as files. When the setting is absent, the server
//! generates them into the data folder on first start and warns that
//! production must supply its own.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::Context;
use rand::RngCore;

use crate::config::Config;

/// Secret bytes that must never be printed.
#[derive(Clone)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    /// Returns the raw bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Wraps secret bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretBytes(bytes)
    }
}

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("SecretBytes([redacted])")
    }
}

/// The server's loaded secrets.
#[derive(Clone, Debug)]
pub struct Secrets {
    /// HS256 key for access tokens.
    pub jwt_secret: SecretBytes,
    /// HMAC-SHA256 key for health-center token codes.
    pub token_hash_key: SecretBytes,
}

const MIN_SECRET_BYTES: usize = 32;

impl Secrets {
    /// Loads the configured secret files, generating the default ones when missing.
    pub fn load(config: &Config) -> anyhow::Result<Self> {
        Ok(Secrets {
            jwt_secret: load_or_generate(
                config.jwt_secret_file.as_deref(),
                &config.data_dir.join("secrets/jwt-signing.key"),
                "MAMORI_JWT_SECRET_FILE",
            )?,
            token_hash_key: load_or_generate(
                config.token_hash_key_file.as_deref(),
                &config.data_dir.join("secrets/token-hash.key"),
                "MAMORI_TOKEN_HASH_KEY_FILE",
            )?,
        })
    }
}

fn load_or_generate(
    configured: Option<&Path>,
    default: &Path,
    variable: &str,
) -> anyhow::Result<SecretBytes> {
    let path: PathBuf = match configured {
        Some(path) => path.to_owned(),
        None if default.exists() => default.to_owned(),
        None => {
            generate(default)
                .with_context(|| format!("failed to generate secret {}", default.display()))?;
            tracing::warn!(
                path = %default.display(),
                "generated a new secret; production must supply its own through {variable}"
            );
            default.to_owned()
        }
    };
    let bytes = fs::read(&path)
        .with_context(|| format!("failed to read {variable} file {}", path.display()))?;
    let trimmed = bytes.trim_ascii();
    if trimmed.len() < MIN_SECRET_BYTES {
        anyhow::bail!(
            "{variable} file {} holds {} bytes; a secret needs at least {MIN_SECRET_BYTES} (generate one with `head -c 48 /dev/urandom | base64`)",
            path.display(),
            trimmed.len()
        );
    }
    Ok(SecretBytes(trimmed.to_vec()))
}

fn generate(path: &Path) -> anyhow::Result<()> {
    if let Some(folder) = path.parent() {
        fs::create_dir_all(folder)?;
    }
    let mut bytes = [0u8; 48];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let encoded = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes);
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(encoded.as_bytes())?;
    file.sync_all()?;
    Ok(())
}
