//! The resilience drill: scenarios (`scenario`), mock providers and the target (`harness`),
//! load (`load`), the documented chains (`documented`), verdicts from the mock journals
//! (`verify`), the run journal (`evidence`) and its files (`output`); `run` ties them together.
//! The static audit of a config (`audit`) and the memo's signing and verification (`signoff`)
//! serve the sign-off commands.

pub mod audit;
pub mod cli;
pub mod documented;
pub mod evidence;
pub mod export;
pub mod harness;
pub mod load;
pub mod memo;
pub mod output;
pub mod run;
pub mod scenario;
pub mod signoff;
pub mod signoff_cli;
pub mod verify;

use std::process::ExitCode;
use std::sync::Arc;

use cli::{Cli, Command, MocksArgs, RunArgs};
use mock_providers::MockServer;
use run::{exit, RunOptions};
use scenario::{Document, Source};

/// Runs the command line; the binary's whole `main`.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Run(a) => block_on(run_command(a)),
        Command::Mocks(a) => block_on(mocks_command(a)),
        Command::Signoff(c) => signoff_cli::run(c),
    }
}

/// Runs an async command on a fresh multi-threaded runtime.
fn block_on(command: impl std::future::Future<Output = u8>) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => ExitCode::from(rt.block_on(command)),
        Err(e) => {
            eprintln!("drill: cannot start the async runtime: {e}");
            ExitCode::from(exit::ENVIRONMENT)
        }
    }
}

async fn run_command(a: RunArgs) -> u8 {
    let mut opts = RunOptions::new(Arc::new(|k: &str| std::env::var(k).ok()));
    opts.target = a.target;
    opts.config = a.config;
    opts.export = a.export;
    opts.mocks = a.mocks;
    opts.seed = a.seed;
    opts.fail_fast = a.fail_fast;
    opts.quiet = a.quiet;
    opts.keep_request_log = a.keep_request_log;
    opts.progress = std::env::var_os("CI").is_none();
    let cancel = opts.cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("drill: interrupted, stopping and writing what was measured");
            cancel.cancel();
        }
    });
    run::run_file(&a.scenario, a.out.as_deref(), &opts).await
}

async fn mocks_command(a: MocksArgs) -> u8 {
    let src = match Source::read(&a.scenario) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return exit::INVALID_SCENARIO;
        }
    };
    let s = match scenario::load(&src) {
        Ok(Document::Scenario(s)) => *s,
        Ok(Document::Suite(_)) => {
            eprintln!(
                "{}: drill mocks serves one scenario, not a suite",
                src.file()
            );
            return exit::INVALID_SCENARIO;
        }
        Err(e) => {
            eprintln!("{e}");
            return exit::INVALID_SCENARIO;
        }
    };
    let problems = scenario::validate::validate(&s, &src);
    if !problems.is_empty() {
        eprintln!("{}", scenario::ScenarioError { problems });
        return exit::INVALID_SCENARIO;
    }
    let seed = a.seed.unwrap_or(s.seed);
    let server = match MockServer::start(harness::mock_spec(&s, seed, false)).await {
        Ok(m) => m,
        Err(e) => {
            eprintln!("drill mocks: {e}");
            return exit::ENVIRONMENT;
        }
    };
    println!("# provider dialect deployment base_url api_base");
    for p in &s.providers {
        let base = server.base_url(&p.id);
        println!(
            "{} {} {} {base} {base}{}",
            p.id,
            p.dialect,
            p.deployment_id(),
            p.dialect.api_base_suffix()
        );
    }
    println!("# serving until Ctrl-C");
    let _ = tokio::signal::ctrl_c().await;
    server.shutdown().await;
    exit::PASSED
}
