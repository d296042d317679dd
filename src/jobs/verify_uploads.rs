//! The verification job (`http` mode): asks the health authority about pending uploads.

use std::time::Instant;

use tracing::Instrument;

use crate::{
    app::AppState,
    verification::{self, RunSummary},
};

/// Runs one verification pass and logs its outcome. Does nothing in builtin mode.
pub async fn verify_uploads(app: &AppState) -> anyhow::Result<RunSummary> {
    let Some(verifier) = &app.verifier else {
        return Ok(RunSummary::default());
    };
    let span = tracing::info_span!("job", name = "verify_uploads");
    async {
        let started = Instant::now();
        let result = verification::run(
            &app.db,
            verifier,
            app.clock.now(),
            app.config.verification_pending_ttl,
        )
        .await;
        match &result {
            Ok(summary) => tracing::info!(
                verified = summary.verified,
                rejected = summary.rejected,
                expired = summary.expired,
                failed = summary.failed,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "verification finished"
            ),
            Err(error) => tracing::error!(error = format!("{error:#}"), "verification failed"),
        }
        result
    }
    .instrument(span)
    .await
}
