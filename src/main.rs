//! The `mamori` command: serve (the default), migrate, export, admin, tokens and schema.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = mamori::cli::Cli::parse();
    mamori::telemetry::init(&cli.config.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: failed to start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(mamori::cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}
