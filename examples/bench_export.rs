//! Benchmark of the key export: seeds a fresh SQLite database with verified uploads, then times
//! `mamori::exports::run` and reports its wall time, key count, file size and peak memory.
//!
//! ```text
//! cargo run --release --example bench_export                   # 1,000,000 keys
//! cargo run --release --example bench_export -- --keys 100000
//! ```
//!
//! The export runs in a second process (`--export-only`) against the seeded folder, because
//! seeding raises the process's peak resident memory (VmHWM) and VmHWM never goes down. The
//! child's VmHWM therefore covers only its start, opening the database and the export.
//! Settings other than the data folder and database come from the `MAMORI_…` environment
//! variables, as for the server.
//! `BENCHMARKS.md` records the results.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{bail, Context};
use chrono::{DateTime, Duration, TimeZone, Utc};
use clap::Parser;
use mamori::{
    app::{App, AppState},
    clock::Clock,
    config::Config,
    entity::{
        diagnosis_key_uploads::{self, UploadStatus},
        diagnosis_keys, health_center_tokens, users,
    },
    exports,
};
use rand::{rngs::StdRng, Rng, SeedableRng};
use sea_orm::{ActiveValue::NotSet, ConnectionTrait, EntityTrait, Set, TransactionTrait};
use uuid::Uuid;

/// Keys in one upload: one per day over the 14-day retention window.
const KEYS_PER_UPLOAD: usize = 14;
/// Uploads written per transaction.
const UPLOADS_PER_TRANSACTION: usize = 1_000;
/// Rows per `INSERT` of keys: 2,000 rows × 7 columns stays under SQLite's default limit of
/// 32,766 bound parameters (since SQLite 3.32).
const KEY_ROWS_PER_INSERT: usize = 2_000;

#[derive(Parser)]
#[command(about = "Times the export of diagnosis keys from a freshly seeded SQLite database")]
struct Options {
    /// Number of keys to seed, in uploads of 14 keys (the last upload may hold fewer).
    #[arg(long, env = "MAMORI_BENCH_KEYS", default_value_t = 1_000_000)]
    keys: usize,

    /// Data folder to seed and export from. Default: a new temporary folder, removed at the end.
    #[arg(long)]
    dir: Option<PathBuf>,

    /// Seed `--dir` without exporting.
    #[arg(long, conflicts_with = "export_only", requires = "dir")]
    seed_only: bool,

    /// Export from an already seeded `--dir`, in this process, without seeding.
    #[arg(long, requires = "dir")]
    export_only: bool,
}

#[derive(Parser)]
struct ConfigOnly {
    #[command(flatten)]
    config: Config,
}

fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    let runtime = tokio::runtime::Runtime::new().context("failed to start the async runtime")?;
    if options.export_only {
        let dir = options
            .dir
            .as_deref()
            .context("--export-only needs --dir")?;
        return runtime.block_on(export_only(dir, options.keys));
    }

    // Removed when dropped, at the end of `main`.
    let temporary = match options.dir {
        Some(_) => None,
        None => Some(tempfile::tempdir().context("failed to create a temporary folder")?),
    };
    let dir = options
        .dir
        .clone()
        .or_else(|| temporary.as_ref().map(|folder| folder.path().to_owned()))
        .context("failed to choose a data folder")?;
    runtime.block_on(seed(&dir, options.keys))?;
    if options.seed_only {
        return Ok(());
    }
    drop(runtime);
    run_export_process(&dir, options.keys)
}

/// Returns the benchmark's fixed current time. The seeded keys' periods end on the 14 days
/// before it.
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 9, 0, 0).unwrap()
}

async fn build_app(dir: &Path) -> anyhow::Result<App> {
    let dir = dir.to_str().context("the data folder path is not UTF-8")?;
    let mut config = ConfigOnly::try_parse_from(["mamori", "--data-dir", dir])?.config;
    config.database_url = None;
    AppState::build(config, Clock::fixed(now())).await
}

/// Seeds `key_count` keys in verified uploads, each with its own user and redeemed token.
async fn seed(dir: &Path, key_count: usize) -> anyhow::Result<()> {
    let app = build_app(dir).await?;
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(20261120);
    let upload_count = key_count.div_ceil(KEYS_PER_UPLOAD);
    let mut seeded_keys = 0;
    for first in (0..upload_count).step_by(UPLOADS_PER_TRANSACTION) {
        let uploads = UPLOADS_PER_TRANSACTION.min(upload_count - first);
        seeded_keys += insert_uploads(&app, &mut rng, first, uploads, key_count - seeded_keys)
            .await
            .with_context(|| format!("failed to seed uploads from number {first}"))?;
    }
    // Leaves no write-ahead log behind, so every export run reads the same database file.
    app.db
        .execute_unprepared("PRAGMA wal_checkpoint(TRUNCATE)")
        .await
        .context("failed to checkpoint the write-ahead log")?;
    println!(
        "seeded {seeded_keys} keys in {upload_count} verified uploads in {:.1} s ({})",
        started.elapsed().as_secs_f64(),
        dir.display()
    );
    Ok(())
}

