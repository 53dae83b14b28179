//! A client's JSON request body read one level deep: member names, in order, each with the
//! span of its value's JSON text in the body as received.
//!
//! The gateway reads a handful of top-level fields (`model`, `stream`, `fallbacks`, ...) and
//! forwards the rest unchanged. Building a `serde_json::Value` tree of the whole body (every
//! message, every string, an ordered map per object) and writing it out again cost more than
//! routing the request; here the body is validated in one pass, the fields the gateway reads
//! are decoded on their own, and an upstream body is written from the received text with
//! members replaced, added or left out.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use bytes::Bytes;
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// A JSON object's top-level members over the body's bytes.
#[derive(Clone)]
pub struct RawObject {
    text: Bytes,
    /// Name (unescaped) and the span of the value's JSON text; a repeated name keeps its first
    /// position and its last value, as `serde_json::Map` does.
    members: Vec<(String, Range<usize>)>,
}

/// What a body that is valid JSON but not an object is instead.
#[derive(Debug, PartialEq, Eq)]
pub struct NotAnObject(pub &'static str);

impl RawObject {
    /// Reads `text`. `Err` when it is not JSON; `Ok(Err(..))` when it is JSON but not an object.
    pub fn parse(text: Bytes) -> Result<Result<RawObject, NotAnObject>, serde_json::Error> {
        let base = text.as_ptr() as usize;
        let top = {
            let mut de = serde_json::Deserializer::from_slice(&text);
            let ByKind(top) = ByKind::<Top>::deserialize(&mut de)?;
            de.end()?;
            top
        };
        Ok(match top {
            Top::Object(spans) => Ok(RawObject {
                members: spans
                    .into_iter()
                    .map(|(name, ptr, len)| (name, ptr - base..ptr - base + len))
                    .collect(),
                text,
            }),
            Top::Other(kind) => Err(NotAnObject(kind)),
        })
    }

    /// An object's members, written out (tests and callers that hold a tree).
    pub fn from_map(map: &Map<String, Value>) -> RawObject {
        // A map of values always serializes, and what it serializes to is an object.
        let text = Bytes::from(serde_json::to_vec(map).unwrap_or_else(|_| b"{}".to_vec()));
        match RawObject::parse(text) {
            Ok(Ok(o)) => o,
            _ => RawObject {
                text: Bytes::from_static(b"{}"),
                members: Vec::new(),
            },
        }
    }

    /// The JSON text of member `name`'s value.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.members
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, span)| self.slice(span))
    }

    /// Member `name` when it is an object, read one level deep in turn.
    pub fn object(&self, name: &str) -> Option<RawObject> {
        let (_, span) = self.members.iter().find(|(n, _)| n == name)?;
        if self.text.get(span.start) != Some(&b'{') {
            return None;
        }
        RawObject::parse(self.text.slice(span.clone())).ok()?.ok()
    }

    /// Member `name` when it is a JSON string, decoded.
    pub fn get_str(&self, name: &str) -> Option<Cow<'_, str>> {
        let raw = self.get(name)?;
        if raw.first() != Some(&b'"') {
            return None;
        }
        serde_json::from_slice::<Cow<'_, str>>(raw).ok()
    }

    /// Member `name`'s value as a tree.
    #[cfg(test)]
    fn value(&self, name: &str) -> Option<Result<Value, serde_json::Error>> {
        self.get(name).map(serde_json::from_slice)
    }

    /// Removes member `name`; true when it was there.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.members.len();
        self.members.retain(|(n, _)| n != name);
        self.members.len() != before
    }

    pub fn contains(&self, name: &str) -> bool {
        self.members.iter().any(|(n, _)| n == name)
    }

    /// The members' names, in order.
    #[cfg(test)]
    fn names(&self) -> impl Iterator<Item = &str> {
        self.members.iter().map(|(n, _)| n.as_str())
    }

    /// The whole object as a tree.
    pub fn to_map(&self) -> Result<Map<String, Value>, serde_json::Error> {
        let mut map = Map::new();
        for (name, span) in &self.members {
            map.insert(name.clone(), serde_json::from_slice(self.slice(span))?);
        }
        Ok(map)
    }

    /// The object written out with the members in `set` replaced (or appended, when absent)
    /// by the given JSON texts, and the members in `remove` left out. Values the client sent
    /// are copied as received.
    pub fn write_patched(&self, set: &[(&str, &str)], remove: &[&str]) -> Vec<u8> {
        let extra: usize = set.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
        let mut out = Vec::with_capacity(self.text.len() + extra);
        out.push(b'{');
        let mut first = true;
        let mut member = |out: &mut Vec<u8>, name: &str, value: &[u8]| {
            if !first {
                out.push(b',');
            }
            first = false;
            // Writing a string to a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, name);
            out.push(b':');
            out.extend_from_slice(value);
        };
        for (name, span) in &self.members {
            if remove.contains(&name.as_str()) {
                continue;
            }
            match set.iter().find(|(n, _)| n == name) {
                Some((_, v)) => member(&mut out, name, v.as_bytes()),
                None => member(&mut out, name, self.slice(span)),
            }
        }
        for (name, value) in set {
            if !self.contains(name) {
                member(&mut out, name, value.as_bytes());
            }
        }
        out.push(b'}');
        out
    }

    /// A span's text: one JSON value, checked (UTF-8 included) when the object was parsed.
    fn slice(&self, span: &Range<usize>) -> &[u8] {
        &self.text[span.clone()]
    }
}

