//! The request journal (a bounded ring buffer of what each request was and
//! how it ended) and the never-dropped counters behind `stats()`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::spec::Dialect;

/// Version of the journal and stats JSON documents.
pub const JOURNAL_SCHEMA_VERSION: u32 = 1;

/// Which API endpoint a request hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// Chat completions (OpenAI/Azure) or messages (Anthropic).
    Chat,
    Embeddings,
    Models,
    /// Unknown route or method.
    Other,
}

/// How a response ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndKind {
    /// A complete 1xx-3xx response (for streams: with the terminator).
    Complete,
    /// A complete response with a 4xx/5xx status.
    ErrorStatus,
    /// TCP reset before any response byte.
    Reset,
    /// Connection closed mid-response (stream cut, `close_after_bytes`).
    Cut,
    /// Stream ended cleanly without `[DONE]` / `message_stop`.
    NoTerminator,
    /// Stream ended with an in-band error event.
    InbandError,
    /// No answer was given (stall).
    Stalled,
    /// The client closed the connection or stopped reading before the
    /// response was complete.
    ClientClosed,
}

impl EndKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            EndKind::Complete => "complete",
            EndKind::ErrorStatus => "error_status",
            EndKind::Reset => "reset",
            EndKind::Cut => "cut",
            EndKind::NoTerminator => "no_terminator",
            EndKind::InbandError => "inband_error",
            EndKind::Stalled => "stalled",
            EndKind::ClientClosed => "client_closed",
        }
    }
}

/// What was sent back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// HTTP status sent (none for reset/stall).
    pub status: Option<u16>,
    /// Response bytes written to the socket (status line, headers, body
    /// and chunk framing).
    pub bytes: u64,
    /// Content chunks sent (OpenAI chunks with content, Anthropic
    /// `content_block_delta` events); 0 for non-streaming responses.
    pub chunks: u32,
    /// How it ended.
    pub end: EndKind,
}

/// One request as the mock saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// Position in this deployment's journal (0-based, in completion order;
    /// stable across eviction, so `?since=` works).
    pub seq: u64,
    /// Arrival time, in milliseconds since the server started.
    pub t_ms: u64,
    /// Arrival time, in microseconds since the server started: orders the calls of one request
    /// across deployments (a fallback call often arrives within the millisecond of the failed
    /// one). 0 in journals from before it existed.
    #[serde(default)]
    pub t_us: u64,
    /// Time from arrival to the end of the response, in milliseconds.
    pub duration_ms: u64,
    pub deployment: String,
    pub dialect: Dialect,
    pub endpoint: Endpoint,
    pub method: String,
    pub path: String,
    /// The model asked for (Azure: the deployment path segment).
    pub model: Option<String>,
    pub stream: bool,
    /// Prompt size estimate: characters of all message text / 4, rounded up.
    pub prompt_tokens: u64,
    /// From the `[drill:rid=...]` marker, if any.
    pub correlation_id: Option<String>,
    /// Id of the fault rule applied, if any.
    pub fault_id: Option<String>,
    /// Why the mock itself refused the request (`auth_missing`,
    /// `auth_invalid`, `bad_request`, `context_window_exceeded`,
    /// `model_not_found`, `not_found`), independent of faults.
    pub rejected: Option<String>,
    pub outcome: Outcome,
}

/// A journal snapshot for one deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalSnapshot {
    pub schema_version: u32,
    pub deployment: String,
    /// Entries evicted from the ring buffer so far.
    pub dropped: u64,
    pub capacity: usize,
    pub entries: Vec<JournalEntry>,
}

#[derive(Debug)]
struct Ring {
    entries: VecDeque<JournalEntry>,
    next_seq: u64,
    dropped: u64,
}

/// Bounded journal of one deployment.
#[derive(Debug)]
pub(crate) struct Journal {
    capacity: usize,
    ring: Mutex<Ring>,
}

