//! Sealing of secret values with a key derived from `SWITCHYARD_SALT_KEY`:
//! HKDF-SHA256 → 256-bit key → XChaCha20-Poly1305 (random 192-bit nonces are safe to pick at
//! random, so no nonce state needs storing). The caller passes the salt key in; nothing here
//! reads the environment.
//!
//! Sealed layout: `[version = 1][nonce: 24 bytes][ciphertext || tag: 16 bytes]`. The caller's
//! `context` (e.g. the credential name) is authenticated as associated data, so sealed bytes
//! moved to another credential fail to open.

use std::fmt;

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use super::StoreError;

const FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// HKDF salt: fixed, versioned, so a future derivation can change without ambiguity.
const HKDF_SALT: &[u8] = b"switchyard/salt-key/v1";

/// What a derived key is for. Each purpose gets its own key, so a value sealed for one
/// cannot be opened as the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SealPurpose {
    /// Credential values in the store's `credentials.sealed_values` column.
    CredentialsAtRest,
    /// Secrets in an export document written with `--secrets encrypted`.
    ExportSecrets,
}

impl SealPurpose {
    fn info(self) -> &'static [u8] {
        match self {
            SealPurpose::CredentialsAtRest => b"switchyard credentials at rest v1",
            SealPurpose::ExportSecrets => b"switchyard export secrets v1",
        }
    }
}

/// The sealed bytes did not authenticate: wrong salt key, wrong context, or tampering.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sealed value does not open with this salt key")]
pub struct OpenError;

/// Sealing failed; only possible for messages beyond the cipher's 256 GiB limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sealing a secret value failed")]
pub struct SealError;

/// An AEAD key derived from the salt key for one purpose. `Debug` never shows key bytes.
#[derive(Clone)]
pub struct SecretCipher {
    aead: XChaCha20Poly1305,
    /// Keys the synthetic nonces of [`SecretCipher::seal_deterministic`].
    nonce_key: [u8; 32],
    purpose: SealPurpose,
}

