//! Signing primitives for the memo: an in-toto style statement over canonical JSON (RFC 8785),
//! wrapped in a DSSE envelope signed with Ed25519; key files; and verification of an envelope
//! against trusted keys and the files it names. Pure over bytes: reading and writing the run
//! directory is the drill's job.

use std::collections::BTreeSet;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::{SignoffRow, Verdict};

/// DSSE payload type of the statement.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// in-toto statement type.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// Predicate type of the readiness memo.
pub const PREDICATE_TYPE: &str = "https://switchyard.dev/readiness-memo/v1";
/// First line of a private key file.
const PRIVATE_KEY_HEADER: &str = "switchyard-ed25519-private-key v1";
/// First word of a public key line.
const PUBLIC_KEY_TAG: &str = "ed25519";

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("not a switchyard private key file (expected first line `{PRIVATE_KEY_HEADER}`)\nhint: create one with `drill keygen --out NAME`")]
    NotAPrivateKey,
    #[error("malformed {what}: {detail}")]
    Malformed { what: &'static str, detail: String },
    #[error("cannot build canonical JSON: {0}")]
    Canonical(String),
    #[error("envelope payload type is `{found}`, expected `{PAYLOAD_TYPE}`")]
    PayloadType { found: String },
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// DSSE v1 pre-authentication encoding: `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`,
/// lengths as ASCII decimal byte counts.
pub fn pae(payload_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + payload_type.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(body);
    out
}

/// RFC 8785 canonical JSON of `value`.
pub fn canonical_json<T: Serialize>(value: &T) -> Result<Vec<u8>, SignError> {
    serde_json_canonicalizer::to_vec(value).map_err(|e| SignError::Canonical(e.to_string()))
}

/// A file named by the statement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// File name relative to the run directory.
    pub name: String,
    pub digest: SubjectDigest,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectDigest {
    pub sha256: String,
}

/// What the signers attest to beside the file digests.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Predicate {
    pub verdict: Verdict,
    pub signoff: Vec<SignoffRow>,
    pub scenario_sha256: String,
    pub export_start_sha256: String,
    pub export_end_sha256: String,
}

/// in-toto style statement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    #[serde(rename = "_type")]
    pub type_: String,
    pub subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub predicate: Predicate,
}

impl Statement {
    /// A statement over `files` (name, bytes), sorted by name.
    pub fn new(files: &[(&str, &[u8])], predicate: Predicate) -> Self {
        let mut subject: Vec<Subject> = files
            .iter()
            .map(|(name, bytes)| Subject {
                name: (*name).to_owned(),
                digest: SubjectDigest {
                    sha256: sha256_hex(bytes),
                },
            })
            .collect();
        subject.sort_by(|a, b| a.name.cmp(&b.name));
        Statement {
            type_: STATEMENT_TYPE.to_owned(),
            subject,
            predicate_type: PREDICATE_TYPE.to_owned(),
            predicate,
        }
    }
}

/// One DSSE signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    pub keyid: String,
    /// Base64 (standard, padded) Ed25519 signature over the PAE.
    pub sig: String,
}

/// DSSE envelope (`memo.dsse.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// Base64 (standard, padded) of the canonical statement.
    pub payload: String,
    pub signatures: Vec<EnvelopeSignature>,
}

/// An Ed25519 key pair loaded from a key file.
pub struct KeyPair {
    signing: SigningKey,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        write!(f, "KeyPair({})", self.public().key_id)
    }
}

/// A public key and its id (first 16 hex digits of the SHA-256 of the raw key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    pub key_id: String,
    pub key: VerifyingKey,
    /// Optional label after the key on the line (e.g. the owner's name).
    pub label: String,
}

fn key_id(key: &VerifyingKey) -> String {
    sha256_hex(key.as_bytes())[..16].to_owned()
}

impl KeyPair {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Self {
        KeyPair {
            signing: SigningKey::generate(&mut rand::rngs::OsRng),
        }
    }