impl Journal {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            ring: Mutex::new(Ring {
                entries: VecDeque::with_capacity(capacity.clamp(1, 4096)),
                next_seq: 0,
                dropped: 0,
            }),
        }
    }

    /// Appends an entry (its `seq` is assigned here).
    pub fn push(&self, mut entry: JournalEntry) {
        let mut ring = self.ring.lock();
        entry.seq = ring.next_seq;
        ring.next_seq += 1;
        if ring.entries.len() >= self.capacity {
            ring.entries.pop_front();
            ring.dropped += 1;
        }
        ring.entries.push_back(entry);
    }

    /// Entries with `seq >= since`.
    pub fn snapshot(&self, deployment: &Arc<str>, since: u64) -> JournalSnapshot {
        let ring = self.ring.lock();
        let skip = ring
            .entries
            .front()
            .map_or(0, |first| since.saturating_sub(first.seq) as usize);
        JournalSnapshot {
            schema_version: JOURNAL_SCHEMA_VERSION,
            deployment: deployment.to_string(),
            dropped: ring.dropped,
            capacity: self.capacity,
            entries: ring.entries.iter().skip(skip).cloned().collect(),
        }
    }

    /// Removes and returns every entry (sequence numbers go on where they were): a reader
    /// that drains periodically keeps the journal short, so its cap never drops an entry.
    pub fn take(&self, deployment: &Arc<str>) -> JournalSnapshot {
        let mut ring = self.ring.lock();
        JournalSnapshot {
            schema_version: JOURNAL_SCHEMA_VERSION,
            deployment: deployment.to_string(),
            dropped: ring.dropped,
            capacity: self.capacity,
            entries: std::mem::take(&mut ring.entries).into(),
        }
    }

    pub fn len_and_dropped(&self) -> (usize, u64) {
        let ring = self.ring.lock();
        (ring.entries.len(), ring.dropped)
    }

    pub fn clear(&self) {
        let mut ring = self.ring.lock();
        ring.entries.clear();
        ring.next_seq = 0;
        ring.dropped = 0;
    }
}

/// Counters of one deployment; never dropped (only `reset` clears them).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeploymentStats {
    pub deployment: String,
    pub dialect: Option<Dialect>,
    /// Requests received (control API calls excluded).
    pub requests: u64,
    /// Requests whose response has ended.
    pub completed: u64,
    /// Faults injected, by rule id.
    pub faults_injected: BTreeMap<String, u64>,
    /// Responses by how they ended (`complete`, `error_status`, ...).
    pub outcomes: BTreeMap<String, u64>,
    /// Responses by HTTP status.
    pub statuses: BTreeMap<u16, u64>,
    /// Requests refused by the mock itself, by reason.
    pub rejected: BTreeMap<String, u64>,
    /// Entries currently in the journal.
    pub journal_len: usize,
    /// Entries evicted from the journal.
    pub journal_dropped: u64,
}

#[derive(Debug, Default)]
struct Counters {
    completed: u64,
    faults_injected: BTreeMap<String, u64>,
    outcomes: BTreeMap<EndKind, u64>,
    statuses: BTreeMap<u16, u64>,
    rejected: BTreeMap<String, u64>,
}

/// Live counters.
#[derive(Debug, Default)]
pub(crate) struct StatsRecorder {
    requests: AtomicU64,
    counters: Mutex<Counters>,
}

