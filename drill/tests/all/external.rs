//! External mode: mocks started like `drill mocks` does, a gateway started separately and
//! configured only through its config file, and `drill run --target` verifying from the mocks'
//! control API (no in-process access, no reliance on gateway headers).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use drill::run::RunOptions;
use drill::scenario::{load, Document, Source};
use mock_providers::MockServer;
use switchyard::{AppState, StateOptions};

use super::support::{dir_with, journal, messages, quarterly_config, run_with, PROVIDERS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_gateway_is_drilled_through_the_mock_control_api() {
    let s = format!(
        "apiVersion: drill/v1
kind: Drill
metadata: {{name: external}}
{PROVIDERS}traffic:
  profiles: [{{id: chat, request: {{model: gpt-4o}}}}]
  load: {{rate: 30/s}}
phases:
  - {{id: baseline, duration: 2s, expect: {{success_ratio: 1.0}}}}
  - id: outage
    duration: 3s
    faults: [{{provider: openai-east, effect: {{type: http_error, status: 503}}}}]
    expect: {{fallback: {{from: gpt-4o-east, to: documented, min_share: 0.95}}, success_ratio: 0.99}}
"
    );
    let cfg = quarterly_config();
    let d = dir_with(&[("s.yaml", &s), ("gw.yaml", &cfg)]);
    let src = Source::read(&d.path().join("s.yaml")).unwrap();
    let Ok(Document::Scenario(scenario)) = load(&src) else {
        panic!("scenario did not load")
    };
    // What `drill mocks` serves.
    let mocks = MockServer::start(drill::harness::mock_spec(&scenario, 1, false))
        .await
        .unwrap();

    // The gateway, configured by its file and environment only.
    let mut env = BTreeMap::new();
    for (var, id, suffix) in [
        ("MOCK_OPENAI_BASE", "openai-east", "/v1"),
        ("MOCK_ANTHROPIC_BASE", "anthropic-west", ""),
        ("MOCK_AZURE_BASE", "azure-mini", ""),
        ("MOCK_LONG_BASE", "openai-long", "/v1"),
    ] {
        env.insert(var.to_owned(), format!("{}{suffix}", mocks.base_url(id)));
    }
    let lookup = |k: &str| env.get(k).cloned().or_else(|| Some("sk-any".to_owned()));
    let config =
        switchyard::config::load_str(&cfg, Path::new("gw.yaml"), &lookup, &Default::default())
            .unwrap()
            .config;
    let master = "sk-external-master";
    let state = AppState::new(
        config,
        StateOptions {
            master_key: Some(master.to_owned().into()),
            ..StateOptions::default()
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(switchyard::serve(
        listener,
        state,
        async {
            let _ = rx.await;
        },
        Duration::from_secs(1),
    ));

    let mut opts = RunOptions::new(Arc::new(move |k: &str| {
        (k == "DRILL_CLIENT_KEY").then(|| master.to_owned())
    }));
    opts.target = Some(url);
    opts.config = Some(d.path().join("gw.yaml"));
    opts.mocks = ["openai-east", "anthropic-west", "azure-mini", "openai-long"]
        .iter()
        .map(|id| format!("{id}={}", mocks.base_url(id)))
        .collect();
    let out = d.path().join("out");
    let code = run_with(&d.path().join("s.yaml"), &out, opts).await;
    let j = journal(&out);
    assert_eq!(code, 0, "{}", messages(&j));
    assert_eq!(j["environment"]["mode"], "external");
    assert!(j["phases"][1]["served_by"]["claude-west"].as_u64().unwrap() > 50);
    // The drill left the mocks healthy.
    assert!(mocks.faults("openai-east").unwrap().is_empty());
    let _ = tx.send(());
    let _ = server.await;
    mocks.shutdown().await;
}