/// Inserts `uploads` uploads of up to 14 keys in one transaction, at most `remaining` keys in
/// all, and returns the number of keys inserted.
async fn insert_uploads(
    app: &App,
    rng: &mut StdRng,
    first: usize,
    uploads: usize,
    remaining: usize,
) -> anyhow::Result<usize> {
    let now = now();
    let today = now.timestamp() / 600 / 144 * 144;
    let mut user_rows = Vec::with_capacity(uploads);
    let mut token_rows = Vec::with_capacity(uploads);
    let mut upload_rows = Vec::with_capacity(uploads);
    let mut key_rows = Vec::with_capacity(uploads * KEYS_PER_UPLOAD);
    for number in first..first + uploads {
        let user_id = Uuid::from_u128(rng.gen());
        let token_id = Uuid::from_u128(rng.gen());
        let prefecture = (number % 47 + 1) as i16;
        let code_hash = format!("{number:064x}");
        user_rows.push(users::ActiveModel {
            id: Set(user_id),
            prefecture: Set(Some(prefecture)),
            created_at: Set(now - Duration::days(1)),
        });
        token_rows.push(health_center_tokens::ActiveModel {
            id: Set(token_id),
            code_hash: Set(code_hash.clone()),
            prefecture: Set(prefecture),
            created_at: Set(now - Duration::days(2)),
            expires_at: Set(now + Duration::days(5)),
            redeemed_at: Set(Some(now - Duration::hours(3))),
            redeemed_by: Set(Some(user_id)),
            revoked_at: Set(None),
        });
        // Version 7, like the ids the server gives uploads.
        let upload_id = Uuid::now_v7();
        let count = KEYS_PER_UPLOAD.min(remaining - key_rows.len());
        upload_rows.push(diagnosis_key_uploads::ActiveModel {
            id: Set(upload_id),
            user_id: Set(user_id),
            health_center_token_id: Set(Some(token_id)),
            code_hash: Set(code_hash),
            verification_code: Set(None),
            prefecture: Set(Some(prefecture)),
            status: Set(UploadStatus::Verified),
            key_count: Set(count as i32),
            keys_digest: Set(format!("{:064x}", rng.gen::<u128>())),
            created_at: Set(now - Duration::hours(3)),
            decided_at: Set(Some(now - Duration::hours(3))),
        });
        for day in 1..=count as i64 {
            key_rows.push(diagnosis_keys::ActiveModel {
                id: NotSet,
                upload_id: Set(upload_id),
                key_data: Set(rng.gen::<[u8; 16]>().to_vec()),
                rolling_start_interval_number: Set(today - day * 144),
                rolling_period: Set(144),
                transmission_risk_level: Set(rng.gen_range(1..=8)),
                report_type: Set(Some(1)),
                days_since_onset_of_symptoms: Set(Some(rng.gen_range(-14..=14))),
            });
        }
    }

    let inserted = key_rows.len();
    let transaction = app.db.begin().await?;
    users::Entity::insert_many(user_rows)
        .exec_without_returning(&transaction)
        .await?;
    health_center_tokens::Entity::insert_many(token_rows)
        .exec_without_returning(&transaction)
        .await?;
    diagnosis_key_uploads::Entity::insert_many(upload_rows)
        .exec_without_returning(&transaction)
        .await?;
    let mut key_rows = key_rows.into_iter().peekable();
    while key_rows.peek().is_some() {
        let chunk: Vec<_> = key_rows.by_ref().take(KEY_ROWS_PER_INSERT).collect();
        diagnosis_keys::Entity::insert_many(chunk)
            .exec_without_returning(&transaction)
            .await?;
    }
    transaction.commit().await?;
    Ok(inserted)
}

/// Runs this program again with `--export-only`, so the export's peak memory is measured alone.
fn run_export_process(dir: &Path, key_count: usize) -> anyhow::Result<()> {
    let program = std::env::current_exe().context("failed to find this program's path")?;
    let status = Command::new(program)
        .arg("--export-only")
        .arg("--dir")
        .arg(dir)
        .arg("--keys")
        .arg(key_count.to_string())
        .status()
        .context("failed to start the export process")?;
    if !status.success() {
        bail!("the export process failed: {status}");
    }
    Ok(())
}

