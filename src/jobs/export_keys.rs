//! The export job: publishes the exportable diagnosis keys as files.

use std::time::Instant;

use tracing::Instrument;

use crate::{app::AppState, exports};

/// Runs one export and logs its outcome.
pub async fn export_keys(app: &AppState) -> anyhow::Result<exports::ExportIndex> {
    let span = tracing::info_span!("job", name = "export_keys");
    async {
        let started = Instant::now();
        tracing::info!("export started");
        let result = exports::run(&app.db, &app.exports, &app.export_rules, app.clock.now()).await;
        match &result {
            Ok(index) => {
                let keys: u64 = index.files.iter().map(|file| file.key_count).sum();
                tracing::info!(
                    keys,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "export finished"
                );
            }
            Err(error) => tracing::error!(error = format!("{error:#}"), "export failed"),
        }
        result
    }
    .instrument(span)
    .await
}