impl fmt::Debug for RawObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.members
                    .iter()
                    .map(|(n, s)| (n, String::from_utf8_lossy(self.slice(s)))),
            )
            .finish()
    }
}

/// The JSON type of a value's text, as error messages name it.
pub fn json_type_of(raw: &[u8]) -> &'static str {
    match raw.first() {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

/// How the elements of a `messages` array are shaped, checked without building them.
#[derive(Debug, PartialEq, Eq)]
pub enum MessagesShape {
    /// Not an array at all: its JSON type.
    NotAnArray(&'static str),
    Empty,
    /// Element `i` is not an object.
    NotAnObject(usize),
    /// Element `i` has no string `role`.
    RoleNotAString(usize),
    Ok,
}

/// Checks that `raw` is a non-empty array of objects that each have a string `role`.
pub fn messages_shape(raw: &[u8]) -> MessagesShape {
    if raw.first() != Some(&b'[') {
        return MessagesShape::NotAnArray(json_type_of(raw));
    }
    match serde_json::from_slice::<Messages>(raw) {
        Ok(Messages(shape)) => shape,
        // The text is a valid array (the whole body parsed); only nesting limits land here.
        Err(_) => MessagesShape::NotAnObject(0),
    }
}

/// What to make of a JSON value that is read for one thing: an object's members (`object`),
/// or, for any other value, only its type (`other`, with the type as error messages name it).
trait ObjectReader<'de>: Sized {
    fn object<A: MapAccess<'de>>(map: A) -> Result<Self, A::Error>;
    fn other(kind: &'static str) -> Self;
}

/// Deserializes any JSON value into `T` by its type (values that are not objects are skipped
/// over, nothing is built).
struct ByKind<T>(T);

impl<'de, T: ObjectReader<'de>> Deserialize<'de> for ByKind<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: ObjectReader<'de>> Visitor<'de> for V<T> {
            type Value = ByKind<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::object(map).map(ByKind)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(ByKind(T::other("an array")))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(ByKind(T::other("a boolean")))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(ByKind(T::other("a number")))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(ByKind(T::other("a number")))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(ByKind(T::other("a number")))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(ByKind(T::other("a string")))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(ByKind(T::other("null")))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// The top level of a body: an object's member spans, or the JSON type it is instead.
enum Top {
    /// (name, address of the value's first byte, length)
    Object(Vec<(String, usize, usize)>),
    Other(&'static str),
}

impl<'de> ObjectReader<'de> for Top {
    fn object<A: MapAccess<'de>>(mut map: A) -> Result<Top, A::Error> {
        let mut members: Vec<(String, usize, usize)> = Vec::with_capacity(8);
        while let Some(name) = map.next_key::<Cow<'de, str>>()? {
            let value: &'de RawValue = map.next_value()?;
            let text = value.get();
            let span = (text.as_ptr() as usize, text.len());
            match members.iter_mut().find(|(n, _, _)| *n == name) {
                Some(m) => (m.1, m.2) = span,
                None => members.push((name.into_owned(), span.0, span.1)),
            }
        }
        Ok(Top::Object(members))
    }
    fn other(kind: &'static str) -> Top {
        Top::Other(kind)
    }
}

struct Messages(MessagesShape);

impl<'de> Deserialize<'de> for Messages {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Messages;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of messages")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Messages, A::Error> {
                let mut i = 0;
                let mut shape = None;
                while let Some(ByKind(m)) = seq.next_element::<ByKind<Message>>()? {
                    if shape.is_none() {
                        shape = match m {
                            Message::NotAnObject => Some(MessagesShape::NotAnObject(i)),
                            Message::NoStringRole => Some(MessagesShape::RoleNotAString(i)),
                            Message::Ok => None,
                        };
                    }
                    i += 1;
                }
                Ok(Messages(match shape {
                    Some(s) => s,
                    None if i == 0 => MessagesShape::Empty,
                    None => MessagesShape::Ok,
                }))
            }
        }
        d.deserialize_seq(V)
    }
}

enum Message {
    NotAnObject,
    NoStringRole,
    Ok,
}

impl<'de> ObjectReader<'de> for Message {
    fn object<A: MapAccess<'de>>(mut map: A) -> Result<Message, A::Error> {
        let mut role = false;
        while let Some(name) = map.next_key::<Cow<'de, str>>()? {
            if name == "role" {
                role = map.next_value::<ByKind<IsString>>()?.0 .0;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(if role {
            Message::Ok
        } else {
            Message::NoStringRole
        })
    }
    fn other(_: &'static str) -> Message {
        Message::NotAnObject
    }
}

