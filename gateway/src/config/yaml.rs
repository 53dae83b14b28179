//! The spanned YAML tree: the single parse of a config file, and its position index.
//!
//! Built from `yaml-rust2` events so every node keeps its line and column. Plain scalars resolve
//! as PyYAML resolves them (LiteLLM loads configs with `yaml.safe_load`): `True`, `20_000` and
//! `0.5` are a bool, an int and a float, a quoted `"20"` stays a string. The tree is also a serde
//! `Deserializer` (`NodeDe`), so typed sections deserialize straight from it, and a [`KeyPath`]
//! finds the line of anything the loader or the validator wants to talk about.

use std::collections::HashMap;
use std::fmt;

use serde::de::{
    self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Unexpected, Visitor,
};
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A position in a source file, 1-based line and column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct Mark {
    pub line: usize,
    pub col: usize,
}

impl Mark {
    fn from_marker(m: &Marker) -> Self {
        // yaml-rust2 lines are 1-based, columns 0-based.
        Mark {
            line: m.line(),
            col: m.col() + 1,
        }
    }
}

/// One step of a [`KeyPath`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// Where a value sits in its file: `model_list[2].litellm_params.rpm`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct KeyPath(Vec<Seg>);

impl KeyPath {
    pub fn root() -> Self {
        KeyPath(Vec::new())
    }

    pub fn key(&self, key: &str) -> Self {
        let mut segs = self.0.clone();
        segs.push(Seg::Key(key.to_owned()));
        KeyPath(segs)
    }

    pub fn index(&self, index: usize) -> Self {
        let mut segs = self.0.clone();
        segs.push(Seg::Index(index));
        KeyPath(segs)
    }

    pub fn segs(&self) -> &[Seg] {
        &self.0
    }

    pub fn starts_with(&self, prefix: &KeyPath) -> bool {
        self.0.starts_with(&prefix.0)
    }

    /// Appends the segments of a serde path (as reported by `serde_path_to_error`).
    pub fn join_serde(&self, path: &serde_path_to_error::Path) -> Self {
        let mut segs = self.0.clone();
        for seg in path {
            match seg {
                serde_path_to_error::Segment::Seq { index } => segs.push(Seg::Index(*index)),
                serde_path_to_error::Segment::Map { key } => segs.push(Seg::Key(key.clone())),
                serde_path_to_error::Segment::Enum { variant } => {
                    segs.push(Seg::Key(variant.clone()))
                }
                serde_path_to_error::Segment::Unknown => {}
            }
        }
        KeyPath(segs)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => f.write_str(k)?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// What a scalar resolved to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum ScalarKind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Scalar {
    /// The scalar's text after YAML unquoting; what string-typed fields receive.
    pub text: String,
    pub kind: ScalarKind,
    /// Came from an `os.environ/` reference: messages must not quote it.
    pub from_env: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Entry {
    pub key: String,
    pub key_mark: Mark,
    pub value: Node,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    Scalar(Scalar),
    Seq(Vec<Node>),
    /// Keys are unique: a repeated key keeps its last value, as in PyYAML.
    Map(Vec<Entry>),
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Node {
    pub mark: Mark,
    pub value: Value,
}

impl Node {
    pub fn null(mark: Mark) -> Self {
        Node {
            mark,
            value: Value::Scalar(Scalar {
                text: String::new(),
                kind: ScalarKind::Null,
                from_env: false,
            }),
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(
            &self.value,
            Value::Scalar(Scalar {
                kind: ScalarKind::Null,
                ..
            })
        )
    }

    /// The text of a non-null scalar.
    pub fn as_text(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar(s) if s.kind != ScalarKind::Null => Some(&s.text),
            _ => None,
        }
    }

    pub fn entries(&self) -> &[Entry] {
        match &self.value {
            Value::Map(entries) => entries,
            _ => &[],
        }
    }

    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries().iter().find(|e| e.key == key)
    }

    /// A short description for "expected X, found Y" messages.
    pub fn describe(&self) -> String {
        match &self.value {
            Value::Scalar(s) => match s.kind {
                ScalarKind::Null => "null".to_owned(),
                ScalarKind::Bool(b) => format!("boolean `{b}`"),
                ScalarKind::Int(i) => format!("integer `{i}`"),
                ScalarKind::Float(x) => format!("floating point `{x}`"),
                ScalarKind::Str if s.from_env => "a string from the environment".to_owned(),
                ScalarKind::Str => format!("string {:?}", s.text),
            },
            Value::Seq(_) => "a sequence".to_owned(),
            Value::Map(_) => "a mapping".to_owned(),
        }
    }

    /// Position of `path` below this node: the key's position when the path ends in a key,
    /// else the node's. A path that leaves the tree gives the deepest position on the way.
    pub fn locate(&self, path: &KeyPath) -> Mark {
        let mut node = self;
        let mut best = self.mark;
        for seg in path.segs() {
            match (seg, &node.value) {
                (Seg::Key(k), Value::Map(entries)) => match entries.iter().find(|e| &e.key == k) {
                    Some(e) => {
                        best = e.key_mark;
                        node = &e.value;
                    }
                    None => return best,
                },
                (Seg::Index(i), Value::Seq(items)) => match items.get(*i) {
                    Some(item) => {
                        best = item.mark;
                        node = item;
                    }
                    None => return best,
                },
                _ => return best,
            }
        }
        best
    }
}

/// A YAML syntax error, with the parser's position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub mark: Mark,
    pub message: String,
}

/// A key that appears twice in one mapping; the later value won.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DuplicateKey {
    pub path: KeyPath,
}

