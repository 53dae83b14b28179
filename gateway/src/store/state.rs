//! Whole-state reads and bulk writes, the store side of export/import (DESIGN §2.6).
//! `StateSnapshot` is read in one consistent transaction with every list ordered by stable
//! identity (byte order), so two reads of unchanged state are equal. `StateChanges` is
//! applied in one transaction, all or nothing. Diffing, planning and the document format
//! belong to `state/` (export/import), not here.

use std::collections::BTreeMap;

use serde_json::Value;

use super::keys::PublicId;
use super::model::{
    AccessGroup, Budget, BudgetSpec, Credential, CredentialUpsert, KeyRecord, KeySpec, ModelSpec,
    Organization, OrganizationSpec, RuntimeModel, Tag, Team, TeamSpec, User, UserSpec,
};
use super::ObjectKind;
use crate::config::RouterSettings;

/// Everything admins manage at runtime, as stored. Operational history (spend logs, audit
/// log) is not part of it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StateSnapshot {
    pub general_settings: BTreeMap<String, Value>,
    /// Global router settings saved at runtime, if any.
    pub router_settings: Option<RouterSettings>,
    pub budgets: Vec<Budget>,
    pub credentials: Vec<Credential>,
    pub models: Vec<RuntimeModel>,
    pub organizations: Vec<Organization>,
    pub users: Vec<User>,
    /// With members, sorted by user id.
    pub teams: Vec<Team>,
    pub keys: Vec<KeyRecord>,
    pub access_groups: Vec<AccessGroup>,
    pub tags: Vec<Tag>,
}

/// Objects to create or replace, by stable identity. Upserting a spec replaces every field it
/// has; what the store keeps by itself (spend, created time) survives. A team's member list is
/// replaced by the spec's.
#[derive(Clone, Debug, Default)]
pub struct Upserts {
    pub general_settings: BTreeMap<String, Value>,
    pub router_settings: Option<RouterSettings>,
    pub budgets: Vec<BudgetSpec>,
    pub credentials: Vec<CredentialUpsert>,
    pub models: Vec<ModelSpec>,
    pub organizations: Vec<OrganizationSpec>,
    pub users: Vec<UserSpec>,
    pub teams: Vec<TeamSpec>,
    pub keys: Vec<KeySpec>,
    pub access_groups: Vec<AccessGroup>,
    pub tags: Vec<Tag>,
}

/// Objects to delete, by stable identity. Every one must exist.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Deletes {
    pub general_settings: Vec<String>,
    /// Remove the runtime global router settings (the config file's then apply alone).
    pub router_settings: bool,
    pub budgets: Vec<String>,
    pub credentials: Vec<String>,
    pub models: Vec<String>,
    pub organizations: Vec<String>,
    pub users: Vec<String>,
    pub teams: Vec<String>,
    pub keys: Vec<PublicId>,
    pub access_groups: Vec<String>,
    pub tags: Vec<String>,
}

/// One transaction's worth of changes. Deletes run first (freeing aliases), then upserts,
/// parents before children; references are checked once every statement has run, so the
/// order inside each list does not matter.
#[derive(Clone, Debug, Default)]
pub struct StateChanges {
    pub upsert: Upserts,
    pub delete: Deletes,
}

/// Per kind of object, what an apply did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KindCounts {
    pub created: usize,
    pub updated: usize,
    pub deleted: usize,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyOutcome {
    pub by_kind: BTreeMap<ObjectKind, KindCounts>,
}

impl ApplyOutcome {
    pub(crate) fn count(&mut self, kind: ObjectKind, created: bool) {
        let c = self.by_kind.entry(kind).or_default();
        if created {
            c.created += 1;
        } else {
            c.updated += 1;
        }
    }

    pub(crate) fn deleted(&mut self, kind: ObjectKind, n: usize) {
        if n > 0 {
            self.by_kind.entry(kind).or_default().deleted += n;
        }
    }

    pub fn totals(&self) -> KindCounts {
        self.by_kind
            .values()
            .fold(KindCounts::default(), |acc, c| KindCounts {
                created: acc.created + c.created,
                updated: acc.updated + c.updated,
                deleted: acc.deleted + c.deleted,
            })
    }
}
