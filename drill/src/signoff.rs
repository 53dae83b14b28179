//! Sign-off of a run directory: key generation, rendering the memo, signing, cosigning and
//! verifying `memo.dsse.json`. Owns the file I/O around `switchyard_reports` (which is pure);
//! every write goes to a temporary file in the same directory and is renamed into place, so
//! nothing is ever half-written.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use switchyard_reports::model::Memo;
use switchyard_reports::sign::{
    self, verify_run, Envelope, KeyPair, Predicate, PublicKey, Statement, VerifyReport,
};
use switchyard_reports::{render, Rendered};

pub const JOURNAL: &str = "journal.json";
pub const MEMO_HTML: &str = sign::MEMO_HTML;
pub const MEMO_MD: &str = sign::MEMO_MD;
pub const JUNIT: &str = "junit.xml";
pub const ENVELOPE: &str = "memo.dsse.json";

/// Files the statement names; every one must exist.
const SIGNED: &[&str] = &[JOURNAL, MEMO_HTML, MEMO_MD, JUNIT];

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename.
/// `mode` is the Unix permission of the final file.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot set the mode of {}", path.display()))?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    tmp.persist(path)
        .with_context(|| format!("cannot rename into {}", path.display()))?;
    Ok(())
}

/// Where the memo data of a run comes from: `memo::JournalMemo` maps the run's `journal.json`;
/// tests may supply memo data directly.
pub trait MemoSource {
    fn memo(&self, run_dir: &Path) -> anyhow::Result<Memo>;
}

fn rendered(run_dir: &Path, source: &dyn MemoSource) -> anyhow::Result<(Memo, Rendered)> {
    let memo = source.memo(run_dir)?;
    let r = render(&memo).context("cannot render the memo")?;
    Ok((memo, r))
}

/// `drill memo RUN_DIR`: (re-)renders `memo.html` and `memo.md`.
pub fn memo(run_dir: &Path, source: &dyn MemoSource) -> anyhow::Result<Vec<PathBuf>> {
    let (_, r) = rendered(run_dir, source)?;
    let html = run_dir.join(MEMO_HTML);
    let md = run_dir.join(MEMO_MD);
    write_atomic(&html, r.html.as_bytes(), 0o644)?;
    write_atomic(&md, r.markdown.as_bytes(), 0o644)?;
    Ok(vec![html, md])
}

/// `drill keygen --out NAME`: writes `NAME.key` (mode 0600) and `NAME.pub`. Refuses to
/// overwrite an existing key.
pub fn keygen(out: &Path, label: Option<&str>) -> anyhow::Result<PublicKey> {
    let key_path = with_suffix(out, "key");
    let pub_path = with_suffix(out, "pub");
    for p in [&key_path, &pub_path] {
        if p.exists() {
            bail!(
                "{} already exists; refusing to overwrite a key\nhint: choose another --out name",
                p.display()
            );
        }
    }
    let pair = KeyPair::generate();
    let mut public = pair.public();
    public.label = label
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join("-");
    write_atomic(&key_path, pair.to_private_file().as_bytes(), 0o600)?;
    write_atomic(
        &pub_path,
        format!("{}\n", public.to_line()).as_bytes(),
        0o644,
    )?;
    Ok(public)
}

fn with_suffix(out: &Path, ext: &str) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

fn read_key(path: &Path) -> anyhow::Result<KeyPair> {
    let text = fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read key file {}\nhint: create one with `drill keygen --out NAME`",
            path.display()
        )
    })?;
    KeyPair::from_private_file(&text).with_context(|| format!("{}", path.display()))
}

fn read_envelope(run_dir: &Path) -> anyhow::Result<Envelope> {
    let path = run_dir.join(ENVELOPE);
    let bytes = fs::read(&path).with_context(|| {
        format!(
            "cannot read {}\nhint: sign the run first with `drill sign {} --key FILE`",
            path.display(),
            run_dir.display()
        )
    })?;
    serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a DSSE envelope", path.display()))
}