/// A parsed file: its root (None for an empty file) and the duplicate keys found on the way.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub root: Option<Node>,
    pub duplicates: Vec<DuplicateKey>,
}

enum Frame {
    Seq {
        mark: Mark,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        mark: Mark,
        anchor: usize,
        entries: Vec<Entry>,
        key: Option<(String, Mark)>,
    },
}

struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    duplicates: Vec<DuplicateKey>,
}

impl Builder {
    fn current_path(&self) -> KeyPath {
        let mut path = KeyPath::root();
        for frame in &self.stack {
            match frame {
                Frame::Seq { items, .. } => path = path.index(items.len()),
                Frame::Map {
                    key: Some((k, _)), ..
                } => path = path.key(k),
                Frame::Map { key: None, .. } => {}
            }
        }
        path
    }

    fn push(&mut self, node: Node, anchor: usize) -> Result<(), SyntaxError> {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        let path_for_dup = match self.stack.last() {
            Some(Frame::Map { key: Some(_), .. }) => Some(self.current_path()),
            _ => None,
        };
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                None => match node.value {
                    Value::Scalar(s) => *key = Some((s.text, node.mark)),
                    _ => {
                        return Err(SyntaxError {
                            mark: node.mark,
                            message: "mapping keys must be plain values, not collections"
                                .to_owned(),
                        })
                    }
                },
                Some((k, key_mark)) => {
                    if let Some(pos) = entries.iter().position(|e| e.key == k) {
                        entries.remove(pos);
                        if let Some(path) = path_for_dup {
                            self.duplicates.push(DuplicateKey { path });
                        }
                    }
                    entries.push(Entry {
                        key: k,
                        key_mark,
                        value: node,
                    });
                }
            },
        }
        Ok(())
    }
}

