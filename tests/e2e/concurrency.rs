//! Concurrency: many simultaneous requests through the gateway all succeed, and the mock
//! journal shows each correlation id exactly once (no duplicate or lost upstream calls).

use std::collections::BTreeMap;
use std::sync::Arc;

use switchyard::config::RouterSettings;
use switchyard_e2e::{chat_body, stream_body, Env, Upstream};
use tokio::task::JoinSet;

use crate::bounded;

const REQUESTS: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_requests_each_reach_the_mock_exactly_once() {
    bounded(async {
        let env = Arc::new(
            Env::start(
                vec![Upstream::openai("solo", "chat")],
                RouterSettings::default(),
            )
            .await
            .unwrap(),
        );
        let mut tasks = JoinSet::new();
        for i in 0..REQUESTS {
            let env = Arc::clone(&env);
            tasks.spawn(async move {
                let rid = format!("conc-{i}");
                // Every other request streams.
                if i % 2 == 0 {
                    let r = env.chat(&chat_body("chat", &rid).unwrap()).await.unwrap();
                    assert_eq!(r.status, 200, "{rid}: {}", r.json);
                    assert!(!r.content().is_empty(), "{rid}");
                    assert_eq!(r.header("x-switchyard-deployment"), "solo");
                } else {
                    let s = env
                        .chat_stream(&stream_body("chat", &rid, false).unwrap())
                        .await
                        .unwrap();
                    assert_eq!(s.status, 200, "{rid}: {}", s.raw);
                    assert!(s.done(), "{rid}: {}", s.raw);
                    assert!(!s.content().is_empty(), "{rid}");
                }
                rid
            });
        }
        let mut done = Vec::new();
        while let Some(r) = tasks.join_next().await {
            done.push(r.unwrap());
        }
        assert_eq!(done.len(), REQUESTS);

        env.settle().await.unwrap();
        let journal = env.journal("solo");
        assert_eq!(journal.len(), REQUESTS, "upstream calls != client requests");
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for e in &journal {
            assert_eq!(e.outcome.status, Some(200), "{e:#?}");
            assert_eq!(e.fault_id, None);
            *seen
                .entry(
                    e.correlation_id
                        .clone()
                        .expect("every request carries a marker"),
                )
                .or_default() += 1;
        }
        for i in 0..REQUESTS {
            let rid = format!("conc-{i}");
            assert_eq!(
                seen.get(&rid),
                Some(&1),
                "{rid} journaled {:?} times",
                seen.get(&rid)
            );
        }
        assert_eq!(
            env.stats().deployment("solo").unwrap().requests,
            REQUESTS as u64
        );
    })
    .await;
}
