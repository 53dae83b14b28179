//! Plain-HTTP (`http://`) upstream calls over HTTP/1.1 connections that the request's own task
//! drives, pooled per host: the transport for OpenAI-compatible servers next to the gateway
//! (vLLM, Ollama, an internal proxy) and for every mock in the tests.
//!
//! Why not hyper-util's pooled client here: it runs each connection in a task of its own and
//! passes every request and response between that task and the caller through channels, so a
//! proxied call costs two extra task wake-ups and a pool lookup under a lock per direction.
//! Here the caller polls the connection itself while it waits, and a finished connection goes
//! back to an idle list. TLS upstreams (which may speak HTTP/2) and streams keep the pooled
//! client.
//!
//! A connection is reused only when it proved idle and open at checkout. A request that a
//! reused connection refused before writing it (the upstream closed the socket meanwhile) is
//! sent again on a fresh connection, so a stale socket never counts as an upstream failure.

use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::{Arc, Weak};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{Builder, Connection, SendRequest};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::client::{Cause, Stage};

type Io = TokioIo<TcpStream>;

/// Why a call failed: where, and the innermost cause.
#[derive(Debug)]
pub(crate) struct H1Error {
    pub stage: Stage,
    pub cause: Cause,
}

impl H1Error {
    fn new(stage: Stage, e: &(dyn std::error::Error + 'static)) -> H1Error {
        H1Error {
            stage,
            cause: Cause::of(e),
        }
    }
}

/// One upstream connection: the request handle and the connection state machine it feeds.
struct Conn {
    sender: SendRequest<Full<Bytes>>,
    conn: Connection<Io, Full<Bytes>>,
    /// The connection has finished (closed by either side, or failed): never polled again.
    done: bool,
}

impl Conn {
    /// Lets the connection read and write what it can; notes when it has finished.
    fn advance(&mut self, cx: &mut std::task::Context<'_>) {
        if !self.done && self.conn.poll_without_shutdown(cx).is_ready() {
            self.done = true;
        }
    }

