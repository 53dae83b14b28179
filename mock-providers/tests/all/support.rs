//! Test helpers: servers on 127.0.0.1:0, request bodies, a raw TCP client
//! that sees exactly how a response ends, SSE parsing, fixture shape checks.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use mock_providers::{DeploymentSpec, Dialect, MockServer, MockSpec};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Upper bound for any single wait in these tests.
pub const T: Duration = Duration::from_secs(15);

pub const SEED: u64 = 20261121;

pub async fn start(deployments: Vec<DeploymentSpec>) -> MockServer {
    MockServer::start(MockSpec::new(SEED, deployments))
        .await
        .unwrap()
}

pub fn dep(id: &str, dialect: Dialect) -> DeploymentSpec {
    DeploymentSpec::new(id, dialect)
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(T)
        .build()
        .unwrap()
}

pub fn openai_body(text: &str, stream: bool) -> Value {
    json!({"model": "gpt-4o", "messages": [{"role": "user", "content": text}], "stream": stream})
}

pub fn anthropic_body(text: &str, stream: bool) -> Value {
    json!({"model": "claude-sonnet-4", "max_tokens": 256, "messages": [{"role": "user", "content": text}], "stream": stream})
}

/// The chat endpoint and body for a dialect.
pub fn chat_request(server: &MockServer, id: &str, text: &str, stream: bool) -> (String, Value) {
    match server.dialect(id).unwrap() {
        Dialect::Openai => (
            format!("{}/chat/completions", server.api_base(id)),
            openai_body(text, stream),
        ),
        Dialect::Azure => (
            format!(
                "{}/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21",
                server.api_base(id)
            ),
            json!({"messages": [{"role": "user", "content": text}], "stream": stream}),
        ),
        Dialect::Anthropic => (
            format!("{}/v1/messages", server.api_base(id)),
            anthropic_body(text, stream),
        ),
    }
}

/// POSTs a chat request with the dialect's required headers.
pub async fn chat(server: &MockServer, id: &str, text: &str, stream: bool) -> reqwest::Response {
    let (url, body) = chat_request(server, id, text, stream);
    let mut req = client().post(url).json(&body);
    if server.dialect(id) == Some(Dialect::Anthropic) {
        req = req.header("anthropic-version", "2023-06-01");
    }
    tokio::time::timeout(T, req.send()).await.unwrap().unwrap()
}

pub async fn json_of(resp: reqwest::Response) -> Value {
    tokio::time::timeout(T, resp.json::<Value>())
        .await
        .unwrap()
        .unwrap()
}

/// How a raw connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawEnd {
    /// Orderly close (FIN).
    Eof,
    /// Connection reset (RST).
    Reset,
}

/// Everything received on one connection until it ended.
#[derive(Debug)]
pub struct Raw {
    pub bytes: Vec<u8>,
    pub end: RawEnd,
}

/// Sends `request` on a fresh connection and reads until the peer closes.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> Raw {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut bytes = Vec::new();
    let mut buf = [0u8; 8192];
    let end = tokio::time::timeout(T, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => return RawEnd::Eof,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return RawEnd::Reset,
                Err(e) => panic!("unexpected read error {e}"),
            }
        }
    })
    .await
    .expect("connection did not end in time");
    Raw { bytes, end }
}

/// A complete HTTP/1.1 request with `connection: close`.
pub fn http_request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nhost: mock\r\nconnection: close\r\n");
    for (n, v) in headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" || method == "PUT" {
        out.push_str(&format!(
            "content-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        ));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// A raw chat request for a deployment of `server`.
pub fn raw_chat(server: &MockServer, id: &str, text: &str, stream: bool) -> Vec<u8> {
    let (url, body) = chat_request(server, id, text, stream);
    let path = url.split_once("127.0.0.1").unwrap().1;
    let path = &path[path.find('/').unwrap()..];
    let body = serde_json::to_vec(&body).unwrap();
    let mut headers = vec![];
    if server.dialect(id) == Some(Dialect::Anthropic) {
        headers.push(("anthropic-version", "2023-06-01"));
    }
    http_request("POST", path, &headers, &body)
}

/// A parsed raw HTTP response.
#[derive(Debug)]
pub struct Parsed {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// De-chunked body (as much as arrived).
    pub body: Vec<u8>,
    /// The body was complete: the chunked terminator `0\r\n\r\n` (or all
    /// `content-length` bytes) arrived.
    pub complete: bool,
}

impl Parsed {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub fn parse_response(bytes: &[u8]) -> Parsed {
    let head_end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no complete head")
        + 4;
    let head = std::str::from_utf8(&bytes[..head_end]).unwrap();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    let rest = &bytes[head_end..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    if !chunked {
        let len: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map(|(_, v)| v.parse().unwrap())
            .unwrap_or(rest.len());
        return Parsed {
            status,
            complete: rest.len() >= len,
            body: rest[..len.min(rest.len())].to_vec(),
            headers,
        };
    }
    let mut pos = 0;
    let mut body = Vec::new();
    let mut complete = false;
    while let Some(line_end) = rest[pos..].windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(std::str::from_utf8(&rest[pos..pos + line_end]).unwrap(), 16)
                .unwrap();
        pos += line_end + 2;
        if size == 0 {
            complete = rest[pos..].starts_with(b"\r\n");
            break;
        }
        if pos + size + 2 > rest.len() {
            body.extend_from_slice(&rest[pos..]);
            break;
        }
        body.extend_from_slice(&rest[pos..pos + size]);
        pos += size + 2;
    }
    Parsed {
        status,
        headers,
        body,
        complete,
    }
}

/// One server-sent event: (event name, data).
pub type Sse = (Option<String>, String);

pub fn parse_sse(text: &str) -> Vec<Sse> {
    text.split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .map(|block| {
            let mut name = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = Some(n.to_owned());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
            (name, data)
        })
        .collect()
}

pub fn fixture_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(rel)
}

pub fn fixture(rel: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture_path(rel)).unwrap()).unwrap()
}

