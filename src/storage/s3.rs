//! Export files in an S3-compatible bucket, which a CDN serves to the app.
//!
//! S3 replaces an object whole on each PUT and each completed multipart upload, so a reader sees
//! the old object or the new one, never a part. An upload that fails midway is aborted, so the
//! old object stays.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::Context;
use futures::{stream::FuturesUnordered, StreamExt};
use object_store::{
    aws::{AmazonS3, AmazonS3Builder},
    path::Path as ObjectPath,
    Attribute, Attributes, MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload,
};
use tokio::io::AsyncReadExt;

use super::content_type_of;

/// Size of one part of a multipart upload, and of the largest file sent in a single PUT. S3 needs
/// every part but the last to have at least 5 MiB.
pub const PART_SIZE: usize = 8 * 1024 * 1024;

/// Parts in flight at once. Each has a buffer of [`PART_SIZE`], so an upload buffers at most
/// this many parts plus the one being read.
const PARTS_IN_FLIGHT: usize = 2;

/// How long the CDN and the app may reuse a file before revalidating it. The names are fixed and
/// the export runs every few minutes, so a long lifetime would serve stale keys.
const CACHE_CONTROL: &str = "public, max-age=60";

/// Access keys of the bucket.
#[derive(Clone)]
pub struct S3Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Session token of temporary credentials.
    pub session_token: Option<String>,
}

impl S3Credentials {
    /// Reads `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and the optional `AWS_SESSION_TOKEN`,
    /// or returns `None` when either of the first two is unset or empty.
    pub fn from_env() -> Option<Self> {
        let read = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        Some(S3Credentials {
            access_key_id: read("AWS_ACCESS_KEY_ID")?,
            secret_access_key: read("AWS_SECRET_ACCESS_KEY")?,
            session_token: read("AWS_SESSION_TOKEN"),
        })
    }
}

impl fmt::Debug for S3Credentials {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[redacted]")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

/// Location of the bucket and the settings of its client.
#[derive(Debug, Clone)]
pub struct S3Settings {
    pub bucket: String,
    /// Key prefix of the files, without leading or trailing slashes, and empty for the root.
    pub prefix: String,
    /// URL of an S3-compatible server. `None` means AWS S3 of `region`.
    pub endpoint: Option<String>,
    pub region: String,
    /// Base URL the app downloads the files from, such as a CDN in front of the bucket.
    pub public_url: String,
    pub credentials: S3Credentials,
}

/// A bucket of published export files.
#[derive(Debug, Clone)]
pub struct S3Bucket {
    store: Arc<AmazonS3>,
    /// `s3://bucket/prefix`, for messages.
    url: String,
    prefix: ObjectPath,
    public_url: String,
    staging_dir: PathBuf,
}

impl S3Bucket {
    /// Builds the client. Plain HTTP is allowed only when the endpoint is an `http://` URL.
    pub fn open(settings: S3Settings) -> anyhow::Result<Self> {
        let credentials = settings.credentials;
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&settings.bucket)
            .with_region(&settings.region)
            .with_access_key_id(credentials.access_key_id)
            .with_secret_access_key(credentials.secret_access_key);
        if let Some(token) = credentials.session_token {
            builder = builder.with_token(token);
        }
        if let Some(endpoint) = &settings.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        let store = builder
            .build()
            .context("failed to configure the S3 client of the export store")?;
        let prefix = ObjectPath::parse(&settings.prefix)
            .with_context(|| format!("invalid key prefix {:?}", settings.prefix))?;
        let url = match settings.prefix.as_str() {
            "" => format!("s3://{}", settings.bucket),
            prefix => format!("s3://{}/{prefix}", settings.bucket),
        };
        Ok(S3Bucket {
            store: Arc::new(store),
            url,
            prefix,
            public_url: settings.public_url.trim_end_matches('/').to_owned(),
            staging_dir: std::env::temp_dir(),
        })
    }

    /// Returns `s3://bucket/prefix`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Returns the public URL of a file: `MAMORI_EXPORT_PUBLIC_URL`, a slash and the name.
    pub fn download_url(&self, name: &str) -> String {
        format!("{}/{name}", self.public_url)
    }

    fn object_path(&self, name: &str) -> ObjectPath {
        self.prefix.clone().join(name)
    }

