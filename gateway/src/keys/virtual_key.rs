//! Virtual-key authentication: the master key first, then the presented key's hash looked up
//! through [`KeyCache`], resolving Key > Team > Global router settings and allowed groups.
//! Access groups expand against the live routing table (`model_info.access_groups` of the
//! config file's and the runtime deployments) and the store's access groups; a table swap
//! clears the key cache (`admin::models::load`), so the next request sees the new table.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;

use axum::http::StatusCode;

use super::auth::{
    AuthContext, Authenticator, KeyContext, MasterKeyAuth, Principal, SubjectLimits,
};
use super::cache::{Cached, KeyCache, ResolvedKey};
use super::effective::{EffectiveRouterSettings, Source};
use super::global::GlobalRouterSettings;
use super::limits::{
    acquire_parallel, key_subject, team_subject, ParallelGuard, Subject, Subjects,
    PARALLEL_RETRY_AFTER,
};
use crate::config::RouterSettings;
use crate::error::ApiError;
use crate::router::groups::ModelGroups;
use crate::router::ModelRouter;
use crate::store::{self, KeySpec, KeyStatus, Store, StoreError, Team};

/// LiteLLM's name for "every model".
pub const ALL_MODELS: &str = "all-proxy-models";

/// Accepts the master key and the store's virtual keys.
pub struct VirtualKeyAuth {
    master: MasterKeyAuth,
    store: Arc<dyn Store>,
    cache: Arc<KeyCache>,
    subjects: Arc<Subjects>,
    /// Global router settings: the config file's with the runtime block over them.
    global: Arc<GlobalRouterSettings>,
    /// The routing table, for the access groups of its deployments.
    router: Arc<ModelRouter>,
}

impl VirtualKeyAuth {
    pub fn new(
        master: MasterKeyAuth,
        store: Arc<dyn Store>,
        cache: Arc<KeyCache>,
        subjects: Arc<Subjects>,
        global: Arc<GlobalRouterSettings>,
        router: Arc<ModelRouter>,
    ) -> Self {
        VirtualKeyAuth {
            master,
            store,
            cache,
            subjects,
            global,
            router,
        }
    }

    async fn lookup(&self, hash: &store::TokenHash) -> Result<Option<ResolvedKey>, StoreError> {
        // Ledger entries are read before the store, so a flush racing the reads can only make
        // the spend estimate high (see `keys::spend`).
        let ledger_before = |subject: &str| self.subjects.ledger(subject);
        let Some(record) = self.store.key_by_hash(hash).await? else {
            return Ok(None);
        };
        if record.status(store::now()) != KeyStatus::Active {
            return Ok(None);
        }
        let key_ledger = ledger_before(&key_subject(record.spec.public_id.as_str()));
        let Some(record) = self.store.key_by_hash(hash).await? else {
            return Ok(None);
        };
        let (team, team_ledger) = match &record.spec.team_id {
            Some(id) => {
                let at = ledger_before(&team_subject(id));
                match self.store.team(id).await? {
                    Some(t) if t.spec.blocked => return Ok(None),
                    t => (t, at),
                }
            }
            None => (None, Default::default()),
        };
        let settings = resolve_settings(&record.spec, team.as_ref(), &self.global.current().merged);
        let models = if !record.spec.models.is_empty() {
            record.spec.models.clone()
        } else {
            team.as_ref()
                .map(|t| t.spec.models.clone())
                .unwrap_or_default()
        };
        let allowed_groups = expand_models(&self.router.groups(), self.store.as_ref(), &models)
            .await?
            .map(Arc::new);
        let spec = &record.spec;
        let key = KeyContext {
            public_id: spec.public_id.as_str().to_string(),
            subject: self.subjects.get(&key_subject(spec.public_id.as_str())),
            team_subject: spec
                .team_id
                .as_deref()
                .map(|t| self.subjects.get(&team_subject(t))),
            alias: spec.key_alias.clone(),
            team_id: spec.team_id.clone(),
            user_id: spec.user_id.clone(),
            organization_id: team.as_ref().and_then(|t| t.spec.organization_id.clone()),
            limits: SubjectLimits {
                rpm: spec.rpm_limit,
                tpm: spec.tpm_limit,
                max_parallel_requests: spec.max_parallel_requests,
                max_budget: spec.max_budget,
                spend_at_read: record.spend,
                ledger_at_read: key_ledger,
            },
            team_limits: team.as_ref().map(|t| SubjectLimits {
                rpm: t.spec.rpm_limit,
                tpm: t.spec.tpm_limit,
                max_parallel_requests: t.spec.max_parallel_requests,
                max_budget: t.spec.max_budget,
                spend_at_read: t.spend,
                ledger_at_read: team_ledger,
            }),
            aliases: spec.aliases.clone(),
        };
        Ok(Some(ResolvedKey {
            context: AuthContext {
                principal: Principal::VirtualKey {
                    public_id: spec.public_id.as_str().into(),
                    alias: spec.key_alias.as_deref().map(Arc::from),
                },
                settings: Arc::new(settings),
                allowed_groups,
                key: Some(Arc::new(key)),
                parallel: None,
            },
            expires_at: spec.expires_at,
        }))
    }

