//! `MockServer`: starts every deployment on its own loopback listener,
//! runs the accept and connection tasks, and is the library handle for
//! faults, journal, stats and shutdown.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::control::{self, CONTROL_PREFIX};
use crate::deployment::Deployment;
use crate::faults::{normalize_ids, FaultRule};
use crate::http::{Action, After, Conn, ReadError};
use crate::journal::{DeploymentStats, JournalEntry, JournalSnapshot, Outcome};
use crate::spec::{Dialect, MockSpec, SpecError};

/// Errors of the library API.
#[derive(Debug, thiserror::Error)]
pub enum MockError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("cannot listen for deployment {id:?} on 127.0.0.1:{port}: {source}")]
    Bind {
        id: String,
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("unknown deployment {id:?}\nknown deployments: {known}")]
    UnknownDeployment { id: String, known: String },
    #[error("invalid fault rules for deployment {id:?}, nothing applied:\n  {}", problems.join("\n  "))]
    InvalidFaults { id: String, problems: Vec<String> },
}

/// Counters of every deployment, by deployment id.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    pub deployments: BTreeMap<String, DeploymentStats>,
}

impl Stats {
    pub fn deployment(&self, id: &str) -> Option<&DeploymentStats> {
        self.deployments.get(id)
    }

    /// Injections of fault `fault_id` on deployment `id` (0 if none).
    pub fn injected(&self, id: &str, fault_id: &str) -> u64 {
        self.deployment(id)
            .and_then(|d| d.faults_injected.get(fault_id).copied())
            .unwrap_or(0)
    }
}

struct Served {
    deployment: Arc<Deployment>,
    addr: SocketAddr,
}

/// Running mock deployments. Dropping the handle stops them; prefer
/// [`MockServer::shutdown`], which also waits for every task to end.
pub struct MockServer {
    served: Vec<Served>,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl std::fmt::Debug for MockServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.served.iter().map(|s| (&*s.deployment.id, s.addr)))
            .finish()
    }
}

impl MockServer {
    /// Validates `spec` and serves each deployment on its own listener on
    /// `127.0.0.1` (port `0`, the default, picks a free port).
    pub async fn start(spec: MockSpec) -> Result<Self, MockError> {
        Self::start_with_listeners(spec, Vec::new()).await
    }

    /// Like [`start`](Self::start), but deployments named in `listeners`
    /// use the given pre-bound listener (so a caller can learn the address
    /// before the spec is final). Other deployments bind their own.
    pub async fn start_with_listeners(
        spec: MockSpec,
        listeners: Vec<(String, std::net::TcpListener)>,
    ) -> Result<Self, MockError> {
        spec.validate()?;
        let mut given: BTreeMap<String, std::net::TcpListener> = listeners.into_iter().collect();
        let started = Instant::now();
        let mut bound = Vec::with_capacity(spec.deployments.len());
        for d in &spec.deployments {
            let listener = match given.remove(&d.id) {
                Some(std_listener) => std_listener
                    .set_nonblocking(true)
                    .and_then(|()| TcpListener::from_std(std_listener)),
                None => TcpListener::bind(("127.0.0.1", d.port)).await,
            }
            .map_err(|source| MockError::Bind {
                id: d.id.clone(),
                port: d.port,
                source,
            })?;
            let addr = listener.local_addr().map_err(|source| MockError::Bind {
                id: d.id.clone(),
                port: d.port,
                source,
            })?;
            bound.push((d.clone(), listener, addr));
        }
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let mut served = Vec::with_capacity(bound.len());
        for (d, listener, addr) in bound {
            let deployment = Arc::new(Deployment::new(
                d,
                spec.seed,
                spec.journal_capacity,
                started,
            ));
            tracker.spawn(accept_loop(
                listener,
                deployment.clone(),
                cancel.clone(),
                tracker.clone(),
            ));
            served.push(Served { deployment, addr });
        }
        Ok(Self {
            served,
            cancel,
            tracker,
        })
    }

    fn find(&self, id: &str) -> Result<&Served, MockError> {
        self.served
            .iter()
            .find(|s| &*s.deployment.id == id)
            .ok_or_else(|| MockError::UnknownDeployment {
                id: id.to_owned(),
                known: self.deployment_ids().join(", "),
            })
    }

    /// Deployment ids, in spec order.
    pub fn deployment_ids(&self) -> Vec<String> {
        self.served
            .iter()
            .map(|s| s.deployment.id.to_string())
            .collect()
    }

    /// The socket address of a deployment.
    pub fn addr(&self, id: &str) -> Option<SocketAddr> {
        self.find(id).ok().map(|s| s.addr)
    }

    /// `http://127.0.0.1:PORT` of a deployment, or the unknown-id error.
    pub fn try_base_url(&self, id: &str) -> Result<String, MockError> {
        self.find(id).map(|s| format!("http://{}", s.addr))
    }

    /// `http://127.0.0.1:PORT` of a deployment. A gateway's `api_base` is
    /// this plus `/v1` for OpenAI and this as is for Azure and Anthropic
    /// (see [`api_base`](Self::api_base)).
    ///
    /// # Panics
    /// If `id` is not a deployment of this server (a programming error; use
    /// [`try_base_url`](Self::try_base_url) to handle it).
    pub fn base_url(&self, id: &str) -> String {
        match self.try_base_url(id) {
            Ok(url) => url,
            Err(e) => panic!("{e}"),
        }
    }

    /// The `api_base` a gateway should use for a deployment:
    /// [`base_url`](Self::base_url) plus the dialect's prefix.
    ///
    /// # Panics
    /// If `id` is not a deployment of this server.
    pub fn api_base(&self, id: &str) -> String {
        match self.find(id) {
            Ok(s) => format!(
                "http://{}{}",
                s.addr,
                s.deployment.dialect().api_base_suffix()
            ),
            Err(e) => panic!("{e}"),
        }
    }

