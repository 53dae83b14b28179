//! Signing and verifying a run: DSSE PAE vector, sign → verify, tampering, thresholds.

use std::collections::BTreeMap;

use switchyard_reports::model::Memo;
use switchyard_reports::sign::{
    pae, verify_run, Envelope, KeyPair, Predicate, PublicKey, Statement,
};
use switchyard_reports::{render, Rendered};

use crate::fixture;

#[test]
fn dsse_pae_matches_the_spec_vector() {
    assert_eq!(
        pae("http://example.com/HelloWorld", b"hello world"),
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
    );
    // Lengths are byte counts, not character counts.
    assert_eq!(
        pae("t", "é".as_bytes()),
        "DSSEv1 1 t 2 é".as_bytes().to_vec()
    );
    assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
}

/// A run directory in memory: file name → bytes, plus the memo it was rendered from.
struct Run {
    files: BTreeMap<String, Vec<u8>>,
    memo: Memo,
}

fn run() -> Run {
    let memo = fixture();
    let Rendered { html, markdown } = render(&memo).expect("fixture renders");
    let mut files = BTreeMap::new();
    files.insert(
        "journal.json".to_owned(),
        br#"{"version":1,"events":[]}"#.to_vec(),
    );
    files.insert(
        "memo.json".to_owned(),
        serde_json::to_vec(&memo).expect("memo serializes"),
    );
    files.insert("memo.html".to_owned(), html.into_bytes());
    files.insert("memo.md".to_owned(), markdown.into_bytes());
    files.insert("junit.xml".to_owned(), b"<testsuites/>".to_vec());
    Run { files, memo }
}

fn statement(run: &Run) -> Statement {
    let files: Vec<(&str, &[u8])> = run
        .files
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    Statement::new(
        &files,
        Predicate {
            verdict: run.memo.verdict.verdict,
            signoff: run.memo.signoff.clone(),
            scenario_sha256: run.memo.digests.scenario_sha256.clone(),
            export_start_sha256: run.memo.digests.export_start_sha256.clone(),
            export_end_sha256: run.memo.digests.export_end_sha256.clone(),
        },
    )
}

fn verify(run: &Run, env: &Envelope, trusted: &[PublicKey], required: usize) -> Vec<String> {
    let read = |name: &str| run.files.get(name).cloned();
    // Re-render from the memo data in the run (the drill will map the journal instead).
    let rerender = || -> Result<Rendered, String> {
        let memo: Memo = serde_json::from_slice(run.files.get("memo.json").ok_or("no memo.json")?)
            .map_err(|e| e.to_string())?;
        render(&memo).map_err(|e| e.to_string())
    };
    let report = verify_run(env, trusted, required, &read, &rerender);
    assert_eq!(report.ok(), report.problems().is_empty());
    report.problems()
}

fn author() -> KeyPair {
    KeyPair::from_seed([1; 32])
}
fn approver() -> KeyPair {
    KeyPair::from_seed([2; 32])
}

#[test]
fn sign_then_verify_passes() {
    let run = run();
    let env = Envelope::sign(&statement(&run), &author()).unwrap();
    assert_eq!(
        verify(&run, &env, &[author().public()], 1),
        Vec::<String>::new()
    );
}

#[test]
fn cosign_meets_a_threshold_of_two() {
    let run = run();
    let mut env = Envelope::sign(&statement(&run), &author()).unwrap();
    env.cosign(&approver()).unwrap();
    let trusted = [author().public(), approver().public()];
    assert_eq!(verify(&run, &env, &trusted, 2), Vec::<String>::new());
    // Cosigning twice with the same key does not count twice.
    env.cosign(&approver()).unwrap();
    assert_eq!(env.signatures.len(), 2);
}

#[test]
fn threshold_of_two_with_one_trusted_signer_fails() {
    let run = run();
    let mut env = Envelope::sign(&statement(&run), &author()).unwrap();
    env.cosign(&approver()).unwrap();
    // The approver's key is not trusted: only one trusted signature.
    let problems = verify(&run, &env, &[author().public()], 2);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("1 trusted signature(s) verified, 2 required"));
}

#[test]
fn flipping_one_byte_of_any_signed_file_fails() {
    let clean = run();
    let env = Envelope::sign(&statement(&clean), &author()).unwrap();
    for name in clean.files.keys() {
        let mut run = run();
        let bytes = run.files.get_mut(name).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x01;
        let problems = verify(&run, &env, &[author().public()], 1);
        assert!(
            problems.iter().any(|p| p.starts_with(name.as_str())),
            "tampering with {name} went unnoticed: {problems:?}"
        );
    }
}

#[test]
fn flipping_one_byte_of_the_payload_fails() {
    use base64::Engine as _;
    let run = run();
    let mut env = Envelope::sign(&statement(&run), &author()).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut payload = b64.decode(&env.payload).unwrap();
    // Change a digest character inside the statement (stays valid JSON).
    let pos = payload.windows(6).position(|w| w == b"sha256").unwrap() + 9;
    payload[pos] = if payload[pos] == b'0' { b'1' } else { b'0' };
    env.payload = b64.encode(&payload);
    let problems = verify(&run, &env, &[author().public()], 1);
    assert!(
        problems.iter().any(|p| p.starts_with("signature 1")),
        "{problems:?}"
    );
}

#[test]
fn flipping_one_byte_of_a_signature_fails() {
    use base64::Engine as _;
    let run = run();
    let mut env = Envelope::sign(&statement(&run), &author()).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut sig = b64.decode(&env.signatures[0].sig).unwrap();
    sig[10] ^= 0x01;
    env.signatures[0].sig = b64.encode(&sig);
    let problems = verify(&run, &env, &[author().public()], 1);
    assert!(
        problems.iter().any(|p| p.starts_with("signature 1")),
        "{problems:?}"
    );
}

#[test]
fn memo_that_does_not_match_its_data_fails_even_with_matching_digests() {
    // An attacker re-signs with their own key after editing memo.html: the signature is not
    // trusted and the re-render differs.
    let mut run = run();
    let html = String::from_utf8(run.files["memo.html"].clone()).unwrap();
    run.files.insert(
        "memo.html".into(),
        html.replace("NOT READY", "READY").into_bytes(),
    );
    let mallory = KeyPair::from_seed([66; 32]);
    let env = Envelope::sign(&statement(&run), &mallory).unwrap();
    let problems = verify(&run, &env, &[author().public()], 1);
    assert!(problems
        .iter()
        .any(|p| p.starts_with("memo.html: differs from a re-render")));
    assert!(problems.iter().any(|p| p.starts_with("signers: 0 trusted")));
}
