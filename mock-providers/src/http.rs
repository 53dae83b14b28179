//! A small HTTP/1.1 server connection: reads requests (keep-alive,
//! pipelining, `Content-Length` and chunked bodies, `Expect: 100-continue`)
//! and writes exactly the bytes a reply plan asks for, including the broken
//! ones (reset, cut mid-body, missing terminators). Owns no API semantics:
//! the dialects build the plans.
//!
//! A hand-written server rather than hyper because the faults need control
//! of every byte and of how the TCP connection ends.

use std::cell::RefCell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::journal::{EndKind, Outcome};

/// Largest request head (request line and headers) accepted.
pub(crate) const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Largest request body accepted.
pub(crate) const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// A parsed request.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Header names are lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub keep_alive: bool,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A query parameter (no percent-decoding: the mock only reads simple
    /// values such as `api-version` and `since`).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query.as_deref()?.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then_some(v)
        })
    }
}

/// Why no request could be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The peer closed the connection between requests.
    Closed,
    /// Unparseable request; answer 400 and close.
    Malformed(&'static str),
    /// Head or body over the limits; answer with this status and close.
    TooLarge(u16),
    /// Transport error mid-request.
    Io,
}

/// What to send for one request.
#[derive(Debug)]
pub(crate) enum Action {
    Respond(Reply),
    /// RST before any response byte.
    Reset,
    /// Never answer; close after the duration if given.
    Stall(Option<Duration>),
}

/// A response plan.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    /// Extra headers; `date`, `content-length`/`transfer-encoding` and
    /// `connection` are added by the writer.
    pub headers: Vec<(&'static str, String)>,
    pub body: ReplyBody,
    /// Wait before the first byte.
    pub delay: Duration,
    /// Close the connection after this many response bytes.
    pub close_after_bytes: Option<u64>,
    /// Close the connection after this response.
    pub close: bool,
}

#[derive(Debug)]
pub(crate) enum ReplyBody {
    Full(Vec<u8>),
    Stream(StreamPlan),
}

impl Reply {
    /// A complete JSON response.
    pub fn json(status: u16, headers: Vec<(&'static str, String)>, body: Vec<u8>) -> Self {
        let mut headers = headers;
        headers.insert(0, ("content-type", "application/json".to_owned()));
        Self {
            status,
            headers,
            body: ReplyBody::Full(body),
            delay: Duration::ZERO,
            close_after_bytes: None,
            close: false,
        }
    }
}

/// A server-sent-event stream, one event per HTTP chunk.
#[derive(Debug, Default)]
pub(crate) struct StreamPlan {
    /// Events sent right after the headers (not counted as chunks).
    pub preamble: Vec<Vec<u8>>,
    /// Content events (counted), each preceded by its delay.
    pub content: Vec<Vec<u8>>,
    /// Delay before `content[i]` (`delays[0]` is the time to first token).
    pub delays: Vec<Duration>,
    /// Events after the content, before the terminator (finish, usage).
    pub epilogue: Vec<Vec<u8>>,
    /// The protocol terminator (`data: [DONE]` / `message_stop`).
    pub terminator: Vec<u8>,
    pub end: StreamEnd,
}

/// How a stream ends.
#[derive(Debug, Default)]
pub(crate) enum StreamEnd {
    #[default]
    Complete,
    /// After `after` content chunks, this error event, then a clean end.
    Inband { after: usize, event: Vec<u8> },
    /// After `after` content chunks, close the socket mid-body.
    Cut { after: usize },
    /// After `after` content chunks (all of them: plus the epilogue), a
    /// clean end of the body without the terminator.
    NoTerminator { after: usize },
}

/// Standard reason phrases (529 is Anthropic's, not IANA's).
fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        529 => "Site Overloaded",
        _ => "Unknown",
    }
}

thread_local! {
    static DATE_CACHE: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
}

/// The current `date` header value (cached per second per thread).
fn http_date_now() -> String {
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE_CACHE.with(|cell| {
        let mut cache = cell.borrow_mut();
        if cache.0 != secs || cache.1.is_empty() {
            *cache = (secs, httpdate::fmt_http_date(now));
        }
        cache.1.clone()
    })
}