/// Applies YAML merge keys (`<<: *defaults`): entries of the merged mappings that the mapping
/// does not set itself. PyYAML supports them, so LiteLLM configs may use them.
fn apply_merge_keys(entries: &mut Vec<Entry>) -> Result<(), SyntaxError> {
    let Some(pos) = entries.iter().position(|e| e.key == "<<") else {
        return Ok(());
    };
    let merge = entries.remove(pos);
    let sources: Vec<Node> = match merge.value.value {
        Value::Map(_) => vec![merge.value],
        Value::Seq(items) => items,
        _ => {
            return Err(SyntaxError {
                mark: merge.key_mark,
                message: "a merge key `<<` needs a mapping or a list of mappings".to_owned(),
            })
        }
    };
    for source in sources {
        let Value::Map(source_entries) = source.value else {
            return Err(SyntaxError {
                mark: source.mark,
                message: "a merge key `<<` needs a mapping or a list of mappings".to_owned(),
            });
        };
        for e in source_entries {
            if !entries.iter().any(|have| have.key == e.key) {
                entries.push(e);
            }
        }
    }
    Ok(())
}

/// Parses one YAML document. A second document is an error, as in `yaml.safe_load`.
pub(crate) fn parse(text: &str) -> Result<Parsed, SyntaxError> {
    let mut parser = Parser::new_from_str(text);
    let mut b = Builder {
        stack: Vec::new(),
        anchors: HashMap::new(),
        root: None,
        duplicates: Vec::new(),
    };
    let mut documents = 0usize;
    loop {
        let (event, marker) = parser.next_token().map_err(|e| {
            let mut mark = Mark::from_marker(e.marker());
            if e.info().contains("tab") {
                mark = first_tab(text, mark);
            }
            SyntaxError {
                mark,
                message: e.info().to_owned(),
            }
        })?;
        let mark = Mark::from_marker(&marker);
        match event {
            Event::StreamEnd => break,
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    return Err(SyntaxError {
                        mark,
                        message: "expected a single YAML document, found a second one".to_owned(),
                    });
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                let kind = resolve_scalar(&text, style, tag.as_ref());
                b.push(
                    Node {
                        mark,
                        value: Value::Scalar(Scalar {
                            text,
                            kind,
                            from_env: false,
                        }),
                    },
                    anchor,
                )?;
            }
            Event::Alias(id) => {
                let node = b.anchors.get(&id).cloned().ok_or_else(|| SyntaxError {
                    mark,
                    message: "alias to an unknown anchor".to_owned(),
                })?;
                let node = Node { mark, ..node };
                b.push(node, 0)?;
            }
            Event::SequenceStart(anchor, _) => b.stack.push(Frame::Seq {
                mark,
                anchor,
                items: Vec::new(),
            }),
            Event::MappingStart(anchor, _) => b.stack.push(Frame::Map {
                mark,
                anchor,
                entries: Vec::new(),
                key: None,
            }),
            Event::SequenceEnd => {
                if let Some(Frame::Seq {
                    mark,
                    anchor,
                    items,
                }) = b.stack.pop()
                {
                    b.push(
                        Node {
                            mark,
                            value: Value::Seq(items),
                        },
                        anchor,
                    )?;
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map {
                    mark,
                    anchor,
                    mut entries,
                    ..
                }) = b.stack.pop()
                {
                    apply_merge_keys(&mut entries)?;
                    // A block mapping's start event points one past its first key; the first
                    // key is where a reader looks.
                    let mark = entries.first().map_or(mark, |e| {
                        if (e.key_mark.line, e.key_mark.col) < (mark.line, mark.col) {
                            e.key_mark
                        } else {
                            mark
                        }
                    });
                    b.push(
                        Node {
                            mark,
                            value: Value::Map(entries),
                        },
                        anchor,
                    )?;
                }
            }
            Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
        }
    }
    Ok(Parsed {
        root: b.root,
        duplicates: b.duplicates,
    })
}

/// yaml-rust2 reports a tab error just past the tab; point at the tab itself.
fn first_tab(text: &str, mark: Mark) -> Mark {
    let line = mark.line.checked_sub(1).and_then(|i| text.lines().nth(i));
    match line.and_then(|l| l.find('\t').map(|i| l[..i].chars().count() + 1)) {
        Some(col) => Mark {
            line: mark.line,
            col,
        },
        None => mark,
    }
}

