//! Scheduled jobs, one per file, run by the in-process scheduler.

mod export_keys;
mod verify_uploads;

pub use export_keys::export_keys;
pub use verify_uploads::verify_uploads;

use std::{future::Future, pin::Pin};

use anyhow::Context;
use tokio_cron_scheduler::{Job, JobScheduler};

use crate::app::App;

/// Starts the scheduler with every job and returns it; call `shutdown` on it to stop.
pub async fn start(app: App) -> anyhow::Result<JobScheduler> {
    let scheduler = JobScheduler::new()
        .await
        .context("failed to create the job scheduler")?;
    add(
        &scheduler,
        &app,
        &app.config.export_schedule,
        "MAMORI_EXPORT_SCHEDULE",
        |app| {
            Box::pin(async move {
                // The outcome is logged inside; a failed run is retried at the next tick.
                let _ = export_keys(&app).await;
            })
        },
    )
    .await?;
    if app.verifier.is_some() {
        add(
            &scheduler,
            &app,
            &app.config.verification_schedule,
            "MAMORI_VERIFICATION_SCHEDULE",
            |app| {
                Box::pin(async move {
                    // The outcome is logged inside; pending uploads are asked again at the next tick.
                    let _ = verify_uploads(&app).await;
                })
            },
        )
        .await?;
    }
    scheduler
        .start()
        .await
        .context("failed to start the job scheduler")?;
    tracing::info!("job scheduler started");
    Ok(scheduler)
}

type JobRun = Pin<Box<dyn Future<Output = ()> + Send>>;

async fn add(
    scheduler: &JobScheduler,
    app: &App,
    schedule: &str,
    variable: &str,
    run: fn(App) -> JobRun,
) -> anyhow::Result<()> {
    let app = app.clone();
    let job = Job::new_async(schedule, move |_id, _scheduler| run(app.clone()))
        .with_context(|| format!("invalid {variable} {schedule:?}"))?;
    scheduler
        .add(job)
        .await
        .with_context(|| format!("failed to schedule the job of {variable}"))?;
    tracing::info!(schedule, variable, "job scheduled");
    Ok(())
}