    /// The dialect of a deployment.
    pub fn dialect(&self, id: &str) -> Option<Dialect> {
        self.find(id).ok().map(|s| s.deployment.dialect())
    }

    /// Replaces a deployment's faults atomically: requests planned after
    /// this returns see the new rules (with fresh selection counters).
    /// Invalid rules change nothing.
    pub fn set_faults(&self, id: &str, mut rules: Vec<FaultRule>) -> Result<(), MockError> {
        let served = self.find(id)?;
        normalize_ids(&mut rules);
        served
            .deployment
            .set_faults(rules)
            .map_err(|problems| MockError::InvalidFaults {
                id: id.to_owned(),
                problems: problems.into_iter().map(|p| format!("faults{p}")).collect(),
            })
    }

    /// Removes every fault of a deployment.
    pub fn clear_faults(&self, id: &str) -> Result<(), MockError> {
        self.set_faults(id, Vec::new())
    }

    /// The active rules of a deployment (ids filled in).
    pub fn faults(&self, id: &str) -> Result<Vec<FaultRule>, MockError> {
        Ok(self.find(id)?.deployment.faults())
    }

    /// Every deployment's journal entries, ordered by arrival time
    /// (`t_us`), then deployment, then `seq`.
    pub fn journal(&self) -> Vec<JournalEntry> {
        let mut all: Vec<JournalEntry> = self
            .served
            .iter()
            .flat_map(|s| s.deployment.journal(0).entries)
            .collect();
        all.sort_by(|a, b| (a.t_us, &a.deployment, a.seq).cmp(&(b.t_us, &b.deployment, b.seq)));
        all
    }

    /// One deployment's journal from `seq` `since` on, with its drop count.
    pub fn journal_of(&self, id: &str, since: u64) -> Result<JournalSnapshot, MockError> {
        Ok(self.find(id)?.deployment.journal(since))
    }

    /// Removes and returns deployment `id`'s journal entries (take, not copy): for readers
    /// that drain periodically so a long run never reaches the journal's cap.
    pub fn take_journal(&self, id: &str) -> Result<JournalSnapshot, MockError> {
        Ok(self.find(id)?.deployment.take_journal())
    }

    /// Waits until deployment `id` has recorded at least `n` journal
    /// entries since start or the last reset, for at most `within`.
    /// Returns whether that happened (false on timeout or unknown id): the
    /// readiness signal for tests and drills, no polling needed.
    pub async fn wait_for_completed(&self, id: &str, n: u64, within: Duration) -> bool {
        let Ok(served) = self.find(id) else {
            return false;
        };
        tokio::time::timeout(within, served.deployment.wait_completed(n))
            .await
            .is_ok()
    }

    /// Counters of every deployment.
    pub fn stats(&self) -> Stats {
        Stats {
            deployments: self
                .served
                .iter()
                .map(|s| (s.deployment.id.to_string(), s.deployment.stats()))
                .collect(),
        }
    }

    /// Clears every deployment's faults, journal and counters.
    pub fn reset(&self) {
        for s in &self.served {
            s.deployment.reset();
        }
    }

    /// Stops accepting, ends every connection (in-flight responses are cut
    /// and not journaled) and waits for all tasks to finish.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn accept_loop(
    listener: TcpListener,
    deployment: Arc<Deployment>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, _)) => {
                let cancel = cancel.clone();
                let deployment = deployment.clone();
                tracker.spawn(async move {
                    tokio::select! {
                        biased;
                        () = cancel.cancelled() => {}
                        () = serve_connection(deployment, stream) => {}
                    }
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(deployment = %deployment.id, error = %e, "accept failed");
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
            }
        }
    }
}

async fn serve_connection(deployment: Arc<Deployment>, stream: TcpStream) {
    let mut conn = Conn::new(stream);
    loop {
        let req = match conn.read_request().await {
            Ok(req) => req,
            Err(ReadError::Closed | ReadError::Io) => return,
            Err(ReadError::Malformed(why)) => {
                let draft = deployment.unreadable(400);
                let body = format!("{{\"error\":{{\"message\":\"malformed HTTP request: {why}\",\"type\":\"invalid_request_error\"}}}}");
                conn.send_simple(400, "application/json", body.as_bytes())
                    .await;
                deployment.finish(draft, unreadable_outcome(400));
                return;
            }
            Err(ReadError::TooLarge(status)) => {
                let draft = deployment.unreadable(status);
                let body = format!(
                    "{{\"error\":{{\"message\":\"request too large\",\"type\":\"invalid_request_error\",\"status\":{status}}}}}"
                );
                conn.send_simple(status, "application/json", body.as_bytes())
                    .await;
                deployment.finish(draft, unreadable_outcome(status));
                return;
            }
        };
        // A HEAD answer carries our usual body; closing afterwards keeps a
        // client that (rightly) skips it from reading it as the next response.
        let keep_alive = req.keep_alive && req.method != "HEAD";
        let after = if req.path.starts_with(CONTROL_PREFIX) {
            let reply = control::handle(&deployment, &req);
            conn.execute(Action::Respond(reply), keep_alive).await.1
        } else {
            let (action, draft) = deployment.handle(&req);
            let (outcome, after) = conn.execute(action, keep_alive).await;
            deployment.finish(draft, outcome);
            after
        };
        if after != After::KeepAlive {
            conn.finish(after).await;
            return;
        }
    }
}

fn unreadable_outcome(status: u16) -> Outcome {
    Outcome {
        status: Some(status),
        bytes: 0,
        chunks: 0,
        end: crate::journal::EndKind::ErrorStatus,
    }
}
