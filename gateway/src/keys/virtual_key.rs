//! Virtual-key authentication: the master key first, then the presented key's hash looked up
//! through [`KeyCache`], resolving Key > Team > Global router settings and allowed groups.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;

use super::auth::{AuthContext, Authenticator, MasterKeyAuth, Principal};
use super::cache::{Cached, KeyCache, ResolvedKey};
use super::effective::{EffectiveRouterSettings, Source};
use super::limits::RpmLimiter;
use crate::config::{Config, RouterSettings};
use crate::error::ApiError;
use crate::store::{self, KeySpec, KeyStatus, Store, StoreError, Team};

/// LiteLLM's name for "every model".
pub const ALL_MODELS: &str = "all-proxy-models";

/// Accepts the master key and the store's virtual keys.
pub struct VirtualKeyAuth {
    master: MasterKeyAuth,
    store: Arc<dyn Store>,
    cache: Arc<KeyCache>,
    rpm: RpmLimiter,
    global: RouterSettings,
    /// Config `model_info.access_groups`: access group → model groups.
    config_access_groups: BTreeMap<String, Vec<String>>,
}

impl VirtualKeyAuth {
    pub fn new(
        master: MasterKeyAuth,
        store: Arc<dyn Store>,
        cache: Arc<KeyCache>,
        config: &Config,
    ) -> Self {
        VirtualKeyAuth {
            master,
            store,
            cache,
            rpm: RpmLimiter::default(),
            global: config.router_settings.clone(),
            config_access_groups: config_access_groups(config),
        }
    }

    async fn lookup(&self, hash: &store::TokenHash) -> Result<Option<ResolvedKey>, StoreError> {
        let Some(record) = self.store.key_by_hash(hash).await? else {
            return Ok(None);
        };
        if record.status(store::now()) != KeyStatus::Active {
            return Ok(None);
        }
        let team = match &record.spec.team_id {
            Some(id) => match self.store.team(id).await? {
                Some(t) if t.spec.blocked => return Ok(None),
                t => t,
            },
            None => None,
        };
        let settings = resolve_settings(&record.spec, team.as_ref(), &self.global);
        let models = if !record.spec.models.is_empty() {
            record.spec.models.clone()
        } else {
            team.as_ref()
                .map(|t| t.spec.models.clone())
                .unwrap_or_default()
        };
        let allowed_groups = self.expand(&models).await?;
        Ok(Some(ResolvedKey {
            context: AuthContext {
                principal: Principal::VirtualKey {
                    public_id: record.spec.public_id.as_str().to_string(),
                    alias: record.spec.key_alias.clone(),
                },
                settings: Arc::new(settings),
                allowed_groups,
            },
            expires_at: record.spec.expires_at,
            rpm_limit: record.spec.rpm_limit,
        }))
    }

    /// Model names (groups or access groups) → allowed groups; `None` = every group.
    async fn expand(&self, models: &[String]) -> Result<Option<Arc<HashSet<String>>>, StoreError> {
        if models.is_empty() || models.iter().any(|m| m == ALL_MODELS) {
            return Ok(None);
        }
        let mut out = HashSet::new();
        for m in models {
            out.insert(m.clone());
            if let Some(groups) = self.config_access_groups.get(m) {
                out.extend(groups.iter().cloned());
            }
            if let Some(ag) = self.store.access_group(m).await? {
                out.extend(ag.models);
            }
        }
        Ok(Some(Arc::new(out)))
    }
}

/// The key's effective router settings: Key > Team > Global, field by field.
pub fn resolve_settings(
    key: &KeySpec,
    team: Option<&Team>,
    global: &RouterSettings,
) -> EffectiveRouterSettings {
    let empty = RouterSettings::default();
    let key_rs = key.router_settings.as_ref().unwrap_or(&empty);
    let team_rs = team
        .and_then(|t| t.spec.router_settings.as_ref())
        .unwrap_or(&empty);
    EffectiveRouterSettings::resolve(&[
        (Source::Key, key_rs),
        (Source::Team, team_rs),
        (Source::Global, global),
    ])
}

/// Config `model_info.access_groups`, inverted: access group → model groups.
pub fn config_access_groups(config: &Config) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for d in &config.model_list {
        for g in &d.info.access_groups {
            let v = m.entry(g.clone()).or_default();
            if !v.contains(&d.model_name) {
                v.push(d.model_name.clone());
            }
        }
    }
    m
}

fn invalid_key() -> ApiError {
    ApiError::unauthorized("invalid API key")
}

#[async_trait]
impl Authenticator for VirtualKeyAuth {
    async fn authenticate(&self, token: Option<&str>) -> Result<AuthContext, ApiError> {
        let master = self.master.check(token);
        if let Ok(Principal::Master) = master {
            return self.master.authenticate(token).await;
        }
        let Some(token) = token else {
            return self.master.authenticate(None).await;
        };
        let open = matches!(master, Ok(Principal::Open));
        let Ok(presented) = store::keys::parse(token) else {
            return if open {
                self.master.authenticate(Some(token)).await
            } else {
                Err(invalid_key())
            };
        };
        let hash = presented.hash.as_str().to_string();
        let resolved = match self.cache.get(&hash) {
            Cached::Known(v) => v,
            Cached::Miss => {
                let generation = self.cache.generation();
                match self.lookup(&presented.hash).await {
                    Ok(v) => {
                        let v = v.map(Arc::new);
                        self.cache.put(&hash, v.clone(), generation);
                        v
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "key lookup failed");
                        return Err(ApiError::unavailable("key store unavailable"));
                    }
                }
            }
        };
        match resolved {
            Some(r) if r.expires_at.is_none_or(|t| t > store::now()) => {
                if let (Some(limit), Principal::VirtualKey { public_id, .. }) =
                    (r.rpm_limit, &r.context.principal)
                {
                    if let Err(wait) = self.rpm.check(public_id, limit) {
                        return Err(ApiError::rate_limited(
                            format!(
                                "this key's rpm_limit of {limit} requests per minute is reached"
                            ),
                            wait,
                        ));
                    }
                }
                Ok(r.context.clone())
            }
            _ if open => self.master.authenticate(Some(token)).await,
            _ => Err(invalid_key()),
        }
    }
}
