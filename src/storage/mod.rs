//! The export store: a local folder served at `/exports/…` (the default), or an S3-compatible
//! bucket that a CDN serves (`MAMORI_EXPORT_STORE=s3://bucket/prefix`).
//!
//! Both backends replace a file whole, so a reader sees the old file or the new one, never a
//! part. The export writes each large file to a local temporary file first and then publishes it,
//! so its memory use does not grow with the number of keys.

mod local;
mod s3;

use std::{
    fmt,
    path::{Path, PathBuf},
};

use anyhow::Context;

pub use local::LocalFolder;
pub use s3::{S3Bucket, S3Credentials, S3Settings, PART_SIZE};

use crate::config::Config;

/// Region used when neither `MAMORI_EXPORT_S3_REGION` nor `AWS_REGION` is set. It is also the
/// region most S3-compatible servers accept.
const DEFAULT_REGION: &str = "us-east-1";

/// Location of the export files, from `MAMORI_EXPORT_STORE` or `MAMORI_EXPORT_DIR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportLocation {
    /// A local folder.
    Folder(PathBuf),
    /// A bucket, with the key prefix of the files (empty for the bucket's root).
    Bucket { bucket: String, prefix: String },
}

impl ExportLocation {
    /// Parses a folder path or an `s3://bucket/prefix` URL.
    pub fn parse(value: &str) -> Result<Self, String> {
        if value.trim().is_empty() {
            return Err("expected a folder path or s3://bucket/prefix, found nothing".into());
        }
        let Some(rest) = value.strip_prefix("s3://") else {
            if let Some((scheme, _)) = value.split_once("://") {
                return Err(format!(
                    "unsupported scheme {scheme:?}: expected a folder path or s3://bucket/prefix"
                ));
            }
            return Ok(ExportLocation::Folder(PathBuf::from(value)));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if !is_valid_bucket_name(bucket) {
            return Err(format!(
                "invalid bucket name {bucket:?}: expected 3 to 63 lowercase letters, digits, dots \
                 and hyphens, starting and ending with a letter or digit"
            ));
        }
        let prefix = object_store::path::Path::parse(prefix)
            .map_err(|error| format!("invalid key prefix {prefix:?}: {error}"))?;
        Ok(ExportLocation::Bucket {
            bucket: bucket.to_owned(),
            prefix: prefix.to_string(),
        })
    }

    /// Reads the export store settings, and checks that they fit together: a bucket needs
    /// `MAMORI_EXPORT_PUBLIC_URL`, and the bucket settings are rejected with a folder.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let location = match (&config.export_store, &config.export_dir) {
            (Some(_), Some(_)) => anyhow::bail!(
                "MAMORI_EXPORT_STORE and MAMORI_EXPORT_DIR are both set: set only \
                 MAMORI_EXPORT_STORE, which accepts a folder too"
            ),
            (Some(value), None) => Self::parse(value).map_err(|message| {
                anyhow::anyhow!("MAMORI_EXPORT_STORE {value:?} is invalid: {message}")
            })?,
            (None, Some(dir)) => ExportLocation::Folder(dir.clone()),
            (None, None) => ExportLocation::Folder(config.data_dir.join("exports")),
        };
        if let Some(endpoint) = &config.export_s3_endpoint {
            check_http_url(endpoint, "MAMORI_EXPORT_S3_ENDPOINT")?;
        }
        match &location {
            ExportLocation::Folder(folder) => {
                // Every file of the export folder is downloadable, so it must never be the data
                // folder, which contains the SQLite database and the secrets.
                let same = |a: &std::path::Path, b: &std::path::Path| match (
                    a.canonicalize(),
                    b.canonicalize(),
                ) {
                    (Ok(a), Ok(b)) => a == b,
                    _ => a == b,
                };
                if same(folder, &config.data_dir) {
                    anyhow::bail!(
                        "the export folder {} is the data folder, whose database and secrets would                          then be downloadable: choose a folder of its own",
                        folder.display()
                    );
                }
                let bucket_settings = [
                    (
                        "MAMORI_EXPORT_PUBLIC_URL",
                        config.export_public_url.is_some(),
                    ),
                    (
                        "MAMORI_EXPORT_S3_ENDPOINT",
                        config.export_s3_endpoint.is_some(),
                    ),
                    ("MAMORI_EXPORT_S3_REGION", config.export_s3_region.is_some()),
                ];
                if let Some((variable, _)) = bucket_settings.iter().find(|(_, set)| *set) {
                    anyhow::bail!(
                        "{variable} is set, but the export store is a folder: set \
                         MAMORI_EXPORT_STORE=s3://bucket/prefix or unset {variable}"
                    );
                }
            }
            ExportLocation::Bucket { .. } => {
                let public_url = config.export_public_url.as_deref().context(
                    "MAMORI_EXPORT_PUBLIC_URL is missing: the app downloads the files of a \
                     bucket from this URL, such as https://cdn.example.jp/exports/",
                )?;
                check_http_url(public_url, "MAMORI_EXPORT_PUBLIC_URL")?;
            }
        }
        Ok(location)
    }
}

