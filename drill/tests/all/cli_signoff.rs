//! The drill binary's exit codes and messages for audit and sign-off.

use std::path::Path;
use std::process::{Command, Output};

use crate::{fixtures, run_dir};

fn drill(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_drill"))
        .args(args)
        .env_remove("SWITCHYARD_AUDIT_FIXTURE_UNSET")
        .output()
        .expect("drill runs")
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exit code")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn audit_file(name: &str) -> String {
    fixtures().join("audit").join(name).display().to_string()
}

#[test]
fn audit_exit_codes_follow_fail_on() {
    assert_eq!(code(&drill(&["audit", &audit_file("clean.yaml")])), 0);
    assert_eq!(
        code(&drill(&["audit", &audit_file("fallback-missing.yaml")])),
        1
    );
    // A warning fails only from --fail-on warning.
    assert_eq!(code(&drill(&["audit", &audit_file("capacity.yaml")])), 0);
    assert_eq!(
        code(&drill(&[
            "audit",
            &audit_file("capacity.yaml"),
            "--fail-on",
            "warning"
        ])),
        1
    );
    assert_eq!(
        code(&drill(&[
            "audit",
            &audit_file("settings-default.yaml"),
            "--fail-on",
            "info"
        ])),
        1
    );
}

#[test]
fn audit_unreadable_input_exits_2_with_one_line() {
    let o = drill(&["audit", "/nonexistent/config.yaml"]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).starts_with("error: cannot read /nonexistent/config.yaml"),
        "{}",
        stderr(&o)
    );
    let dir = tempfile::tempdir().unwrap();
    let foreign = dir.path().join("foreign.yaml");
    std::fs::write(&foreign, "just: [unbalanced").unwrap();
    assert_eq!(code(&drill(&["audit", &foreign.display().to_string()])), 2);
    let newer = dir.path().join("newer.yaml");
    std::fs::write(&newer, "kind: switchyard-audit-input\nversion: 9\n").unwrap();
    let o = drill(&["audit", &newer.display().to_string()]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("version 9 is newer"), "{}", stderr(&o));
}

#[test]
fn audit_json_and_sarif_parse() {
    for format in ["json", "sarif"] {
        let o = drill(&[
            "audit",
            &audit_file("single-vendor.yaml"),
            "--format",
            format,
        ]);
        assert_eq!(code(&o), 0);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert!(v["version"].is_number() || v["version"] == "2.1.0");
    }
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn sign_verify_and_tampering_exit_codes() {
    let run = run_dir();
    let keys = tempfile::tempdir().unwrap();
    let r = path(run.path());
    let author = keys.path().join("author");
    let approver = keys.path().join("approver");
    assert_eq!(code(&drill(&["keygen", "--out", &path(&author)])), 0);
    assert_eq!(code(&drill(&["keygen", "--out", &path(&approver)])), 0);
    assert_eq!(code(&drill(&["memo", &r])), 0);
    assert_eq!(
        code(&drill(&[
            "sign",
            &r,
            "--key",
            &format!("{}.key", path(&author))
        ])),
        0
    );
    let trusted = keys.path().join("trusted.pub");
    std::fs::write(
        &trusted,
        std::fs::read_to_string(format!("{}.pub", path(&author))).unwrap(),
    )
    .unwrap();
    let t = path(&trusted);
    let ok = drill(&["verify", &r, "--trusted-keys", &t]);
    assert_eq!(code(&ok), 0, "{}", stderr(&ok));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("failed deployment"));
    // Threshold 2 with one trusted signer fails, even after an untrusted cosign.
    assert_eq!(
        code(&drill(&[
            "cosign",
            &r,
            "--key",
            &format!("{}.key", path(&approver))
        ])),
        0
    );
    let o = drill(&["verify", &r, "--trusted-keys", &t, "--require", "2"]);
    assert_eq!(code(&o), 6);
    assert!(stderr(&o).contains("2 required"), "{}", stderr(&o));
    // One byte of the journal.
    let journal = run.path().join("journal.json");
    let mut bytes = std::fs::read(&journal).unwrap();
    bytes[5] ^= 0x01;
    std::fs::write(&journal, &bytes).unwrap();
    let o = drill(&["verify", &r, "--trusted-keys", &t]);
    assert_eq!(code(&o), 6);
    assert!(
        stderr(&o).contains("mismatch: journal.json"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn missing_key_and_wrong_key_are_clear_errors() {
    let run = run_dir();
    let r = path(run.path());
    assert_eq!(code(&drill(&["memo", &r])), 0);
    let o = drill(&["sign", &r, "--key", "/nonexistent.key"]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains("hint: create one with `drill keygen"),
        "{}",
        stderr(&o)
    );
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong.key");
    std::fs::write(&wrong, "-----BEGIN PRIVATE KEY-----\n").unwrap();
    let o = drill(&["sign", &r, "--key", &path(&wrong)]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains("not a switchyard private key"),
        "{}",
        stderr(&o)
    );
    assert!(!run.path().join("memo.dsse.json").exists());
    // Verify without an envelope.
    let keys = dir.path().join("k");
    assert_eq!(code(&drill(&["keygen", "--out", &path(&keys)])), 0);
    let o = drill(&[
        "verify",
        &r,
        "--trusted-keys",
        &format!("{}.pub", path(&keys)),
    ]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("memo.dsse.json"), "{}", stderr(&o));
}