pub fn fixture_sse(rel: &str) -> Vec<Sse> {
    parse_sse(&std::fs::read_to_string(fixture_path(rel)).unwrap())
}

/// Keys whose values are discriminators and must match the fixture exactly.
const EXACT: &[&str] = &[
    "type",
    "object",
    "code",
    "finish_reason",
    "stop_reason",
    "role",
    "param",
    "status",
];

/// Same keys, same JSON types, same discriminator values, recursively.
pub fn assert_shape(expected: &Value, actual: &Value) {
    shape_at("$", expected, actual);
}

fn shape_at(path: &str, expected: &Value, actual: &Value) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            let ek: std::collections::BTreeSet<&String> = e.keys().collect();
            let ak: std::collections::BTreeSet<&String> = a.keys().collect();
            assert_eq!(
                ek, ak,
                "keys differ at {path}\nexpected {expected}\nactual   {actual}"
            );
            for (k, ev) in e {
                let av = &a[k];
                if EXACT.contains(&k.as_str()) && (ev.is_string() || ev.is_null()) {
                    assert_eq!(ev, av, "value of {path}.{k} differs");
                }
                shape_at(&format!("{path}.{k}"), ev, av);
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.is_empty() {
                assert!(a.is_empty(), "{path} should be empty, is {actual}");
            } else {
                for (i, av) in a.iter().enumerate() {
                    shape_at(&format!("{path}[{i}]"), &e[i.min(e.len() - 1)], av);
                }
            }
        }
        (Value::Null, Value::Null)
        | (Value::Bool(_), Value::Bool(_))
        | (Value::Number(_), Value::Number(_))
        | (Value::String(_), Value::String(_)) => {}
        _ => panic!("type differs at {path}: expected {expected}, got {actual}"),
    }
}

/// Kind of an OpenAI/Azure stream event, for comparing event sequences.
pub fn openai_kind(data: &str) -> String {
    if data == "[DONE]" {
        return "done".into();
    }
    let v: Value = serde_json::from_str(data).unwrap();
    if v.get("prompt_filter_results").is_some() {
        "prompt_filter"
    } else if v.get("error").is_some() {
        "error"
    } else if v["choices"].as_array().is_some_and(Vec::is_empty) {
        "usage"
    } else if !v["choices"][0]["finish_reason"].is_null() {
        "finish"
    } else if v["choices"][0]["delta"].get("role").is_some() {
        "role"
    } else {
        "content"
    }
    .into()
}

pub fn anthropic_kind(ev: &Sse) -> String {
    ev.0.clone().unwrap_or_default()
}

/// The event kinds of `events`, consecutive repeats collapsed.
pub fn kinds(events: &[Sse], kind: impl Fn(&Sse) -> String) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for e in events {
        let k = kind(e);
        if out.last() != Some(&k) {
            out.push(k);
        }
    }
    out
}

/// The stream matches the fixture: same kind sequence and each event's JSON
/// has the fixture's shape for its kind.
pub fn assert_stream_matches(fixture: &[Sse], actual: &[Sse], kind: impl Fn(&Sse) -> String) {
    assert_eq!(
        kinds(fixture, &kind),
        kinds(actual, &kind),
        "event sequence differs"
    );
    for ev in actual {
        let k = kind(ev);
        let model = fixture.iter().find(|f| kind(f) == k).unwrap();
        if ev.1 == "[DONE]" {
            continue;
        }
        assert_shape(
            &serde_json::from_str(&model.1).unwrap(),
            &serde_json::from_str(&ev.1).unwrap(),
        );
    }
}