    /// A key from a 32-byte seed (tests).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        KeyPair {
            signing: SigningKey::from_bytes(&seed),
        }
    }

    pub fn public(&self) -> PublicKey {
        let key = self.signing.verifying_key();
        PublicKey {
            key_id: key_id(&key),
            key,
            label: String::new(),
        }
    }

    /// Private key file text: a header line and the base64 seed.
    pub fn to_private_file(&self) -> String {
        format!(
            "{PRIVATE_KEY_HEADER}\n{}\n",
            B64.encode(self.signing.to_bytes())
        )
    }

    pub fn from_private_file(text: &str) -> Result<Self, SignError> {
        let mut lines = text.lines();
        if lines.next().map(str::trim) != Some(PRIVATE_KEY_HEADER) {
            return Err(SignError::NotAPrivateKey);
        }
        let b = lines.next().map(str::trim).unwrap_or_default();
        let bytes = B64.decode(b).map_err(|e| SignError::Malformed {
            what: "private key",
            detail: e.to_string(),
        })?;
        let seed: [u8; 32] = bytes.try_into().map_err(|_| SignError::Malformed {
            what: "private key",
            detail: "expected 32 bytes".into(),
        })?;
        Ok(Self::from_seed(seed))
    }

    /// Signs the PAE of `payload`.
    pub fn sign(&self, payload: &[u8]) -> EnvelopeSignature {
        let sig = self.signing.sign(&pae(PAYLOAD_TYPE, payload));
        EnvelopeSignature {
            keyid: self.public().key_id,
            sig: B64.encode(sig.to_bytes()),
        }
    }
}

impl PublicKey {
    /// One line: `ed25519 <base64 key> <key id> [label]`.
    pub fn to_line(&self) -> String {
        let mut s = format!(
            "{PUBLIC_KEY_TAG} {} {}",
            B64.encode(self.key.as_bytes()),
            self.key_id
        );
        if !self.label.is_empty() {
            s.push(' ');
            s.push_str(&self.label);
        }
        s
    }

    pub fn from_line(line: &str) -> Result<Self, SignError> {
        let bad = |detail: &str| SignError::Malformed {
            what: "public key",
            detail: detail.to_owned(),
        };
        let mut parts = line.split_whitespace();
        if parts.next() != Some(PUBLIC_KEY_TAG) {
            return Err(bad(
                "expected a line `ed25519 <base64 key> <key id> [label]`",
            ));
        }
        let raw = B64
            .decode(parts.next().unwrap_or_default())
            .map_err(|e| bad(&e.to_string()))?;
        let raw: [u8; 32] = raw.try_into().map_err(|_| bad("expected 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&raw).map_err(|e| bad(&e.to_string()))?;
        let id = key_id(&key);
        match parts.next() {
            Some(written) if written == id => {}
            Some(written) => {
                return Err(bad(&format!(
                    "key id {written} does not match the key (its id is {id})"
                )))
            }
            None => return Err(bad("missing key id")),
        }
        Ok(PublicKey {
            key_id: id,
            key,
            label: parts.collect::<Vec<_>>().join(" "),
        })
    }

    /// Parses a trusted-keys file: one public key line each; blank lines and `#` comments skipped.
    pub fn parse_many(text: &str) -> Result<Vec<Self>, SignError> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(Self::from_line)
            .collect()
    }
}

impl Envelope {
    /// A new envelope over `statement`, signed by `key`.
    pub fn sign(statement: &Statement, key: &KeyPair) -> Result<Self, SignError> {
        let payload = canonical_json(statement)?;
        Ok(Envelope {
            payload_type: PAYLOAD_TYPE.to_owned(),
            payload: B64.encode(&payload),
            signatures: vec![key.sign(&payload)],
        })
    }

    /// Adds `key`'s signature (replacing an earlier one by the same key).
    pub fn cosign(&mut self, key: &KeyPair) -> Result<(), SignError> {
        let payload = self.payload_bytes()?;
        let sig = key.sign(&payload);
        self.signatures.retain(|s| s.keyid != sig.keyid);
        self.signatures.push(sig);
        Ok(())
    }

