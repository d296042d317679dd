//! Typed settings. Every setting is an environment variable `MAMORI_…` and a
//! command-line flag of the same name; `docs/configuration.md` lists them all.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Args;

/// Settings shared by every subcommand. A bad value fails at start and names its variable.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address and port the HTTP server listens on.
    #[arg(
        long,
        env = "MAMORI_LISTEN",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub listen: SocketAddr,

    /// Folder for the SQLite database, generated secrets and export files.
    #[arg(long, env = "MAMORI_DATA_DIR", default_value = "./data", global = true)]
    pub data_dir: PathBuf,

    /// Database URL (`sqlite://…` or `postgres://…`). Default: SQLite in the data folder.
    #[arg(long, env = "MAMORI_DATABASE_URL", global = true)]
    pub database_url: Option<String>,

    /// Maximum number of pooled database connections.
    #[arg(
        long,
        env = "MAMORI_DATABASE_MAX_CONNECTIONS",
        default_value_t = 16,
        global = true
    )]
    pub database_max_connections: u32,

    /// Time to wait for a database connection, pooled or newly opened, before a request fails
    /// with UNAVAILABLE.
    #[arg(long, env = "MAMORI_DATABASE_CONNECT_TIMEOUT", default_value = "3s", value_parser = parse_duration, global = true)]
    pub database_connect_timeout: Duration,

    /// Maximum time one PostgreSQL statement may run before the server cancels it.
    #[arg(long, env = "MAMORI_DATABASE_STATEMENT_TIMEOUT", default_value = "30s", value_parser = parse_duration, global = true)]
    pub database_statement_timeout: Duration,

    /// File with the HS256 secret that signs access tokens. Default: generated in the data folder.
    #[arg(long, env = "MAMORI_JWT_SECRET_FILE", global = true)]
    pub jwt_secret_file: Option<PathBuf>,

    /// File with the key that hashes health-center tokens. Default: generated in the data folder.
    #[arg(long, env = "MAMORI_TOKEN_HASH_KEY_FILE", global = true)]
    pub token_hash_key_file: Option<PathBuf>,

    /// `iss` claim of issued access tokens, checked on every request.
    #[arg(
        long,
        env = "MAMORI_JWT_ISSUER",
        default_value = "mamori",
        global = true
    )]
    pub jwt_issuer: String,

    /// `aud` claim of issued access tokens, checked on every request.
    #[arg(
        long,
        env = "MAMORI_JWT_AUDIENCE",
        default_value = "mamori-app",
        global = true
    )]
    pub jwt_audience: String,

    /// Lifetime of an access token (for example `1h`, `15m`).
    #[arg(long, env = "MAMORI_ACCESS_TOKEN_TTL", default_value = "1h", value_parser = parse_duration, global = true)]
    pub access_token_ttl: Duration,

    /// Lifetime of a refresh token.
    #[arg(long, env = "MAMORI_REFRESH_TOKEN_TTL", default_value = "30d", value_parser = parse_duration, global = true)]
    pub refresh_token_ttl: Duration,

    /// Cron expression (with seconds) of the export job.
    #[arg(
        long,
        env = "MAMORI_EXPORT_SCHEDULE",
        default_value = "0 */10 * * * *",
        global = true
    )]
    pub export_schedule: String,

    /// Store of the export files: a folder, or a bucket as `s3://bucket/prefix`.
    /// Default: `exports` in the data folder.
    #[arg(long, env = "MAMORI_EXPORT_STORE", global = true)]
    pub export_store: Option<String>,

    /// Folder the export files are written to; the older form of a folder `MAMORI_EXPORT_STORE`.
    #[arg(long, env = "MAMORI_EXPORT_DIR", global = true)]
    pub export_dir: Option<PathBuf>,

    /// URL of the S3-compatible server of the bucket. Default: AWS S3 of the region.
    #[arg(long, env = "MAMORI_EXPORT_S3_ENDPOINT", global = true)]
    pub export_s3_endpoint: Option<String>,

    /// Region of the bucket. Default: `AWS_REGION`, else `us-east-1`.
    #[arg(long, env = "MAMORI_EXPORT_S3_REGION", global = true)]
    pub export_s3_region: Option<String>,

    /// Public base URL (a CDN) the app downloads the files of a bucket from.
    #[arg(long, env = "MAMORI_EXPORT_PUBLIC_URL", global = true)]
    pub export_public_url: Option<String>,

    /// Access keys of the bucket. `None` reads `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`
    /// when the store opens; they have no flag, so they never appear in a process listing.
    #[arg(skip)]
    pub export_s3_credentials: Option<crate::storage::S3Credentials>,

    /// Cron expression (with seconds) of the retention job. The default is 03:00 Japan time.
    #[arg(
        long,
        env = "MAMORI_RETENTION_SCHEDULE",
        default_value = "0 0 18 * * *",
        global = true
    )]
    pub retention_schedule: String,

    /// Maximum number of keys in one upload.
    #[arg(
        long,
        env = "MAMORI_MAX_KEYS_PER_UPLOAD",
        default_value_t = 30,
        global = true
    )]
    pub max_keys_per_upload: usize,

    /// Maximum number of keys of one upload that share a start interval.
    #[arg(
        long,
        env = "MAMORI_MAX_KEYS_PER_START_INTERVAL",
        default_value_t = 3,
        global = true
    )]
    pub max_keys_per_start_interval: usize,

    /// Days a diagnosis key is accepted and exported after its period ends.
    #[arg(
        long,
        env = "MAMORI_KEY_RETENTION_DAYS",
        default_value_t = 14,
        global = true
    )]
    pub key_retention_days: u32,

    /// Time after a key's period ends before it is exported.
    #[arg(long, env = "MAMORI_EXPORT_EMBARGO", default_value = "2h", value_parser = parse_duration, global = true)]
    pub export_embargo: Duration,

    /// Failed health-center token attempts allowed per user in one window.
    #[arg(
        long,
        env = "MAMORI_TOKEN_ATTEMPT_LIMIT",
        default_value_t = 5,
        global = true
    )]
    pub token_attempt_limit: u32,

    /// Failed health-center token attempts allowed per client address in one window. It is
    /// higher than the per-user limit because many phones can share one address behind NAT.
    #[arg(
        long,
        env = "MAMORI_TOKEN_ATTEMPT_LIMIT_PER_ADDRESS",
        default_value_t = 50,
        global = true
    )]
    pub token_attempt_limit_per_address: u32,

    /// Length of the window for failed token attempts.
    #[arg(long, env = "MAMORI_TOKEN_ATTEMPT_WINDOW", default_value = "15m", value_parser = parse_duration, global = true)]
    pub token_attempt_window: Duration,

    /// Failed admin logins allowed per account and per address in one window, before the lock.
    #[arg(
        long,
        env = "MAMORI_ADMIN_LOGIN_ATTEMPT_LIMIT",
        default_value_t = 10,
        global = true
    )]
    pub admin_login_attempt_limit: u32,

    /// Length of the window for failed admin logins, and so of the lock.
    #[arg(long, env = "MAMORI_ADMIN_LOGIN_ATTEMPT_WINDOW", default_value = "15m", value_parser = parse_duration, global = true)]
    pub admin_login_attempt_window: Duration,

    /// Delay added to each failed admin login after the third in a window, per extra failure.
    #[arg(long, env = "MAMORI_ADMIN_LOGIN_DELAY_STEP", default_value = "500ms", value_parser = parse_duration, global = true)]
    pub admin_login_delay_step: Duration,

    /// Health-center tokens one prefecture may issue per day (Japan time) through the API.
    #[arg(
        long,
        env = "MAMORI_TOKEN_DAILY_QUOTA",
        default_value_t = 1000,
        global = true
    )]
    pub token_daily_quota: u32,

    /// How uploads are verified: `builtin` checks the codes issued by this server at upload;
    /// `http` stores uploads as PENDING until the verification service decides.
    #[arg(long, env = "MAMORI_VERIFICATION_MODE", default_value = "builtin", value_parser = ["builtin", "http"], global = true)]
    pub verification_mode: String,

    /// URL of the health authority's verification service, required in `http` mode.
    #[arg(long, env = "MAMORI_VERIFICATION_URL", global = true)]
    pub verification_url: Option<String>,

    /// Timeout of one request to the verification service.
    #[arg(long, env = "MAMORI_VERIFICATION_TIMEOUT", default_value = "5s", value_parser = parse_duration, global = true)]
    pub verification_timeout: Duration,

    /// Attempts per pending upload and job run, with exponential backoff between them.
    #[arg(
        long,
        env = "MAMORI_VERIFICATION_ATTEMPTS",
        default_value_t = 3,
        global = true
    )]
    pub verification_attempts: u32,

    /// Time after which an upload still pending is expired and its keys deleted.
    #[arg(long, env = "MAMORI_VERIFICATION_PENDING_TTL", default_value = "24h", value_parser = parse_duration, global = true)]
    pub verification_pending_ttl: Duration,

    /// Cron expression (with seconds) of the verification job.
    #[arg(
        long,
        env = "MAMORI_VERIFICATION_SCHEDULE",
        default_value = "30 * * * * *",
        global = true
    )]
    pub verification_schedule: String,

    /// Networks of the load balancers in front of the server (comma-separated CIDRs, such as
    /// `10.0.0.0/8`). From these peers the client address is read from `X-Forwarded-For`.
    #[arg(
        long,
        env = "MAMORI_TRUSTED_PROXIES",
        value_delimiter = ',',
        global = true
    )]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// Maximum size of a request body in bytes.
    #[arg(long, env = "MAMORI_MAX_BODY_BYTES", default_value_t = 256 * 1024, global = true)]
    pub max_body_bytes: usize,

    /// Log format: `text` for people, `json` for log collectors.
    #[arg(long, env = "MAMORI_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"], global = true)]
    pub log_format: String,
}

