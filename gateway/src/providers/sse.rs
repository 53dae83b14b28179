//! Turns an upstream SSE byte stream into a [`ChunkStream`]: events are parsed by
//! `eventsource-stream`, translated by a [`Dialect`], and bounded by a per-event timeout. Owns
//! the stream-failure rules (terminator, cut, timeout); what an event means is the dialect's.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use eventsource_stream::{EventStream, EventStreamError, Eventsource};
use futures::{Stream, StreamExt};
use serde_json::Value;
use tokio::time::{Instant, Sleep};

pub use eventsource_stream::Event as SseEvent;

use super::{ChunkStream, Dialect, FailureClass, ProviderError, StreamControl};
use crate::config::DeploymentId;

/// After the terminator the rest of the body (normally just the end of the chunked encoding)
/// is read in the background for at most this long, so the connection goes back to the pool.
const DRAIN_LIMIT: Duration = Duration::from_secs(1);

type ByteStream<E> = Pin<Box<dyn Stream<Item = Result<Bytes, E>> + Send>>;

/// Translates `bytes` (an upstream SSE body whose response head was a 2xx) with `dialect`.
/// The stream ends normally only after the dialect saw the terminator; a transport error, an
/// EOF before it, or an unparsable stream yields one `StreamBroken` error, and no event within
/// `timeout` (measured from the previous event, or from now for the first) yields `Timeout`.
pub fn translate<D, S, E>(
    dialect: D,
    state: D::StreamState,
    bytes: S,
    deployment: DeploymentId,
    timeout: Duration,
) -> ChunkStream
where
    D: Dialect,
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: fmt::Display + Send + 'static,
{
    let bytes: ByteStream<E> = Box::pin(bytes);
    Box::pin(Translated {
        dialect,
        state,
        events: Some(bytes.eventsource()),
        deployment,
        timeout,
        deadline: Box::pin(tokio::time::sleep(timeout)),
        pending: VecDeque::new(),
        finished: false,
    })
}

struct Translated<D: Dialect, E> {
    dialect: D,
    state: D::StreamState,
    events: Option<EventStream<ByteStream<E>>>,
    deployment: DeploymentId,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
    /// Translated chunks not yet yielded (one event can make several).
    pending: VecDeque<Value>,
    finished: bool,
}

impl<D: Dialect, E> Translated<D, E> {
    /// Ends the stream with one error.
    fn fail(
        &mut self,
        class: FailureClass,
        message: impl Into<String>,
    ) -> Poll<Option<Result<Value, ProviderError>>> {
        self.finished = true;
        self.pending.clear();
        self.events = None;
        Poll::Ready(Some(Err(ProviderError::new(
            &self.deployment,
            class,
            message,
        ))))
    }
}

impl<D: Dialect, E> Unpin for Translated<D, E> {}