/// Exports from a seeded folder and prints the figures. Fails unless `expected_keys` were
/// exported, so a broken seed cannot pass as a fast export.
async fn export_only(dir: &Path, expected_keys: usize) -> anyhow::Result<()> {
    let app = build_app(dir).await?;
    let before = memory_status()?;
    let cpu_before = cpu_ticks()?;
    let started = Instant::now();
    let index = exports::run(&app.db, &app.exports, &app.export_rules, now()).await?;
    let elapsed = started.elapsed();
    let cpu_after = cpu_ticks()?;
    let after = memory_status()?;

    let keys: u64 = index.files.iter().map(|file| file.key_count).sum();
    let size: u64 = index.files.iter().map(|file| file.size).sum();
    println!(
        "export: {keys} keys in {:.2} s wall ({:.0} keys/s)",
        elapsed.as_secs_f64(),
        keys as f64 / elapsed.as_secs_f64()
    );
    println!(
        "file: {} bytes ({:.1} MB) of {}",
        size,
        size as f64 / 1e6,
        exports::KEYS_FILE
    );
    println!(
        "memory of the export-only process: VmHWM {:.1} MB before the export, {:.1} MB after \
         (peak); VmRSS {:.1} MB before, {:.1} MB after",
        before.peak_kib as f64 / 1024.0,
        after.peak_kib as f64 / 1024.0,
        before.resident_kib as f64 / 1024.0,
        after.resident_kib as f64 / 1024.0
    );
    let own = cpu_after.own - cpu_before.own;
    let machine = cpu_after.machine_busy - cpu_before.machine_busy;
    let steal = cpu_after.steal - cpu_before.steal;
    println!(
        "CPU time during the export: this process {:.1} s (user + system), other processes \
         {:.1} s, hypervisor steal {:.1} s. Large values of the last two slow the export down.",
        own as f64 / TICKS_PER_SECOND,
        machine.saturating_sub(own) as f64 / TICKS_PER_SECOND,
        steal as f64 / TICKS_PER_SECOND
    );
    if keys != expected_keys as u64 {
        bail!(
            "exported {keys} keys, expected {expected_keys}: pass --keys with the number of keys \
             seeded in {}",
            dir.display()
        );
    }
    Ok(())
}

/// Resident memory of this process, from `/proc/self/status` (Linux only).
struct MemoryStatus {
    /// VmHWM: the peak resident set size so far.
    peak_kib: u64,
    /// VmRSS: the current resident set size.
    resident_kib: u64,
}

fn memory_status() -> anyhow::Result<MemoryStatus> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("failed to read /proc/self/status")?;
    let field = |name: &str| -> anyhow::Result<u64> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("missing {name} in /proc/self/status"))
    };
    Ok(MemoryStatus {
        peak_kib: field("VmHWM:")?,
        resident_kib: field("VmRSS:")?,
    })
}

/// Clock ticks per second of `/proc/*/stat` and `/proc/stat` (`USER_HZ`, 100 on Linux x86-64).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU time used so far, in clock ticks.
struct CpuTicks {
    /// User plus system time of this process.
    own: u64,
    /// Non-idle time of all CPUs, this process included.
    machine_busy: u64,
    /// Time the hypervisor ran something else while this machine's CPUs had work.
    steal: u64,
}

fn cpu_ticks() -> anyhow::Result<CpuTicks> {
    let stat =
        std::fs::read_to_string("/proc/self/stat").context("failed to read /proc/self/stat")?;
    // Splits after the command name, which is in parentheses and may contain spaces, so index 0
    // is field 3 (state) of proc(5), and utime and stime (fields 14 and 15) are indexes 11 and 12.
    let fields: Vec<u64> = stat
        .rsplit_once(')')
        .context("unexpected /proc/self/stat format")?
        .1
        .split_whitespace()
        .map(|field| field.parse().unwrap_or(0))
        .collect();
    let own = fields
        .get(11)
        .zip(fields.get(12))
        .map(|(user, system)| user + system);

    let machine = std::fs::read_to_string("/proc/stat").context("failed to read /proc/stat")?;
    let cpu: Vec<u64> = machine
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("cpu "))
        .context("unexpected /proc/stat format")?
        .split_whitespace()
        .map(|field| field.parse().unwrap_or(0))
        .collect();
    // The first eight fields are user, nice, system, idle, iowait, irq, softirq and steal time.
    let [user, nice, system, _idle, _iowait, irq, softirq, steal] = cpu
        .get(..8)
        .and_then(|fields| <[u64; 8]>::try_from(fields).ok())
        .context("missing fields in the cpu line of /proc/stat")?;
    Ok(CpuTicks {
        own: own.context("missing utime or stime in /proc/self/stat")?,
        machine_busy: user + nice + system + irq + softirq,
        steal,
    })
}