fn parse_duration(value: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(value).map_err(|error| {
        format!("invalid duration {value:?}: {error} (examples: 90s, 15m, 1h, 7d)")
    })?;
    if duration.is_zero() {
        return Err(format!(
            "invalid duration {value:?}: must be greater than zero"
        ));
    }
    Ok(duration)
}

impl Config {
    /// Builds the settings from the environment alone, as the server would start with no flags.
    pub fn from_env() -> Result<Self, clap::Error> {
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            config: Config,
        }
        <Only as clap::Parser>::try_parse_from(["mamori"]).map(|only| only.config)
    }

    /// Checks the values that clap's parsers cannot, naming the variable of a bad one.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.max_keys_per_upload == 0 {
            anyhow::bail!("MAMORI_MAX_KEYS_PER_UPLOAD must be at least 1");
        }
        if self.max_keys_per_start_interval == 0 {
            anyhow::bail!("MAMORI_MAX_KEYS_PER_START_INTERVAL must be at least 1");
        }
        if self.key_retention_days == 0 {
            anyhow::bail!("MAMORI_KEY_RETENTION_DAYS must be at least 1");
        }
        if self.database_max_connections == 0 {
            anyhow::bail!("MAMORI_DATABASE_MAX_CONNECTIONS must be at least 1");
        }
        if self.token_attempt_limit == 0 {
            anyhow::bail!("MAMORI_TOKEN_ATTEMPT_LIMIT must be at least 1");
        }
        if self.token_attempt_limit_per_address == 0 {
            anyhow::bail!("MAMORI_TOKEN_ATTEMPT_LIMIT_PER_ADDRESS must be at least 1");
        }
        if self.max_body_bytes < 1024 {
            anyhow::bail!("MAMORI_MAX_BODY_BYTES must be at least 1024");
        }
        if self.admin_login_attempt_limit == 0 {
            anyhow::bail!("MAMORI_ADMIN_LOGIN_ATTEMPT_LIMIT must be at least 1");
        }
        if self.verification_attempts == 0 {
            anyhow::bail!("MAMORI_VERIFICATION_ATTEMPTS must be at least 1");
        }
        if self.verification_mode == "http" {
            match self.verification_url.as_deref().map(reqwest::Url::parse) {
                Some(Ok(url)) if matches!(url.scheme(), "http" | "https") => {}
                Some(_) => {
                    anyhow::bail!("MAMORI_VERIFICATION_URL must be an http:// or https:// URL")
                }
                None => anyhow::bail!(
                    "MAMORI_VERIFICATION_URL is required when MAMORI_VERIFICATION_MODE is http"
                ),
            }
        }
        crate::storage::ExportLocation::from_config(self)?;
        for (variable, schedule) in [
            ("MAMORI_EXPORT_SCHEDULE", &self.export_schedule),
            ("MAMORI_RETENTION_SCHEDULE", &self.retention_schedule),
            ("MAMORI_VERIFICATION_SCHEDULE", &self.verification_schedule),
        ] {
            if let Err(error) = croner::Cron::new(schedule).with_seconds_required().parse() {
                anyhow::bail!(
                    "{variable} {schedule:?} is not a valid cron expression with seconds: {error}"
                );
            }
        }
        Ok(())
    }

    /// Returns the database URL, defaulting to a SQLite file in the data folder.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("mamori.db").display()
            ),
        }
    }
}