/// The published export files, in a local folder or a bucket.
#[derive(Debug, Clone)]
pub enum ExportStore {
    Folder(LocalFolder),
    Bucket(S3Bucket),
}

impl ExportStore {
    /// Opens the store the settings name. A folder is created when missing. A bucket is not
    /// contacted here, so `/readyz` reports one that cannot be reached.
    pub fn open(config: &Config) -> anyhow::Result<Self> {
        match ExportLocation::from_config(config)? {
            ExportLocation::Folder(dir) => {
                let folder = LocalFolder::open(dir.clone())
                    .with_context(|| format!("failed to open export folder {}", dir.display()))?;
                Ok(ExportStore::Folder(folder))
            }
            ExportLocation::Bucket { bucket, prefix } => {
                let credentials = config
                    .export_s3_credentials
                    .clone()
                    .or_else(S3Credentials::from_env)
                    .context(
                        "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set when \
                         MAMORI_EXPORT_STORE is a bucket",
                    )?;
                let region = config
                    .export_s3_region
                    .clone()
                    .or_else(|| std::env::var("AWS_REGION").ok().filter(|r| !r.is_empty()))
                    .unwrap_or_else(|| DEFAULT_REGION.to_owned());
                let settings = S3Settings {
                    bucket,
                    prefix,
                    endpoint: config.export_s3_endpoint.clone(),
                    region,
                    public_url: config.export_public_url.clone().unwrap_or_default(),
                    credentials,
                };
                Ok(ExportStore::Bucket(S3Bucket::open(settings)?))
            }
        }
    }

    /// Returns a fresh local path to write a file that [`publish`](Self::publish) will make
    /// `name`: in the export folder, or in the system's temporary folder (`TMPDIR`) for a bucket.
    pub fn temporary_path(&self, name: &str) -> PathBuf {
        match self {
            ExportStore::Folder(folder) => folder.temporary_path(name),
            ExportStore::Bucket(bucket) => bucket.temporary_path(name),
        }
    }

    /// Publishes a finished temporary file as `name`, replacing the old file whole. The temporary
    /// file is gone afterwards, whether publishing succeeded or failed.
    pub async fn publish(&self, temporary: &Path, name: &str) -> anyhow::Result<()> {
        let published = match self {
            ExportStore::Folder(folder) => {
                let (folder, from, name) = (folder.clone(), temporary.to_owned(), name.to_owned());
                tokio::task::spawn_blocking(move || folder.publish(&from, &name))
                    .await
                    .context("export file publisher panicked")?
                    .map_err(anyhow::Error::from)
            }
            ExportStore::Bucket(bucket) => bucket.upload_file(temporary, name).await,
        };
        // After a successful rename the temporary path no longer exists, so this removes
        // something only after an upload or a failure.
        let _ = tokio::fs::remove_file(temporary).await;
        published
    }

    /// Writes `bytes` as the file `name`, whole or not at all.
    pub async fn write_whole(&self, name: &str, bytes: Vec<u8>) -> anyhow::Result<()> {
        match self {
            ExportStore::Folder(folder) => {
                let (folder, name) = (folder.clone(), name.to_owned());
                tokio::task::spawn_blocking(move || folder.write_whole(&name, &bytes))
                    .await
                    .context("export file writer panicked")?
                    .map_err(anyhow::Error::from)
            }
            ExportStore::Bucket(bucket) => bucket.put_whole(name, bytes).await,
        }
    }