impl fmt::Debug for SecretCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretCipher")
            .field("purpose", &self.purpose)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl SecretCipher {
    /// Derives the key for `purpose` from the salt key. An empty salt key is refused.
    pub fn derive(salt_key: &SecretString, purpose: SealPurpose) -> Result<Self, StoreError> {
        let ikm = salt_key.expose_secret().as_bytes();
        if ikm.is_empty() {
            return Err(StoreError::invalid(
                "SWITCHYARD_SALT_KEY",
                "must not be empty",
            ));
        }
        let mut okm = [0u8; 32];
        Hkdf::<Sha256>::new(Some(HKDF_SALT), ikm)
            .expand(purpose.info(), &mut okm)
            .map_err(|_| StoreError::invalid("SWITCHYARD_SALT_KEY", "key derivation failed"))?;
        let aead = XChaCha20Poly1305::new((&okm).into());
        okm.fill(0);
        let mut nonce_key = [0u8; 32];
        Hkdf::<Sha256>::new(Some(HKDF_SALT), ikm)
            .expand(&[purpose.info(), b" nonce"].concat(), &mut nonce_key)
            .map_err(|_| StoreError::invalid("SWITCHYARD_SALT_KEY", "key derivation failed"))?;
        Ok(SecretCipher {
            aead,
            nonce_key,
            purpose,
        })
    }

    /// The cipher the store uses for credential values.
    pub fn for_credentials(salt_key: &SecretString) -> Result<Self, StoreError> {
        Self::derive(salt_key, SealPurpose::CredentialsAtRest)
    }

    pub fn purpose(&self) -> SealPurpose {
        self.purpose
    }

    /// Seals `plaintext`, binding it to `context`.
    pub fn seal(&self, context: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let payload = Payload {
            msg: plaintext,
            aad: context,
        };
        let ciphertext = self.aead.encrypt(&nonce, payload).map_err(|_| SealError)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    /// Seals `plaintext` with a nonce derived from a keyed hash of `context` and `plaintext`
    /// (SIV-style): sealing the same value twice gives the same bytes, so two exports of
    /// unchanged state are byte-identical. It reveals only that two sealed values under the
    /// same context are equal. Opens with [`open`](Self::open).
    pub fn seal_deterministic(
        &self,
        context: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, SealError> {
        use sha2::Digest;
        let mut h = Sha256::new();
        h.update(self.nonce_key);
        h.update((context.len() as u64).to_be_bytes());
        h.update(context);
        h.update(plaintext);
        let digest = h.finalize();
        let nonce = XNonce::from_slice(&digest[..NONCE_LEN]);
        let payload = Payload {
            msg: plaintext,
            aad: context,
        };
        let ciphertext = self.aead.encrypt(nonce, payload).map_err(|_| SealError)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(nonce);
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    /// Opens bytes made by [`seal`](Self::seal) with the same salt key, purpose and context.
    pub fn open(&self, context: &[u8], sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        if sealed.len() < 1 + NONCE_LEN + TAG_LEN || sealed[0] != FORMAT_V1 {
            return Err(OpenError);
        }
        let nonce = XNonce::from_slice(&sealed[1..1 + NONCE_LEN]);
        let payload = Payload {
            msg: &sealed[1 + NONCE_LEN..],
            aad: context,
        };
        self.aead.decrypt(nonce, payload).map_err(|_| OpenError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn salt(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    #[test]
    fn seal_then_open_round_trips_and_hides_plaintext() {
        let c = SecretCipher::for_credentials(&salt("s3cret-salt")).unwrap();
        let sealed = c.seal(b"openai-prod", b"sk-upstream-value").unwrap();
        assert!(!sealed
            .windows(b"sk-upstream-value".len())
            .any(|w| w == b"sk-upstream-value"));
        assert_eq!(
            c.open(b"openai-prod", &sealed).unwrap(),
            b"sk-upstream-value"
        );
        // Random nonces: sealing twice gives different bytes.
        assert_ne!(
            sealed,
            c.seal(b"openai-prod", b"sk-upstream-value").unwrap()
        );
    }

    #[test]
    fn wrong_salt_context_or_purpose_fails_to_open() {
        let c = SecretCipher::for_credentials(&salt("right")).unwrap();
        let sealed = c.seal(b"ctx", b"value").unwrap();
        let wrong = SecretCipher::for_credentials(&salt("wrong")).unwrap();
        assert_eq!(wrong.open(b"ctx", &sealed), Err(OpenError));
        assert_eq!(c.open(b"other", &sealed), Err(OpenError));
        let export = SecretCipher::derive(&salt("right"), SealPurpose::ExportSecrets).unwrap();
        assert_eq!(export.open(b"ctx", &sealed), Err(OpenError));
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(c.open(b"ctx", &tampered), Err(OpenError));
        assert_eq!(c.open(b"ctx", &sealed[..10]), Err(OpenError));
    }

    #[test]
    fn deterministic_seal_is_stable_and_opens() {
        let c = SecretCipher::derive(&salt("s"), SealPurpose::ExportSecrets).unwrap();
        let a = c.seal_deterministic(b"ctx", b"value").unwrap();
        assert_eq!(a, c.seal_deterministic(b"ctx", b"value").unwrap());
        assert_ne!(a, c.seal_deterministic(b"ctx2", b"value").unwrap());
        assert_ne!(a, c.seal_deterministic(b"ctx", b"value2").unwrap());
        assert_eq!(c.open(b"ctx", &a).unwrap(), b"value");
        let other = SecretCipher::derive(&salt("t"), SealPurpose::ExportSecrets).unwrap();
        assert_ne!(a, other.seal_deterministic(b"ctx", b"value").unwrap());
        assert_eq!(other.open(b"ctx", &a), Err(OpenError));
    }

    #[test]
    fn empty_salt_is_refused_and_debug_is_redacted() {
        assert!(SecretCipher::for_credentials(&salt("")).is_err());
        let c = SecretCipher::for_credentials(&salt("abc")).unwrap();
        assert!(format!("{c:?}").contains("<redacted>"));
    }
}