fn encode_head(
    out: &mut Vec<u8>,
    status: u16,
    headers: &[(&'static str, String)],
    content_length: Option<usize>,
    close: bool,
) {
    // Plain appends instead of `write!`: this runs for every response.
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\ndate: ");
    out.extend_from_slice(http_date_now().as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match content_length {
        Some(n) => {
            out.extend_from_slice(b"content-length: ");
            push_decimal(out, n as u64);
            out.extend_from_slice(b"\r\n");
        }
        None => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(if close {
        b"connection: close\r\n\r\n"
    } else {
        b"connection: keep-alive\r\n\r\n"
    });
}

/// Appends `n` in `radix` (10 or 16, lower-case) without going through `fmt`.
fn push_radix(out: &mut Vec<u8>, mut n: u64, radix: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = DIGITS[(n % radix) as usize];
        n /= radix;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

fn push_decimal(out: &mut Vec<u8>, n: u64) {
    push_radix(out, n, 10);
}

fn frame_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return; // an empty chunk would end the body
    }
    push_radix(out, data.len() as u64, 16);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Why writing stopped early.
enum WriteStop {
    /// The `close_after_bytes` budget is spent.
    Budget,
    /// The peer is gone.
    Io,
}

/// How the connection continues after a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum After {
    KeepAlive,
    Close,
    /// Close abortively (RST).
    Reset,
}

/// One client connection.
pub(crate) struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    written: u64,
    budget: Option<u64>,
}

impl Conn {
    pub fn new(stream: TcpStream) -> Self {
        // Latency faults time individual chunks; Nagle would merge them.
        let _ = stream.set_nodelay(true);
        Self {
            stream,
            buf: BytesMut::with_capacity(8 * 1024),
            written: 0,
            budget: None,
        }
    }

    async fn fill(&mut self) -> Result<usize, ReadError> {
        self.buf.reserve(8 * 1024);
        match self.stream.read_buf(&mut self.buf).await {
            Ok(n) => Ok(n),
            Err(_) => Err(ReadError::Io),
        }
    }

    /// Reads the next request; `Ok(None)` never happens: a clean close
    /// between requests is `Err(Closed)`.
    pub async fn read_request(&mut self) -> Result<Request, ReadError> {
        // Head.
        let mut scanned = 0;
        let head_end = loop {
            if let Some(pos) = find(&self.buf[scanned..], b"\r\n\r\n") {
                break scanned + pos + 4;
            }
            scanned = self.buf.len().saturating_sub(3);
            if self.buf.len() > MAX_HEAD_BYTES {
                return Err(ReadError::TooLarge(431));
            }
            if self.fill().await? == 0 {
                return Err(if self.buf.iter().all(|b| b.is_ascii_whitespace()) {
                    ReadError::Closed
                } else {
                    ReadError::Io
                });
            }
        };
        if head_end > MAX_HEAD_BYTES {
            return Err(ReadError::TooLarge(431));
        }
        let head_bytes = self.buf.split_to(head_end);
        let head = std::str::from_utf8(&head_bytes)
            .map_err(|_| ReadError::Malformed("request head is not UTF-8"))?;
        // Tolerate stray CRLFs between pipelined requests (RFC 9112 §2.2).
        let head = head.trim_start_matches("\r\n");
        let mut lines = head.split("\r\n");
        let request_line = lines.next().ok_or(ReadError::Malformed("empty request"))?;
        let mut parts = request_line.split(' ');
        let (Some(method), Some(target), Some(version), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(ReadError::Malformed("malformed request line"));
        };
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(ReadError::Malformed("malformed method"));
        }
        let http10 = match version {
            "HTTP/1.1" => false,
            "HTTP/1.0" => true,
            _ => return Err(ReadError::Malformed("unsupported HTTP version")),
        };
        if !target.starts_with('/') {
            return Err(ReadError::Malformed(
                "request target must be an absolute path",
            ));
        }
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
            None => (target.to_owned(), None),
        };
        let mut headers = Vec::with_capacity(12);
        for line in lines {
            if line.is_empty() {
                continue;
            }
            let (name, value) = line
                .split_once(':')
                .ok_or(ReadError::Malformed("malformed header line"))?;
            if name.is_empty() || name.bytes().any(|b| b.is_ascii_whitespace()) {
                return Err(ReadError::Malformed("malformed header name"));
            }
            headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
        }
        let get = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
        };
        let connection = get("connection").map(str::to_ascii_lowercase);
        let keep_alive = match connection.as_deref() {
            Some(c) if c.contains("close") => false,
            Some(c) if c.contains("keep-alive") => true,
            _ => !http10,
        };
        let chunked = get("transfer-encoding")
            .map(|te| te.to_ascii_lowercase().contains("chunked"))
            .unwrap_or(false);
        let content_length = match get("content-length") {
            Some(v) => Some(
                v.parse::<usize>()
                    .map_err(|_| ReadError::Malformed("invalid content-length"))?,
            ),
            None => None,
        };
        if chunked && content_length.is_some() {
            return Err(ReadError::Malformed(
                "both content-length and transfer-encoding given",
            ));
        }
        let expects_continue = get("expect")
            .map(|e| e.eq_ignore_ascii_case("100-continue"))
            .unwrap_or(false);

        let body = if chunked {
            if expects_continue && self.buf.is_empty() {
                self.send_continue().await?;
            }
            self.read_chunked_body().await?
        } else if let Some(len) = content_length {
            if len > MAX_BODY_BYTES {
                return Err(ReadError::TooLarge(413));
            }
            if expects_continue && len > 0 && self.buf.len() < len {
                self.send_continue().await?;
            }
            while self.buf.len() < len {
                if self.fill().await? == 0 {
                    return Err(ReadError::Io);
                }
            }
            self.buf.split_to(len).to_vec()
        } else {
            Vec::new()
        };
        Ok(Request {
            method: method.to_owned(),
            path,
            query,
            headers,
            body,
            keep_alive,
        })
    }

    async fn send_continue(&mut self) -> Result<(), ReadError> {
        self.stream
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .map_err(|_| ReadError::Io)
    }

    async fn read_line(&mut self) -> Result<String, ReadError> {
        loop {
            if let Some(pos) = find(&self.buf, b"\r\n") {
                let line = self.buf.split_to(pos + 2);
                return std::str::from_utf8(&line[..pos])
                    .map(str::to_owned)
                    .map_err(|_| ReadError::Malformed("chunk line is not UTF-8"));
            }
            if self.buf.len() > MAX_HEAD_BYTES {
                return Err(ReadError::Malformed("chunk line too long"));
            }
            if self.fill().await? == 0 {
                return Err(ReadError::Io);
            }
        }
    }

    async fn read_chunked_body(&mut self) -> Result<Vec<u8>, ReadError> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line().await?;
            let size_text = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| ReadError::Malformed("invalid chunk size"))?;
            if size == 0 {
                // Trailers until the empty line.
                while !self.read_line().await?.is_empty() {}
                return Ok(body);
            }
            if body.len() + size > MAX_BODY_BYTES {
                return Err(ReadError::TooLarge(413));
            }
            while self.buf.len() < size + 2 {
                if self.fill().await? == 0 {
                    return Err(ReadError::Io);
                }
            }
            body.extend_from_slice(&self.buf[..size]);
            if &self.buf[size..size + 2] != b"\r\n" {
                return Err(ReadError::Malformed("chunk not followed by CRLF"));
            }
            self.buf.advance(size + 2);
        }
    }

    /// Waits `d` while watching the peer; `Err` if it closed the connection.
    /// Bytes that arrive meanwhile (pipelined requests) are kept.
    async fn wait(&mut self, d: Option<Duration>) -> Result<(), ()> {
        if d == Some(Duration::ZERO) {
            return Ok(());
        }
        let sleep = async {
            match d {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending::<()>().await,
            }
        };
        tokio::pin!(sleep);
        loop {
            if self.buf.len() > MAX_HEAD_BYTES + MAX_BODY_BYTES {
                sleep.as_mut().await;
                return Ok(());
            }
            self.buf.reserve(4096);
            tokio::select! {
                () = &mut sleep => return Ok(()),
                r = self.stream.read_buf(&mut self.buf) => match r {
                    Ok(0) | Err(_) => return Err(()),
                    Ok(_) => {}
                },
            }
        }
    }

    async fn write_out(&mut self, data: &[u8]) -> Result<(), WriteStop> {
        let allowed = match self.budget {
            Some(budget) => {
                let left = budget.saturating_sub(self.written);
                data.len().min(usize::try_from(left).unwrap_or(usize::MAX))
            }
            None => data.len(),
        };
        if allowed > 0 {
            self.stream
                .write_all(&data[..allowed])
                .await
                .map_err(|_| WriteStop::Io)?;
            self.written += allowed as u64;
        }
        if allowed < data.len() {
            Err(WriteStop::Budget)
        } else {
            Ok(())
        }
    }

    /// Sends a plain response for a request that could not be read.
    pub async fn send_simple(&mut self, status: u16, content_type: &'static str, body: &[u8]) {
        let mut out = Vec::with_capacity(256 + body.len());
        encode_head(
            &mut out,
            status,
            &[("content-type", content_type.to_owned())],
            Some(body.len()),
            true,
        );
        out.extend_from_slice(body);
        let _ = self.stream.write_all(&out).await;
    }

    /// Performs `action`; returns what happened and how the connection goes on.
    pub async fn execute(&mut self, action: Action, keep_alive: bool) -> (Outcome, After) {
        self.written = 0;
        self.budget = None;
        match action {
            Action::Reset => {
                let _ = self.stream.set_zero_linger();
                (
                    Outcome {
                        status: None,
                        bytes: 0,
                        chunks: 0,
                        end: EndKind::Reset,
                    },
                    After::Reset,
                )
            }
            Action::Stall(d) => {
                // Either way the request is never answered: close afterwards.
                let _ = self.wait(d).await;
                (
                    Outcome {
                        status: None,
                        bytes: 0,
                        chunks: 0,
                        end: EndKind::Stalled,
                    },
                    After::Close,
                )
            }
            Action::Respond(reply) => self.respond(reply, keep_alive).await,
        }
    }

    async fn respond(&mut self, reply: Reply, keep_alive: bool) -> (Outcome, After) {
        let close = reply.close || !keep_alive || reply.close_after_bytes.is_some();
        let after = if close {
            After::Close
        } else {
            After::KeepAlive
        };
        let status = reply.status;
        let not_sent = |end| {
            (
                Outcome {
                    status: None,
                    bytes: 0,
                    chunks: 0,
                    end,
                },
                After::Close,
            )
        };
        if self.wait(Some(reply.delay)).await.is_err() {
            return not_sent(EndKind::ClientClosed);
        }
        self.budget = reply.close_after_bytes;
        match reply.body {
            ReplyBody::Full(body) => {
                let mut out = Vec::with_capacity(320 + reply.headers.len() * 40 + body.len());
                encode_head(&mut out, status, &reply.headers, Some(body.len()), close);
                out.extend_from_slice(&body);
                let end = match self.write_out(&out).await {
                    Ok(()) if status >= 400 => EndKind::ErrorStatus,
                    Ok(()) => EndKind::Complete,
                    Err(WriteStop::Budget) => EndKind::Cut,
                    Err(WriteStop::Io) => EndKind::ClientClosed,
                };
                let after = if end == EndKind::Complete || end == EndKind::ErrorStatus {
                    after
                } else {
                    After::Close
                };
                (
                    Outcome {
                        status: Some(status),
                        bytes: self.written,
                        chunks: 0,
                        end,
                    },
                    after,
                )
            }
            ReplyBody::Stream(plan) => {
                let mut chunks = 0u32;
                let result = self
                    .stream_body(status, &reply.headers, plan, close, &mut chunks)
                    .await;
                let (end, after) = match result {
                    Ok(StreamDone::Complete) => (EndKind::Complete, after),
                    Ok(StreamDone::Inband) => (EndKind::InbandError, after),
                    Ok(StreamDone::NoTerminator) => (EndKind::NoTerminator, After::Close),
                    Ok(StreamDone::Cut) | Err(WriteStop::Budget) => (EndKind::Cut, After::Close),
                    Err(WriteStop::Io) => (EndKind::ClientClosed, After::Close),
                };
                (
                    Outcome {
                        status: Some(status),
                        bytes: self.written,
                        chunks,
                        end,
                    },
                    after,
                )
            }
        }
    }

    async fn stream_body(
        &mut self,
        status: u16,
        headers: &[(&'static str, String)],
        plan: StreamPlan,
        close: bool,
        chunks: &mut u32,
    ) -> Result<StreamDone, WriteStop> {
        let mut out = Vec::with_capacity(4096);
        encode_head(&mut out, status, headers, None, close);
        for ev in &plan.preamble {
            frame_chunk(&mut out, ev);
        }
        let sent_content = match &plan.end {
            StreamEnd::Complete => plan.content.len(),
            StreamEnd::Inband { after, .. }
            | StreamEnd::Cut { after }
            | StreamEnd::NoTerminator { after } => (*after).min(plan.content.len()),
        };
        for (i, ev) in plan.content.iter().take(sent_content).enumerate() {
            let delay = plan.delays.get(i).copied().unwrap_or_default();
            if !delay.is_zero() {
                self.write_out(&out).await?;
                out.clear();
                self.wait(Some(delay)).await.map_err(|()| WriteStop::Io)?;
            }
            frame_chunk(&mut out, ev);
            *chunks += 1;
        }
        let done = match plan.end {
            StreamEnd::Complete => {
                for ev in &plan.epilogue {
                    frame_chunk(&mut out, ev);
                }
                frame_chunk(&mut out, &plan.terminator);
                out.extend_from_slice(LAST_CHUNK);
                StreamDone::Complete
            }
            StreamEnd::Inband { event, .. } => {
                frame_chunk(&mut out, &event);
                out.extend_from_slice(LAST_CHUNK);
                StreamDone::Inband
            }
            StreamEnd::NoTerminator { after } => {
                if after >= plan.content.len() {
                    for ev in &plan.epilogue {
                        frame_chunk(&mut out, ev);
                    }
                }
                out.extend_from_slice(LAST_CHUNK);
                StreamDone::NoTerminator
            }
            StreamEnd::Cut { .. } => {
                self.write_out(&out).await?;
                let _ = self.stream.shutdown().await;
                return Ok(StreamDone::Cut);
            }
        };
        self.write_out(&out).await?;
        Ok(done)
    }

    /// Ends the connection: gracefully (FIN) or, after a reset action, with RST.
    pub async fn finish(mut self, after: After) {
        match after {
            After::Reset => drop(self.stream),
            _ => {
                let _ = self.stream.shutdown().await;
            }
        }
    }
}

enum StreamDone {
    Complete,
    Inband,
    NoTerminator,
    Cut,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_encoding_has_framing_headers() {
        let mut out = Vec::new();
        encode_head(&mut out, 529, &[("x-a", "1".into())], Some(3), true);
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("HTTP/1.1 529 Site Overloaded\r\ndate: "));
        assert!(s.contains("\r\nx-a: 1\r\ncontent-length: 3\r\nconnection: close\r\n\r\n"));
        let mut out = Vec::new();
        encode_head(&mut out, 200, &[], None, false);
        let s = String::from_utf8(out).unwrap();
        assert!(s.ends_with("transfer-encoding: chunked\r\nconnection: keep-alive\r\n\r\n"));
    }

    #[test]
    fn number_formatting_matches_fmt() {
        for n in [0u64, 7, 10, 26, 529, 65_536, u64::MAX] {
            let mut dec = Vec::new();
            push_decimal(&mut dec, n);
            assert_eq!(dec, n.to_string().into_bytes());
            let mut hex = Vec::new();
            push_radix(&mut hex, n, 16);
            assert_eq!(hex, format!("{n:x}").into_bytes());
        }
    }

    #[test]
    fn chunks_are_framed_in_hex() {
        let mut out = Vec::new();
        frame_chunk(&mut out, &[b'x'; 26]);
        frame_chunk(&mut out, b"");
        assert_eq!(&out[..4], b"1a\r\n");
        assert_eq!(out.len(), 4 + 26 + 2);
    }

    #[test]
    fn query_params_are_found() {
        let r = Request {
            method: "POST".into(),
            path: "/x".into(),
            query: Some("a=1&api-version=2024-10-21&flag".into()),
            headers: vec![],
            body: vec![],
            keep_alive: true,
        };
        assert_eq!(r.query_param("api-version"), Some("2024-10-21"));
        assert_eq!(r.query_param("flag"), Some(""));
        assert_eq!(r.query_param("b"), None);
    }
}
