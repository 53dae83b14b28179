//! Every dialect served through the gateway, JSON and streaming, checked against what the
//! mock received and sent: content, `[DONE]`, usage, the Anthropic Messages request shape.

use mock_providers::{estimate_tokens, Dialect, EndKind};
use serde_json::{json, Value};
use switchyard::config::RouterSettings;
use switchyard_e2e::{
    chat_body, prompt, stream_body, upstream_model, Env, Upstream, ANTHROPIC_MODEL, OUTPUT_TOKENS,
};

use crate::bounded;

fn group_of(dialect: Dialect) -> String {
    format!("chat-{dialect}")
}

fn id_of(dialect: Dialect) -> String {
    format!("{dialect}-1")
}

async fn one_deployment_per_dialect() -> Env {
    let upstreams = [Dialect::Openai, Dialect::Azure, Dialect::Anthropic]
        .into_iter()
        .map(|d| Upstream::new(&id_of(d), d, &group_of(d)))
        .collect();
    Env::start(upstreams, RouterSettings::default())
        .await
        .expect("starting mocks and gateway")
}

#[tokio::test]
async fn every_dialect_serves_json_and_streams_through_the_gateway() {
    bounded(async {
        let env = one_deployment_per_dialect().await;
        for dialect in [Dialect::Openai, Dialect::Azure, Dialect::Anthropic] {
            let (id, group) = (id_of(dialect), group_of(dialect));
            // One correlation id (so one prompt text) for all three calls: the mock's answer
            // depends only on the prompt, so all three must carry the same words.
            let rid = format!("same-{dialect}");

            let json = env.chat(&chat_body(&group, &rid).unwrap()).await.unwrap();
            assert_eq!(json.status, 200, "{dialect}: {}", json.json);
            assert_eq!(json.json["object"], "chat.completion", "{dialect}");
            assert_eq!(json.json["choices"][0]["message"]["role"], "assistant");
            assert_eq!(
                json.json["choices"][0]["finish_reason"], "stop",
                "{dialect}"
            );
            assert!(!json.content().is_empty(), "{dialect}: empty content");
            assert_eq!(json.header("x-switchyard-deployment"), id);
            assert_eq!(json.header("x-switchyard-model-group"), group);
            assert_eq!(json.header("x-switchyard-attempts"), "1");
            assert_eq!(json.header("x-switchyard-fallback-depth"), "0");
            assert_eq!(json.header("x-litellm-model-id"), id);

            let plain = env
                .chat_stream(&stream_body(&group, &rid, false).unwrap())
                .await
                .unwrap();
            assert_eq!(plain.status, 200, "{dialect}: {}", plain.raw);
            assert!(
                plain
                    .header("content-type")
                    .starts_with("text/event-stream"),
                "{dialect}"
            );
            assert!(plain.done(), "{dialect}: no [DONE]: {}", plain.raw);
            assert!(plain.errors().is_empty(), "{dialect}: {}", plain.raw);
            assert!(
                plain.usage().is_empty(),
                "{dialect}: usage sent without include_usage: {}",
                plain.raw
            );
            assert_eq!(plain.content(), json.content(), "{dialect}: stream content");
            assert_eq!(plain.header("x-switchyard-deployment"), id);

            let with_usage = env
                .chat_stream(&stream_body(&group, &rid, true).unwrap())
                .await
                .unwrap();
            assert_eq!(with_usage.status, 200, "{dialect}: {}", with_usage.raw);
            assert!(with_usage.done(), "{dialect}: {}", with_usage.raw);
            assert_eq!(with_usage.content(), json.content(), "{dialect}");
            let usage = with_usage.usage();
            assert_eq!(usage.len(), 1, "{dialect}: {}", with_usage.raw);
            let finish: Vec<Value> = with_usage
                .chunks()
                .iter()
                .filter_map(|c| c.pointer("/choices/0/finish_reason").cloned())
                .filter(|f| !f.is_null())
                .collect();
            assert_eq!(finish, [json!("stop")], "{dialect}: {}", with_usage.raw);

            env.settle().await.unwrap();
            let hits = env.hits(&id, &rid);
            assert_eq!(hits.len(), 3, "{dialect}: {hits:#?}");
            assert_eq!(
                hits.iter().map(|h| h.stream).collect::<Vec<_>>(),
                [false, true, true],
                "{dialect}"
            );
            let expected_prompt = estimate_tokens(&prompt(&rid).unwrap());
            for h in &hits {
                assert_eq!(h.fault_id, None, "{dialect}");
                assert_eq!(h.rejected, None, "{dialect}: mock refused {h:#?}");
                assert_eq!(h.outcome.status, Some(200), "{dialect}");
                assert_eq!(h.outcome.end, EndKind::Complete, "{dialect}");
                assert_eq!(
                    h.model.as_deref(),
                    Some(upstream_model(dialect, &id).as_str())
                );
                assert_eq!(h.prompt_tokens, expected_prompt, "{dialect}");
            }
            assert_eq!(hits[1].outcome.chunks, OUTPUT_TOKENS, "{dialect}");
            assert_eq!(hits[2].outcome.chunks, OUTPUT_TOKENS, "{dialect}");
            if dialect == Dialect::Azure {
                assert_eq!(
                    hits[0].path,
                    format!(
                        "/openai/deployments/{}/chat/completions",
                        upstream_model(dialect, &id)
                    )
                );
            }

            // Usage is what the mock counted, in both forms.
            for u in [&json.json["usage"], &usage[0]] {
                assert_eq!(u["prompt_tokens"], expected_prompt, "{dialect}: {u}");
                assert_eq!(u["completion_tokens"], OUTPUT_TOKENS, "{dialect}: {u}");
            }
        }
    })
    .await;
}

