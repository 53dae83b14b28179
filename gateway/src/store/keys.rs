//! Virtual key format `sk-<prefix>-<public_id>-<secret>`: parsing, hashing and generation.
//! Pure functions, no I/O; storing and looking up key records is `KeyStore`'s job.
//!
//! - `prefix` names the issuer or environment (`sy` by default), `[a-z0-9]{1,16}`.
//! - `public_id` is the lookup and log handle: 12 base62 characters (~71 bits) when generated,
//!   stable across regeneration. It is not a secret and may appear in logs.
//! - `secret` is 43 base62 characters: 256 bits from the operating system's CSPRNG.
//!
//! Only SHA-256 of the *whole* key string (lowercase hex) is stored, exactly as LiteLLM
//! hashes its tokens, so LiteLLM-style `sk-<anything>` keys keep working after an import: they
//! are "legacy" keys, looked up by the hash of the whole string.

use std::fmt;

use rand::distributions::{Alphanumeric, DistString};
use rand::rngs::OsRng;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Every key starts with this, LiteLLM's convention.
pub const KEY_SCHEME: &str = "sk-";
/// Prefix used when the operator configures none.
pub const DEFAULT_PREFIX: &str = "sy";
/// Length of a generated public id.
pub const PUBLIC_ID_LEN: usize = 12;
/// Length of the secret part: 43 base62 characters carry 256.03 bits.
pub const SECRET_LEN: usize = 43;
/// Longer presented keys are refused before hashing: nobody's key is 512 bytes.
pub const MAX_KEY_LEN: usize = 512;
const MAX_PREFIX_LEN: usize = 16;
const MIN_PUBLIC_ID_LEN: usize = 8;
const MAX_PUBLIC_ID_LEN: usize = 32;
/// Legacy keys get a public id derived from their hash: this many hex digits.
const LEGACY_PUBLIC_ID_LEN: usize = 16;

/// Why a presented string is not a usable key. Never contains the key itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    #[error("not a virtual key: it must start with \"sk-\"")]
    MissingScheme,
    #[error("virtual key is empty after \"sk-\"")]
    Empty,
    #[error("virtual key is longer than {MAX_KEY_LEN} bytes")]
    TooLong,
    #[error("virtual key contains whitespace or control characters")]
    BadCharacters,
    #[error("invalid key prefix: expected 1 to {MAX_PREFIX_LEN} characters of [a-z0-9]")]
    BadPrefix,
    #[error(
        "invalid key public id: expected {MIN_PUBLIC_ID_LEN} to {MAX_PUBLIC_ID_LEN} characters of [A-Za-z0-9]"
    )]
    BadPublicId,
    #[error("invalid token hash: expected 64 lowercase hex digits (SHA-256)")]
    BadHash,
}