/// `drill sign RUN_DIR --key FILE`: checks the memo re-renders to the bytes on disk, builds the
/// statement and writes a new envelope signed by the key.
pub fn sign(run_dir: &Path, key: &Path, source: &dyn MemoSource) -> anyhow::Result<Envelope> {
    let key = read_key(key)?;
    let (memo, r) = rendered(run_dir, source)?;
    for (name, bytes) in [
        (MEMO_HTML, r.html.as_bytes()),
        (MEMO_MD, r.markdown.as_bytes()),
    ] {
        let on_disk = fs::read(run_dir.join(name))
            .with_context(|| format!("cannot read {}", run_dir.join(name).display()))?;
        if on_disk != bytes {
            bail!(
                "{name} differs from a re-render of the run's data; refusing to sign it\nhint: run `drill memo {}` first",
                run_dir.display()
            );
        }
    }
    let mut files = Vec::new();
    for name in SIGNED {
        let path = run_dir.join(name);
        let b = fs::read(&path).with_context(|| {
            format!(
                "cannot read {}, which the statement must name",
                path.display()
            )
        })?;
        files.push((*name, b));
    }
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (*n, b.as_slice())).collect();
    let statement = Statement::new(
        &refs,
        Predicate {
            verdict: memo.verdict.verdict,
            signoff: memo.signoff.clone(),
            scenario_sha256: memo.digests.scenario_sha256.clone(),
            export_start_sha256: memo.digests.export_start_sha256.clone(),
            export_end_sha256: memo.digests.export_end_sha256.clone(),
        },
    );
    let env = Envelope::sign(&statement, &key)?;
    write_atomic(&run_dir.join(ENVELOPE), &env.to_file_bytes()?, 0o644)?;
    Ok(env)
}

/// The result of `cosign`: the envelope written, or why the run no longer matches it.
pub enum Cosigned {
    Written(Envelope),
    Mismatch(Vec<String>),
}

/// `drill cosign RUN_DIR --key FILE`: adds a signature after checking that every named file
/// still has the digest the statement says (an approver never signs a changed run).
pub fn cosign(run_dir: &Path, key: &Path) -> anyhow::Result<Cosigned> {
    let key = read_key(key)?;
    let mut env = read_envelope(run_dir)?;
    let payload = env.payload_bytes()?;
    let statement = sign::parse_statement(&payload)?;
    let mut problems = Vec::new();
    for s in &statement.subject {
        match fs::read(run_dir.join(&s.name)) {
            Ok(b) if sign::sha256_hex(&b) == s.digest.sha256 => {}
            Ok(_) => problems.push(format!("{}: does not match the signed digest", s.name)),
            Err(_) => problems.push(format!("{}: missing", s.name)),
        }
    }
    if !problems.is_empty() {
        return Ok(Cosigned::Mismatch(problems));
    }
    env.cosign(&key)?;
    write_atomic(&run_dir.join(ENVELOPE), &env.to_file_bytes()?, 0o644)?;
    Ok(Cosigned::Written(env))
}

/// `drill verify RUN_DIR --trusted-keys FILE --require N`.
pub fn verify(
    run_dir: &Path,
    trusted_keys: &Path,
    require: usize,
    source: &dyn MemoSource,
) -> anyhow::Result<VerifyReport> {
    let text = fs::read_to_string(trusted_keys).with_context(|| {
        format!(
            "cannot read trusted keys {}\nhint: concatenate the signers' NAME.pub files",
            trusted_keys.display()
        )
    })?;
    let trusted =
        PublicKey::parse_many(&text).with_context(|| format!("{}", trusted_keys.display()))?;
    if trusted.is_empty() {
        bail!("{} lists no keys", trusted_keys.display());
    }
    let env = read_envelope(run_dir)?;
    let read = |name: &str| -> Option<Vec<u8>> {
        // Names come from the signed statement; refuse anything that leaves the run directory.
        if name.contains('/') || name.contains('\\') || name == ".." {
            return None;
        }
        fs::read(run_dir.join(name)).ok()
    };
    let rerender = || -> Result<Rendered, String> {
        rendered(run_dir, source)
            .map(|(_, r)| r)
            .map_err(|e| format!("{e:#}"))
    };
    Ok(verify_run(&env, &trusted, require, &read, &rerender))
}

/// The sign-off table as plain text, for `drill verify`.
pub fn signoff_table(statement: &Statement) -> String {
    let mut out = format!("verdict: {}\n", statement.predicate.verdict.as_str());
    let rows: Vec<[String; 6]> = statement
        .predicate
        .signoff
        .iter()
        .map(|r| {
            [
                r.test_date.clone(),
                r.failed_deployment.clone(),
                r.observed_fallback.clone(),
                format!("{:+.1} ms", r.latency_delta_ms),
                r.verdict.as_str().to_owned(),
                if r.open_risks.is_empty() {
                    "none".to_owned()
                } else {
                    r.open_risks.join("; ")
                },
            ]
        })
        .collect();
    let head = [
        "test date",
        "failed deployment",
        "observed fallback",
        "latency delta",
        "verdict",
        "open risks",
    ];
    let mut widths: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(c);
                s.push_str(&" ".repeat(w - c.chars().count() + 2));
            }
        }
        s.push('\n');
        s
    };
    out.push_str(&line(head.to_vec()));
    for r in &rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}
