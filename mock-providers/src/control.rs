//! The control API under `/_mock/` on every deployment port: set, read and
//! clear that deployment's faults, read its journal and stats, reset it.
//! Control requests are not journaled and never faulted.

use serde_json::{json, Value};

use crate::api::to_body;
use crate::deployment::Deployment;
use crate::faults::FaultRule;
use crate::http::{Reply, Request};

/// Path prefix of the control API.
pub const CONTROL_PREFIX: &str = "/_mock/";

const ENDPOINTS: &str = "GET /_mock/health, GET|PUT|DELETE /_mock/faults, GET /_mock/journal[?since=SEQ], GET /_mock/stats, POST /_mock/reset";

fn error(status: u16, kind: &str, message: &str) -> Reply {
    Reply::json(
        status,
        Vec::new(),
        to_body(&json!({"error": {"message": message, "type": kind}})),
    )
}

fn ok(value: &Value) -> Reply {
    Reply::json(200, Vec::new(), to_body(value))
}

/// Parses a `PUT /_mock/faults` body: a JSON or YAML list of rules, or an
/// object `{"faults": [...]}`.
pub fn parse_fault_rules(body: &[u8]) -> Result<Vec<FaultRule>, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(
            "empty body: expected a list of fault rules (send [] or DELETE to clear)".to_owned(),
        );
    }
    let value: serde_yaml::Value =
        serde_yaml::from_slice(body).map_err(|e| format!("body is neither JSON nor YAML: {e}"))?;
    let (value, prefix) = match value {
        serde_yaml::Value::Mapping(mut m) if m.contains_key("faults") && m.len() == 1 => {
            (m.remove("faults").unwrap_or_default(), "faults")
        }
        other => (other, ""),
    };
    serde_path_to_error::deserialize::<_, Vec<FaultRule>>(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        format!("{prefix}{path}: {}", e.into_inner())
    })
}

/// Answers a control request.
pub(crate) fn handle(dep: &Deployment, req: &Request) -> Reply {
    let what = req.path.trim_end_matches('/');
    match (req.method.as_str(), what) {
        ("GET", "/_mock/health") => ok(&json!({
            "status": "ok",
            "deployment": &*dep.id,
            "dialect": dep.dialect(),
        })),
        ("GET", "/_mock/faults") => ok(&json!({"deployment": &*dep.id, "faults": dep.faults()})),
        ("PUT", "/_mock/faults") => {
            let rules = match parse_fault_rules(&req.body) {
                Ok(r) => r,
                Err(msg) => {
                    return error(
                        400,
                        "invalid_fault_spec",
                        &format!("invalid fault rules, nothing applied: {msg}"),
                    )
                }
            };
            match dep.set_faults(rules) {
                Ok(()) => ok(&json!({"deployment": &*dep.id, "faults": dep.faults()})),
                Err(problems) => error(
                    400,
                    "invalid_fault_spec",
                    &format!(
                        "invalid fault rules, nothing applied:\n  {}",
                        problems
                            .iter()
                            .map(|p| format!("faults{p}"))
                            .collect::<Vec<_>>()
                            .join("\n  ")
                    ),
                ),
            }
        }
        ("DELETE", "/_mock/faults") => {
            let _ = dep.set_faults(Vec::new());
            ok(&json!({"deployment": &*dep.id, "faults": []}))
        }
        ("GET", "/_mock/journal") => {
            let since = match req.query_param("since").map(str::parse::<u64>) {
                None => 0,
                Some(Ok(n)) => n,
                Some(Err(_)) => {
                    return error(
                        400,
                        "invalid_request",
                        "since: expected a journal seq number",
                    )
                }
            };
            ok(&serde_json::to_value(dep.journal(since)).unwrap_or(Value::Null))
        }
        ("GET", "/_mock/stats") => ok(&serde_json::to_value(dep.stats()).unwrap_or(Value::Null)),
        ("POST", "/_mock/reset") => {
            dep.reset();
            ok(&json!({"deployment": &*dep.id, "reset": true}))
        }
        (
            _,
            "/_mock/health" | "/_mock/faults" | "/_mock/journal" | "/_mock/stats" | "/_mock/reset",
        ) => error(
            405,
            "method_not_allowed",
            &format!(
                "{} is not allowed on {}; endpoints: {ENDPOINTS}",
                req.method, req.path
            ),
        ),
        _ => error(
            404,
            "not_found",
            &format!(
                "unknown control endpoint {}; endpoints: {ENDPOINTS}",
                req.path
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_json_yaml_and_wrapped_lists() {
        let json = br#"[{"id":"x","effect":{"type":"http_error","status":503}}]"#;
        assert_eq!(parse_fault_rules(json).unwrap().len(), 1);
        let yaml = b"- effect: {type: reset}\n  selection: {first: 2}\n";
        assert_eq!(parse_fault_rules(yaml).unwrap().len(), 1);
        let wrapped = br#"{"faults":[{"effect":{"type":"reset"}}]}"#;
        assert_eq!(parse_fault_rules(wrapped).unwrap().len(), 1);
        assert_eq!(parse_fault_rules(b"[]").unwrap().len(), 0);
    }

    #[test]
    fn errors_name_the_path() {
        let err =
            parse_fault_rules(br#"[{"effect":{"type":"reset"}},{"effect":{"type":"explode"}}]"#)
                .unwrap_err();
        assert!(err.starts_with("[1].effect"), "{err}");
        assert!(err.contains("explode"), "{err}");
        let err = parse_fault_rules(b"").unwrap_err();
        assert!(err.contains("empty body"));
        let err =
            parse_fault_rules(br#"{"faults":[{"effect":{"type":"http_error"}}]}"#).unwrap_err();
        assert!(err.starts_with("faults[0].effect"), "{err}");
        assert!(err.contains("status"), "{err}");
    }
}
