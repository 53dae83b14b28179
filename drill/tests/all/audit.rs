//! Audit checks: one fixture per check triggers exactly that check, clean inputs trigger none,
//! and every LiteLLM config of the shared corpus audits without crashing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use drill::audit::{self, InputFormat, Loaded};
use switchyard_reports::model::Finding;

use crate::fixtures;

fn no_env(_: &str) -> Option<String> {
    None
}

fn findings(path: &Path) -> Vec<Finding> {
    match audit::load(path, InputFormat::Auto, &no_env).expect("fixture loads") {
        Loaded::Input(input) => audit::audit(&input),
        Loaded::Rejected(f) => f,
    }
}

fn ids(path: &Path) -> BTreeSet<String> {
    findings(path).into_iter().map(|f| f.id).collect()
}

#[test]
fn each_fixture_triggers_exactly_its_check() {
    let cases: BTreeMap<&str, &str> = [
        ("fallback-missing.yaml", "fallback.missing"),
        ("target-missing.yaml", "fallback.target-missing"),
        ("cycle.yaml", "fallback.cycle"),
        ("chain-too-long.yaml", "fallback.chain-too-long"),
        ("single-vendor.yaml", "fallback.single-vendor"),
        ("single-region.yaml", "fallback.single-region"),
        ("context-window.yaml", "fallback.context-window"),
        ("settings-default.yaml", "settings.default"),
        ("retry-budget.yaml", "settings.retry-budget"),
        ("access.yaml", "access.fallback-target"),
        ("budget.yaml", "budget.missing"),
        ("credentials.yaml", "credentials.unresolvable"),
        ("capacity.yaml", "fallback.capacity"),
        ("mcp-name.yaml", "mcp.name"),
        ("config-invalid.yaml", "config.invalid"),
    ]
    .into_iter()
    .collect();
    // Every check has a fixture.
    let covered: BTreeSet<&str> = cases.values().copied().collect();
    let all: BTreeSet<&str> = audit::checks::CHECKS.iter().map(|(id, _)| *id).collect();
    assert_eq!(covered, all, "a check without a fixture");
    let dir = fixtures().join("audit");
    for (file, id) in cases {
        let got = ids(&dir.join(file));
        assert_eq!(
            got,
            BTreeSet::from([id.to_owned()]),
            "{file}: {:#?}",
            findings(&dir.join(file))
        );
    }
}

#[test]
fn clean_inputs_have_no_findings() {
    for file in ["clean.yaml", "clean-input.yaml"] {
        let f = findings(&fixtures().join("audit").join(file));
        assert!(f.is_empty(), "{file}: {f:#?}");
    }
}

#[test]
fn findings_name_objects_and_a_fix() {
    let f = findings(&fixtures().join("audit/single-vendor.yaml"));
    assert_eq!(f.len(), 1);
    assert_eq!(
        f[0].objects,
        vec!["group gpt-4o".to_owned(), "global".to_owned()]
    );
    assert!(f[0].message.contains("openai"), "{}", f[0].message);
    assert!(!f[0].fix.is_empty());
}

#[test]
fn key_resolution_follows_key_over_team_over_global() {
    // The team overrides fallbacks with an empty list ("no fallbacks"): its members lose
    // the global chain, which the audit reports for the team, not globally.
    let text = std::fs::read_to_string(fixtures().join("audit/clean-input.yaml")).unwrap();
    let mut input: audit::AuditInput = serde_yaml::from_str(&text).unwrap();
    input.teams[0].router_settings.fallbacks = Some(Vec::new());
    let f = audit::audit(&input);
    let missing: Vec<&Finding> = f.iter().filter(|f| f.id == "fallback.missing").collect();
    assert!(!missing.is_empty(), "{f:#?}");
    assert!(missing.iter().all(|f| f
        .objects
        .iter()
        .any(|o| o == "team checkout" || o == "key checkout-bot")));
    assert!(!missing
        .iter()
        .any(|f| f.objects.iter().any(|o| o == "global")));
}

