//! Deterministic answer text and the prompt-size estimate. The same request
//! to the same deployment with the same seed always yields the same words.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::seeded::{mix, StableHasher};

/// Prompt-size estimate in tokens: Unicode characters of all message text
/// divided by 4, rounded up (so any non-empty prompt is at least 1 token).
pub fn estimate_tokens(text: &str) -> u64 {
    estimate_tokens_from_chars(text.chars().count() as u64)
}

/// [`estimate_tokens`] from a character count.
pub const fn estimate_tokens_from_chars(chars: u64) -> u64 {
    chars.div_ceil(4)
}

/// Vocabulary of generated answers, each with its leading space (the first
/// word of an answer drops it and is capitalised).
const WORDS: &[&str] = &[
    " switchyard",
    " signal",
    " track",
    " junction",
    " relay",
    " ballast",
    " sleeper",
    " points",
    " freight",
    " platform",
    " timetable",
    " lantern",
    " coupling",
    " engine",
    " tender",
    " gauge",
    " siding",
    " depot",
    " ticket",
    " carriage",
    " whistle",
    " semaphore",
    " viaduct",
    " tunnel",
    " crossing",
    " brake",
    " shunter",
    " turntable",
    " roundhouse",
    " terminus",
    " route",
    " spur",
    " yard",
    " block",
    " token",
    " interlock",
    " lever",
    " cabin",
    " wagon",
    " buffer",
    " axle",
    " bogie",
    " rail",
    " dispatch",
    " clear",
    " caution",
    " proceed",
    " hold",
    " switch",
    " line",
    " up",
    " down",
    " main",
    " loop",
    " branch",
    " express",
    " local",
    " night",
    " mail",
    " goods",
    " steam",
    " diesel",
    " electric",
    " arrival",
];

/// The answer's pieces: one per output token (and per stream chunk). The
/// first piece has no leading space; the others have one.
pub(crate) fn answer_pieces(
    seed: u64,
    deployment: &str,
    prompt: &str,
    n: u32,
) -> Vec<Cow<'static, str>> {
    let base = StableHasher::new(seed)
        .str("content")
        .str(deployment)
        .str(prompt)
        .finish();
    (0..u64::from(n))
        .map(|i| {
            let word = WORDS[(mix(base ^ mix(i)) % WORDS.len() as u64) as usize];
            if i == 0 {
                let mut w = word[1..].to_owned();
                if let Some(first) = w.get_mut(0..1) {
                    first.make_ascii_uppercase();
                }
                Cow::Owned(w)
            } else {
                Cow::Borrowed(word)
            }
        })
        .collect()
}

/// Deterministic embedding vector of `dims` floats in `[-1, 1)`.
pub(crate) fn embedding(seed: u64, deployment: &str, input: &str, dims: usize) -> Vec<f32> {
    let base = StableHasher::new(seed)
        .str("embedding")
        .str(deployment)
        .str(input)
        .finish();
    (0..dims as u64)
        .map(|i| {
            let u = crate::seeded::unit(mix(base ^ mix(i)));
            (u * 2.0 - 1.0) as f32
        })
        .collect()
}

