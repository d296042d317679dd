//! Scheduled jobs, one per file, run by the in-process scheduler on every replica. On
//! PostgreSQL an advisory lock lets one replica run each tick; the others skip it.

mod delete_expired;
mod export_keys;
mod lock;
mod verify_uploads;

pub use delete_expired::{delete_expired, tick as delete_expired_tick, Deleted};
pub use export_keys::{export_keys, tick as export_keys_tick};
pub use lock::JobLocks;
pub use verify_uploads::{tick as verify_uploads_tick, verify_uploads};

use std::{future::Future, pin::Pin, time::Instant};

use anyhow::Context;
use tokio_cron_scheduler::{Job, JobScheduler};

use crate::app::App;

/// Starts the scheduler with every job and returns it; call `shutdown` on it to stop.
pub async fn start(app: App) -> anyhow::Result<JobScheduler> {
    let scheduler = JobScheduler::new()
        .await
        .context("failed to create the job scheduler")?;
    // Each run logs its own outcome; a failed run is tried again at the next tick.
    add(
        &scheduler,
        &app,
        &app.config.export_schedule,
        "MAMORI_EXPORT_SCHEDULE",
        |app| {
            Box::pin(async move {
                let _ = export_keys::tick(&app).await;
            })
        },
    )
    .await?;
    add(
        &scheduler,
        &app,
        &app.config.retention_schedule,
        "MAMORI_RETENTION_SCHEDULE",
        |app| {
            Box::pin(async move {
                let _ = delete_expired::tick(&app).await;
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
                    let _ = verify_uploads::tick(&app).await;
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

/// Counts a job run by outcome and records its duration.
fn record_run<T>(job: &'static str, started: Instant, result: &anyhow::Result<Option<T>>) {
    let outcome = match result {
        Ok(Some(_)) => "completed",
        Ok(None) => "skipped",
        Err(_) => "failed",
    };
    metrics::counter!("mamori_job_runs_total", "job" => job, "outcome" => outcome).increment(1);
    if !matches!(result, Ok(None)) {
        metrics::histogram!("mamori_job_duration_seconds", "job" => job)
            .record(started.elapsed().as_secs_f64());
    }
}