impl StatsRecorder {
    pub fn request_received(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub fn fault_injected(&self, id: &str) {
        let mut c = self.counters.lock();
        if let Some(n) = c.faults_injected.get_mut(id) {
            *n += 1;
        } else {
            c.faults_injected.insert(id.to_owned(), 1);
        }
    }

    pub fn completed(&self, outcome: &Outcome, rejected: Option<&str>) {
        let mut c = self.counters.lock();
        c.completed += 1;
        *c.outcomes.entry(outcome.end).or_insert(0) += 1;
        if let Some(s) = outcome.status {
            *c.statuses.entry(s).or_insert(0) += 1;
        }
        if let Some(r) = rejected {
            if let Some(n) = c.rejected.get_mut(r) {
                *n += 1;
            } else {
                c.rejected.insert(r.to_owned(), 1);
            }
        }
    }

    pub fn snapshot(
        &self,
        deployment: &str,
        dialect: Dialect,
        journal: &Journal,
    ) -> DeploymentStats {
        let (journal_len, journal_dropped) = journal.len_and_dropped();
        let c = self.counters.lock();
        DeploymentStats {
            deployment: deployment.to_owned(),
            dialect: Some(dialect),
            requests: self.requests.load(Ordering::Relaxed),
            completed: c.completed,
            faults_injected: c.faults_injected.clone(),
            outcomes: c
                .outcomes
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), *v))
                .collect(),
            statuses: c.statuses.clone(),
            rejected: c.rejected.clone(),
            journal_len,
            journal_dropped,
        }
    }

    pub fn clear(&self) {
        self.requests.store(0, Ordering::Relaxed);
        *self.counters.lock() = Counters::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> JournalEntry {
        JournalEntry {
            seq: 0,
            t_ms: 0,
            t_us: 0,
            duration_ms: 0,
            deployment: "d".to_owned(),
            dialect: Dialect::Openai,
            endpoint: Endpoint::Chat,
            method: "POST".into(),
            path: "/v1/chat/completions".into(),
            model: None,
            stream: false,
            prompt_tokens: 1,
            correlation_id: None,
            fault_id: None,
            rejected: None,
            outcome: Outcome {
                status: Some(200),
                bytes: 10,
                chunks: 0,
                end: EndKind::Complete,
            },
        }
    }

    #[test]
    fn ring_buffer_drops_oldest_and_counts() {
        let j = Journal::new(3);
        for _ in 0..5 {
            j.push(entry());
        }
        let id: Arc<str> = Arc::from("d");
        let snap = j.snapshot(&id, 0);
        assert_eq!(snap.dropped, 2);
        assert_eq!(
            snap.entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![2, 3, 4]
        );
        assert_eq!(j.snapshot(&id, 4).entries.len(), 1);
        assert_eq!(j.snapshot(&id, 9).entries.len(), 0);
        j.clear();
        assert_eq!(j.len_and_dropped(), (0, 0));
    }

    #[test]
    fn take_hands_every_entry_over_once_and_a_drained_journal_never_drops() {
        let j = Journal::new(3);
        let id: Arc<str> = Arc::from("d");
        let mut seen = Vec::new();
        for round in 0..4 {
            for _ in 0..3 {
                j.push(entry());
            }
            let t = j.take(&id);
            assert_eq!(t.dropped, 0, "round {round}");
            seen.extend(t.entries.iter().map(|e| e.seq));
            assert_eq!(j.len_and_dropped(), (0, 0));
        }
        assert_eq!(seen, (0..12).collect::<Vec<u64>>());
        assert!(j.take(&id).entries.is_empty());
    }

    #[test]
    fn stats_count_outcomes_and_faults() {
        let s = StatsRecorder::default();
        let j = Journal::new(2);
        s.request_received();
        s.request_received();
        s.fault_injected("outage");
        s.completed(&entry().outcome, None);
        s.completed(
            &Outcome {
                status: None,
                bytes: 0,
                chunks: 0,
                end: EndKind::Reset,
            },
            Some("bad_request"),
        );
        let snap = s.snapshot("d", Dialect::Openai, &j);
        assert_eq!(snap.requests, 2);
        assert_eq!(snap.completed, 2);
        assert_eq!(snap.faults_injected["outage"], 1);
        assert_eq!(snap.outcomes["reset"], 1);
        assert_eq!(snap.statuses[&200], 1);
        assert_eq!(snap.rejected["bad_request"], 1);
    }
}
