//! Reads what the gateway needs from an OpenAI `chat.completion` without building a JSON tree:
//! that `choices` is an array, whether any choice finished with `content_filter`, and the token
//! usage. The upstream's bytes then go to the client unchanged, so a served completion is parsed
//! once (validated in full, allocating nothing) instead of parsed into a tree and written again.
//!
//! Lenient where the tree-based reading was: a `finish_reason` that is not a string, a `usage`
//! that is not an object and token counts that are not unsigned integers count as absent.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::Usage;

/// The parts of a completion the gateway reads.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct CompletionScan {
    choices: Choices,
    #[serde(default)]
    usage: Lenient<UsageScan>,
}

impl CompletionScan {
    /// Parses `body`; `None` when it is not JSON or has no `choices` array.
    pub(crate) fn of(body: &[u8]) -> Option<CompletionScan> {
        serde_json::from_slice(body).ok()
    }

    /// A choice finished with `content_filter`.
    pub(crate) fn content_filtered(&self) -> bool {
        self.choices.0
    }

    pub(crate) fn usage(&self) -> Usage {
        let u = &self.usage.0;
        Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
        }
    }
}

/// `choices`: must be an array; true when any element's `finish_reason` is `content_filter`.
#[derive(Debug)]
struct Choices(bool);

impl<'de> Deserialize<'de> for Choices {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Choices;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of choices")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Choices, A::Error> {
                let mut filtered = false;
                while let Some(c) = seq.next_element::<Lenient<ChoiceScan>>()? {
                    filtered |= c.0.filtered;
                }
                Ok(Choices(filtered))
            }
        }
        d.deserialize_seq(V)
    }
}

/// A JSON shape read leniently: a value of another type than expected is `default()`. Each
/// shape overrides only the type it reads; the value is parsed (so validated) either way.
trait Shape: Default {
    fn from_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Self::default())
    }
    fn from_str(_: &str) -> Self {
        Self::default()
    }
    fn from_u64(_: u64) -> Self {
        Self::default()
    }
}

#[derive(Debug, Default)]
struct Lenient<T>(T);

impl<'de, T: Shape> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(AnyValue(PhantomData)).map(Lenient)
    }
}

struct AnyValue<T>(PhantomData<T>);

impl<'de, T: Shape> Visitor<'de> for AnyValue<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<T, E> {
        Ok(T::default())
    }
    fn visit_i64<E>(self, _: i64) -> Result<T, E> {
        Ok(T::default())
    }
    fn visit_u64<E>(self, v: u64) -> Result<T, E> {
        Ok(T::from_u64(v))
    }
    fn visit_f64<E>(self, _: f64) -> Result<T, E> {
        Ok(T::default())
    }
    fn visit_str<E>(self, v: &str) -> Result<T, E> {
        Ok(T::from_str(v))
    }
    fn visit_unit<E>(self) -> Result<T, E> {
        Ok(T::default())
    }
    fn visit_none<E>(self) -> Result<T, E> {
        Ok(T::default())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<T, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(T::default())
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::from_map(map)
    }
}

/// One choice: only `finish_reason` is read.
#[derive(Debug, Default)]
struct ChoiceScan {
    filtered: bool,
}

impl Shape for ChoiceScan {
    fn from_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut out = ChoiceScan::default();
        while let Some(key) = map.next_key::<Key>()? {
            if key == Key::FinishReason {
                out.filtered = map.next_value::<Lenient<ContentFilter>>()?.0 .0;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(out)
    }
}

/// `finish_reason == "content_filter"`.
#[derive(Debug, Default)]
struct ContentFilter(bool);

impl Shape for ContentFilter {
    fn from_str(v: &str) -> Self {
        ContentFilter(v == "content_filter")
    }
}

#[derive(Debug, Default)]
struct UsageScan {
    prompt_tokens: u64,
    completion_tokens: u64,
}

impl Shape for UsageScan {
    fn from_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut out = UsageScan::default();
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::PromptTokens => out.prompt_tokens = map.next_value::<Lenient<Count>>()?.0 .0,
                Key::CompletionTokens => {
                    out.completion_tokens = map.next_value::<Lenient<Count>>()?.0 .0
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(out)
    }
}

/// A token count: an unsigned integer.
#[derive(Debug, Default)]
struct Count(u64);

impl Shape for Count {
    fn from_u64(v: u64) -> Self {
        Count(v)
    }
}

/// Object keys the scan reads, matched without allocating.
#[derive(PartialEq, Eq)]
enum Key {
    FinishReason,
    PromptTokens,
    CompletionTokens,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(match v {
                    "finish_reason" => Key::FinishReason,
                    "prompt_tokens" => Key::PromptTokens,
                    "completion_tokens" => Key::CompletionTokens,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_identifier(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// The tree-based reading the scan replaces, as the reference.
    fn reference(body: &Value) -> Option<(bool, Usage)> {
        let choices = body.get("choices")?.as_array()?;
        let filtered = choices
            .iter()
            .any(|c| c.get("finish_reason").and_then(Value::as_str) == Some("content_filter"));
        let usage = body.get("usage").map_or_else(Usage::default, |u| {
            let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
            Usage {
                prompt_tokens: n("prompt_tokens"),
                completion_tokens: n("completion_tokens"),
            }
        });
        Some((filtered, usage))
    }

    fn scan(body: &Value) -> Option<(bool, Usage)> {
        let s = CompletionScan::of(body.to_string().as_bytes())?;
        Some((s.content_filtered(), s.usage()))
    }

    #[test]
    fn agrees_with_the_tree_reading() {
        let cases = [
            json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
                   "usage": {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21,
                             "prompt_tokens_details": {"cached_tokens": 3}}}),
            json!({"choices": [{"finish_reason": "stop"}, {"finish_reason": "content_filter"}]}),
            json!({"choices": [{"finish_reason": null, "logprobs": {"content": [1, 2]}}], "usage": null}),
            json!({"choices": [], "usage": "lots"}),
            json!({"choices": [{"finish_reason": 3}], "usage": {"prompt_tokens": 1.5, "completion_tokens": -2}}),
            json!({"choices": [{"finish_reason": ["content_filter"]}], "usage": {"prompt_tokens": "7", "completion_tokens": [1]}}),
            json!({"choices": [{"finish_reason": {"a": "content_filter"}}], "usage": {"prompt_tokens": 18446744073709551615u64}}),
            json!({"choices": [{"finish_reason": "content\u{5f}filter"}], "model": "m", "extra": {"nested": [[{}]]}}),
        ];
        for c in &cases {
            assert_eq!(scan(c), reference(c), "{c}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_completion() {
        for bad in [
            json!({"id": "x"}),
            json!({"choices": null}),
            json!({"choices": {"0": {}}}),
            json!([{"choices": []}]),
            json!("choices"),
        ] {
            assert!(scan(&bad).is_none(), "{bad}");
            assert!(reference(&bad).is_none(), "{bad}");
        }
        for raw in [
            &b"{\"choices\": []"[..],
            b"{\"choices\": []} trailing",
            b"",
            b"\xff",
        ] {
            assert!(CompletionScan::of(raw).is_none());
        }
    }

    #[test]
    fn escaped_keys_and_values_are_read() {
        let raw = br#"{"choices":[{"finish\u005freason":"content\u005ffilter"}],"usage":{"prompt\u005ftokens":4}}"#;
        let s = CompletionScan::of(raw).expect("scan");
        assert!(s.content_filtered());
        assert_eq!(s.usage().prompt_tokens, 4);
    }
}
