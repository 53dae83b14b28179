//! Clap structs and dispatch for `drill audit`, `keygen`, `sign`, `cosign`, `verify` and `memo`.
//! Kept apart from `cli.rs` (`run`, `mocks`) so the two command sets merge without conflicts.
//!
//! Exit codes: 0 ok · 1 audit findings at or above `--fail-on` · 2 usage or unreadable input ·
//! 6 verification failed (a signature, digest or re-render does not match).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use switchyard_reports::model::Severity;

use crate::audit::{self, InputFormat, Loaded, OutputFormat};
use crate::memo::JournalMemo;
use crate::signoff::{self, Cosigned};

pub const EXIT_OK: u8 = 0;
pub const EXIT_FINDINGS: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_TAMPERED: u8 = 6;

#[derive(Debug, Subcommand)]
pub enum SignoffCommand {
    /// Static fallback-readiness review of a LiteLLM config.yaml, a Switchyard export (with
    /// --config) or an audit input document.
    ///
    /// Each finding has an id, a severity, the objects involved, what is wrong and how to fix
    /// it. Exit 1 when a finding at or above --fail-on exists, 2 when the input is unreadable.
    #[command(
        after_long_help = "Examples:\n  drill audit config.yaml\n  drill audit state.yaml --config config.yaml      (a `switchyard config export`)\n  drill audit config.yaml --format sarif > audit.sarif\n  drill audit config.yaml --fail-on warning"
    )]
    Audit(AuditArgs),
    /// Writes a new Ed25519 key pair: NAME.key (mode 0600) and NAME.pub (one line with a key id).
    Keygen(KeygenArgs),
    /// Signs a run: writes RUN_DIR/memo.dsse.json, a DSSE envelope over a statement naming the
    /// SHA-256 of journal.json, memo.html, memo.md and junit.xml.
    Sign(SignArgs),
    /// Adds an approver's signature to RUN_DIR/memo.dsse.json (refused if the run changed).
    Cosign(SignArgs),
    /// Verifies a run offline: signatures, file digests, and a byte-exact re-render of the memo.
    ///
    /// Prints the sign-off table. Exit 6 naming every mismatch.
    Verify(VerifyArgs),
    /// (Re-)renders RUN_DIR/memo.html and memo.md from the run's journal.json.
    Memo(MemoArgs),
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// LiteLLM config.yaml, or an audit input document (`kind: switchyard-audit-input`).
    pub file: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
    /// How to read FILE (default: decided from its content).
    #[arg(long, value_enum, default_value = "auto")]
    pub input: InputFormat,
    /// With a Switchyard export as FILE: the gateway's config.yaml, whose deployments the
    /// export lists by name only.
    #[arg(long, value_name = "CONFIG")]
    pub config: Option<PathBuf>,
    /// Exit 1 when a finding at or above this severity exists.
    #[arg(long, value_enum, default_value = "error")]
    pub fail_on: FailOn,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum FailOn {
    Info,
    Warning,
    Error,
}

impl From<FailOn> for Severity {
    fn from(f: FailOn) -> Self {
        match f {
            FailOn::Info => Severity::Info,
            FailOn::Warning => Severity::Warning,
            FailOn::Error => Severity::Error,
        }
    }
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Path prefix: writes OUT.key and OUT.pub.
    #[arg(long)]
    pub out: PathBuf,
    /// Label stored after the key id in OUT.pub, e.g. the signer's name.
    #[arg(long)]
    pub label: Option<String>,
}

#[derive(Debug, Args)]
pub struct SignArgs {
    /// Run directory written by `drill run`.
    pub run_dir: PathBuf,
    /// Private key file (NAME.key from `drill keygen`).
    #[arg(long)]
    pub key: PathBuf,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Run directory written by `drill run`.
    pub run_dir: PathBuf,
    /// File of trusted public keys: NAME.pub lines, one per signer.
    #[arg(long)]
    pub trusted_keys: PathBuf,
    /// Number of distinct trusted signers required.
    #[arg(long, default_value_t = 1)]
    pub require: usize,
}