    /// Polls `fut` to completion while driving the connection. `None` when the connection
    /// finished before `fut` did.
    async fn drive<F: Future>(&mut self, fut: F) -> Option<F::Output> {
        let mut fut = pin!(fut);
        poll_fn(|cx| {
            self.advance(cx);
            match fut.as_mut().poll(cx) {
                Poll::Ready(v) => Poll::Ready(Some(v)),
                Poll::Pending if self.done => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }

    /// Advances the connection without waiting; true when it is open and can take a request.
    async fn usable(&mut self) -> bool {
        poll_fn(|cx| {
            self.advance(cx);
            Poll::Ready(!self.done && matches!(self.sender.poll_ready(cx), Poll::Ready(Ok(()))))
        })
        .await
    }
}

struct Idle {
    conn: Conn,
    since: Instant,
}

/// Closes the connections of `list` (oldest first, as checked in) idle for `timeout` by `now`.
fn drop_expired(list: &mut Vec<Idle>, now: Instant, timeout: Duration) {
    let expired = list
        .iter()
        .take_while(|i| now.duration_since(i.since) >= timeout)
        .count();
    list.drain(..expired);
}

/// Idle connections per `host:port` (hosts come from the config, so the fast hasher).
pub(crate) struct H1Pool {
    idle: Mutex<HashMap<String, Vec<Idle>, foldhash::fast::RandomState>>,
    max_idle_per_host: usize,
    idle_timeout: Duration,
    keepalive: Duration,
    /// Set once the reaper task runs (it needs a runtime, which `new` may not have).
    reaper: std::sync::Once,
}

impl std::fmt::Debug for H1Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H1Pool")
            .field("max_idle_per_host", &self.max_idle_per_host)
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

impl H1Pool {
    pub(crate) fn new(
        max_idle_per_host: usize,
        idle_timeout: Duration,
        keepalive: Duration,
    ) -> Arc<Self> {
        Arc::new(H1Pool {
            idle: Mutex::new(HashMap::default()),
            max_idle_per_host,
            idle_timeout,
            keepalive,
            reaper: std::sync::Once::new(),
        })
    }

    /// POSTs `body` with `headers` to `uri` (scheme `http`) and reads the whole answer.
    pub(crate) async fn post(
        self: &Arc<Self>,
        uri: &http::Uri,
        headers: http::HeaderMap,
        body: Bytes,
    ) -> Result<(http::response::Parts, Bytes), H1Error> {
        let authority = uri.authority().ok_or_else(|| {
            H1Error::new(Stage::Connect, &invalid("the upstream URL has no host"))
        })?;
        let key = authority.as_str();
        let mut request = http::Request::new(Full::new(body));
        *request.method_mut() = http::Method::POST;
        // Origin form on the request line; the host goes in its header.
        *request.uri_mut() = uri
            .path_and_query()
            .map_or_else(|| http::Uri::from_static("/"), |p| p.clone().into());
        *request.headers_mut() = headers;
        if let Ok(host) = http::HeaderValue::from_str(host_header(key)) {
            request.headers_mut().insert(http::header::HOST, host);
        }
        loop {
            let (mut conn, reused) = match self.checkout(key).await {
                Some(c) => (c, true),
                None => (self.connect(uri).await?, false),
            };
            let sent = conn.sender.try_send_request(request);
            let response = match conn.drive(sent).await {
                Some(Ok(r)) => r,
                Some(Err(mut e)) => match e.take_message() {
                    // Refused before a byte was written: the pooled socket had gone stale.
                    Some(again) if reused => {
                        request = again;
                        continue;
                    }
                    _ => return Err(H1Error::new(Stage::BeforeResponse, e.error())),
                },
                None => {
                    return Err(H1Error::new(
                        Stage::BeforeResponse,
                        &invalid("connection closed before a response"),
                    ))
                }
            };
            let (parts, incoming) = response.into_parts();
            let body = match conn.drive(incoming.collect()).await {
                Some(Ok(b)) => b.to_bytes(),
                Some(Err(e)) => return Err(H1Error::new(Stage::Body, &e)),
                None => {
                    return Err(H1Error::new(
                        Stage::Body,
                        &invalid("connection closed before the response ended"),
                    ))
                }
            };
            self.checkin(key, conn).await;
            return Ok((parts, body));
        }
    }

    /// The freshest idle connection to `key` that is still usable; stale ones are dropped.
    async fn checkout(&self, key: &str) -> Option<Conn> {
        loop {
            let idle = {
                let mut map = self.idle.lock();
                map.get_mut(key)?.pop()?
            };
            if idle.since.elapsed() >= self.idle_timeout {
                continue;
            }
            let mut conn = idle.conn;
            if conn.usable().await {
                return Some(conn);
            }
        }
    }

    async fn checkin(self: &Arc<Self>, key: &str, mut conn: Conn) {
        if !conn.usable().await {
            return;
        }
        let now = Instant::now();
        {
            let mut map = self.idle.lock();
            let list = match map.get_mut(key) {
                Some(l) => l,
                None => map.entry(key.to_string()).or_default(),
            };
            drop_expired(list, now, self.idle_timeout);
            if list.len() >= self.max_idle_per_host {
                list.remove(0);
            }
            list.push(Idle { conn, since: now });
        }
        self.reaper.call_once(|| {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(reap(Arc::downgrade(self)));
            }
        });
    }

    async fn connect(&self, uri: &http::Uri) -> Result<Conn, H1Error> {
        let host = uri.host().unwrap_or_default();
        // `[::1]` in a URL is `::1` to the resolver.
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(80);
        let stream = TcpStream::connect((host, port))
            .await
            .map_err(|e| H1Error::new(Stage::Connect, &e))?;
        let _ = stream.set_nodelay(true);
        let _ = socket2::SockRef::from(&stream)
            .set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(self.keepalive));
        let (sender, conn) = Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| H1Error::new(Stage::BeforeResponse, &e))?;
        Ok(Conn {
            sender,
            conn,
            done: false,
        })
    }

    /// Closes idle connections past the idle timeout. Returns how many remain.
    fn prune(&self) -> usize {
        let now = Instant::now();
        let mut map = self.idle.lock();
        map.retain(|_, list| {
            drop_expired(list, now, self.idle_timeout);
            !list.is_empty()
        });
        map.values().map(Vec::len).sum()
    }