impl<D, E> Stream for Translated<D, E>
where
    D: Dialect,
    E: fmt::Display + Send + 'static,
{
    type Item = Result<Value, ProviderError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(chunk) = this.pending.pop_front() {
                return Poll::Ready(Some(Ok(chunk)));
            }
            if this.finished {
                return Poll::Ready(None);
            }
            let Some(events) = this.events.as_mut() else {
                return Poll::Ready(None);
            };
            match events.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(event))) => {
                    this.deadline.as_mut().reset(deadline_after(this.timeout));
                    let control = this.dialect.parse_event(
                        &mut this.state,
                        &event,
                        &this.deployment,
                        &mut this.pending,
                    );
                    match control {
                        Ok(StreamControl::Continue) => {}
                        Ok(StreamControl::Done) => {
                            this.finished = true;
                            if let Some(rest) = this.events.take() {
                                drain_in_background(rest);
                            }
                        }
                        Err(e) => {
                            this.finished = true;
                            this.pending.clear();
                            this.events = None;
                            return Poll::Ready(Some(Err(e)));
                        }
                    }
                }
                Poll::Ready(Some(Err(EventStreamError::Transport(e)))) => {
                    let message = format!("upstream connection broke mid-stream: {e}");
                    return this.fail(FailureClass::StreamBroken, message);
                }
                Poll::Ready(Some(Err(_))) => {
                    return this.fail(
                        FailureClass::StreamBroken,
                        "invalid event stream from upstream",
                    );
                }
                Poll::Ready(None) => {
                    return this.fail(
                        FailureClass::StreamBroken,
                        "upstream closed the stream before its terminator",
                    );
                }
                Poll::Pending => {
                    if this.deadline.as_mut().poll(cx).is_ready() {
                        let message = format!("no data from upstream within {:?}", this.timeout);
                        return this.fail(FailureClass::Timeout, message);
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

/// `now + timeout`, saturating: a caller may pass `Duration::MAX` for "no timeout".
fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// Reads what follows the terminator so hyper can reuse the connection; bounded in time.
fn drain_in_background<E: Send + 'static>(mut rest: EventStream<ByteStream<E>>) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            let _ =
                tokio::time::timeout(DRAIN_LIMIT, async { while rest.next().await.is_some() {} })
                    .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use futures::stream;
    use serde_json::json;

    use super::*;
    use crate::providers::tests::chat_request;
    use crate::providers::OpenAi;

    const CHUNK: &str = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":null}]}\n\n";

    fn run<S>(bytes: S, timeout: Duration) -> ChunkStream
    where
        S: Stream<Item = Result<Bytes, String>> + Send + 'static,
    {
        let req = chat_request(json!({"model": "m", "messages": [], "stream": true}));
        translate(
            OpenAi,
            OpenAi.stream_state(&req),
            bytes,
            DeploymentId("dep-1".into()),
            timeout,
        )
    }

    #[tokio::test]
    async fn silence_after_a_chunk_is_a_timeout() {
        let bytes =
            stream::iter([Ok(Bytes::from_static(CHUNK.as_bytes()))]).chain(stream::pending());
        let items: Vec<_> = tokio::time::timeout(
            Duration::from_secs(5),
            run(bytes, Duration::from_millis(50)).collect::<Vec<_>>(),
        )
        .await
        .expect("the stream must end by itself");
        assert_eq!(items.len(), 2);
        assert!(items[0].is_ok());
        let err = items[1].as_ref().unwrap_err();
        assert_eq!(err.class, FailureClass::Timeout);
        assert_eq!(err.deployment.as_str(), "dep-1");
    }

    #[tokio::test]
    async fn unbounded_timeout_does_not_overflow() {
        let body = format!("{CHUNK}{CHUNK}data: [DONE]\n\n");
        let items: Vec<_> = run(stream::iter([Ok(Bytes::from(body))]), Duration::MAX)
            .collect()
            .await;
        assert_eq!(items.len(), 2);
        assert!(items.iter().all(Result::is_ok));
    }

    #[tokio::test]
    async fn transport_error_is_a_broken_stream() {
        let bytes = stream::iter([
            Ok(Bytes::from_static(CHUNK.as_bytes())),
            Err("connection reset by peer".to_string()),
            Ok(Bytes::from_static(CHUNK.as_bytes())),
        ]);
        let items: Vec<_> = run(bytes, Duration::from_secs(5)).collect().await;
        assert_eq!(items.len(), 2, "nothing after the error");
        let err = items[1].as_ref().unwrap_err();
        assert_eq!(err.class, FailureClass::StreamBroken);
        assert!(
            err.message.contains("connection reset by peer"),
            "{}",
            err.message
        );
    }

    #[tokio::test]
    async fn stream_ends_at_the_terminator() {
        let body = format!("{CHUNK}data: [DONE]\n\ndata: {{garbage after the end\n\n");
        let bytes = stream::iter([Ok(Bytes::from(body))]).chain(stream::pending());
        let items: Vec<_> = tokio::time::timeout(
            Duration::from_secs(5),
            run(bytes, Duration::from_secs(60)).collect::<Vec<_>>(),
        )
        .await
        .expect("must end at [DONE] without waiting for EOF");
        assert_eq!(items.len(), 1);
        assert!(items[0].is_ok());
    }

    #[tokio::test]
    async fn empty_body_is_a_broken_stream() {
        let items: Vec<_> = run(
            stream::iter(Vec::<Result<Bytes, String>>::new()),
            Duration::from_secs(5),
        )
        .collect()
        .await;
        assert_eq!(items.len(), 1);
        assert_eq!(
            items[0].as_ref().unwrap_err().class,
            FailureClass::StreamBroken
        );
    }
}