#[derive(Debug, Args)]
pub struct MemoArgs {
    /// Run directory written by `drill run`.
    pub run_dir: PathBuf,
}

fn fail(e: &anyhow::Error) -> ExitCode {
    eprintln!("error: {e:#}");
    ExitCode::from(EXIT_USAGE)
}

pub fn run(cmd: SignoffCommand) -> ExitCode {
    match cmd {
        SignoffCommand::Audit(a) => run_audit(&a),
        SignoffCommand::Keygen(a) => match signoff::keygen(&a.out, a.label.as_deref()) {
            Ok(k) => {
                println!("{}", k.to_line());
                eprintln!(
                    "wrote {}.key (keep it private) and {}.pub (key id {})",
                    a.out.display(),
                    a.out.display(),
                    k.key_id
                );
                ExitCode::from(EXIT_OK)
            }
            Err(e) => fail(&e),
        },
        SignoffCommand::Sign(a) => match signoff::sign(&a.run_dir, &a.key, &JournalMemo) {
            Ok(env) => {
                let id = env.signatures.first().map_or("", |s| s.keyid.as_str());
                eprintln!(
                    "signed {} with key {id}",
                    a.run_dir.join(signoff::ENVELOPE).display()
                );
                ExitCode::from(EXIT_OK)
            }
            Err(e) => fail(&e),
        },
        SignoffCommand::Cosign(a) => match signoff::cosign(&a.run_dir, &a.key) {
            Ok(Cosigned::Written(env)) => {
                eprintln!(
                    "cosigned {}: {} signature(s)",
                    a.run_dir.join(signoff::ENVELOPE).display(),
                    env.signatures.len()
                );
                ExitCode::from(EXIT_OK)
            }
            Ok(Cosigned::Mismatch(problems)) => {
                for p in problems {
                    eprintln!("mismatch: {p}");
                }
                eprintln!("error: the run changed since it was signed; not cosigning");
                ExitCode::from(EXIT_TAMPERED)
            }
            Err(e) => fail(&e),
        },
        SignoffCommand::Verify(a) => {
            match signoff::verify(&a.run_dir, &a.trusted_keys, a.require, &JournalMemo) {
                Ok(report) => {
                    if let Some(st) = &report.statement {
                        print!("{}", signoff::signoff_table(st));
                    }
                    if report.ok() {
                        println!(
                            "verified: {} trusted signer(s) ({} required), {} file(s) match, memo re-renders byte for byte",
                            report.signatures.trusted_signers.len(),
                            report.required,
                            report.statement.as_ref().map_or(0, |s| s.subject.len())
                        );
                        ExitCode::from(EXIT_OK)
                    } else {
                        for p in report.problems() {
                            eprintln!("mismatch: {p}");
                        }
                        eprintln!("error: verification failed");
                        ExitCode::from(EXIT_TAMPERED)
                    }
                }
                Err(e) => fail(&e),
            }
        }
        SignoffCommand::Memo(a) => match signoff::memo(&a.run_dir, &JournalMemo) {
            Ok(paths) => {
                for p in paths {
                    eprintln!("wrote {}", p.display());
                }
                ExitCode::from(EXIT_OK)
            }
            Err(e) => fail(&e),
        },
    }
}

fn run_audit(a: &AuditArgs) -> ExitCode {
    let env = |k: &str| std::env::var(k).ok();
    let findings = match audit::input::load_with(&a.file, a.input, &env, a.config.as_deref()) {
        Ok(Loaded::Input(input)) => audit::audit(&input),
        Ok(Loaded::Rejected(mut f)) => {
            audit::sort(&mut f);
            f
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let source = a.file.display().to_string();
    let text = match a.format {
        OutputFormat::Table => audit::table(&source, &findings),
        OutputFormat::Json => format!("{:#}\n", audit::to_json(&source, &findings)),
        OutputFormat::Sarif => format!("{:#}\n", audit::to_sarif(&source, &findings)),
    };
    print!("{text}");
    if audit::fails(&findings, a.fail_on.into()) {
        ExitCode::from(EXIT_FINDINGS)
    } else {
        ExitCode::from(EXIT_OK)
    }
}
