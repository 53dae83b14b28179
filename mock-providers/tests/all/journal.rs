//! The journal: correlation ids and counts under concurrency, bounded
//! memory with a drop counter, and entry contents.

use std::collections::BTreeSet;
use std::sync::Arc;

use mock_providers::{
    DeploymentSpec, Dialect, EndKind, Endpoint, FaultEffect, FaultRule, MockServer, MockSpec,
};

use crate::support::*;

#[tokio::test]
async fn five_hundred_concurrent_requests_are_all_journaled_with_their_ids() {
    let server = Arc::new(
        start(vec![
            dep("oa", Dialect::Openai),
            dep("an", Dialect::Anthropic),
        ])
        .await,
    );
    let client = client();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..500u32 {
        let server = server.clone();
        let client = client.clone();
        tasks.spawn(async move {
            let id = if i % 2 == 0 { "oa" } else { "an" };
            let stream = i % 3 == 0;
            let (url, body) = chat_request(
                &server,
                id,
                &format!("load test [drill:rid=run1.req-{i}] please"),
                stream,
            );
            let resp = client
                .post(url)
                .header("anthropic-version", "2023-06-01")
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            resp.bytes().await.unwrap();
        });
    }
    tokio::time::timeout(T, async {
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
    })
    .await
    .unwrap();
    assert!(server.wait_for_completed("oa", 250, T).await);
    assert!(server.wait_for_completed("an", 250, T).await);
    let journal = server.journal();
    assert_eq!(journal.len(), 500);
    let ids: BTreeSet<String> = journal
        .iter()
        .map(|e| e.correlation_id.clone().unwrap())
        .collect();
    let expected: BTreeSet<String> = (0..500).map(|i| format!("run1.req-{i}")).collect();
    assert_eq!(ids, expected);
    for e in &journal {
        let i: u32 = e.correlation_id.as_ref().unwrap()["run1.req-".len()..]
            .parse()
            .unwrap();
        assert_eq!(&*e.deployment, if i % 2 == 0 { "oa" } else { "an" });
        assert_eq!(e.stream, i % 3 == 0);
        assert_eq!(e.outcome.end, EndKind::Complete);
    }
    let stats = server.stats();
    for id in ["oa", "an"] {
        let s = stats.deployment(id).unwrap();
        assert_eq!((s.requests, s.completed, s.journal_len), (250, 250, 250));
        assert_eq!(s.statuses[&200], 250);
    }
    match Arc::try_unwrap(server) {
        Ok(s) => s.shutdown().await,
        Err(_) => panic!("server still shared"),
    }
}

#[tokio::test]
async fn journal_is_a_bounded_ring_buffer_but_stats_keep_counting() {
    let mut spec = MockSpec::new(SEED, vec![DeploymentSpec::new("d", Dialect::Openai)]);
    spec.journal_capacity = 10;
    let server = MockServer::start(spec).await.unwrap();
    for i in 0..25 {
        assert_eq!(
            chat(&server, "d", &format!("[drill:rid=r{i}]"), false)
                .await
                .status(),
            200
        );
    }
    assert!(server.wait_for_completed("d", 25, T).await);
    let snap = server.journal_of("d", 0).unwrap();
    assert_eq!(snap.entries.len(), 10);
    assert_eq!(snap.dropped, 15);
    assert_eq!(snap.entries[0].seq, 15);
    assert_eq!(snap.entries[0].correlation_id.as_deref(), Some("r15"));
    assert_eq!(server.journal_of("d", 20).unwrap().entries.len(), 5);
    let stats = server.stats();
    let s = stats.deployment("d").unwrap();
    assert_eq!((s.requests, s.journal_len, s.journal_dropped), (25, 10, 15));
    server.shutdown().await;
}

#[tokio::test]
async fn entries_describe_the_request_and_outcome() {
    let server = start(vec![dep("d", Dialect::Openai)]).await;
    server
        .set_faults(
            "d",
            vec![FaultRule::new(
                "cut",
                FaultEffect::StreamCut { after_chunks: 4 },
            )],
        )
        .unwrap();
    let resp = chat(&server, "d", "twelve chars [drill:rid=abc.1]", true).await;
    let _ = resp.bytes().await;
    let _ = client()
        .post(format!("{}/embeddings", server.api_base("d")))
        .json(&serde_json::json!({"model": "emb", "input": "[drill:rid=emb-2]"}))
        .send()
        .await
        .unwrap();
    assert!(server.wait_for_completed("d", 2, T).await);
    let j = server.journal_of("d", 0).unwrap();
    let (stream, emb) = if j.entries[0].endpoint == Endpoint::Chat {
        (&j.entries[0], &j.entries[1])
    } else {
        (&j.entries[1], &j.entries[0])
    };
    assert_eq!(stream.method, "POST");
    assert_eq!(stream.path, "/v1/chat/completions");
    assert_eq!(stream.model.as_deref(), Some("gpt-4o"));
    assert!(stream.stream);
    assert_eq!(stream.prompt_tokens, 8); // 30 chars / 4, rounded up
    assert_eq!(stream.correlation_id.as_deref(), Some("abc.1"));
    assert_eq!(stream.fault_id.as_deref(), Some("cut"));
    assert_eq!(stream.outcome.status, Some(200));
    assert_eq!(stream.outcome.chunks, 4);
    assert_eq!(stream.outcome.end, EndKind::Cut);
    assert!(stream.outcome.bytes > 0);
    assert_eq!(emb.endpoint, Endpoint::Embeddings);
    assert_eq!(emb.correlation_id.as_deref(), Some("emb-2"));
    assert_eq!(emb.fault_id, None);
    // JSON form is versioned.
    let v = serde_json::to_value(&j).unwrap();
    assert_eq!(v["schema_version"], 1);
    assert!(v["entries"][0]["outcome"]["end"].as_str().is_some());
    server.shutdown().await;
}

#[tokio::test]
async fn rejected_requests_are_journaled_with_the_reason() {
    let mut d = dep("d", Dialect::Openai);
    d.api_key = Some("sk-right".into());
    let server = start(vec![d]).await;
    let url = format!("{}/chat/completions", server.api_base("d"));
    let body = openai_body("[drill:rid=no-auth]", false);
    assert_eq!(
        client()
            .post(&url)
            .json(&body)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert!(server.wait_for_completed("d", 1, T).await);
    let e = &server.journal()[0];
    assert_eq!(e.rejected.as_deref(), Some("auth_missing"));
    assert_eq!(e.correlation_id.as_deref(), Some("no-auth"));
    assert_eq!(e.outcome.end, EndKind::ErrorStatus);
    assert_eq!(
        server.stats().deployment("d").unwrap().rejected["auth_missing"],
        1
    );
    server.shutdown().await;
}
