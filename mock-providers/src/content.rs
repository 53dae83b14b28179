//! Deterministic answer text and the prompt-size estimate. The same request
//! to the same deployment with the same seed always yields the same words.

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

const WORDS: &[&str] = &[
    "switchyard",
    "signal",
    "track",
    "junction",
    "relay",
    "ballast",
    "sleeper",
    "points",
    "freight",
    "platform",
    "timetable",
    "lantern",
    "coupling",
    "engine",
    "tender",
    "gauge",
    "siding",
    "depot",
    "ticket",
    "carriage",
    "whistle",
    "semaphore",
    "viaduct",
    "tunnel",
    "crossing",
    "brake",
    "shunter",
    "turntable",
    "roundhouse",
    "terminus",
    "route",
    "spur",
    "yard",
    "block",
    "token",
    "interlock",
    "lever",
    "cabin",
    "wagon",
    "buffer",
    "axle",
    "bogie",
    "rail",
    "dispatch",
    "clear",
    "caution",
    "proceed",
    "hold",
    "switch",
    "line",
    "up",
    "down",
    "main",
    "loop",
    "branch",
    "express",
    "local",
    "night",
    "mail",
    "goods",
    "steam",
    "diesel",
    "electric",
    "arrival",
];

/// The answer's pieces: one per output token (and per stream chunk). The
/// first piece has no leading space; the others have one.
pub(crate) fn answer_pieces(seed: u64, deployment: &str, prompt: &str, n: u32) -> Vec<String> {
    let base = StableHasher::new(seed)
        .str("content")
        .str(deployment)
        .str(prompt)
        .finish();
    (0..u64::from(n))
        .map(|i| {
            let word = WORDS[(mix(base ^ mix(i)) % WORDS.len() as u64) as usize];
            if i == 0 {
                let mut w = word.to_owned();
                if let Some(first) = w.get_mut(0..1) {
                    first.make_ascii_uppercase();
                }
                w
            } else {
                format!(" {word}")
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
    fn embeddings_are_bounded_and_deterministic() {
        let e = embedding(3, "d", "x", 16);
        assert_eq!(e.len(), 16);
        assert!(e.iter().all(|v| (-1.0..1.0).contains(v)));
        assert_eq!(e, embedding(3, "d", "x", 16));
    }
}