    /// Returns a fresh path in the system's temporary folder for a file that will become `name`.
    pub fn temporary_path(&self, name: &str) -> PathBuf {
        self.staging_dir.join(format!(
            "mamori-{name}.{}.tmp",
            uuid::Uuid::new_v4().simple()
        ))
    }

    /// Uploads a local file as `name`: in one PUT up to [`PART_SIZE`], else in parts.
    pub async fn upload_file(&self, file: &Path, name: &str) -> anyhow::Result<()> {
        let mut opened = tokio::fs::File::open(file)
            .await
            .with_context(|| format!("failed to open {}", file.display()))?;
        let size = opened.metadata().await?.len();
        if size > PART_SIZE as u64 {
            return self.upload_in_parts(&mut opened, name).await;
        }
        let mut bytes = Vec::with_capacity(size as usize);
        opened.read_to_end(&mut bytes).await?;
        self.put_whole(name, bytes).await
    }

    /// Uploads `bytes` as `name` in one PUT.
    pub async fn put_whole(&self, name: &str, bytes: Vec<u8>) -> anyhow::Result<()> {
        let location = self.object_path(name);
        self.store
            .put_opts(
                &location,
                PutPayload::from(bytes),
                attributes_of(name).into(),
            )
            .await
            .with_context(|| format!("failed to upload {name} to {}", self.url))?;
        Ok(())
    }

    /// Reads a published file, or returns `None` when it does not exist.
    pub async fn read(&self, name: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let location = self.object_path(name);
        let fetched = match self.store.get(&location).await {
            Ok(fetched) => fetched,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(error) => {
                return Err(error)
                    .with_context(|| format!("failed to read {name} from {}", self.url))
            }
        };
        let bytes = fetched
            .bytes()
            .await
            .with_context(|| format!("failed to read {name} from {}", self.url))?;
        Ok(Some(bytes.to_vec()))
    }

    /// Lists the first page of keys under the prefix. A listing fails for a missing bucket, where a
    /// HEAD of one object would return "not found" for a missing bucket and a missing object alike.
    pub async fn check_reachable(&self) -> anyhow::Result<()> {
        let mut listing = self.store.list(Some(&self.prefix));
        if let Some(Err(error)) = listing.next().await {
            return Err(error).with_context(|| format!("failed to list {}", self.url));
        }
        Ok(())
    }

    async fn upload_in_parts(&self, file: &mut tokio::fs::File, name: &str) -> anyhow::Result<()> {
        let location = self.object_path(name);
        let mut upload = self
            .store
            .put_multipart_opts(&location, attributes_of(name).into())
            .await
            .with_context(|| format!("failed to start uploading {name} to {}", self.url))?;
        let sent = match send_parts(upload.as_mut(), file).await {
            Ok(()) => upload
                .complete()
                .await
                .map(drop)
                .map_err(anyhow::Error::from),
            Err(error) => Err(error),
        };
        if let Err(error) = sent {
            // An upload left open keeps its parts, and they are billed, until it is aborted.
            if let Err(abort_error) = upload.abort().await {
                tracing::warn!(error = %abort_error, file = name, "failed to abort a multipart upload");
            }
            return Err(error.context(format!("failed to upload {name} to {}", self.url)));
        }
        Ok(())
    }
}

/// Reads the file in parts of [`PART_SIZE`] and sends them, at most [`PARTS_IN_FLIGHT`] at once.
async fn send_parts(
    upload: &mut dyn MultipartUpload,
    file: &mut tokio::fs::File,
) -> anyhow::Result<()> {
    let mut in_flight = FuturesUnordered::new();
    loop {
        let mut part = Vec::with_capacity(PART_SIZE);
        (&mut *file)
            .take(PART_SIZE as u64)
            .read_to_end(&mut part)
            .await?;
        if part.is_empty() {
            break;
        }
        while in_flight.len() >= PARTS_IN_FLIGHT {
            if let Some(sent) = in_flight.next().await {
                sent?;
            }
        }
        // Each part gets its number when `put_part` is called, so the order of completion does
        // not matter.
        in_flight.push(upload.put_part(PutPayload::from(part)));
    }
    while let Some(sent) = in_flight.next().await {
        sent?;
    }
    Ok(())
}

fn attributes_of(name: &str) -> Attributes {
    Attributes::from_iter([
        (Attribute::ContentType, content_type_of(name)),
        (Attribute::CacheControl, CACHE_CONTROL),
    ])
}
