//! The library handle: start, addresses, spec loading, errors, shutdown.

use mock_providers::{
    DeploymentSpec, Dialect, FaultEffect, FaultRule, MockError, MockServer, MockSpec, Selection,
};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

#[tokio::test]
async fn every_deployment_gets_its_own_port_and_api_base() {
    let server = start(vec![
        dep("o", Dialect::Openai),
        dep("z", Dialect::Azure),
        dep("a", Dialect::Anthropic),
    ])
    .await;
    let ports: std::collections::BTreeSet<u16> = server
        .deployment_ids()
        .iter()
        .map(|id| server.addr(id).unwrap().port())
        .collect();
    assert_eq!(ports.len(), 3);
    let o = server.base_url("o");
    assert!(o.starts_with("http://127.0.0.1:"));
    assert_eq!(server.api_base("o"), format!("{o}/v1"));
    assert_eq!(server.api_base("z"), server.base_url("z"));
    assert_eq!(server.api_base("a"), server.base_url("a"));
    assert!(matches!(
        server.try_base_url("nope"),
        Err(MockError::UnknownDeployment { .. })
    ));
    let err = server.set_faults("nope", vec![]).unwrap_err().to_string();
    assert!(err.contains("known deployments: o, z, a"), "{err}");
    server.shutdown().await;
}

#[tokio::test]
async fn yaml_spec_with_initial_faults_is_served() {
    let spec = MockSpec::from_yaml_str(
        r#"
seed: 3
deployments:
  - id: east
    dialect: openai
    model: gpt-4o
    baseline: {output_tokens: 2}
    faults:
      - {id: boot, effect: {type: http_error, status: 500}, selection: {first: 1}}
"#,
    )
    .unwrap();
    let server = MockServer::start(spec).await.unwrap();
    assert_eq!(chat(&server, "east", "x", false).await.status(), 500);
    assert_eq!(chat(&server, "east", "x", false).await.status(), 200);
    server.shutdown().await;
}

#[tokio::test]
async fn invalid_rules_are_refused_atomically() {
    let server = start(vec![dep("d", Dialect::Openai)]).await;
    server
        .set_faults("d", vec![FaultRule::new("ok", FaultEffect::Reset {})])
        .unwrap();
    let err = server
        .set_faults(
            "d",
            vec![
                FaultRule::new("fine", FaultEffect::Reset {}),
                FaultRule::new("bad", FaultEffect::Reset {}).with_selection(Selection::EveryNth(0)),
            ],
        )
        .unwrap_err();
    assert!(
        err.to_string().contains("faults[1].selection.every_nth"),
        "{err}"
    );
    assert_eq!(server.faults("d").unwrap()[0].id, "ok");
    server.clear_faults("d").unwrap();
    assert!(server.faults("d").unwrap().is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn pre_bound_listeners_are_used() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let spec = MockSpec::new(1, vec![DeploymentSpec::new("d", Dialect::Anthropic)]);
    let server = MockServer::start_with_listeners(spec, vec![("d".into(), listener)])
        .await
        .unwrap();
    assert_eq!(server.addr("d"), Some(addr));
    assert_eq!(chat(&server, "d", "x", false).await.status(), 200);
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_stalled_and_idle_connections_and_frees_ports() {
    let server = start(vec![dep("d", Dialect::Openai)]).await;
    server
        .set_faults(
            "d",
            vec![FaultRule::new(
                "stall",
                FaultEffect::Stall { duration: None },
            )],
        )
        .unwrap();
    let addr = server.addr("d").unwrap();
    // An idle keep-alive connection and a stalled request.
    let _idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut stalled = tokio::net::TcpStream::connect(addr).await.unwrap();
    stalled
        .write_all(&raw_chat(&server, "d", "x", false))
        .await
        .unwrap();
    tokio::time::timeout(T, server.shutdown())
        .await
        .expect("shutdown hung");
    // The stalled request never got a byte; its connection is gone.
    let mut buf = Vec::new();
    let read = tokio::time::timeout(T, stalled.read_to_end(&mut buf))
        .await
        .unwrap();
    assert!(buf.is_empty(), "{read:?}");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn bind_errors_name_the_deployment() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut d = DeploymentSpec::new("clash", Dialect::Openai);
    d.port = port;
    let err = MockServer::start(MockSpec::new(1, vec![d]))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("\"clash\"") && err.contains(&port.to_string()),
        "{err}"
    );
}

/// The quick-start spec shipped in scenarios/ loads, and names the deployments
/// scenarios/gateway.yaml points at.
#[test]
fn shipped_quick_start_spec_loads() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/mocks.yaml");
    let spec = mock_providers::MockSpec::from_file(&path).expect("scenarios/mocks.yaml is valid");
    let ids: Vec<&str> = spec.deployments.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["gpt-4o-east", "gpt-4o-west", "claude-west"]);
}
