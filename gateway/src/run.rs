//! The `switchyard` binary's behaviour: load config, serve or validate, map outcomes to exit codes.

use std::process::ExitCode;
use std::time::Duration;

use crate::cli::{Cli, Command, ConfigCommand, ServeArgs};
use crate::config::{self, LoadOptions};
use crate::{AppState, StateOptions};

fn env_lookup(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Runs the CLI. Exit codes: 0 ok, 1 invalid config or runtime failure, 2 usage error.
pub async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Some(Command::Config(ConfigCommand::Validate { file, strict })) => validate(&file, strict),
        Some(Command::Config(ConfigCommand::Export(args))) => {
            state_cli::finish(state_cli::export(args, &env_lookup).await)
        }
        Some(Command::Config(ConfigCommand::Import(args))) => {
            state_cli::finish(state_cli::import(args, &env_lookup).await)
        }
        Some(Command::Config(ConfigCommand::Diff(args))) => {
            state_cli::finish(state_cli::diff(args).await)
        }
        Some(Command::Serve(args)) => serve(args).await,
        None => serve(cli.serve).await,
    }
}

fn validate(file: &std::path::Path, strict: bool) -> ExitCode {
    match config::load_file(file, &env_lookup, &LoadOptions { strict }) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                eprintln!("{w}");
            }
            let groups: std::collections::BTreeSet<&str> = loaded
                .config
                .model_list
                .iter()
                .map(|d| d.model_name.as_str())
                .collect();
            println!(
                "{}: valid ({} deployments in {} model groups, {} warnings)",
                file.display(),
                loaded.config.model_list.len(),
                groups.len(),
                loaded.warnings.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::from(1)
        }
    }
}

/// How long shutdown waits for queued spend to reach the store.
const SPEND_FLUSH_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

async fn serve(args: ServeArgs) -> ExitCode {
    let Some(path) = args.config.as_deref() else {
        eprintln!("error: no config to serve\nhint: pass --config FILE (a LiteLLM-compatible config.yaml)");
        return ExitCode::from(2);
    };
    let mut loaded = match config::load_file(
        path,
        &env_lookup,
        &LoadOptions {
            strict: args.strict,
        },
    ) {
        Ok(l) => l,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(1);
        }
    };
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let master_key = env_lookup("SWITCHYARD_MASTER_KEY")
        .filter(|k| !k.is_empty())
        .map(Into::into);
    if master_key.is_none() && loaded.config.general_settings.master_key.is_none() {
        tracing::warn!(
            "no master key configured: the proxy routes are open to anyone who can reach them"
        );
    }
    // The environment's salt key wins over the file's, for the store and for export secrets.
    if let Some(salt) = env_lookup("SWITCHYARD_SALT_KEY").filter(|s| !s.is_empty()) {
        loaded.config.general_settings.salt_key = Some(salt.into());
    }
    let grace = args
        .grace
        .map(Duration::from_secs)
        .or(loaded.config.general_settings.graceful_shutdown_timeout)
        .unwrap_or(Duration::from_secs(30));
    let store = match open_store(&loaded.config).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let state = AppState::new(
        loaded.config,
        StateOptions {
            master_key,
            store: store.clone(),
            ..Default::default()
        },
    );
    // Runtime global router settings and runtime models (`/model/new`) apply from the start,
    // over and beside the config file's.
    match state.load_runtime().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(runtime_models = n, "runtime models loaded from the store"),
        Err(e) => {
            eprintln!("error: cannot read runtime router settings and models from the store: {e}");
            return ExitCode::from(1);
        }
    }
    let addr = format!("{}:{}", args.host, args.port);
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {addr}: {e}");
            return ExitCode::from(1);
        }
    };
    let local = listener.local_addr().map(|a| a.to_string()).unwrap_or(addr);
    tracing::info!(address = %local, "switchyard listening");
    let served = crate::serve(listener, state.clone(), shutdown_signal(), grace).await;
    // Spend recorded by the last requests is still queued: write it before closing the store.
    if !state.flush_spend(SPEND_FLUSH_DEADLINE).await {
        tracing::error!(
            deadline_s = SPEND_FLUSH_DEADLINE.as_secs(),
            "spend not fully written at shutdown"
        );
    }
    if let Some(store) = store {
        store.close().await;
    }
    match served {
        Ok(()) => {
            tracing::info!("switchyard stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: server failed: {e}");
            ExitCode::from(1)
        }
    }
}

/// Opens the store named by `DATABASE_URL` (else `general_settings.database_url`); `None`
/// when neither is set. A store that cannot be opened stops start-up with exit code 1.
async fn open_store(
    config: &config::Config,
) -> Result<Option<std::sync::Arc<dyn crate::store::Store>>, ExitCode> {
    use secrecy::{ExposeSecret, SecretString};
    let url = env_lookup("DATABASE_URL")
        .filter(|u| !u.is_empty())
        .map(SecretString::from)
        .or_else(|| config.general_settings.database_url.clone());
    let Some(url) = url else {
        return Ok(None);
    };
    let mut options = crate::store::StoreOptions::default();
    if let Some(salt) = env_lookup("SWITCHYARD_SALT_KEY").filter(|s| !s.is_empty()) {
        match crate::store::SecretCipher::for_credentials(&SecretString::from(salt)) {
            Ok(c) => options = options.with_cipher(c),
            Err(e) => {
                eprintln!("error: SWITCHYARD_SALT_KEY: {e}");
                return Err(ExitCode::from(1));
            }
        }
    }
    match crate::store::connect_with(url.expose_secret(), options).await {
        Ok(store) => {
            tracing::info!(backend = ?store.backend(), "store connected");
            Ok(Some(store))
        }
        Err(e) => {
            eprintln!("error: cannot open the store: {e}");
            Err(ExitCode::from(1))
        }
    }
}

mod state_cli;

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutdown signal received; draining in-flight requests");
}