    #[cfg(test)]
    fn idle_count(&self) -> usize {
        self.idle.lock().values().map(Vec::len).sum()
    }
}

/// Closes expired idle connections even when no request comes to do it; ends with the pool.
async fn reap(pool: Weak<H1Pool>) {
    let period = match pool.upgrade() {
        Some(p) => (p.idle_timeout / 2).max(Duration::from_millis(100)),
        None => return,
    };
    loop {
        tokio::time::sleep(period).await;
        match pool.upgrade() {
            Some(p) => {
                p.prune();
            }
            None => return,
        }
    }
}

/// A failure hyper or the OS did not name, as an error with that message.
fn invalid(what: &str) -> std::io::Error {
    std::io::Error::other(what.to_string())
}

/// The `Host` header for `authority`: host and port as written, without any `user:password@`
/// (which must never travel in a header; hyper-util's client leaves it out too).
fn host_header(authority: &str) -> &str {
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// An upstream answering every POST with its body reversed; counts the connections it
    /// accepted and closes each after `lifetime` when given.
    async fn upstream(lifetime: Option<Duration>) -> (http::Uri, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        |req: http::Request<hyper::body::Incoming>| async move {
                            let host = req.headers().get("host").cloned();
                            let path = req.uri().to_string();
                            let mut body =
                                req.into_body().collect().await.unwrap().to_bytes().to_vec();
                            body.reverse();
                            let mut resp = http::Response::new(Full::new(Bytes::from(body)));
                            resp.headers_mut()
                                .insert("x-path", http::HeaderValue::from_str(&path).unwrap());
                            if let Some(h) = host {
                                resp.headers_mut().insert("x-host", h);
                            }
                            Ok::<_, Infallible>(resp)
                        },
                    );
                    let serve = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc);
                    match lifetime {
                        Some(t) => {
                            let _ = tokio::time::timeout(t, serve).await;
                        }
                        None => {
                            let _ = serve.await;
                        }
                    }
                });
            }
        });
        let uri = format!("http://{addr}/v1/chat/completions?x=1")
            .parse()
            .unwrap();
        (uri, accepted)
    }

    fn pool(idle_timeout: Duration) -> Arc<H1Pool> {
        H1Pool::new(4, idle_timeout, Duration::from_secs(30))
    }

    async fn post(pool: &Arc<H1Pool>, uri: &http::Uri, body: &'static str) -> String {
        let (parts, body) = pool
            .post(
                uri,
                http::HeaderMap::new(),
                Bytes::from_static(body.as_bytes()),
            )
            .await
            .expect("call");
        assert_eq!(parts.status, 200);
        assert_eq!(parts.headers["x-path"], "/v1/chat/completions?x=1");
        assert_eq!(
            parts.headers["x-host"],
            uri.authority().unwrap().as_str(),
            "the host header names the upstream"
        );
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn userinfo_in_the_url_stays_out_of_the_host_header() {
        let (uri, _) = upstream(None).await;
        let authority = uri.authority().unwrap().as_str().to_string();
        let with_user: http::Uri = format!("http://user:s3cret@{authority}/v1/chat/completions")
            .parse()
            .unwrap();
        let (parts, _) = pool(Duration::from_secs(50))
            .post(
                &with_user,
                http::HeaderMap::new(),
                Bytes::from_static(b"{}"),
            )
            .await
            .expect("call");
        assert_eq!(parts.status, 200);
        assert_eq!(parts.headers["x-host"], authority.as_str());
        assert_eq!(host_header("[::1]:8000"), "[::1]:8000");
        assert_eq!(host_header("a:b@c@host"), "host");
    }

    #[tokio::test]
    async fn sequential_calls_share_one_connection() {
        let (uri, accepted) = upstream(None).await;
        let pool = pool(Duration::from_secs(50));
        for body in ["abc", "hello", "xyz"] {
            let answer = post(&pool, &uri, body).await;
            assert_eq!(answer, body.chars().rev().collect::<String>());
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(pool.idle_count(), 1);
    }

    #[tokio::test]
    async fn concurrent_calls_open_connections_and_keep_at_most_the_idle_limit() {
        let (uri, accepted) = upstream(None).await;
        let pool = pool(Duration::from_secs(50));
        let calls = (0..8).map(|_| post(&pool, &uri, "ab"));
        let answers = futures::future::join_all(calls).await;
        assert!(answers.iter().all(|a| a == "ba"));
        assert_eq!(accepted.load(Ordering::SeqCst), 8);
        assert_eq!(pool.idle_count(), 4, "max_idle_per_host is 4");
        // Reuse: the next calls take idle connections instead of opening new ones.
        post(&pool, &uri, "cd").await;
        assert_eq!(accepted.load(Ordering::SeqCst), 8);
    }

    #[tokio::test]
    async fn a_connection_the_upstream_closed_while_idle_is_replaced_without_a_failure() {
        let (uri, accepted) = upstream(Some(Duration::from_millis(50))).await;
        let pool = pool(Duration::from_secs(50));
        assert_eq!(post(&pool, &uri, "one").await, "eno");
        // The upstream drops the idle socket; the pool finds out at checkout.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(post(&pool, &uri, "two").await, "owt");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn idle_connections_expire() {
        let (uri, accepted) = upstream(None).await;
        let pool = pool(Duration::from_secs(50));
        post(&pool, &uri, "a").await;
        assert_eq!(pool.idle_count(), 1);
        tokio::time::pause();
        tokio::time::advance(Duration::from_secs(51)).await;
        assert_eq!(pool.prune(), 0, "expired connections are closed");
        tokio::time::resume();
        post(&pool, &uri, "b").await;
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_upstream_that_refuses_connections_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let uri: http::Uri = format!("http://{addr}/v1").parse().unwrap();
        let err = pool(Duration::from_secs(50))
            .post(&uri, http::HeaderMap::new(), Bytes::new())
            .await
            .unwrap_err();
        assert_eq!(err.stage, Stage::Connect, "{err:?}");
    }
}