#[tokio::test]
async fn anthropic_mock_receives_a_valid_messages_request() {
    bounded(async {
        let env = Env::start(
            vec![Upstream::anthropic("claude-1", "claude")],
            RouterSettings::default(),
        )
        .await
        .unwrap();
        let system = "You are a terse dispatcher.";
        let question = prompt("anthropic-shape").unwrap();
        // The mock accepts only `user`/`assistant` roles in `messages` and requires
        // `max_tokens`: an accepted request proves `system` went top-level and `max_tokens`
        // was sent. The prompt estimate proves the system text arrived (system first).
        for stream in [false, true] {
            let mut body = json!({
                "model": "claude",
                "max_tokens": 3,
                "messages": [
                    {"role": "system", "content": system},
                    {"role": "user", "content": question},
                ],
            });
            let completion_tokens = if stream {
                body["stream"] = json!(true);
                body["stream_options"] = json!({"include_usage": true});
                let r = env.chat_stream(&body).await.unwrap();
                assert_eq!(r.status, 200, "{}", r.raw);
                assert!(r.done(), "{}", r.raw);
                r.usage()[0]["completion_tokens"].clone()
            } else {
                let r = env.chat(&body).await.unwrap();
                assert_eq!(r.status, 200, "{}", r.json);
                assert_eq!(
                    r.json["choices"][0]["finish_reason"], "length",
                    "max_tokens stop must map to `length`"
                );
                r.json["usage"]["completion_tokens"].clone()
            };
            assert_eq!(completion_tokens, 3, "max_tokens must reach the mock");
        }
        // Without a client max_tokens the gateway must still send one.
        let r = env
            .chat(&json!({
                "model": "claude",
                "messages": [
                    {"role": "developer", "content": system},
                    {"role": "user", "content": question},
                    {"role": "assistant", "content": "Noted."},
                    {"role": "user", "content": "And another?"},
                ],
            }))
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.json);
        assert_eq!(r.json["usage"]["completion_tokens"], OUTPUT_TOKENS);

        env.settle().await.unwrap();
        let hits = env.hits("claude-1", "anthropic-shape");
        assert_eq!(hits.len(), 3, "{hits:#?}");
        let two_turns = estimate_tokens(&format!("{system}\n{question}"));
        let four_turns = estimate_tokens(&format!("{system}\n{question}\nNoted.\nAnd another?"));
        for (h, tokens) in hits.iter().zip([two_turns, two_turns, four_turns]) {
            assert_eq!(
                h.rejected, None,
                "mock refused the gateway's request: {h:#?}"
            );
            assert_eq!(h.outcome.status, Some(200));
            assert_eq!(h.path, "/v1/messages");
            assert_eq!(h.model.as_deref(), Some(ANTHROPIC_MODEL));
            assert_eq!(
                h.prompt_tokens, tokens,
                "system prompt missing upstream? {h:#?}"
            );
        }
        assert_eq!(hits[1].outcome.chunks, 3);
    })
    .await;
}