#[test]
fn output_formats_are_stable_and_versioned() {
    let path = fixtures().join("audit/capacity.yaml");
    let f = findings(&path);
    let json = audit::to_json("capacity.yaml", &f);
    assert_eq!(json["version"], 1);
    assert_eq!(json["summary"]["warning"], 1);
    let sarif = audit::to_sarif("capacity.yaml", &f);
    assert_eq!(sarif["version"], "2.1.0");
    assert_eq!(
        sarif["runs"][0]["results"][0]["ruleId"],
        "fallback.capacity"
    );
    assert_eq!(sarif["runs"][0]["results"][0]["level"], "warning");
    insta::assert_snapshot!("capacity_table", audit::table("capacity.yaml", &f));
}

#[test]
fn shared_corpus_audits_without_crashing() {
    // `../shared/corpus` beside the checkout (the workspace root is this crate's parent);
    // SWITCHYARD_CORPUS_DIR points elsewhere, e.g. from a worktree.
    let corpus = std::env::var_os("SWITCHYARD_CORPUS_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus"))
        .join("litellm-configs");
    let Ok(entries) = std::fs::read_dir(&corpus) else {
        println!("skipped: {} is absent", corpus.display());
        return;
    };
    let mut paths: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    paths.sort();
    let mut audited = 0;
    for p in &paths {
        // Unreadable/foreign input is a clean error, never a panic.
        let summary: String;
        match audit::load(p, InputFormat::Litellm, &no_env) {
            Ok(Loaded::Input(input)) => {
                let f = audit::audit(&input);
                summary = format!("{} findings", f.len());
                let _ = audit::table(&p.display().to_string(), &f);
                let _ = audit::to_sarif(&p.display().to_string(), &f);
            }
            Ok(Loaded::Rejected(f)) => {
                assert!(!f.is_empty());
                summary = format!("rejected by the loader, {} findings", f.len());
            }
            Err(e) => {
                assert!(!e.to_string().is_empty());
                summary = format!("unreadable: {e}");
            }
        }
        audited += 1;
        println!("{}: {summary}", p.display());
    }
    println!("audited {audited} corpus configs");
    assert_eq!(audited, paths.len());
}

#[test]
fn a_switchyard_export_is_audited_with_its_config_file() {
    let dir = fixtures().join("audit");
    let export = dir.join("export.yaml");
    let config = dir.join("clean.yaml");
    let Loaded::Input(input) =
        audit::input::load_with(&export, InputFormat::Auto, &no_env, Some(&config)).unwrap()
    else {
        panic!("the export was rejected")
    };
    // Keys and teams come from the export, named by alias, with the key's team resolved.
    assert_eq!(input.keys.len(), 1);
    assert_eq!(input.keys[0].name, "checkout-bot");
    assert_eq!(input.keys[0].team.as_deref(), Some("checkout"));
    assert_eq!(input.teams[0].max_budget, Some(500.0));
    let ids: Vec<String> = audit::audit(&input).into_iter().map(|f| f.id).collect();
    assert_eq!(ids, vec!["access.fallback-target".to_owned()]);
    // Without the config file the export's deployments are names only: refused with the fix.
    let err = audit::input::load_with(&export, InputFormat::Auto, &no_env, None)
        .err()
        .unwrap();
    assert!(err.to_string().contains("pass --config FILE"), "{err}");
}

#[test]
fn an_exports_runtime_global_router_settings_are_audited_over_the_config_files() {
    let dir = fixtures().join("audit");
    let text = std::fs::read_to_string(dir.join("export.yaml")).unwrap();
    // The import set "no general fallbacks" globally: the key can no longer fall back to a
    // group it may not use, and the config file's other settings still apply.
    let text = text.replacen(
        "  router_settings: {}",
        "  router_settings: {fallbacks: []}",
        1,
    );
    let tmp = tempfile::tempdir().unwrap();
    let export = tmp.path().join("export.yaml");
    std::fs::write(&export, text).unwrap();
    let Loaded::Input(input) = audit::input::load_with(
        &export,
        InputFormat::Auto,
        &no_env,
        Some(&dir.join("clean.yaml")),
    )
    .unwrap() else {
        panic!("the export was rejected")
    };
    assert_eq!(input.router_settings.fallbacks, Some(vec![]));
    assert_eq!(input.router_settings.num_retries, Some(2));
    let ids: Vec<String> = audit::audit(&input).into_iter().map(|f| f.id).collect();
    assert!(
        !ids.contains(&"access.fallback-target".to_owned()),
        "{ids:?}"
    );
}
