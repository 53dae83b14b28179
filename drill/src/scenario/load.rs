//! Reads a scenario or suite file: one strict parse (serde_yaml + serde_path_to_error, so a
//! problem names file, line, column and key path), then `validate` for cross-field checks whose
//! lines come from a position index of the same text.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use yaml_rust2::parser::{Event, Parser};

use super::schema::{Scenario, Suite, API_VERSION};

/// One problem in a scenario file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    /// 1-based line and column, when known.
    pub location: Option<(usize, usize)>,
    /// Key path (`phases[1].expect.fallback.min_share`), empty for the whole file.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.location {
            Some((l, c)) => write!(f, "{}:{l}:{c}: ", self.file)?,
            None => write!(f, "{}: ", self.file)?,
        }
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Why a scenario cannot run (exit 4). Lists every problem found.
#[derive(Debug, thiserror::Error)]
pub struct ScenarioError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "invalid scenario ({n} problem{})",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

impl ScenarioError {
    pub fn single(file: &str, message: impl Into<String>) -> Self {
        Self {
            problems: vec![Problem {
                file: file.to_owned(),
                location: None,
                path: String::new(),
                message: message.into(),
            }],
        }
    }
}

/// A file as read: its text, digest and position index.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub text: String,
    /// SHA-256 of the bytes, hex.
    pub sha256: String,
    positions: HashMap<String, (usize, usize)>,
}

impl Source {
    pub fn read(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ScenarioError::single(&path.display().to_string(), format!("cannot read: {e}"))
        })?;
        Ok(Self::from_text(path, text))
    }

    pub fn from_text(path: &Path, text: String) -> Self {
        let sha256 = hex::encode(Sha256::digest(text.as_bytes()));
        let positions = index_positions(&text);
        Self {
            path: path.to_path_buf(),
            text,
            sha256,
            positions,
        }
    }

    pub fn file(&self) -> String {
        self.path.display().to_string()
    }

    /// A problem at key path `path`, located at the longest prefix of it found in the file.
    pub fn problem(&self, path: &str, message: impl Into<String>) -> Problem {
        let mut probe = path.to_owned();
        let location = loop {
            if let Some(l) = self.positions.get(&probe) {
                break Some(*l);
            }
            match probe.rfind(['.', '[']) {
                Some(i) => probe.truncate(i),
                None => break self.positions.get("").copied(),
            }
        };
        Problem {
            file: self.file(),
            location,
            path: path.to_owned(),
            message: message.into(),
        }
    }

    /// The directory relative paths in the file are resolved against.
    pub fn dir(&self) -> PathBuf {
        self.path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    }

    fn parse<T: DeserializeOwned>(&self) -> Result<T, ScenarioError> {
        let de = serde_yaml::Deserializer::from_str(&self.text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            let inner = e.into_inner();
            let location = inner.location().map(|l| (l.line(), l.column()));
            let message = strip_location(&inner.to_string());
            // serde_yaml repeats the path at the start of some messages.
            let message = match message.split_once(": ") {
                Some((head, rest)) if !head.is_empty() && path.starts_with(head) => rest.to_owned(),
                _ => message,
            };
            let mut p = self.problem(&path, message);
            if location.is_some() {
                p.location = location;
            }
            ScenarioError { problems: vec![p] }
        })
    }
}

