//! Sign-off of a run directory through the library: memo, keygen, sign, cosign, verify.

use std::fs;

use drill::memo::JournalMemo;
use drill::signoff::{self, Cosigned};

use crate::run_dir;

#[test]
fn keygen_writes_a_private_key_readable_only_by_its_owner() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("alice");
    let public = signoff::keygen(&out, Some("Alice Ng")).unwrap();
    let pub_text = fs::read_to_string(dir.path().join("alice.pub")).unwrap();
    assert_eq!(pub_text.trim(), public.to_line());
    assert!(pub_text.contains(&public.key_id) && pub_text.contains("Alice-Ng"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs::metadata(dir.path().join("alice.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Never overwrites a key.
    assert!(signoff::keygen(&out, None).is_err());
}

#[test]
fn memo_sign_cosign_verify_round_trip() {
    let run = run_dir();
    let keys = tempfile::tempdir().unwrap();
    let a = signoff::keygen(&keys.path().join("author"), None).unwrap();
    let b = signoff::keygen(&keys.path().join("approver"), None).unwrap();
    signoff::memo(run.path(), &JournalMemo).unwrap();
    signoff::sign(run.path(), &keys.path().join("author.key"), &JournalMemo).unwrap();
    assert!(matches!(
        signoff::cosign(run.path(), &keys.path().join("approver.key")).unwrap(),
        Cosigned::Written(_)
    ));
    let trusted = keys.path().join("trusted.pub");
    fs::write(
        &trusted,
        format!("# signers\n{}\n{}\n", a.to_line(), b.to_line()),
    )
    .unwrap();
    let report = signoff::verify(run.path(), &trusted, 2, &JournalMemo).unwrap();
    assert!(report.ok(), "{:?}", report.problems());
    let table = signoff::signoff_table(report.statement.as_ref().unwrap());
    assert!(table.contains("gpt-4o-east"), "{table}");
    assert!(table.starts_with("verdict: ready"), "{table}");
}

#[test]
fn sign_refuses_a_memo_that_does_not_re_render() {
    let run = run_dir();
    let keys = tempfile::tempdir().unwrap();
    signoff::keygen(&keys.path().join("k"), None).unwrap();
    signoff::memo(run.path(), &JournalMemo).unwrap();
    let html = run.path().join("memo.html");
    let text = fs::read_to_string(&html)
        .unwrap()
        .replace("READY", "NOT READY");
    fs::write(&html, text).unwrap();
    let err = signoff::sign(run.path(), &keys.path().join("k.key"), &JournalMemo).unwrap_err();
    assert!(format!("{err:#}").contains("memo.html differs"), "{err:#}");
    assert!(!run.path().join("memo.dsse.json").exists());
}

#[test]
fn cosign_refuses_a_changed_run() {
    let run = run_dir();
    let keys = tempfile::tempdir().unwrap();
    signoff::keygen(&keys.path().join("a"), None).unwrap();
    signoff::memo(run.path(), &JournalMemo).unwrap();
    signoff::sign(run.path(), &keys.path().join("a.key"), &JournalMemo).unwrap();
    let before = fs::read(run.path().join("memo.dsse.json")).unwrap();
    fs::write(run.path().join("junit.xml"), b"<testsuites/>").unwrap();
    match signoff::cosign(run.path(), &keys.path().join("a.key")).unwrap() {
        Cosigned::Mismatch(p) => assert!(p[0].starts_with("junit.xml"), "{p:?}"),
        Cosigned::Written(_) => panic!("cosigned a changed run"),
    }
    assert_eq!(fs::read(run.path().join("memo.dsse.json")).unwrap(), before);
}