    /// Reads a published file, or returns `None` when it does not exist.
    pub async fn read(&self, name: &str) -> anyhow::Result<Option<Vec<u8>>> {
        match self {
            ExportStore::Folder(folder) => Ok(folder.read(name).await?),
            ExportStore::Bucket(bucket) => bucket.read(name).await,
        }
    }

    /// Returns the URL the app downloads `name` from: the path `/exports/{name}` on this server
    /// for a folder, or the absolute URL under `MAMORI_EXPORT_PUBLIC_URL` for a bucket.
    pub fn download_url(&self, name: &str) -> String {
        match self {
            ExportStore::Folder(_) => format!("/exports/{name}"),
            ExportStore::Bucket(bucket) => bucket.download_url(name),
        }
    }

    /// Checks that the store accepts files: the folder exists and is writable, or the bucket
    /// returns a listing of the prefix.
    pub async fn check_ready(&self) -> anyhow::Result<()> {
        match self {
            ExportStore::Folder(folder) => folder.check_writable().await.with_context(|| {
                format!("export folder {} is not writable", folder.path().display())
            }),
            ExportStore::Bucket(bucket) => bucket.check_reachable().await,
        }
    }
}

impl fmt::Display for ExportStore {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExportStore::Folder(folder) => write!(formatter, "{}", folder.path().display()),
            ExportStore::Bucket(bucket) => formatter.write_str(bucket.url()),
        }
    }
}

/// Returns whether `name` may be a published file: 1 to 128 ASCII letters, digits, dots, hyphens
/// and underscores, not starting with a dot (temporary files do).
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'-' | b'_'))
}

/// Returns the media type of an export file by its extension.
pub fn content_type_of(name: &str) -> &'static str {
    if name.ends_with(".gz") {
        "application/gzip"
    } else {
        "application/json"
    }
}

/// Checks the S3 bucket naming rules, which S3-compatible servers share.
fn is_valid_bucket_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (3..=63).contains(&bytes.len())
        && bytes.iter().all(|byte| {
            byte.is_ascii_lowercase() || byte.is_ascii_digit() || matches!(byte, b'.' | b'-')
        })
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
}

fn check_http_url(value: &str, variable: &str) -> anyhow::Result<()> {
    let url = reqwest::Url::parse(value)
        .with_context(|| format!("{variable} {value:?} is not a valid URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        anyhow::bail!("{variable} {value:?} must be an http:// or https:// URL with a host");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(bucket: &str, prefix: &str) -> ExportLocation {
        ExportLocation::Bucket {
            bucket: bucket.into(),
            prefix: prefix.into(),
        }
    }

    #[test]
    fn location_parses_folders_and_buckets() {
        let cases = [
            (
                "./data/exports",
                ExportLocation::Folder("./data/exports".into()),
            ),
            ("/srv/mamori", ExportLocation::Folder("/srv/mamori".into())),
            ("s3://mamori-exports", bucket("mamori-exports", "")),
            ("s3://mamori-exports/", bucket("mamori-exports", "")),
            (
                "s3://mamori-exports/v1/keys/",
                bucket("mamori-exports", "v1/keys"),
            ),
            (
                "s3://exports.example.jp/v1",
                bucket("exports.example.jp", "v1"),
            ),
        ];
        for (value, expected) in cases {
            assert_eq!(ExportLocation::parse(value), Ok(expected), "{value}");
        }
    }

    #[test]
    fn location_rejects_bad_urls() {
        for value in [
            "",
            "s3://",
            "s3://ab",
            "s3://Mamori",
            "s3://-mamori",
            "s3://mamori_exports",
            "s3://mamori/a//b",
            "s3://mamori/../b",
            "gs://mamori/exports",
            "https://cdn.example.jp/exports",
        ] {
            assert!(ExportLocation::parse(value).is_err(), "{value:?}");
        }
    }

    #[test]
    fn valid_names_exclude_hidden_and_paths() {
        assert!(is_valid_name("index.json"));
        assert!(is_valid_name("diagnosis-keys.json.gz"));
        for bad in ["", ".hidden", "a/b", "..", "a b", &"x".repeat(129)] {
            assert!(!is_valid_name(bad), "{bad:?}");
        }
    }
}
