//! The activity page: the audit log of admin changes (`GET /audit` in the admin API), newest
//! first, filtered by kind, actor or object, each entry with what it changed field by field.
//! Entries never hold secret values (the store keeps them out), so showing them is safe.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::teams::urlencode;
use super::{page, render_as, store, Admin, UiResult, UiState, PAGE_SIZE};
use crate::error::ApiError;
use crate::store::{AuditEntry, AuditFilter, ObjectKind, Page};

/// The longest value shown in a change; longer ones are cut with an ellipsis.
const MAX_VALUE_CHARS: usize = 120;

#[derive(Debug, Default, Deserialize)]
pub struct ActivityQuery {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    actor: Option<String>,
    #[serde(default)]
    object_id: Option<String>,
    #[serde(default)]
    page: Option<u64>,
}

#[derive(Debug, Serialize)]
struct Row {
    at: String,
    actor: String,
    action: String,
    kind: String,
    object_id: String,
    /// The section of the object's page (`keys`, `teams`, `models`) when it may still exist.
    section: Option<&'static str>,
    /// `object_id` percent-encoded for that link.
    path: String,
    changes: Vec<Change>,
}

/// One field an entry changed: its value before and after (absent on create / delete).
#[derive(Debug, PartialEq, Serialize)]
struct Change {
    field: String,
    before: Option<String>,
    after: Option<String>,
}

/// A value as one short line: strings bare, everything else as compact JSON.
fn shown(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.chars().count() > MAX_VALUE_CHARS {
        let cut: String = s.chars().take(MAX_VALUE_CHARS).collect();
        format!("{cut}…")
    } else {
        s
    }
}

/// The top-level fields that differ between `before` and `after`; a field missing or null on
/// one side shows as absent there. A non-object value counts as one field named `value`.
fn changes(before: Option<&Value>, after: Option<&Value>) -> Vec<Change> {
    fn fields(v: Option<&Value>) -> BTreeMap<&str, &Value> {
        match v {
            Some(Value::Object(m)) => m
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.as_str(), v))
                .collect(),
            Some(Value::Null) | None => BTreeMap::new(),
            Some(other) => BTreeMap::from([("value", other)]),
        }
    }
    let b = fields(before);
    let a = fields(after);
    let names: BTreeSet<&str> = b.keys().chain(a.keys()).copied().collect();
    names
        .into_iter()
        .filter_map(|k| {
            let (was, now) = (b.get(k), a.get(k));
            (was != now).then(|| Change {
                field: k.to_owned(),
                before: was.map(|v| shown(v)),
                after: now.map(|v| shown(v)),
            })
        })
        .collect()
}

fn row(e: &AuditEntry) -> Row {
    let deleted = e.action == "delete";
    let section = match e.object_kind.as_str() {
        _ if deleted => None,
        "key" => Some("keys"),
        "team" => Some("teams"),
        "model" => Some("models"),
        _ => None,
    };
    Row {
        at: e.at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        actor: e.actor.clone(),
        action: e.action.clone(),
        kind: e.object_kind.replace('_', " "),
        object_id: e.object_id.clone(),
        section,
        path: urlencode(&e.object_id),
        // A delete keeps the whole object in `before`: the list says "deleted", not every field.
        // A create lists what was set, not the empty defaults every new object has.
        changes: match (deleted, &e.before) {
            (true, _) => Vec::new(),
            (false, None) => changes(None, e.after.as_ref())
                .into_iter()
                .filter(|c| !matches!(c.after.as_deref(), Some("{}" | "[]" | "false" | "")))
                .collect(),
            (false, before) => changes(before.as_ref(), e.after.as_ref()),
        },
    }
}

/// A filter value: trimmed, empty meaning none.
fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

