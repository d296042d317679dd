//! Scheduled jobs, one per file, run by the in-process scheduler.

mod export_keys;

pub use export_keys::export_keys;

use anyhow::Context;
use tokio_cron_scheduler::{Job, JobScheduler};

use crate::app::App;

/// Starts the scheduler with every job and returns it; call `shutdown` on it to stop.
pub async fn start(app: App) -> anyhow::Result<JobScheduler> {
    let scheduler = JobScheduler::new()
        .await
        .context("failed to create the job scheduler")?;
    let schedule = app.config.export_schedule.clone();
    let job = Job::new_async(schedule.as_str(), move |_id, _scheduler| {
        let app = app.clone();
        Box::pin(async move {
            // The outcome is logged inside; a failed run is retried at the next tick.
            let _ = export_keys(&app).await;
        })
    })
    .with_context(|| format!("invalid MAMORI_EXPORT_SCHEDULE {schedule:?}"))?;
    scheduler
        .add(job)
        .await
        .context("failed to schedule the export job")?;
    scheduler
        .start()
        .await
        .context("failed to start the job scheduler")?;
    tracing::info!(schedule, "export job scheduled");
    Ok(scheduler)
}
