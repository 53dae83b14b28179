//! Authentication of proxy requests. An [`Authenticator`] turns the presented token into an
//! [`AuthContext`]: who is calling, which models they may use and their effective router
//! settings. The master-key authenticator lives here; the virtual-key one plugs in beside it.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use axum::http::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::effective::EffectiveRouterSettings;
use super::global::GlobalRouterSettings;
use super::limits::{LedgerEntry, ParallelGuard, Subject};
use crate::error::ApiError;
use crate::store::Usd;

/// Who made the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// No master key configured: the gateway is open (a warning is logged at start-up).
    Open,
    /// The master key.
    Master,
    /// A virtual key, by its public id (never the secret).
    VirtualKey {
        public_id: Arc<str>,
        alias: Option<Arc<str>>,
    },
}

/// The outcome of authentication, attached to the request.
#[derive(Debug, Clone)]
pub struct AuthContext {
    pub principal: Principal,
    pub settings: Arc<EffectiveRouterSettings>,
    /// Groups this caller may use; `None` = every group.
    pub allowed_groups: Option<Arc<HashSet<String>>>,
    /// A virtual key's limits, budget and owners; `None` for the master key.
    pub key: Option<Arc<KeyContext>>,
    /// The caller's parallel-request slot, held until the response body ends. The auth
    /// middleware takes it out before the context reaches handlers.
    pub parallel: Option<Arc<ParallelGuard>>,
}

/// Limits of one subject (a key or its team).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubjectLimits {
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub max_parallel_requests: Option<u64>,
    pub max_budget: Option<Usd>,
    /// Spend the store had when the key was resolved.
    pub spend_at_read: Usd,
    /// The ledger's entry for this subject just before that read.
    pub ledger_at_read: LedgerEntry,
}

/// What the proxy needs to know about a virtual key beyond its settings.
#[derive(Debug, Clone)]
pub struct KeyContext {
    pub public_id: String,
    /// The key's limit windows, requests in flight and spend (`k:<public id>`).
    pub subject: Arc<Subject>,
    /// The team's (`t:<team id>`), when the key belongs to a team.
    pub team_subject: Option<Arc<Subject>>,
    pub alias: Option<String>,
    pub team_id: Option<String>,
    pub user_id: Option<String>,
    pub organization_id: Option<String>,
    pub limits: SubjectLimits,
    /// The team's limits, when the key belongs to a team.
    pub team_limits: Option<SubjectLimits>,
    /// Model name aliases (`{"gpt-4": "gpt-4o"}`), applied before routing.
    pub aliases: BTreeMap<String, String>,
}

impl AuthContext {
    pub fn may_use(&self, group: &str) -> bool {
        self.allowed_groups
            .as_ref()
            .is_none_or(|g| g.contains(group))
    }

    pub fn is_admin(&self) -> bool {
        matches!(self.principal, Principal::Master | Principal::Open)
    }

    /// The model the caller meant: the key's alias for `model`, if it has one.
    pub fn resolve_alias<'a>(&'a self, model: &'a str) -> &'a str {
        self.key
            .as_ref()
            .and_then(|k| k.aliases.get(model))
            .map_or(model, String::as_str)
    }
}

#[async_trait]
pub trait Authenticator: Send + Sync {
    /// `token` is the presented secret, if any. Errors never say whether a key exists.
    async fn authenticate(&self, token: Option<&str>) -> Result<AuthContext, ApiError>;
}

/// Pulls the presented key from `Authorization: Bearer`, `x-api-key` or `api-key`.
pub fn presented_token(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        let token = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .unwrap_or(v)
            .trim();
        if !token.is_empty() {
            return Some(token);
        }
    }
    ["x-api-key", "api-key"].iter().find_map(|h| {
        headers
            .get(*h)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|t| !t.is_empty())
    })
}

