//! The verification job (`http` mode): queries the health authority about pending uploads.

use std::time::Instant;

use tracing::Instrument;

use super::lock::{self, WhenBusy};
use crate::{
    app::AppState,
    verification::{self, RunSummary},
};

/// Advisory lock key of the verification job.
const LOCK_KEY: i64 = 0x6d61_6d6f_7269_0002;

/// Runs one verification pass and logs its outcome. Does nothing in builtin mode.
pub async fn verify_uploads(app: &AppState) -> anyhow::Result<RunSummary> {
    run(app, WhenBusy::Wait)
        .await
        .map(Option::unwrap_or_default)
}

/// Runs one scheduled tick; skips it when another replica is verifying.
pub async fn tick(app: &AppState) -> anyhow::Result<Option<RunSummary>> {
    run(app, WhenBusy::Skip).await
}

async fn run(app: &AppState, when_busy: WhenBusy) -> anyhow::Result<Option<RunSummary>> {
    let Some(verifier) = &app.verifier else {
        return Ok(Some(RunSummary::default()));
    };
    let span = tracing::info_span!("job", name = "verify_uploads");
    async {
        let started = Instant::now();
        let pass = verification::run(
            &app.db,
            verifier,
            app.clock.now(),
            app.config.verification_pending_ttl,
        );
        let result = lock::exclusive(
            &app.db,
            &app.job_locks.verify_uploads,
            LOCK_KEY,
            when_busy,
            pass,
        )
        .await;
        super::record_run("verify_uploads", started, &result);
        match &result {
            Ok(Some(summary)) => tracing::info!(
                verified = summary.verified,
                rejected = summary.rejected,
                expired = summary.expired,
                failed = summary.failed,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "verification finished"
            ),
            Ok(None) => tracing::debug!("another replica is verifying; skipped this tick"),
            Err(error) => tracing::error!(error = format!("{error:#}"), "verification failed"),
        }
        result
    }
    .instrument(span)
    .await
}