/// Whether a value is a string.
struct IsString(bool);

impl<'de> ObjectReader<'de> for IsString {
    fn object<A: MapAccess<'de>>(mut map: A) -> Result<IsString, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(IsString(false))
    }
    fn other(kind: &'static str) -> IsString {
        IsString(kind == "a string")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(text: &str) -> RawObject {
        RawObject::parse(Bytes::copy_from_slice(text.as_bytes()))
            .expect("json")
            .expect("object")
    }

    #[test]
    fn members_keep_their_order_and_text() {
        let o = parse(
            r#" {"model" : "gpt-4o", "n":1, "messages":[{"role":"user","content":"h\u00e9"}] } "#,
        );
        assert_eq!(o.names().collect::<Vec<_>>(), ["model", "n", "messages"]);
        assert_eq!(o.get("model"), Some(&br#""gpt-4o""#[..]));
        assert_eq!(
            o.get("messages"),
            Some(&br#"[{"role":"user","content":"h\u00e9"}]"#[..])
        );
        assert_eq!(o.get_str("model").as_deref(), Some("gpt-4o"));
        assert_eq!(o.get_str("n"), None, "not a string");
        assert_eq!(o.value("n").unwrap().unwrap(), json!(1));
        assert_eq!(o.get("absent"), None);
    }

    #[test]
    fn escaped_names_and_values_are_decoded_where_read_and_kept_where_forwarded() {
        let o = parse(r#"{"mo\u0064el":"a\"b","x":"\n"}"#);
        assert_eq!(o.get_str("model").as_deref(), Some("a\"b"));
        let out = o.write_patched(&[], &[]);
        let back: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(back, json!({"model": "a\"b", "x": "\n"}));
    }

    #[test]
    fn a_repeated_name_keeps_its_first_place_and_its_last_value() {
        let o = parse(r#"{"a":1,"b":2,"a":3}"#);
        assert_eq!(o.names().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(o.get("a"), Some(&b"3"[..]));
        assert_eq!(o.write_patched(&[], &[]), br#"{"a":3,"b":2}"#);
    }

    #[test]
    fn patching_replaces_appends_and_removes() {
        let o = parse(r#"{"model":"m","stream":true,"messages":[],"n":1}"#);
        let out = o.write_patched(&[("model", r#""up""#), ("user", r#""u""#)], &["stream"]);
        assert_eq!(out, br#"{"model":"up","messages":[],"n":1,"user":"u"}"#);
        assert_eq!(
            serde_json::to_string(&o.to_map().unwrap()).unwrap(),
            r#"{"model":"m","stream":true,"messages":[],"n":1}"#
        );
        let mut o = o;
        assert!(o.remove("n"));
        assert!(!o.remove("n"));
        assert_eq!(
            o.write_patched(&[], &[]),
            br#"{"model":"m","stream":true,"messages":[]}"#
        );
    }

    #[test]
    fn non_objects_and_invalid_json_are_told_apart() {
        for (text, kind) in [
            ("[1,2]", "an array"),
            ("\"s\"", "a string"),
            ("3.5", "a number"),
            ("-1", "a number"),
            ("true", "a boolean"),
            ("null", "null"),
        ] {
            let r = RawObject::parse(Bytes::from_static(text.as_bytes())).unwrap();
            assert_eq!(r.err(), Some(NotAnObject(kind)), "{text}");
        }
        for text in ["", "{", "{\"a\":}", "{} x", "{\"a\":1,}", "\u{feff}{}"] {
            assert!(
                RawObject::parse(Bytes::copy_from_slice(text.as_bytes())).is_err(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn from_map_round_trips() {
        let v = json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "t": 0.5});
        let Value::Object(map) = v else {
            unreachable!()
        };
        let o = RawObject::from_map(&map);
        assert_eq!(o.to_map().unwrap(), map);
    }

    #[test]
    fn messages_shapes() {
        use MessagesShape::*;
        for (raw, shape) in [
            (r#"[{"role":"user","content":"x"}]"#, Ok),
            (r#"[{"content":"x","role":"system"},{"role":"user"}]"#, Ok),
            ("[]", Empty),
            (r#"{"role":"user"}"#, NotAnArray("an object")),
            (r#""hi""#, NotAnArray("a string")),
            (r#"[{"role":"user"}, "x"]"#, NotAnObject(1)),
            (r#"[[1]]"#, NotAnObject(0)),
            (r#"[{"role":"user"},{"role":1}]"#, RoleNotAString(1)),
            (r#"[{"content":"x"}]"#, RoleNotAString(0)),
            (r#"[{"role":{"a":[1]}}]"#, RoleNotAString(0)),
            (r#"[{"role":null}]"#, RoleNotAString(0)),
        ] {
            assert_eq!(messages_shape(raw.as_bytes()), shape, "{raw}");
        }
    }
}