/// Constant-time comparison that also hides the length of the expected secret.
pub fn secrets_equal(presented: &str, expected: &str) -> bool {
    digest_equals(presented, &Sha256::digest(expected.as_bytes()).into())
}

/// Constant-time comparison of `presented` with a secret known by its SHA-256 `expected`.
fn digest_equals(presented: &str, expected: &[u8; 32]) -> bool {
    Sha256::digest(presented.as_bytes()).ct_eq(expected).into()
}

/// SHA-256 of a presented token: what the master-key check and the key lookup both compare.
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Accepts the master key only (or everyone when none is configured).
pub struct MasterKeyAuth {
    /// SHA-256 of the master key, hashed once instead of on every request.
    master_digest: Option<[u8; 32]>,
    /// The master key's settings are the global layer, as it is at each request.
    global: Arc<GlobalRouterSettings>,
}

impl MasterKeyAuth {
    pub fn new(master_key: Option<SecretString>, global: Arc<GlobalRouterSettings>) -> Self {
        MasterKeyAuth {
            master_digest: master_key.map(|k| Sha256::digest(k.expose_secret().as_bytes()).into()),
            global,
        }
    }

    /// What the master key says of a token whose SHA-256 is `digest`: `Some(Open)` without a
    /// master key, `Some(Master)` when it matches (constant time), else `None`.
    pub fn check_digest(&self, digest: &[u8; 32]) -> Option<Principal> {
        match &self.master_digest {
            None => Some(Principal::Open),
            Some(mk) if bool::from(digest.ct_eq(mk)) => Some(Principal::Master),
            Some(_) => None,
        }
    }

    /// Checks `token` against the master key; `Ok(true)` when no master key is configured.
    pub fn check(&self, token: Option<&str>) -> Result<Principal, ApiError> {
        match (&self.master_digest, token) {
            (None, _) => Ok(Principal::Open),
            (Some(mk), Some(t)) if digest_equals(t, mk) => Ok(Principal::Master),
            (Some(_), Some(_)) => Err(ApiError::unauthorized("invalid API key")),
            (Some(_), None) => Err(ApiError::unauthorized(
                "missing API key: send it as `Authorization: Bearer <key>`",
            )),
        }
    }
}

#[async_trait]
impl Authenticator for MasterKeyAuth {
    async fn authenticate(&self, token: Option<&str>) -> Result<AuthContext, ApiError> {
        Ok(self.context(self.check(token)?))
    }
}

impl MasterKeyAuth {
    /// The context of a caller the master key admitted (`Master`, or anyone when `Open`).
    pub fn context(&self, principal: Principal) -> AuthContext {
        AuthContext {
            principal,
            settings: Arc::clone(&self.global.current().effective),
            allowed_groups: None,
            key: None,
            parallel: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn token_is_taken_from_each_supported_header() {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Bearer sk-abc"));
        assert_eq!(presented_token(&h), Some("sk-abc"));
        let mut h = HeaderMap::new();
        h.insert("x-api-key", HeaderValue::from_static("sk-x"));
        assert_eq!(presented_token(&h), Some("sk-x"));
        let mut h = HeaderMap::new();
        h.insert("api-key", HeaderValue::from_static("sk-az"));
        assert_eq!(presented_token(&h), Some("sk-az"));
        assert_eq!(presented_token(&HeaderMap::new()), None);
    }

    #[tokio::test]
    async fn master_key_is_required_when_configured() {
        let s = Arc::new(GlobalRouterSettings::new(Default::default()));
        let auth = MasterKeyAuth::new(Some(SecretString::from("sk-master")), s);
        assert!(auth.authenticate(Some("sk-master")).await.is_ok());
        let err = auth.authenticate(Some("sk-wrong")).await.unwrap_err();
        assert_eq!(err.status, 401);
        assert!(
            !err.message.contains("sk-"),
            "error must not echo keys: {}",
            err.message
        );
        assert_eq!(auth.authenticate(None).await.unwrap_err().status, 401);
    }
}