fn strip_location(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

/// What a file turned out to be.
#[derive(Debug, Clone)]
pub enum Document {
    Scenario(Box<Scenario>),
    Suite(Suite),
}

/// Reads `path`: a `kind: Drill` scenario or a `kind: Suite`. Semantic checks are `validate`'s.
pub fn load(source: &Source) -> Result<Document, ScenarioError> {
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(rename = "apiVersion")]
        api_version: Option<String>,
        kind: Option<String>,
    }
    let head: Head = serde_yaml::from_str(&source.text).map_err(|e| ScenarioError {
        problems: vec![Problem {
            file: source.file(),
            location: e.location().map(|l| (l.line(), l.column())),
            path: String::new(),
            message: strip_location(&e.to_string()),
        }],
    })?;
    match head.api_version.as_deref() {
        Some(API_VERSION) => {}
        Some(other) => {
            return Err(ScenarioError {
                problems: vec![source.problem(
                    "apiVersion",
                    format!("unsupported apiVersion {other:?}\nthis drill reads {API_VERSION:?}"),
                )],
            })
        }
        None => {
            return Err(ScenarioError {
                problems: vec![source.problem(
                    "",
                    format!("missing field `apiVersion` (expected {API_VERSION:?})"),
                )],
            })
        }
    }
    match head.kind.as_deref() {
        Some("Drill") => Ok(Document::Scenario(Box::new(source.parse()?))),
        Some("Suite") => Ok(Document::Suite(source.parse()?)),
        Some(other) => Err(ScenarioError {
            problems: vec![source.problem(
                "kind",
                format!("unknown kind {other:?}\nexpected `Drill` or `Suite`"),
            )],
        }),
        None => Err(ScenarioError {
            problems: vec![source.problem("", "missing field `kind` (`Drill` or `Suite`)")],
        }),
    }
}

/// Key path (serde_path_to_error's spelling) → 1-based (line, column) of the key, or of the node
/// for sequence items and the root.
fn index_positions(text: &str) -> HashMap<String, (usize, usize)> {
    enum Frame {
        Map {
            path: String,
            pending_key: Option<String>,
        },
        Seq {
            path: String,
            next: usize,
        },
    }
    let mut out = HashMap::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut parser = Parser::new_from_str(text);
    // Where the next node goes, given the innermost frame; advances the frame.
    fn slot(stack: &mut [Frame]) -> Option<String> {
        match stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Map { path, pending_key }) => pending_key.take().map(|k| {
                if path.is_empty() {
                    k
                } else {
                    format!("{path}.{k}")
                }
            }),
            Some(Frame::Seq { path, next }) => {
                let p = format!("{path}[{next}]");
                *next += 1;
                Some(p)
            }
        }
    }
    while let Ok((event, marker)) = parser.next_token() {
        let pos = (marker.line(), marker.col() + 1);
        match event {
            Event::StreamEnd => break,
            Event::Scalar(value, ..) => {
                // A scalar in key position of a map is a key.
                if let Some(Frame::Map { path, pending_key }) = stack.last_mut() {
                    if pending_key.is_none() {
                        let full = if path.is_empty() {
                            value.clone()
                        } else {
                            format!("{path}.{value}")
                        };
                        out.entry(full).or_insert(pos);
                        *pending_key = Some(value);
                        continue;
                    }
                }
                if let Some(p) = slot(&mut stack) {
                    out.entry(p).or_insert(pos);
                }
            }
            Event::Alias(_) => {
                slot(&mut stack);
            }
            Event::MappingStart(..) => {
                let p = slot(&mut stack).unwrap_or_default();
                out.entry(p.clone()).or_insert(pos);
                stack.push(Frame::Map {
                    path: p,
                    pending_key: None,
                });
            }
            Event::SequenceStart(..) => {
                let p = slot(&mut stack).unwrap_or_default();
                out.entry(p.clone()).or_insert(pos);
                stack.push(Frame::Seq { path: p, next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_follow_key_paths() {
        let text = "a:\n  b: 1\n  list:\n    - x: 2\n    - {y: 3}\n";
        let idx = index_positions(text);
        assert_eq!(idx.get("a.b"), Some(&(2, 3)));
        assert_eq!(idx.get("a.list[1].y"), Some(&(5, 8)));
        assert_eq!(idx.get("a.list[0].x"), Some(&(4, 7)));
    }

    #[test]
    fn problems_fall_back_to_the_nearest_located_parent() {
        let src = Source::from_text(Path::new("s.yaml"), "a:\n  b: 1\n".to_owned());
        let p = src.problem("a.b.c", "nope");
        assert_eq!(p.to_string(), "s.yaml:2:3: a.b.c: nope");
    }
}