fn resolve_scalar(text: &str, style: TScalarStyle, tag: Option<&Tag>) -> ScalarKind {
    if let Some(tag) = tag {
        if tag.handle == "tag:yaml.org,2002:" || tag.handle == "!!" {
            match tag.suffix.as_str() {
                "str" => return ScalarKind::Str,
                "null" => return ScalarKind::Null,
                _ => {}
            }
        }
    }
    if style != TScalarStyle::Plain {
        return ScalarKind::Str;
    }
    resolve_plain(text)
}

/// PyYAML's (YAML 1.1) implicit resolution of a plain scalar.
pub(crate) fn resolve_plain(text: &str) -> ScalarKind {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return ScalarKind::Null,
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return ScalarKind::Bool(true)
        }
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return ScalarKind::Bool(false)
        }
        _ => {}
    }
    if let Some(i) = parse_yaml11_int(text) {
        return ScalarKind::Int(i);
    }
    if let Some(x) = parse_yaml11_float(text) {
        return ScalarKind::Float(x);
    }
    ScalarKind::Str
}

fn split_sign(text: &str) -> (bool, &str) {
    if let Some(rest) = text.strip_prefix('-') {
        (true, rest)
    } else {
        (false, text.strip_prefix('+').unwrap_or(text))
    }
}

fn parse_yaml11_int(text: &str) -> Option<i64> {
    let (negative, body) = split_sign(text);
    let (radix, digits) = if let Some(d) = body.strip_prefix("0b") {
        (2, d)
    } else if let Some(d) = body.strip_prefix("0x") {
        (16, d)
    } else if body.len() > 1 && body.starts_with('0') {
        (8, &body[1..])
    } else {
        (10, body)
    };
    if digits.is_empty() || digits.starts_with('_') {
        return None;
    }
    if !digits.chars().all(|c| c == '_' || c.is_digit(radix)) {
        return None;
    }
    let clean: String = digits.chars().filter(|c| *c != '_').collect();
    let value = i64::from_str_radix(&clean, radix).ok()?;
    Some(if negative { -value } else { value })
}

fn parse_yaml11_float(text: &str) -> Option<f64> {
    match text {
        ".nan" | ".NaN" | ".NAN" => return Some(f64::NAN),
        _ => {}
    }
    let (negative, body) = split_sign(text);
    let value = match body {
        ".inf" | ".Inf" | ".INF" => f64::INFINITY,
        _ => {
            // [0-9][0-9_]*\.[0-9_]*([eE][-+][0-9]+)?  |  \.[0-9_]+([eE][-+][0-9]+)?
            let (mantissa, exponent) = match body.find(['e', 'E']) {
                Some(pos) => (&body[..pos], Some(&body[pos + 1..])),
                None => (body, None),
            };
            let (int_part, frac_part) = mantissa.split_once('.')?;
            let digits_ok = |s: &str| s.chars().all(|c| c == '_' || c.is_ascii_digit());
            if !digits_ok(int_part) || !digits_ok(frac_part) {
                return None;
            }
            if int_part.is_empty() && frac_part.is_empty() {
                return None;
            }
            if int_part.starts_with('_') || (int_part.is_empty() && frac_part.starts_with('_')) {
                return None;
            }
            if let Some(exp) = exponent {
                let digits = exp.strip_prefix(['+', '-'])?;
                if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
                    return None;
                }
            }
            let clean: String = body.chars().filter(|c| *c != '_').collect();
            clean.parse::<f64>().ok()?
        }
    };
    Some(if negative { -value } else { value })
}

/// Number in a string: an environment variable or a quoted number standing for a numeric field.
fn parse_number_text(text: &str) -> Option<ScalarKind> {
    let t = text.trim();
    match resolve_plain(t) {
        k @ (ScalarKind::Int(_) | ScalarKind::Float(_)) => Some(k),
        _ => t
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite())
            .map(ScalarKind::Float),
    }
}