    pub fn payload_bytes(&self) -> Result<Vec<u8>, SignError> {
        if self.payload_type != PAYLOAD_TYPE {
            return Err(SignError::PayloadType {
                found: self.payload_type.clone(),
            });
        }
        B64.decode(&self.payload).map_err(|e| SignError::Malformed {
            what: "envelope payload",
            detail: e.to_string(),
        })
    }

    /// Canonical JSON bytes of the envelope as written to `memo.dsse.json` (plus a newline).
    pub fn to_file_bytes(&self) -> Result<Vec<u8>, SignError> {
        let mut v = serde_json::to_vec_pretty(self).map_err(|e| SignError::Malformed {
            what: "envelope",
            detail: e.to_string(),
        })?;
        v.push(b'\n');
        Ok(v)
    }
}

/// One thing that does not match, for the verification report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// What does not match: "memo.html", "signature 1 (key 3f2a…)", "envelope payload".
    pub what: String,
    pub detail: String,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.what, self.detail)
    }
}

/// The outcome of checking an envelope's signatures.
#[derive(Clone, Debug, Default)]
pub struct SignatureReport {
    /// Key ids of trusted keys whose signatures verified.
    pub trusted_signers: BTreeSet<String>,
    /// Signatures by keys not in the trusted set (not counted, not an error).
    pub untrusted: Vec<String>,
    pub mismatches: Vec<Mismatch>,
}

/// Checks every signature with strict Ed25519 verification. A signature by a trusted key that
/// fails is a mismatch; signatures by unknown keys are listed and do not count.
pub fn check_signatures(envelope: &Envelope, trusted: &[PublicKey]) -> SignatureReport {
    let mut report = SignatureReport::default();
    let payload = match envelope.payload_bytes() {
        Ok(p) => p,
        Err(e) => {
            report.mismatches.push(Mismatch {
                what: "envelope payload".into(),
                detail: e.to_string(),
            });
            return report;
        }
    };
    let message = pae(&envelope.payload_type, &payload);
    for (i, s) in envelope.signatures.iter().enumerate() {
        let what = format!("signature {} (key {})", i + 1, s.keyid);
        let Some(key) = trusted.iter().find(|k| k.key_id == s.keyid) else {
            report.untrusted.push(s.keyid.clone());
            continue;
        };
        let sig = match B64
            .decode(&s.sig)
            .ok()
            .and_then(|b| Signature::from_slice(&b).ok())
        {
            Some(sig) => sig,
            None => {
                report.mismatches.push(Mismatch {
                    what,
                    detail: "not a base64 Ed25519 signature".into(),
                });
                continue;
            }
        };
        match key.key.verify_strict(&message, &sig) {
            Ok(()) => {
                report.trusted_signers.insert(key.key_id.clone());
            }
            Err(_) => report.mismatches.push(Mismatch {
                what,
                detail: "does not verify against the payload".into(),
            }),
        }
    }
    report
}

/// Parses the statement out of a payload, refusing a payload that is not canonical JSON
/// (so the signed bytes and what is read from them cannot differ).
pub fn parse_statement(payload: &[u8]) -> Result<Statement, SignError> {
    let statement: Statement =
        serde_json::from_slice(payload).map_err(|e| SignError::Malformed {
            what: "statement",
            detail: e.to_string(),
        })?;
    let value: serde_json::Value =
        serde_json::from_slice(payload).map_err(|e| SignError::Malformed {
            what: "statement",
            detail: e.to_string(),
        })?;
    if canonical_json(&value)? != payload {
        return Err(SignError::Malformed {
            what: "statement",
            detail: "payload is not RFC 8785 canonical JSON".into(),
        });
    }
    if statement.type_ != STATEMENT_TYPE || statement.predicate_type != PREDICATE_TYPE {
        return Err(SignError::Malformed {
            what: "statement",
            detail: format!(
                "unexpected types `{}` / `{}`",
                statement.type_, statement.predicate_type
            ),
        });
    }
    Ok(statement)
}

/// The files of a run that the statement names and verification reads.
pub const MEMO_HTML: &str = "memo.html";
pub const MEMO_MD: &str = "memo.md";

