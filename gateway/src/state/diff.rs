//! Diff of two state documents, object by object and field by field: what `config diff`
//! prints. Only the content counts (`spec` and the read-only `config_file`); the header
//! (`source`, `secrets`) describes the export, not the state.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use super::import::{field_changes, show, FieldChange};
use super::schema::{redacted_placeholder, to_json, StateDocument};

fn placeholders(d: &StateDocument) -> StateDocument {
    let mut d = d.clone();
    for c in d.spec.credentials.iter_mut().flatten() {
        for (field, v) in c.values.iter_mut() {
            *v = redacted_placeholder(&c.credential_name, field);
        }
    }
    d
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// Only in B.
    Added,
    /// Only in A.
    Removed,
    Changed,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DiffEntry {
    pub section: String,
    pub id: String,
    pub change: Change,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldChange>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StateDiff {
    pub entries: Vec<DiffEntry>,
}

impl StateDiff {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// `+ section/id` (only in B), `- section/id` (only in A), `~ section/id` with changed
    /// fields indented; then a total.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for e in &self.entries {
            let mark = match e.change {
                Change::Added => '+',
                Change::Removed => '-',
                Change::Changed => '~',
            };
            let _ = writeln!(out, "{mark} {}/{}", e.section, e.id);
            for f in &e.fields {
                let _ = writeln!(
                    out,
                    "    {}: {} -> {}",
                    f.field,
                    show(f.before.as_ref()),
                    show(f.after.as_ref())
                );
            }
        }
        if self.entries.is_empty() {
            out.push_str("no differences\n");
        } else {
            let _ = writeln!(out, "{} objects differ", self.entries.len());
        }
        out
    }
}

/// Compares A with B. A `spec` section present on one side only compares as if empty on
/// the other, so every object in it is listed.
pub fn diff(a: &StateDocument, b: &StateDocument) -> StateDiff {
    // Sealed values and placeholders cannot be compared with each other: when the two
    // documents write secrets differently, compare value names only.
    let (a, b) = if a.secrets == b.secrets {
        (a.clone(), b.clone())
    } else {
        (placeholders(a), placeholders(b))
    };
    let (a, b) = (&a, &b);
    let mut sa: BTreeMap<String, BTreeMap<String, Value>> = a
        .spec
        .objects()
        .into_iter()
        .map(|(s, o)| (s.as_str().to_owned(), o))
        .collect();
    let mut sb: BTreeMap<String, BTreeMap<String, Value>> = b
        .spec
        .objects()
        .into_iter()
        .map(|(s, o)| (s.as_str().to_owned(), o))
        .collect();
    // The config file's share is compared only when both sides recorded it: an export
    // made from the database alone has no config to list.
    let both_have_config = a.config_file.is_some() && b.config_file.is_some();
    for (doc, side) in [(a, &mut sa), (b, &mut sb)] {
        if let Some(cf) = doc.config_file.as_ref().filter(|_| both_have_config) {
            side.insert(
                "config_file.models".into(),
                cf.models
                    .iter()
                    .map(|m| (m.model_id.clone(), to_json(m)))
                    .collect(),
            );
            side.insert(
                "config_file.router_settings".into(),
                BTreeMap::from([("global".to_owned(), to_json(&cf.router_settings))]),
            );
        }
    }
    let mut sections: Vec<&String> = sa.keys().chain(sb.keys()).collect();
    sections.sort();
    sections.dedup();
    let empty = BTreeMap::new();
    let mut entries = Vec::new();
    for section in sections {
        let (oa, ob) = (
            sa.get(section).unwrap_or(&empty),
            sb.get(section).unwrap_or(&empty),
        );
        let mut ids: Vec<&String> = oa.keys().chain(ob.keys()).collect();
        ids.sort();
        ids.dedup();
        for id in ids {
            let (va, vb) = (oa.get(id), ob.get(id));
            let change = match (va, vb) {
                (None, Some(_)) => Change::Added,
                (Some(_), None) => Change::Removed,
                (Some(x), Some(y)) if x != y => Change::Changed,
                _ => continue,
            };
            entries.push(DiffEntry {
                section: section.clone(),
                id: id.clone(),
                change,
                fields: field_changes(va, vb),
            });
        }
    }
    StateDiff { entries }
}