/// A deserialization failure inside a node; the loader adds file, line and key path.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct DeError {
    pub message: String,
    /// Set for "missing field" so the loader can tell a cascade from a real omission.
    pub missing_field: Option<&'static str>,
}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            message: msg.to_string(),
            missing_field: None,
        }
    }

    fn missing_field(field: &'static str) -> Self {
        DeError {
            message: format!("missing field `{field}`"),
            missing_field: Some(field),
        }
    }
}

/// `serde::Deserializer` over a [`Node`]. Lenient where PyYAML-loaded LiteLLM configs are:
/// string fields take any scalar's text (`id: 1`, `api_version: 2024-02-01`), numeric fields take
/// numeric strings (values from `os.environ/`), and null stands for an empty mapping or list.
#[derive(Clone, Copy)]
pub(crate) struct NodeDe<'a>(pub &'a Node);

struct SeqDe<'a> {
    items: std::slice::Iter<'a, Node>,
}

impl<'de, 'a> SeqAccess<'de> for SeqDe<'a> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            Some(node) => seed.deserialize(NodeDe(node)).map(Some),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapDe<'a> {
    entries: std::slice::Iter<'a, Entry>,
    value: Option<&'a Node>,
}

impl<'de, 'a> MapAccess<'de> for MapDe<'a> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match self.entries.next() {
            Some(entry) => {
                self.value = Some(&entry.value);
                let key: de::value::StrDeserializer<'_, DeError> =
                    entry.key.as_str().into_deserializer();
                seed.deserialize(key).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        match self.value.take() {
            Some(node) => seed.deserialize(NodeDe(node)),
            None => Err(de::Error::custom("value requested before key")),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

const EMPTY_NODES: &[Node] = &[];
const EMPTY_ENTRIES: &[Entry] = &[];

impl<'a> NodeDe<'a> {
    fn scalar(&self) -> Option<&'a Scalar> {
        match &self.0.value {
            Value::Scalar(s) => Some(s),
            _ => None,
        }
    }

    fn unexpected(&self) -> Unexpected<'a> {
        match &self.0.value {
            Value::Scalar(s) => match s.kind {
                ScalarKind::Null => Unexpected::Other("null"),
                ScalarKind::Bool(b) => Unexpected::Bool(b),
                ScalarKind::Int(i) => Unexpected::Signed(i),
                ScalarKind::Float(x) => Unexpected::Float(x),
                ScalarKind::Str if s.from_env => Unexpected::Other("a string from the environment"),
                ScalarKind::Str => Unexpected::Str(&s.text),
            },
            Value::Seq(_) => Unexpected::Seq,
            Value::Map(_) => Unexpected::Map,
        }
    }

    fn number<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.scalar().map(|s| (s, s.kind)) {
            Some((_, ScalarKind::Int(i))) => visitor.visit_i64(i),
            Some((_, ScalarKind::Float(x))) => visitor.visit_f64(x),
            Some((s, ScalarKind::Str)) => match parse_number_text(&s.text) {
                Some(ScalarKind::Int(i)) => visitor.visit_i64(i),
                Some(ScalarKind::Float(x)) => visitor.visit_f64(x),
                _ => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
            },
            _ => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
        }
    }
}

macro_rules! forward_number {
    ($($method:ident)*) => {
        $(fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            self.number(visitor)
        })*
    };
}