pub async fn page_route(
    State(ui): State<UiState>,
    admin: Admin,
    Query(q): Query<ActivityQuery>,
) -> UiResult {
    let store = store(&ui)?;
    let kind = match given(&q.kind) {
        None => None,
        Some(name) => Some(ObjectKind::from_name(name).ok_or_else(|| {
            ApiError::bad_request(format!(
                "unknown kind {name:?}: one of {}",
                ObjectKind::ALL.map(ObjectKind::as_str).join(", ")
            ))
        })?),
    };
    let actor = given(&q.actor);
    let object_id = given(&q.object_id);
    let page_no = q.page.unwrap_or(1).max(1);
    let filter = AuditFilter {
        object_kind: kind,
        object_id: object_id.map(String::from),
        actor: actor.map(String::from),
    };
    let paged = store
        .audit_log(
            &filter,
            Page::new(PAGE_SIZE, (page_no - 1) * u64::from(PAGE_SIZE)),
        )
        .await?;
    let rows: Vec<Row> = paged.items.iter().map(row).collect();
    // The filters again, for the pager's links.
    let query: Vec<String> = [
        ("kind", kind.map(ObjectKind::as_str)),
        ("actor", actor),
        ("object_id", object_id),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| format!("{k}={}&", urlencode(v))))
    .collect();
    let mut ctx = page(Some(&admin), "Activity", "activity");
    ctx.insert("rows", &rows);
    ctx.insert("total", &paged.total);
    ctx.insert("page", &page_no);
    ctx.insert("pages", &paged.total.div_ceil(u64::from(PAGE_SIZE)).max(1));
    ctx.insert("query", &query.concat());
    ctx.insert("kind", kind.map(ObjectKind::as_str).unwrap_or_default());
    ctx.insert("kinds", &ObjectKind::ALL.map(ObjectKind::as_str));
    ctx.insert("actor", actor.unwrap_or_default());
    ctx.insert("object_id", object_id.unwrap_or_default());
    Ok(render_as("activity.html", &ctx, StatusCode::OK))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn change(field: &str, before: Option<&str>, after: Option<&str>) -> Change {
        Change {
            field: field.into(),
            before: before.map(String::from),
            after: after.map(String::from),
        }
    }

    #[test]
    fn an_update_lists_only_the_fields_that_differ() {
        let before = json!({"key_alias": "a", "rpm_limit": 5, "models": ["x"], "blocked": false});
        let after = json!({"key_alias": "a", "rpm_limit": 10, "models": ["x", "y"], "tpm_limit": 7, "blocked": null});
        assert_eq!(
            changes(Some(&before), Some(&after)),
            [
                change("blocked", Some("false"), None),
                change("models", Some(r#"["x"]"#), Some(r#"["x","y"]"#)),
                change("rpm_limit", Some("5"), Some("10")),
                change("tpm_limit", None, Some("7")),
            ]
        );
    }

    fn entry(action: &str, before: Option<Value>, after: Option<Value>) -> AuditEntry {
        AuditEntry {
            id: 1,
            at: chrono::Utc::now(),
            actor: "master_key".into(),
            action: action.into(),
            object_kind: "team".into(),
            object_id: "t 1".into(),
            before,
            after,
        }
    }

    #[test]
    fn rows_link_live_objects_and_skip_empty_defaults_of_a_create() {
        let created = row(&entry(
            "create",
            None,
            Some(
                json!({"team_id": "t 1", "models": [], "metadata": {}, "blocked": false, "rpm_limit": 0}),
            ),
        ));
        assert_eq!(
            (created.section, created.path.as_str()),
            (Some("teams"), "t%201")
        );
        assert_eq!(
            created.changes,
            [
                change("rpm_limit", None, Some("0")),
                change("team_id", None, Some("t 1"))
            ]
        );
        // An update shows a field going to its default; a delete lists nothing and no link.
        let updated = row(&entry(
            "update",
            Some(json!({"blocked": true})),
            Some(json!({"blocked": false})),
        ));
        assert_eq!(
            updated.changes,
            [change("blocked", Some("true"), Some("false"))]
        );
        let deleted = row(&entry("delete", Some(json!({"team_id": "t 1"})), None));
        assert!(deleted.changes.is_empty() && deleted.section.is_none());
    }

    #[test]
    fn a_create_lists_what_was_set_and_long_values_are_cut() {
        let long = "x".repeat(MAX_VALUE_CHARS + 5);
        let after = json!({"team_id": "t1", "metadata": null, "note": long});
        let got = changes(None, Some(&after));
        assert_eq!(got.len(), 2);
        assert_eq!(got[1], change("team_id", None, Some("t1")));
        let note = got[0].after.as_deref().unwrap();
        assert!(note.ends_with('…') && note.chars().count() == MAX_VALUE_CHARS + 1);
        // A scalar object (a general setting) is one field.
        assert_eq!(
            changes(Some(&json!(30)), Some(&json!(60))),
            [change("value", Some("30"), Some("60"))]
        );
    }
}