/// What `verify_run` found. `ok()` is the single yes/no.
#[derive(Clone, Debug)]
pub struct VerifyReport {
    pub statement: Option<Statement>,
    pub signatures: SignatureReport,
    pub required: usize,
    pub mismatches: Vec<Mismatch>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.mismatches.is_empty()
            && self.signatures.mismatches.is_empty()
            && self.signatures.trusted_signers.len() >= self.required
            && self.statement.is_some()
    }

    /// Every reason verification failed, one per line-able item.
    pub fn problems(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .signatures
            .mismatches
            .iter()
            .chain(&self.mismatches)
            .map(ToString::to_string)
            .collect();
        if self.signatures.trusted_signers.len() < self.required {
            out.push(format!(
                "signers: {} trusted signature(s) verified, {} required",
                self.signatures.trusted_signers.len(),
                self.required
            ));
        }
        out
    }
}

/// Verifies a run offline: every signature (strict), the statement's canonical form, the
/// SHA-256 of every named file (`read` returns a file's bytes by name), and that re-rendering
/// the memo (`rerender`, which the caller builds from the journal) gives the exact bytes of
/// `memo.html` and `memo.md`. At least `required` distinct trusted keys must have signed.
pub fn verify_run(
    envelope: &Envelope,
    trusted: &[PublicKey],
    required: usize,
    read: &dyn Fn(&str) -> Option<Vec<u8>>,
    rerender: &dyn Fn() -> Result<crate::Rendered, String>,
) -> VerifyReport {
    let signatures = check_signatures(envelope, trusted);
    let mut report = VerifyReport {
        statement: None,
        signatures,
        required,
        mismatches: Vec::new(),
    };
    let statement = match envelope.payload_bytes().and_then(|p| parse_statement(&p)) {
        Ok(s) => s,
        Err(e) => {
            report.mismatches.push(Mismatch {
                what: "envelope payload".into(),
                detail: e.to_string(),
            });
            return report;
        }
    };
    for subject in &statement.subject {
        match read(&subject.name) {
            None => report.mismatches.push(Mismatch {
                what: subject.name.clone(),
                detail: "named in the statement but missing".into(),
            }),
            Some(bytes) => {
                let got = sha256_hex(&bytes);
                if got != subject.digest.sha256 {
                    report.mismatches.push(Mismatch {
                        what: subject.name.clone(),
                        detail: format!(
                            "sha256 is {got}, the statement says {}",
                            subject.digest.sha256
                        ),
                    });
                }
            }
        }
    }
    match rerender() {
        Err(e) => report.mismatches.push(Mismatch {
            what: "re-render".into(),
            detail: e,
        }),
        Ok(r) => {
            for (name, bytes) in [
                (MEMO_HTML, r.html.as_bytes()),
                (MEMO_MD, r.markdown.as_bytes()),
            ] {
                match read(name) {
                    Some(on_disk) if on_disk == bytes => {}
                    Some(_) => report.mismatches.push(Mismatch {
                        what: name.to_owned(),
                        detail: "differs from a re-render of the journal".into(),
                    }),
                    None => report.mismatches.push(Mismatch {
                        what: name.to_owned(),
                        detail: "missing".into(),
                    }),
                }
            }
        }
    }
    report.statement = Some(statement);
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_key_line_round_trips_and_checks_its_id() {
        let k = KeyPair::from_seed([7; 32]).public();
        let line = k.to_line();
        assert_eq!(PublicKey::from_line(&line).unwrap(), k);
        let tampered = line.replace(&k.key_id, "0000000000000000");
        assert!(PublicKey::from_line(&tampered).is_err());
    }

    #[test]
    fn private_key_file_round_trips() {
        let k = KeyPair::from_seed([9; 32]);
        let back = KeyPair::from_private_file(&k.to_private_file()).unwrap();
        assert_eq!(back.public(), k.public());
        assert!(matches!(
            KeyPair::from_private_file("ed25519 abc"),
            Err(SignError::NotAPrivateKey)
        ));
    }
}
