//! The export job: publishes the exportable diagnosis keys as files.

use std::time::Instant;

use tracing::Instrument;

use super::lock::{self, WhenBusy};
use crate::{app::AppState, exports};

/// Advisory lock key of the export job.
const LOCK_KEY: i64 = 0x6d61_6d6f_7269_0001;

/// Runs one export and logs its outcome. Waits while another replica exports.
pub async fn export_keys(app: &AppState) -> anyhow::Result<exports::ExportIndex> {
    run(app, WhenBusy::Wait)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the export lock was not acquired"))
}

/// Runs one scheduled tick; skips it when another replica is exporting.
pub async fn tick(app: &AppState) -> anyhow::Result<Option<exports::ExportIndex>> {
    run(app, WhenBusy::Skip).await
}

async fn run(app: &AppState, when_busy: WhenBusy) -> anyhow::Result<Option<exports::ExportIndex>> {
    let span = tracing::info_span!("job", name = "export_keys");
    async {
        let started = Instant::now();
        let export = exports::run(&app.db, &app.exports, &app.export_rules, app.clock.now());
        let result = lock::exclusive(
            &app.db,
            &app.job_locks.export_keys,
            LOCK_KEY,
            when_busy,
            export,
        )
        .await;
        super::record_run("export_keys", started, &result);
        match &result {
            Ok(Some(index)) => {
                let keys: u64 = index.files.iter().map(|file| file.key_count).sum();
                metrics::gauge!("mamori_exported_keys").set(keys as f64);
                tracing::info!(
                    keys,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "export finished"
                );
            }
            Ok(None) => tracing::debug!("another replica is exporting; skipped this tick"),
            Err(error) => tracing::error!(error = format!("{error:#}"), "export failed"),
        }
        result
    }
    .instrument(span)
    .await
}
