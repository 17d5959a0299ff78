//! The `pg-queue-scaler` binary: flags and configuration, logging, listeners, signals and
//! exit codes. Everything else is in the library.

use std::collections::HashMap;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use pg_queue_scaler::config::{Command, Flags, Settings};
use pg_queue_scaler::inspect::{self, InspectArgs, Verdict};
use pg_queue_scaler::trigger::{self, Trigger};
use pg_queue_scaler::{Listeners, run, telemetry};

/// BSD `EX_USAGE`: the configuration is wrong; restarting will not help.
const EXIT_CONFIG: u8 = 64;
/// BSD `EX_UNAVAILABLE`: a database could not be read.
const EXIT_UNAVAILABLE: u8 = 69;

fn main() -> ExitCode {
    let flags = Flags::parse();
    if !flags.check_trigger.is_empty() {
        return check_trigger(&flags.check_trigger);
    }
    let env: HashMap<String, String> = std::env::vars().collect();
    if let Some(Command::Inspect(args)) = &flags.command {
        return inspect(flags.clone(), args, &env);
    }
    let settings = match load_settings(&flags, &env) {
        Ok(settings) => settings,
        Err(exit) => return exit,
    };
    if flags.check_config {
        let databases = settings.database_names();
        println!("configuration is valid; databases: {databases:?}");
        return ExitCode::SUCCESS;
    }
    if let Err(error) = telemetry::init(settings.log_format) {
        eprintln!("pg-queue-scaler: invalid configuration: {error}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(exit) => return exit,
    };
    match runtime.block_on(serve(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The settings from every layer, or the exit code for a bad configuration (reported).
fn load_settings(flags: &Flags, env: &HashMap<String, String>) -> Result<Settings, ExitCode> {
    Settings::load(flags, env).map_err(|error| {
        eprintln!("pg-queue-scaler: {error}");
        ExitCode::from(EXIT_CONFIG)
    })
}

/// The async runtime, or the exit code when it cannot start (reported).
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Runtime::new().map_err(|error| {
        eprintln!("pg-queue-scaler: cannot start the async runtime: {error}");
        ExitCode::FAILURE
    })
}

/// `--check-trigger`: the answer KEDA would get for this metadata's syntax, and the keys the
/// scaler does not read (KEDA's own, or misspellings).
fn check_trigger(pairs: &[String]) -> ExitCode {
    let metadata = match inspect::metadata_from_pairs(pairs) {
        Ok(metadata) => metadata,
        Err(problem) => {
            eprintln!("pg-queue-scaler: --check-trigger: {problem}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let unread = trigger::unread_keys(&metadata);
    if !unread.is_empty() {
        println!("keys pg-queue-scaler does not read: {}", unread.join(", "));
    }
    match Trigger::parse(&metadata) {
        Ok(_) => {
            println!("trigger metadata is valid");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("pg-queue-scaler: invalid trigger metadata: {error}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// `inspect`: reads with the same settings as the server and prints what the Inspection
/// service would answer.
fn inspect(mut flags: Flags, args: &InspectArgs, env: &HashMap<String, String>) -> ExitCode {
    if let Some(variable) = &args.database_url_from_env {
        match env.get(variable).filter(|url| !url.is_empty()) {
            Some(url) => flags.database_url = Some(url.clone()),
            None => {
                eprintln!(
                    "pg-queue-scaler inspect: the environment variable {variable} is not set"
                );
                return ExitCode::from(EXIT_CONFIG);
            }
        }
    }
    let settings = match load_settings(&flags, env) {
        Ok(settings) => settings,
        Err(exit) => return exit,
    };
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(exit) => return exit,
    };
    let interrupted = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let verdict = runtime.block_on(inspect::run(
        settings,
        args,
        &mut std::io::stdout(),
        &mut std::io::stderr(),
        interrupted,
    ));
    match verdict {
        Verdict::Ok => ExitCode::SUCCESS,
        Verdict::BadInput => ExitCode::from(EXIT_CONFIG),
        Verdict::Unreachable => ExitCode::from(EXIT_UNAVAILABLE),
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let grpc = tokio::net::TcpListener::bind(settings.grpc_listen)
        .await
        .with_context(|| format!("cannot listen for gRPC on {}", settings.grpc_listen))?;
    let http = tokio::net::TcpListener::bind(settings.http_listen)
        .await
        .with_context(|| format!("cannot listen for HTTP on {}", settings.http_listen))?;
    let databases = settings.database_names();
    let (grpc_tls, mtls) = settings.grpc_tls();
    tracing::info!(
        grpc = %grpc.local_addr()?,
        grpc_tls,
        mtls,
        http = %http.local_addr()?,
        databases = ?databases,
        version = env!("CARGO_PKG_VERSION"),
        "pg-queue-scaler listening"
    );
    if databases.is_empty() {
        tracing::warn!(
            "no database configured: only triggers with connectionFromEnv can be served"
        );
    }
    run(settings, Listeners { grpc, http }, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Completes on SIGTERM (Kubernetes starts a graceful shutdown with it) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only SIGINT stops the scaler");
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
    {
        let _ = interrupt.await;
    }
}