/// Appends the text of one content value (a string, or an array of parts
/// with `text`, or `tool_result` blocks with nested content).
pub(crate) fn collect_text(value: &Value, out: &mut String) {
    match value {
        Value::String(s) => push_piece(out, s),
        Value::Array(parts) => {
            for part in parts {
                match part {
                    Value::String(s) => push_piece(out, s),
                    Value::Object(obj) => {
                        if let Some(Value::String(t)) = obj.get("text") {
                            push_piece(out, t);
                        }
                        if let Some(inner @ (Value::String(_) | Value::Array(_))) =
                            obj.get("content")
                        {
                            collect_text(inner, out);
                        }
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

fn push_piece(out: &mut String, s: &str) {
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str(s);
}

/// The text pieces of one content value, in the order [`collect_text`]
/// visits them, deserialized straight from JSON without building a `Value`
/// (the hot path). `shaped` is false when the value was neither a string
/// nor an array (callers that must reject that fall back to the `Value`
/// path for the provider's exact message).
#[derive(Debug, Default)]
pub(crate) struct Pieces<'a> {
    pub pieces: Vec<Cow<'a, str>>,
    pub shaped: bool,
}

impl Pieces<'_> {
    /// Appends the pieces the way [`collect_text`] would.
    pub fn push_into(&self, out: &mut String) {
        for p in &self.pieces {
            push_piece(out, p);
        }
    }
}

/// A string, or `None` for any other JSON value (which is skipped).
struct MaybeStr<'a>(Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for MaybeStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = MaybeStr<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(MaybeStr(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(MaybeStr(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(MaybeStr(Some(Cow::Owned(v))))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(MaybeStr(None))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(MaybeStr(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(MaybeStr(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(MaybeStr(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(MaybeStr(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(MaybeStr(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(MaybeStr(None))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// One element of a content array.
struct Part<'a>(Vec<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for Part<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Part<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a content part")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Part(vec![Cow::Borrowed(v)]))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Part(vec![Cow::Owned(v.to_owned())]))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Part(vec![Cow::Owned(v)]))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut text = None;
                let mut nested = Vec::new();
                while let Some(key) = map.next_key::<Cow<'a, str>>()? {
                    match &*key {
                        "text" => text = map.next_value::<MaybeStr<'a>>()?.0,
                        "content" => nested = map.next_value::<Pieces<'a>>()?.pieces,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                let mut out: Vec<Cow<'a, str>> = text.into_iter().collect();
                out.extend(nested);
                Ok(Part(out))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Part(Vec::new()))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Part(Vec::new()))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Part(Vec::new()))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Part(Vec::new()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Part(Vec::new()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Part(Vec::new()))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Pieces<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Pieces<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("message content")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Pieces {
                    pieces: vec![Cow::Borrowed(v)],
                    shaped: true,
                })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Pieces {
                    pieces: vec![Cow::Owned(v.to_owned())],
                    shaped: true,
                })
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Pieces {
                    pieces: vec![Cow::Owned(v)],
                    shaped: true,
                })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut pieces = Vec::new();
                while let Some(Part(p)) = seq.next_element::<Part<'a>>()? {
                    pieces.extend(p);
                }
                Ok(Pieces {
                    pieces,
                    shaped: true,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Pieces::default())
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Pieces::default())
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Pieces::default())
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Pieces::default())
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Pieces::default())
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Pieces::default())
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn estimate_rounds_up() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("a"), 1);
        assert_eq!(estimate_tokens("abcd"), 1);
        assert_eq!(estimate_tokens("abcde"), 2);
        assert_eq!(estimate_tokens("éééé"), 1);
    }

    #[test]
    fn answers_are_deterministic_and_depend_on_inputs() {
        let a = answer_pieces(1, "d", "hello", 8);
        assert_eq!(a.len(), 8);
        assert_eq!(a, answer_pieces(1, "d", "hello", 8));
        assert_ne!(a, answer_pieces(2, "d", "hello", 8));
        assert_ne!(a, answer_pieces(1, "e", "hello", 8));
        assert_ne!(a, answer_pieces(1, "d", "hello!", 8));
        assert!(!a[0].starts_with(' '));
        assert!(a[1..].iter().all(|p| p.starts_with(' ')));
    }

    #[test]
    fn collects_text_from_all_content_shapes() {
        let mut out = String::new();
        collect_text(&json!("plain"), &mut out);
        collect_text(
            &json!([{"type": "text", "text": "part"}, {"type": "image_url", "image_url": {}}]),
            &mut out,
        );
        collect_text(
            &json!([{"type": "tool_result", "content": [{"type": "text", "text": "nested"}]}]),
            &mut out,
        );
        assert_eq!(out, "plain\npart\nnested");
    }

    #[test]
    fn fast_pieces_match_collect_text() {
        let cases = [
            json!("plain"),
            json!(""),
            json!(["a", "", {"type": "text", "text": "b"}, {"text": 5}, 7, null, [1], {"x": {"y": 1}}]),
            json!([{"type": "tool_result", "text": "t", "content": [{"type": "text", "text": "n"}, "s"]}]),
            json!([{"content": "only"}, {"content": {"odd": true}}]),
            json!({"type": "text"}),
            json!(12),
            json!(null),
        ];
        for case in cases {
            let mut slow = String::from("pre");
            collect_text(&case, &mut slow);
            let text = serde_json::to_string(&case).unwrap();
            let fast: Pieces<'_> = serde_json::from_str(&text).unwrap();
            let mut quick = String::from("pre");
            fast.push_into(&mut quick);
            assert_eq!(quick, slow, "{case}");
            assert_eq!(fast.shaped, case.is_string() || case.is_array(), "{case}");
        }
    }

    #[test]
    fn embeddings_are_bounded_and_deterministic() {
        let e = embedding(3, "d", "x", 16);
        assert_eq!(e.len(), 16);
        assert!(e.iter().all(|v| (-1.0..1.0).contains(v)));
        assert_eq!(e, embedding(3, "d", "x", 16));
    }
}