    /// Budgets, then request, token and parallel limits of the key and its team. Counts the
    /// request against the rpm windows and takes the parallel slots when it passes. Allocates
    /// nothing unless it refuses.
    fn enforce(&self, key: &KeyContext) -> Result<AuthContextGuard, ApiError> {
        let team = match (&key.team_subject, &key.team_limits) {
            (Some(s), Some(l)) => Some((s, l)),
            _ => None,
        };
        let subjects = std::iter::once((&key.subject, &key.limits)).chain(team);
        // Who a refusal names: the key by alias (else public id), or its team.
        let who = |subject: &Arc<Subject>| {
            if Arc::ptr_eq(subject, &key.subject) {
                format!("key {}", key.alias.as_deref().unwrap_or(&key.public_id))
            } else {
                format!("team {}", key.team_id.as_deref().unwrap_or_default())
            }
        };
        for (s, l) in subjects.clone() {
            if let Some(max) = l.max_budget {
                let spend = s.spend_since(l.spend_at_read, l.ledger_at_read);
                if spend >= max {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "budget_exceeded",
                        format!(
                            "budget exceeded for {}: spend {spend} has reached max_budget {max}",
                            who(s)
                        ),
                    )
                    .with_code("budget_exceeded"));
                }
            }
        }
        for (s, l) in subjects.clone() {
            if let Some(limit) = l.tpm {
                if let Err(wait) = s.check_tokens(limit) {
                    return Err(ApiError::rate_limited(
                        format!("tpm_limit of {} reached: {limit} tokens per minute", who(s)),
                        wait,
                    ));
                }
            }
        }
        for (s, l) in subjects.clone() {
            if let Some(limit) = l.rpm {
                if let Err(wait) = s.try_count_request(limit) {
                    return Err(ApiError::rate_limited(
                        format!(
                            "rpm_limit of {} reached: {limit} requests per minute",
                            who(s)
                        ),
                        wait,
                    ));
                }
            }
        }
        let mut wanted = [None, None];
        for (slot, (s, l)) in wanted.iter_mut().zip(subjects) {
            *slot = l.max_parallel_requests.map(|limit| (s, limit));
        }
        match acquire_parallel(wanted) {
            Ok(g) => Ok(g.map(Arc::new)),
            Err(s) => {
                let limit = if Arc::ptr_eq(&s, &key.subject) {
                    key.limits.max_parallel_requests
                } else {
                    team.and_then(|(_, l)| l.max_parallel_requests)
                };
                Err(ApiError::rate_limited(
                    format!(
                        "max_parallel_requests of {} reached: {} requests in flight",
                        who(&s),
                        limit.unwrap_or_default()
                    ),
                    PARALLEL_RETRY_AFTER,
                ))
            }
        }
    }
}

/// Model names (groups, access groups, `all-proxy-models`) → the groups they allow; `None` =
/// every group. Access groups come from the live routing table (the config file's and the
/// runtime deployments' `model_info.access_groups`) and the store. The request path and the
/// admin UI both use this, so the UI shows exactly what a request may use.
pub async fn expand_models(
    table: &ModelGroups,
    store: &dyn Store,
    models: &[String],
) -> Result<Option<HashSet<String>>, StoreError> {
    if models.is_empty() || models.iter().any(|m| m == ALL_MODELS) {
        return Ok(None);
    }
    let mut out = HashSet::new();
    for m in models {
        out.insert(m.clone());
        if let Some(groups) = table.access_group(m) {
            out.extend(groups.iter().cloned());
        }
        if let Some(ag) = store.access_group(m).await? {
            out.extend(ag.models);
        }
    }
    Ok(Some(out))
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

type AuthContextGuard = Option<Arc<ParallelGuard>>;

fn invalid_key() -> ApiError {
    ApiError::unauthorized("invalid API key")
}

#[async_trait]
impl Authenticator for VirtualKeyAuth {
    async fn authenticate(&self, token: Option<&str>) -> Result<AuthContext, ApiError> {
        let Some(token) = token else {
            return self.master.authenticate(None).await;
        };
        // One hash serves the master-key check and the key lookup.
        let digest = super::auth::token_digest(token);
        let master = self.master.check_digest(&digest);
        if master == Some(Principal::Master) {
            return Ok(self.master.context(Principal::Master));
        }
        let open = master == Some(Principal::Open);
        if store::keys::check_presented(token).is_err() {
            return if open {
                Ok(self.master.context(Principal::Open))
            } else {
                Err(invalid_key())
            };
        }
        let resolved = match self.cache.get(&digest) {
            Cached::Known(v) => v,
            Cached::Miss => {
                let generation = self.cache.generation();
                match self.lookup(&store::TokenHash::from_digest(&digest)).await {
                    Ok(v) => {
                        let v = v.map(Arc::new);
                        self.cache.put(&digest, v.clone(), generation);
                        v
                    }
                    Err(e) => match self.cache.get_stale(&digest) {
                        Some(stale) => {
                            tracing::warn!(error = %e, "key lookup failed; serving the cached key");
                            Some(stale)
                        }
                        None => {
                            tracing::warn!(error = %e, "key lookup failed");
                            return Err(ApiError::unavailable("key store unavailable"));
                        }
                    },
                }
            }
        };
        match resolved {
            Some(r) if r.expires_at.is_none_or(|t| t > store::now()) => {
                let mut ctx = r.context.clone();
                if let Some(key) = &r.context.key {
                    ctx.parallel = self.enforce(key)?;
                }
                Ok(ctx)
            }
            _ if open => Ok(self.master.context(Principal::Open)),
            _ => Err(invalid_key()),
        }
    }
}
