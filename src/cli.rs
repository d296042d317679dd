//! Subcommands of the `mamori` binary.

use std::io::Read;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

use crate::{
    admins,
    app::{self, AppState},
    auth::Role,
    clock::Clock,
    config::Config,
    graphql, health_center_tokens, jobs,
    prefectures::PrefectureCode,
};

/// Server of an exposure-notification app.
#[derive(Debug, Parser)]
#[command(name = "mamori", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the HTTP server and the scheduled jobs (the default).
    Serve,
    /// Applies pending database migrations and exits.
    Migrate,
    /// Runs the export job once and exits.
    Export,
    /// Manages health-authority admin accounts.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Manages health-center tokens.
    Tokens {
        #[command(subcommand)]
        command: TokensCommand,
    },
    /// Prints the GraphQL schema (SDL) the server serves.
    Schema,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Creates an admin account, reading its password from standard input.
    Create {
        /// Email address to log in with.
        #[arg(long)]
        email: String,
        /// SUPER_ADMIN, NATIONAL_ADMIN or PREFECTURE_ADMIN.
        #[arg(long)]
        role: String,
        /// Prefecture code (1 to 47), required for PREFECTURE_ADMIN.
        #[arg(long)]
        prefecture: Option<i32>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Issues one-time health-center tokens and prints their codes, one a line.
    Issue {
        /// Prefecture code (1 to 47) of the health center.
        #[arg(long)]
        prefecture: i32,
        /// Number of codes, 1 to 100.
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// How long the codes stay valid (for example 24h, 7d).
        #[arg(long, default_value = "7d")]
        valid_for: humantime::Duration,
    },
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(cli.config).await,
        Command::Migrate => {
            cli.config.validate()?;
            let db = crate::db::connect(&cli.config).await?;
            crate::db::migrate(&db).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Export => {
            let app = AppState::build(cli.config, Clock::system()).await?;
            let index = jobs::export_keys(&app).await?;
            let keys: u64 = index.files.iter().map(|file| file.key_count).sum();
            eprintln!("export finished: {keys} keys published in {}", app.exports);
            Ok(())
        }
        Command::Admin {
            command:
                AdminCommand::Create {
                    email,
                    role,
                    prefecture,
                },
        } => {
            let role = Role::parse(&role.to_ascii_uppercase())
                .filter(|role| *role != Role::User)
                .with_context(|| format!("invalid role {role:?}: expected SUPER_ADMIN, NATIONAL_ADMIN or PREFECTURE_ADMIN"))?;
            let prefecture = prefecture
                .map(|code| PrefectureCode::parse(code, "--prefecture"))
                .transpose()?;
            let mut password = String::new();
            std::io::stdin()
                .read_to_string(&mut password)
                .context("failed to read the password from standard input")?;
            let password = password.trim_end_matches(['\r', '\n']);
            let app = AppState::build(cli.config, Clock::system()).await?;
            let admin =
                admins::create(&app.db, app.clock.now(), &email, password, role, prefecture)
                    .await?;
            eprintln!(
                "created {} admin {} ({})",
                role.as_str(),
                admin.email,
                admin.id
            );
            Ok(())
        }
        Command::Tokens {
            command:
                TokensCommand::Issue {
                    prefecture,
                    count,
                    valid_for,
                },
        } => {
            let prefecture = PrefectureCode::parse(prefecture, "--prefecture")?;
            let valid_for =
                chrono::Duration::from_std(*valid_for).context("invalid --valid-for")?;
            let app = AppState::build(cli.config, Clock::system()).await?;
            let (codes, expires_at) = health_center_tokens::issue(
                &app.db,
                &app.code_hasher,
                app.clock.now(),
                prefecture,
                count,
                valid_for,
            )
            .await?;
            for code in &codes {
                println!("{code}");
            }
            eprintln!(
                "tokens issued: {} for prefecture {prefecture}, valid until {expires_at}",
                codes.len()
            );
            Ok(())
        }
        Command::Schema => {
            print!("{}", graphql::sdl());
            Ok(())
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let listen = config.listen;
    let app = AppState::build(config, Clock::system()).await?;
    let mut scheduler = jobs::start(app.clone()).await?;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("failed to listen on {listen} (MAMORI_LISTEN)"))?;
    let address = listener.local_addr()?;
    tracing::info!("mamori listening on http://{address}/graphql");
    app::serve(app, listener, shutdown_signal()).await?;
    if let Err(error) = scheduler.shutdown().await {
        tracing::warn!(%error, "job scheduler did not stop cleanly");
    }
    tracing::info!("mamori stopped");
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for SIGTERM; stop with Ctrl-C");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutting down: finishing requests in flight");
}
