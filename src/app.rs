//! Building the application from its settings, and serving it.

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    auth::TokenKeys,
    clock::Clock,
    config::Config,
    db,
    diagnosis_keys::{KeyRules, VerificationMode},
    exports::ExportRules,
    graphql::{self, MamoriSchema},
    health_center_tokens::CodeHasher,
    http,
    notices::{self, NoticeBus},
    rate_limit::FailureLimiter,
    secrets::Secrets,
    storage::ExportStore,
    verification::Verifier,
};

/// Everything a request, a job or a command needs, built once at start.
pub struct AppState {
    pub config: Config,
    pub db: DatabaseConnection,
    pub clock: Clock,
    pub keys: TokenKeys,
    pub code_hasher: CodeHasher,
    pub key_rules: KeyRules,
    pub export_rules: ExportRules,
    pub exports: ExportStore,
    pub notices: NoticeBus,
    /// Keeps each job to one run at a time in this process.
    pub job_locks: crate::jobs::JobLocks,
    /// Cancelled when the server shuts down, so long-lived tasks and WebSockets end.
    pub shutdown: CancellationToken,
    /// The tasks of open WebSocket connections, awaited at shutdown.
    pub websockets: tokio_util::task::TaskTracker,
    /// Verification mode of uploads.
    pub verification_mode: VerificationMode,
    /// The client of the verification service, in `http` mode only.
    pub verifier: Option<Verifier>,
    /// Wrong health-center token codes, per user.
    pub token_attempts_by_user: FailureLimiter,
    /// Wrong health-center token codes, per client address.
    pub token_attempts_by_address: FailureLimiter,
    /// Failed admin logins, per account and per address.
    pub login_attempts: FailureLimiter,
}

/// The shared application state.
pub type App = Arc<AppState>;

impl AppState {
    /// Connects to the database, applies migrations, loads secrets and opens the export store.
    pub async fn build(config: Config, clock: Clock) -> anyhow::Result<App> {
        config.validate()?;
        let db = db::connect(&config).await?;
        db::migrate(&db).await?;
        let app = Self::with_database(config, clock, db)?;
        if app.db.get_database_backend() == DbBackend::Postgres {
            let database_url = app.config.database_url();
            notices::start_listener(
                &database_url,
                app.db.clone(),
                app.notices.clone(),
                app.shutdown.clone(),
            )
            .await?;
        }
        crate::metrics::install();
        Ok(app)
    }

    /// Builds the state on an already migrated database.
    pub fn with_database(
        config: Config,
        clock: Clock,
        db: DatabaseConnection,
    ) -> anyhow::Result<App> {
        let secrets = Secrets::load(&config)?;
        let keys = TokenKeys::new(
            secrets.jwt_secret.expose(),
            &config.jwt_issuer,
            &config.jwt_audience,
            config.access_token_ttl,
            config.refresh_token_ttl,
        );
        let exports = ExportStore::open(&config)?;
        let (verification_mode, verifier) = match (
            config.verification_mode.as_str(),
            config.verification_url.as_deref(),
        ) {
            ("http", Some(url)) => (
                VerificationMode::Http,
                Some(Verifier::new(
                    url,
                    config.verification_timeout,
                    config.verification_attempts,
                )?),
            ),
            ("http", None) => anyhow::bail!(
                "MAMORI_VERIFICATION_URL is required when MAMORI_VERIFICATION_MODE is http"
            ),
            _ => (VerificationMode::Builtin, None),
        };
        Ok(Arc::new(AppState {
            keys,
            code_hasher: CodeHasher::new(&secrets.token_hash_key)?,
            key_rules: KeyRules {
                max_keys_per_upload: config.max_keys_per_upload,
                max_keys_per_start_interval: config.max_keys_per_start_interval,
                retention_days: config.key_retention_days,
            },
            export_rules: ExportRules {
                retention_days: config.key_retention_days,
                embargo: config.export_embargo,
            },
            exports,
            notices: NoticeBus::default(),
            shutdown: CancellationToken::new(),
            websockets: tokio_util::task::TaskTracker::new(),
            job_locks: crate::jobs::JobLocks::default(),
            verification_mode,
            verifier,
            token_attempts_by_user: FailureLimiter::new(
                config.token_attempt_limit,
                config.token_attempt_window,
            ),
            token_attempts_by_address: FailureLimiter::new(
                config.token_attempt_limit_per_address,
                config.token_attempt_window,
            ),
            login_attempts: FailureLimiter::new(
                config.admin_login_attempt_limit,
                config.admin_login_attempt_window,
            )
            .with_delay_step(config.admin_login_delay_step),
            db,
            clock,
            config,
        }))
    }

    /// Returns the GraphQL schema over this state.
    pub fn schema(self: &Arc<Self>) -> MamoriSchema {
        graphql::build_schema(self.clone())
    }
}

/// Serves the HTTP API on `listener` until `shutdown` completes, then finishes requests in flight.
pub async fn serve(
    app: App,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let stopping = app.shutdown.clone();
    let websockets = app.websockets.clone();
    let router = http::router(app);
    let served = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        // axum does not wait for upgraded connections, so here the WebSocket tasks are signalled to
        // send their close frames (1001), and awaited below.
        stopping.cancel();
    })
    .await
    .context("HTTP server failed");
    websockets.close();
    if tokio::time::timeout(WEBSOCKET_CLOSE_TIMEOUT, websockets.wait())
        .await
        .is_err()
    {
        tracing::warn!("some WebSocket connections did not close in time");
    }
    served
}

/// Time the WebSocket connections have to send their close frames at shutdown.
const WEBSOCKET_CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