impl<'de, 'a> de::Deserializer<'de> for NodeDe<'a> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.0.value {
            Value::Scalar(s) => match s.kind {
                ScalarKind::Null => visitor.visit_unit(),
                ScalarKind::Bool(b) => visitor.visit_bool(b),
                ScalarKind::Int(i) => visitor.visit_i64(i),
                ScalarKind::Float(x) => visitor.visit_f64(x),
                ScalarKind::Str => visitor.visit_str(&s.text),
            },
            Value::Seq(items) => visitor.visit_seq(SeqDe {
                items: items.iter(),
            }),
            Value::Map(entries) => visitor.visit_map(MapDe {
                entries: entries.iter(),
                value: None,
            }),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.scalar().map(|s| (s, s.kind)) {
            Some((_, ScalarKind::Bool(b))) => visitor.visit_bool(b),
            Some((s, ScalarKind::Str)) => match resolve_plain(s.text.trim()) {
                ScalarKind::Bool(b) => visitor.visit_bool(b),
                _ => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
            },
            _ => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
        }
    }

    forward_number! {
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_f32 deserialize_f64
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.scalar() {
            Some(s) if s.kind != ScalarKind::Null => visitor.visit_str(&s.text),
            _ => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.0.is_null() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.0.is_null() {
            visitor.visit_unit()
        } else {
            Err(de::Error::invalid_type(self.unexpected(), &visitor))
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.0.value {
            Value::Seq(items) => visitor.visit_seq(SeqDe {
                items: items.iter(),
            }),
            _ if self.0.is_null() => visitor.visit_seq(SeqDe {
                items: EMPTY_NODES.iter(),
            }),
            _ => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.0.value {
            Value::Map(entries) => visitor.visit_map(MapDe {
                entries: entries.iter(),
                value: None,
            }),
            _ if self.0.is_null() => visitor.visit_map(MapDe {
                entries: EMPTY_ENTRIES.iter(),
                value: None,
            }),
            _ => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self.scalar() {
            Some(s) if s.kind != ScalarKind::Null => {
                let variant: de::value::StrDeserializer<'_, DeError> =
                    s.text.as_str().into_deserializer();
                visitor.visit_enum(variant)
            }
            _ => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

/// The field names of a derived struct, read from its `Deserialize` impl so key tables and
/// authoring types cannot drift apart.
pub(crate) fn struct_fields<T: de::DeserializeOwned>() -> &'static [&'static str] {
    struct Probe;
    #[derive(Debug, thiserror::Error)]
    #[error("probe")]
    struct Found(&'static [&'static str]);
    impl de::Error for Found {
        fn custom<M: fmt::Display>(_msg: M) -> Self {
            Found(&[])
        }
    }
    impl<'de> de::Deserializer<'de> for Probe {
        type Error = Found;
        fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Found> {
            Err(Found(&[]))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Found> {
            Err(Found(fields))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    match T::deserialize(Probe) {
        Ok(_) => &[],
        Err(Found(fields)) => fields,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(text: &str) -> Node {
        parse(text).unwrap().root.unwrap()
    }

    #[test]
    fn plain_scalars_resolve_like_pyyaml() {
        assert_eq!(resolve_plain("20_000"), ScalarKind::Int(20000));
        assert_eq!(resolve_plain("0x1F"), ScalarKind::Int(31));
        assert_eq!(resolve_plain("010"), ScalarKind::Int(8));
        assert_eq!(resolve_plain("-3"), ScalarKind::Int(-3));
        assert_eq!(resolve_plain("0.5"), ScalarKind::Float(0.5));
        assert_eq!(resolve_plain("0.000420"), ScalarKind::Float(0.00042));
        assert_eq!(resolve_plain("1.0e+3"), ScalarKind::Float(1000.0));
        assert_eq!(
            resolve_plain("1e5"),
            ScalarKind::Str,
            "PyYAML needs a dot in a float"
        );
        assert_eq!(resolve_plain("True"), ScalarKind::Bool(true));
        assert_eq!(resolve_plain("off"), ScalarKind::Bool(false));
        assert_eq!(resolve_plain("~"), ScalarKind::Null);
        assert_eq!(resolve_plain("2023-05-15"), ScalarKind::Str);
        assert_eq!(resolve_plain("73g"), ScalarKind::Str);
        assert_eq!(resolve_plain(".inf"), ScalarKind::Float(f64::INFINITY));
    }

    #[test]
    fn quoted_scalars_stay_strings() {
        let n = root("a: \"20\"\nb: '1.5'\nc: 20\n");
        assert_eq!(n.get("a").unwrap().value.describe(), "string \"20\"");
        assert_eq!(n.get("b").unwrap().value.describe(), "string \"1.5\"");
        assert_eq!(n.get("c").unwrap().value.describe(), "integer `20`");
    }

    #[test]
    fn positions_are_one_based_and_point_at_keys() {
        let n = root("a:\n  b: [1, \"x\"]\n  c:\n    - d: 1\n");
        assert_eq!(
            n.locate(&KeyPath::root().key("a").key("b")),
            Mark { line: 2, col: 3 }
        );
        assert_eq!(
            n.locate(&KeyPath::root().key("a").key("b").index(1)),
            Mark { line: 2, col: 10 }
        );
        assert_eq!(
            n.locate(&KeyPath::root().key("a").key("c").index(0).key("d")),
            Mark { line: 4, col: 7 }
        );
        // A path that leaves the tree stops at the deepest match.
        assert_eq!(
            n.locate(&KeyPath::root().key("a").key("zzz")),
            Mark { line: 1, col: 1 }
        );
        assert_eq!(n.mark, Mark { line: 1, col: 1 });
    }

    #[test]
    fn duplicate_keys_keep_the_last_value_and_are_reported() {
        let p = parse("a:\n  x: 1\n  x: 2\n").unwrap();
        let n = p.root.unwrap();
        assert_eq!(
            n.get("a").unwrap().value.get("x").unwrap().value.describe(),
            "integer `2`"
        );
        assert_eq!(p.duplicates.len(), 1);
        assert_eq!(p.duplicates[0].path.to_string(), "a.x");
    }

    #[test]
    fn merge_keys_and_aliases() {
        let n = root("base: &b {rpm: 5, tpm: 6}\nd:\n  <<: *b\n  rpm: 7\n");
        let d = &n.get("d").unwrap().value;
        assert_eq!(d.get("rpm").unwrap().value.describe(), "integer `7`");
        assert_eq!(d.get("tpm").unwrap().value.describe(), "integer `6`");
        assert!(d.get("<<").is_none());
    }

    #[test]
    fn syntax_errors_are_located() {
        let e = parse("a: \"unterminated\n").unwrap_err();
        assert_eq!(e.mark.line, 1);
        let e = parse("a: 1\n---\nb: 2\n").unwrap_err();
        assert_eq!(e.mark.line, 2);
        let e = parse("a:\n\tb: 1\n").unwrap_err();
        assert_eq!(e.mark, Mark { line: 2, col: 1 });
    }

    #[test]
    fn empty_documents_have_no_root() {
        assert!(parse("").unwrap().root.is_none());
        assert!(parse("# only a comment\n").unwrap().root.is_none());
    }

    #[test]
    fn deserializer_is_lenient_where_pyyaml_configs_are() {
        let n = root("id: 1\nrpm: \"10\"\nname: ~\nflag: \"true\"\n");
        let id: String =
            serde::Deserialize::deserialize(NodeDe(&n.get("id").unwrap().value)).unwrap();
        assert_eq!(id, "1");
        let rpm: u32 =
            serde::Deserialize::deserialize(NodeDe(&n.get("rpm").unwrap().value)).unwrap();
        assert_eq!(rpm, 10);
        let flag: bool =
            serde::Deserialize::deserialize(NodeDe(&n.get("flag").unwrap().value)).unwrap();
        assert!(flag);
        let name: Option<String> =
            serde::Deserialize::deserialize(NodeDe(&n.get("name").unwrap().value)).unwrap();
        assert_eq!(name, None);
        let err = <u32 as serde::Deserialize>::deserialize(NodeDe(&Node {
            mark: Mark::default(),
            value: Value::Scalar(Scalar {
                text: "ten".into(),
                kind: ScalarKind::Str,
                from_env: false,
            }),
        }))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid type: string \"ten\", expected u32"
        );
    }

    #[test]
    fn struct_fields_reads_field_names() {
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct S {
            a: u32,
            b: Option<String>,
        }
        assert_eq!(struct_fields::<S>(), &["a", "b"]);
    }
}