fn is_base62(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The issuer/environment part of a key, e.g. `sy` in `sk-sy-...`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyPrefix(String);

impl KeyPrefix {
    pub fn new(s: &str) -> Result<Self, KeyFormatError> {
        let ok = !s.is_empty()
            && s.len() <= MAX_PREFIX_LEN
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if ok {
            Ok(KeyPrefix(s.to_owned()))
        } else {
            Err(KeyFormatError::BadPrefix)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for KeyPrefix {
    fn default() -> Self {
        KeyPrefix(DEFAULT_PREFIX.to_owned())
    }
}

/// A key's public id: the stable lookup and log handle. Not secret.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PublicId(String);

impl PublicId {
    pub fn new(s: &str) -> Result<Self, KeyFormatError> {
        if (MIN_PUBLIC_ID_LEN..=MAX_PUBLIC_ID_LEN).contains(&s.len()) && is_base62(s) {
            Ok(PublicId(s.to_owned()))
        } else {
            Err(KeyFormatError::BadPublicId)
        }
    }

    /// A fresh random public id.
    pub fn random() -> Self {
        PublicId(Alphanumeric.sample_string(&mut OsRng, PUBLIC_ID_LEN))
    }

    /// The public id given to a legacy key (one without a public id of its own): the first
    /// 16 hex digits of its hash. 16 characters never collide in form with generated ids (12).
    pub fn for_legacy(hash: &TokenHash) -> Self {
        PublicId(hash.0[..LEGACY_PUBLIC_ID_LEN].to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PublicId {
    type Error = KeyFormatError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        PublicId::new(&s)
    }
}

impl From<PublicId> for String {
    fn from(id: PublicId) -> String {
        id.0
    }
}

impl fmt::Display for PublicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// SHA-256 of a whole key string, lowercase hex. What the store keeps instead of the key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TokenHash(String);

impl TokenHash {
    /// Accepts an existing hash (e.g. from an export or a LiteLLM database).
    pub fn new(s: &str) -> Result<Self, KeyFormatError> {
        let ok = s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if ok {
            Ok(TokenHash(s.to_owned()))
        } else {
            Err(KeyFormatError::BadHash)
        }
    }

    /// Hashes a whole key string.
    pub fn of(key: &str) -> Self {
        TokenHash::from_digest(&Sha256::digest(key.as_bytes()).into())
    }

    /// The hash of a key whose SHA-256 is already known.
    pub fn from_digest(digest: &[u8; 32]) -> Self {
        TokenHash(hex::encode(digest))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TokenHash {
    type Error = KeyFormatError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        TokenHash::new(&s)
    }
}

impl From<TokenHash> for String {
    fn from(h: TokenHash) -> String {
        h.0
    }
}

impl fmt::Display for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a presented key tells us before any lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresentedKey {
    /// Look the key up by this.
    pub hash: TokenHash,
    /// The public id written in the key (`None` for legacy keys). A hint for logs and a
    /// cross-check against the record found by hash, never a lookup on its own.
    pub public_id: Option<PublicId>,
}

/// Parses a key presented by a client. Structured keys yield their public id; any other
/// `sk-...` string is a legacy key, identified by the hash of the whole string.
pub fn parse(key: &str) -> Result<PresentedKey, KeyFormatError> {
    let rest = check_presented(key)?;
    Ok(PresentedKey {
        hash: TokenHash::from_digest(&Sha256::digest(key.as_bytes()).into()),
        public_id: structured_parts(rest).map(|(_, id)| id),
    })
}

/// The checks of [`parse`] alone (length, characters, `sk-` scheme), without hashing or
/// allocating: the proxy's hot path hashes a presented key once itself and needs nothing
/// else from it unless the key cache misses. Returns the part after the scheme.
pub fn check_presented(key: &str) -> Result<&str, KeyFormatError> {
    if key.len() > MAX_KEY_LEN {
        return Err(KeyFormatError::TooLong);
    }
    // ASCII keys (all real ones) are checked bytewise; the same set (vertical tab is a
    // control character).
    let bad = if key.is_ascii() {
        key.bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    } else {
        key.chars().any(|c| c.is_whitespace() || c.is_control())
    };
    if bad {
        return Err(KeyFormatError::BadCharacters);
    }
    let rest = key
        .strip_prefix(KEY_SCHEME)
        .ok_or(KeyFormatError::MissingScheme)?;
    if rest.is_empty() {
        return Err(KeyFormatError::Empty);
    }
    Ok(rest)
}

/// `<prefix>-<public_id>-<secret>` with every part well-formed, or `None`.
fn structured_parts(rest: &str) -> Option<(KeyPrefix, PublicId)> {
    let mut parts = rest.split('-');
    let (prefix, id, secret) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || secret.len() != SECRET_LEN || !is_base62(secret) {
        return None;
    }
    Some((KeyPrefix::new(prefix).ok()?, PublicId::new(id).ok()?))
}

/// A freshly minted key. `key` is shown to the caller once and then dropped.
#[derive(Debug)]
pub struct GeneratedKey {
    pub key: SecretString,
    pub public_id: PublicId,
    pub hash: TokenHash,
}

/// Mints a new key with a fresh public id.
pub fn generate(prefix: &KeyPrefix) -> GeneratedKey {
    regenerate(prefix, &PublicId::random())
}

/// Mints a new secret for an existing public id (key regeneration keeps the handle).
pub fn regenerate(prefix: &KeyPrefix, public_id: &PublicId) -> GeneratedKey {
    let secret = Alphanumeric.sample_string(&mut OsRng, SECRET_LEN);
    let key = format!(
        "{KEY_SCHEME}{}-{}-{secret}",
        prefix.as_str(),
        public_id.as_str()
    );
    let hash = TokenHash::of(&key);
    GeneratedKey {
        key: SecretString::from(key),
        public_id: public_id.clone(),
        hash,
    }
}

/// A display form that is safe to log and show in lists: `sk-sy-<public_id>-…`.
pub fn display_name(prefix: &KeyPrefix, public_id: &PublicId) -> String {
    format!("{KEY_SCHEME}{}-{}-…", prefix.as_str(), public_id.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn generated_key_parses_back_to_its_public_id_and_hash() {
        let g = generate(&KeyPrefix::default());
        let key = g.key.expose_secret();
        assert!(key.starts_with("sk-sy-"));
        assert_eq!(key.len(), 3 + 2 + 1 + PUBLIC_ID_LEN + 1 + SECRET_LEN);
        let p = parse(key).unwrap();
        assert_eq!(p.public_id.as_ref(), Some(&g.public_id));
        assert_eq!(p.hash, g.hash);
        assert_eq!(p.hash, TokenHash::of(key));
    }

    #[test]
    fn generated_keys_differ() {
        let a = generate(&KeyPrefix::default());
        let b = generate(&KeyPrefix::default());
        assert_ne!(a.public_id, b.public_id);
        assert_ne!(a.hash, b.hash);
    }

    #[test]
    fn regenerate_keeps_public_id_and_changes_secret() {
        let prefix = KeyPrefix::new("prod").unwrap();
        let a = generate(&prefix);
        let b = regenerate(&prefix, &a.public_id);
        assert_eq!(a.public_id, b.public_id);
        assert_ne!(a.hash, b.hash);
        assert!(b.key.expose_secret().starts_with("sk-prod-"));
    }

    #[test]
    fn hash_is_sha256_hex_of_whole_key_like_litellm() {
        // sha256("sk-1234"), what LiteLLM's hash_token stores for the same key.
        assert_eq!(
            TokenHash::of("sk-1234").as_str(),
            "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b"
        );
    }

    #[test]
    fn legacy_keys_are_hashed_whole_and_have_no_public_id() {
        for key in [
            "sk-1234",
            "sk-abc_DEF-ghi",
            "sk-a-b-c-d",
            "sk-sy-short-secret",
        ] {
            let p = parse(key).unwrap();
            assert_eq!(p.public_id, None, "{key}");
            assert_eq!(p.hash, TokenHash::of(key));
        }
    }

    #[test]
    fn malformed_keys_are_refused_without_echoing_them() {
        let table: &[(&str, KeyFormatError)] = &[
            ("Bearer sk-1", KeyFormatError::BadCharacters),
            ("pk-1234", KeyFormatError::MissingScheme),
            ("sk-", KeyFormatError::Empty),
            ("sk-12\n34", KeyFormatError::BadCharacters),
            ("sk-12\x0b34", KeyFormatError::BadCharacters),
            ("sk-12\x7f34", KeyFormatError::BadCharacters),
            ("sk-12\u{a0}34", KeyFormatError::BadCharacters),
            ("sk-12\u{2028}34", KeyFormatError::BadCharacters),
            ("", KeyFormatError::MissingScheme),
        ];
        for (key, want) in table {
            let err = parse(key).unwrap_err();
            assert_eq!(&err, want, "{key:?}");
            if key.len() > 3 {
                assert!(!err.to_string().contains(key));
            }
        }
        let long = format!("sk-{}", "a".repeat(MAX_KEY_LEN));
        assert_eq!(parse(&long).unwrap_err(), KeyFormatError::TooLong);
    }

    #[test]
    fn structured_parts_are_validated() {
        let secret = "A".repeat(SECRET_LEN);
        let ok = format!("sk-sy-abcdefgh1234-{secret}");
        assert_eq!(
            parse(&ok).unwrap().public_id,
            Some(PublicId::new("abcdefgh1234").unwrap())
        );
        // Upper-case prefix, short id, short secret: valid legacy keys, not structured ones.
        for key in [
            format!("sk-SY-abcdefgh1234-{secret}"),
            format!("sk-sy-abc-{secret}"),
            "sk-sy-abcdefgh1234-short".to_owned(),
        ] {
            assert_eq!(parse(&key).unwrap().public_id, None, "{key}");
        }
    }

    #[test]
    fn newtypes_validate() {
        assert!(KeyPrefix::new("").is_err());
        assert!(KeyPrefix::new("a-b").is_err());
        assert!(KeyPrefix::new("abcdefghijklmnopq").is_err());
        assert!(PublicId::new("short").is_err());
        assert!(PublicId::new("has-dash-inside").is_err());
        assert!(TokenHash::new("ABC").is_err());
        assert!(TokenHash::new(&"A".repeat(64)).is_err());
        let h = TokenHash::of("sk-legacy");
        let id = PublicId::for_legacy(&h);
        assert_eq!(id.as_str().len(), 16);
        assert!(PublicId::new(id.as_str()).is_ok());
        assert_eq!(
            display_name(&KeyPrefix::default(), &id),
            format!("sk-sy-{id}-…")
        );
    }

    #[test]
    fn serde_validates_on_the_way_in() {
        let h: Result<TokenHash, _> = serde_json::from_str("\"nothex\"");
        assert!(h.is_err());
        let id: PublicId = serde_json::from_str("\"abcdefgh1234\"").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"abcdefgh1234\"");
    }
}
