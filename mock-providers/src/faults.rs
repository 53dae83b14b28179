//! The fault catalog (what can go wrong), selections (which requests it hits)
//! and the per-deployment rule state that decides, request by request, which
//! fault applies. Rendering a fault into bytes is the dialects' job.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::duration::{Delay, HumanDuration, SignedDuration};
use crate::journal::Endpoint;
use crate::seeded::selection_draw;

/// Bound on the per-correlation-id counters of `fail_then_pass`; when
/// exceeded the map is cleared (a drill reuses far fewer ids per phase).
const MAX_TRACKED_CORRELATION_IDS: usize = 1_000_000;

/// One fault rule: what to do (`effect`) to which requests (`selection`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    /// Names the rule in the journal and stats. Defaults to the effect type
    /// (`http_error`, ...); ids must be unique within a deployment.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// What happens to a selected request.
    pub effect: FaultEffect,
    /// Which requests are selected (default `always`).
    #[serde(default)]
    pub selection: Selection,
}

impl FaultRule {
    /// A rule that always applies `effect`.
    pub fn new(id: impl Into<String>, effect: FaultEffect) -> Self {
        Self {
            id: id.into(),
            effect,
            selection: Selection::Always,
        }
    }

    /// The same rule with another selection.
    pub fn with_selection(mut self, selection: Selection) -> Self {
        self.selection = selection;
        self
    }
}

/// What a fault does. Internally tagged by `type`:
/// `{type: http_error, status: 503}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultEffect {
    /// Error status with the provider's own error body for that status.
    /// `message` replaces the message text; `body` (with `content_type`,
    /// default `text/html`) replaces the whole body, e.g. a proxy's HTML page.
    HttpError {
        status: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        #[serde(
            default,
            deserialize_with = "retry_after_list",
            skip_serializing_if = "Vec::is_empty"
        )]
        retry_after: Vec<RetryAfter>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content_type: Option<String>,
    },
    /// 429 with the provider's rate-limit body and headers, plus each
    /// `retry_after` form listed (none by default).
    RateLimit {
        #[serde(
            default,
            deserialize_with = "retry_after_list",
            skip_serializing_if = "Vec::is_empty"
        )]
        retry_after: Vec<RetryAfter>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// Anthropic: 529 `overloaded_error`. OpenAI/Azure have no 529: they get
    /// their 503 "overloaded" answer.
    Overloaded {
        #[serde(
            default,
            deserialize_with = "retry_after_list",
            skip_serializing_if = "Vec::is_empty"
        )]
        retry_after: Vec<RetryAfter>,
    },
    /// Replaces the baseline time to first token and/or inter-chunk delay of a
    /// successful answer (fixed or a distribution).
    Latency {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ttft: Option<Delay>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inter_token: Option<Delay>,
    },
    /// Reads the request and never answers: the connection stays open until
    /// the client closes it, `for` elapses (then it is closed without a
    /// response) or the server shuts down.
    Stall {
        #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
        duration: Option<HumanDuration>,
    },
    /// Connection reset (TCP RST) before any response byte.
    Reset {},
    /// Sends the normal response but closes the connection (FIN) after
    /// `bytes` bytes of it (status line and headers included).
    CloseAfterBytes { bytes: u64 },
    /// Streaming requests only: an error status before any stream byte
    /// (default 500 with the provider's server-error body).
    StreamErrorBefore {
        #[serde(default = "default_stream_error_status")]
        status: u16,
    },
    /// Streaming requests only: `200`, `after_chunks` content chunks, then an
    /// in-band error (OpenAI `data: {"error":...}`, Anthropic `event: error`)
    /// and the end of the body, without `[DONE]` / `message_stop`.
    StreamInbandError {
        after_chunks: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// Streaming requests only: `after_chunks` content chunks, then the TCP
    /// connection is closed mid-body (no chunked terminator).
    StreamCut { after_chunks: u32 },
    /// Streaming requests only: `after_chunks` content chunks (if that is all
    /// of them: everything but the terminator), then a clean end of the body
    /// without `[DONE]` / `message_stop`, and the connection is closed.
    StreamNoDone { after_chunks: u32 },
    /// The provider's context-window error, whatever the prompt length.
    ContextWindowExceeded {},
    /// Content policy: `mode: error` (default) is the provider's policy error
    /// status; `mode: finish_reason` is `200` with half the content and
    /// `finish_reason: content_filter` (Anthropic: `stop_reason: refusal`).
    ContentPolicy {
        #[serde(default)]
        mode: ContentPolicyMode,
    },
    /// 401 in the provider's shape, whatever the credentials.
    AuthError {},
}

fn default_stream_error_status() -> u16 {
    500
}

impl FaultEffect {
    /// The `type` tag, also the default rule id.
    pub fn kind(&self) -> &'static str {
        match self {
            FaultEffect::HttpError { .. } => "http_error",
            FaultEffect::RateLimit { .. } => "rate_limit",
            FaultEffect::Overloaded { .. } => "overloaded",
            FaultEffect::Latency { .. } => "latency",
            FaultEffect::Stall { .. } => "stall",
            FaultEffect::Reset {} => "reset",
            FaultEffect::CloseAfterBytes { .. } => "close_after_bytes",
            FaultEffect::StreamErrorBefore { .. } => "stream_error_before",
            FaultEffect::StreamInbandError { .. } => "stream_inband_error",
            FaultEffect::StreamCut { .. } => "stream_cut",
            FaultEffect::StreamNoDone { .. } => "stream_no_done",
            FaultEffect::ContextWindowExceeded {} => "context_window_exceeded",
            FaultEffect::ContentPolicy { .. } => "content_policy",
            FaultEffect::AuthError {} => "auth_error",
        }
    }

    /// Whether the effect can apply to this request at all. Rules that do
    /// not apply are skipped without advancing their selection counters.
    pub(crate) fn applies_to(&self, endpoint: Endpoint, stream: bool) -> bool {
        match endpoint {
            Endpoint::Chat => match self {
                FaultEffect::StreamErrorBefore { .. }
                | FaultEffect::StreamInbandError { .. }
                | FaultEffect::StreamCut { .. }
                | FaultEffect::StreamNoDone { .. } => stream,
                _ => true,
            },
            Endpoint::Embeddings => !matches!(
                self,
                FaultEffect::StreamErrorBefore { .. }
                    | FaultEffect::StreamInbandError { .. }
                    | FaultEffect::StreamCut { .. }
                    | FaultEffect::StreamNoDone { .. }
                    | FaultEffect::ContentPolicy { .. }
            ),
            Endpoint::Models | Endpoint::Other => false,
        }
    }

    fn validate(&self) -> Result<(), String> {
        match self {
            FaultEffect::HttpError { status, .. } if !(400..=599).contains(status) => Err(format!(
                "effect.status: {status} is not an error status (expected 400..=599)"
            )),
            FaultEffect::StreamErrorBefore { status } if !(400..=599).contains(status) => Err(
                format!("effect.status: {status} is not an error status (expected 400..=599)"),
            ),
            FaultEffect::HttpError {
                content_type: Some(ct),
                ..
            } if ct.contains(['\r', '\n']) => {
                Err("effect.content_type: must be on one line".to_owned())
            }
            FaultEffect::HttpError { retry_after, .. }
            | FaultEffect::RateLimit { retry_after, .. }
            | FaultEffect::Overloaded { retry_after } => {
                for r in retry_after {
                    if let RetryAfter::Raw(raw) = r {
                        if raw.contains(['\r', '\n']) {
                            return Err("effect.retry_after.raw: must be on one line".to_owned());
                        }
                    }
                }
                Ok(())
            }
            FaultEffect::Latency { ttft, inter_token } => {
                if ttft.is_none() && inter_token.is_none() {
                    return Err("effect: latency needs `ttft` and/or `inter_token`".to_owned());
                }
                for (name, d) in [("ttft", ttft), ("inter_token", inter_token)] {
                    if let Some(d) = d {
                        d.validate().map_err(|e| format!("effect.{name}: {e}"))?;
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// A `Retry-After` form to send with a 429/529/error. Written as a
/// one-key map: `{seconds: 2}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryAfter {
    /// `retry-after: N` (negative and huge values allowed on purpose).
    Seconds(i64),
    /// `retry-after-ms: N` (OpenAI SDK extension).
    Ms(i64),
    /// `retry-after: <HTTP-date>` this far from now (`-5s`: in the past).
    HttpDateIn(SignedDuration),
    /// `retry-after: <text>` verbatim, for malformed values.
    Raw(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum RetryAfterRepr {
    Seconds(i64),
    Ms(i64),
    HttpDateIn(SignedDuration),
    Raw(String),
}

impl<'de> Deserialize<'de> for RetryAfter {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let repr: RetryAfterRepr = map_enum(
            d,
            "a retry-after form: {seconds: N}, {ms: N}, {http_date_in: 2s} or {raw: text}",
        )?;
        Ok(match repr {
            RetryAfterRepr::Seconds(s) => RetryAfter::Seconds(s),
            RetryAfterRepr::Ms(ms) => RetryAfter::Ms(ms),
            RetryAfterRepr::HttpDateIn(d) => RetryAfter::HttpDateIn(d),
            RetryAfterRepr::Raw(r) => RetryAfter::Raw(r),
        })
    }
}

/// Deserializes an externally tagged enum written as a plain string (unit
/// variants) or a one-key map, from any format. serde_yaml 0.9 on its own
/// expects `!tag` syntax for enums; specs use the map form.
fn map_enum<'de, D, T>(d: D, expecting: &'static str) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct V<T>(&'static str, std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            T::deserialize(de::value::StrDeserializer::<E>::new(v))
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::deserialize(de::value::MapAccessDeserializer::new(map))
        }
    }
    d.deserialize_any(V(expecting, std::marker::PhantomData))
}

impl RetryAfter {
    /// The delay in milliseconds this form announces, when it has one.
    pub fn millis(&self) -> Option<i64> {
        match self {
            RetryAfter::Seconds(s) => Some(s.saturating_mul(1000)),
            RetryAfter::Ms(ms) => Some(*ms),
            RetryAfter::HttpDateIn(d) => Some(d.millis),
            RetryAfter::Raw(_) => None,
        }
    }
}

fn retry_after_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<RetryAfter>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<RetryAfter>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(
                "a retry-after form ({seconds: N}, {ms: N}, {http_date_in: 2s}, {raw: text}) or a list of them",
            )
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            Ok(vec![RetryAfter::deserialize(
                de::value::MapAccessDeserializer::new(map),
            )?])
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(r) = seq.next_element::<RetryAfter>()? {
                out.push(r);
            }
            Ok(out)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
    }
    d.deserialize_any(V)
}

/// `mode` of a content-policy fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContentPolicyMode {
    /// The provider's policy error status (OpenAI/Azure 400, Anthropic 400).
    #[default]
    Error,
    /// `200` with `finish_reason: content_filter` (Anthropic `refusal`).
    FinishReason,
}

/// Which requests a rule selects. Counters count the requests the rule was
/// evaluated for (requests its effect applies to that no earlier rule took).
/// Written `always` or as a one-key map: `{first: 3}`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// Every request (default).
    #[default]
    Always,
    /// Each evaluation independently with probability `p`, drawn from the
    /// seed: evaluation `n` fires when `selection_draw(seed, deployment,
    /// rule_id, n) < p`. Same seed, same sequence.
    Probability(f64),
    /// The first `N` evaluations.
    First(u64),
    /// Evaluations `N, 2N, 3N, ...` (1-based).
    EveryNth(u64),
    /// The first `N` requests of each correlation id (requests without one
    /// share a single counter), then the rest pass.
    FailThenPass(u64),
    /// Requests whose prompt estimate is more than `N` tokens.
    PromptTokensOver(u64),
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum SelectionRepr {
    Always,
    Probability(f64),
    First(u64),
    EveryNth(u64),
    FailThenPass(u64),
    PromptTokensOver(u64),
}

impl<'de> Deserialize<'de> for Selection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let repr: SelectionRepr = map_enum(
            d,
            "always, {probability: P}, {first: N}, {every_nth: N}, {fail_then_pass: N} or {prompt_tokens_over: N}",
        )?;
        Ok(match repr {
            SelectionRepr::Always => Selection::Always,
            SelectionRepr::Probability(p) => Selection::Probability(p),
            SelectionRepr::First(n) => Selection::First(n),
            SelectionRepr::EveryNth(n) => Selection::EveryNth(n),
            SelectionRepr::FailThenPass(n) => Selection::FailThenPass(n),
            SelectionRepr::PromptTokensOver(n) => Selection::PromptTokensOver(n),
        })
    }
}

impl Selection {
    fn validate(&self) -> Result<(), String> {
        match *self {
            Selection::Probability(p) if !(0.0..=1.0).contains(&p) || p.is_nan() => {
                Err(format!("selection.probability: {p} is outside [0, 1]"))
            }
            Selection::EveryNth(0) => Err("selection.every_nth: must be at least 1".to_owned()),
            _ => Ok(()),
        }
    }
}

/// Gives rules without an id their effect type as id. Called before
/// validation by every entry point.
pub(crate) fn normalize_ids(rules: &mut [FaultRule]) {
    for r in rules.iter_mut() {
        if r.id.is_empty() {
            r.id = r.effect.kind().to_owned();
        }
    }
}

/// Validates a rule list; each error starts with `[index]` so callers can
/// prefix their own path.
pub fn validate_rules(rules: &[FaultRule]) -> Result<(), Vec<String>> {
    let mut errors = Vec::new();
    let mut ids = BTreeSet::new();
    for (i, r) in rules.iter().enumerate() {
        let id = if r.id.is_empty() {
            r.effect.kind()
        } else {
            r.id.as_str()
        };
        if id.len() > 128 || id.contains(['\r', '\n']) {
            errors.push(format!(
                "[{i}].id: must be at most 128 characters on one line"
            ));
        } else if !ids.insert(id) {
            errors.push(format!(
                "[{i}].id: duplicate fault id {id:?} (give each rule its own `id`)"
            ));
        }
        if let Err(e) = r.effect.validate() {
            errors.push(format!("[{i}].{e}"));
        }
        if let Err(e) = r.selection.validate() {
            errors.push(format!("[{i}].{e}"));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// What the selection needs to know about a request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SelectCtx<'a> {
    pub endpoint: Endpoint,
    pub stream: bool,
    pub prompt_tokens: u64,
    pub correlation_id: Option<&'a str>,
}

/// A rule with its selection state.
#[derive(Debug)]
pub(crate) struct ActiveRule {
    pub rule: FaultRule,
    evaluations: AtomicU64,
    per_correlation: Mutex<HashMap<String, u64>>,
}

/// A deployment's rule set; replaced as a whole (fresh counters) on
/// `set_faults`.
#[derive(Debug, Default)]
pub(crate) struct ActiveRules {
    pub rules: Vec<ActiveRule>,
}

/// The decision for one request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Decision {
    /// Index into `ActiveRules::rules`.
    pub index: usize,
}

impl ActiveRules {
    pub fn new(rules: Vec<FaultRule>) -> Self {
        Self {
            rules: rules
                .into_iter()
                .map(|rule| ActiveRule {
                    rule,
                    evaluations: AtomicU64::new(0),
                    per_correlation: Mutex::new(HashMap::new()),
                })
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// First rule, in order, whose effect applies and whose selection fires.
    pub fn decide(&self, seed: u64, deployment: &str, ctx: &SelectCtx<'_>) -> Option<Decision> {
        for (index, active) in self.rules.iter().enumerate() {
            if !active.rule.effect.applies_to(ctx.endpoint, ctx.stream) {
                continue;
            }
            let n = active.evaluations.fetch_add(1, Ordering::Relaxed);
            let fire = match active.rule.selection {
                Selection::Always => true,
                Selection::Probability(p) => {
                    p > 0.0 && selection_draw(seed, deployment, &active.rule.id, n) < p
                }
                Selection::First(k) => n < k,
                Selection::EveryNth(k) => (n + 1) % k.max(1) == 0,
                Selection::PromptTokensOver(k) => ctx.prompt_tokens > k,
                Selection::FailThenPass(k) => {
                    let mut map = active.per_correlation.lock();
                    if map.len() >= MAX_TRACKED_CORRELATION_IDS {
                        map.clear();
                    }
                    let seen = map
                        .entry(ctx.correlation_id.unwrap_or_default().to_owned())
                        .or_insert(0);
                    let fire = *seen < k;
                    *seen += 1;
                    fire
                }
            };
            if fire {
                return Some(Decision { index });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(stream: bool) -> SelectCtx<'static> {
        SelectCtx {
            endpoint: Endpoint::Chat,
            stream,
            prompt_tokens: 10,
            correlation_id: None,
        }
    }

    fn parse(yaml: &str) -> Vec<FaultRule> {
        let mut rules: Vec<FaultRule> = serde_yaml::from_str(yaml).unwrap();
        normalize_ids(&mut rules);
        rules
    }

    #[test]
    fn effects_parse_from_yaml() {
        let rules = parse(
            r#"
- {id: outage, effect: {type: http_error, status: 503}}
- {effect: {type: rate_limit, retry_after: {seconds: 2}}, selection: {probability: 0.5}}
- {id: rl2, effect: {type: rate_limit, retry_after: [{http_date_in: 2s}, {ms: 1500}]}}
- {effect: {type: overloaded}}
- {effect: {type: latency, ttft: 2s, inter_token: {uniform: {min: 10ms, max: 50ms}}}}
- {effect: {type: stall, for: 30s}}
- {effect: {type: reset}}
- {effect: {type: close_after_bytes, bytes: 10}}
- {effect: {type: stream_error_before}}
- {effect: {type: stream_inband_error, after_chunks: 3}}
- {effect: {type: stream_cut, after_chunks: 2}, selection: {every_nth: 3}}
- {effect: {type: stream_no_done, after_chunks: 2}, selection: {first: 1}}
- {effect: {type: context_window_exceeded}, selection: {prompt_tokens_over: 100}}
- {effect: {type: content_policy, mode: finish_reason}, selection: {fail_then_pass: 2}}
- {effect: {type: auth_error}}
"#,
        );
        assert_eq!(rules.len(), 15);
        assert_eq!(rules[1].id, "rate_limit");
        assert_eq!(rules[1].selection, Selection::Probability(0.5));
        assert!(matches!(
            &rules[2].effect,
            FaultEffect::RateLimit { retry_after, .. } if retry_after.len() == 2
        ));
        assert_eq!(
            rules[8].effect,
            FaultEffect::StreamErrorBefore { status: 500 }
        );
        validate_rules(&rules).unwrap();
        // Round trip through JSON keeps everything.
        let json = serde_json::to_string(&rules).unwrap();
        let back: Vec<FaultRule> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, rules);
    }

    #[test]
    fn unknown_fields_and_types_are_rejected() {
        assert!(serde_yaml::from_str::<FaultRule>("{effect: {type: reset, extra: 1}}").is_err());
        assert!(serde_yaml::from_str::<FaultRule>(
            "{effect: {type: http_error, status: 503, colour: red}}"
        )
        .is_err());
        assert!(serde_yaml::from_str::<FaultRule>("{effect: {type: explode}}").is_err());
        assert!(
            serde_yaml::from_str::<FaultRule>("{effect: {type: reset}, when: always}").is_err()
        );
    }

    #[test]
    fn validation_reports_every_problem() {
        let rules = parse(
            r#"
- {id: a, effect: {type: http_error, status: 200}}
- {id: a, effect: {type: reset}, selection: {probability: 1.5}}
- {effect: {type: latency}}
- {effect: {type: stall}, selection: {every_nth: 0}}
"#,
        );
        let errs = validate_rules(&rules).unwrap_err();
        assert_eq!(errs.len(), 5, "{errs:#?}");
        assert!(errs[0].starts_with("[0].effect.status"));
        assert!(errs[1].contains("duplicate fault id"));
    }

    #[test]
    fn first_every_nth_and_always() {
        let rules = ActiveRules::new(vec![
            FaultRule::new("first", FaultEffect::Reset {}).with_selection(Selection::First(2)),
            FaultRule::new("nth", FaultEffect::Reset {}).with_selection(Selection::EveryNth(2)),
        ]);
        let picks: Vec<Option<usize>> = (0..6)
            .map(|_| rules.decide(1, "d", &ctx(false)).map(|d| d.index))
            .collect();
        // first fires twice; then nth is evaluated from its 1st evaluation on.
        assert_eq!(picks, vec![Some(0), Some(0), None, Some(1), None, Some(1)]);
    }

    #[test]
    fn stream_faults_skip_non_stream_requests_without_counting() {
        let rules = ActiveRules::new(vec![FaultRule::new(
            "cut",
            FaultEffect::StreamCut { after_chunks: 1 },
        )
        .with_selection(Selection::First(1))]);
        assert!(rules.decide(1, "d", &ctx(false)).is_none());
        assert!(rules.decide(1, "d", &ctx(false)).is_none());
        assert!(rules.decide(1, "d", &ctx(true)).is_some());
        assert!(rules.decide(1, "d", &ctx(true)).is_none());
    }

    #[test]
    fn probability_is_seeded_and_zero_never_fires() {
        let run = |seed: u64, p: f64| -> Vec<bool> {
            let rules = ActiveRules::new(vec![FaultRule::new("p", FaultEffect::Reset {})
                .with_selection(Selection::Probability(p))]);
            (0..200)
                .map(|_| rules.decide(seed, "d", &ctx(false)).is_some())
                .collect()
        };
        assert_eq!(run(7, 0.3), run(7, 0.3));
        assert_ne!(run(7, 0.3), run(8, 0.3));
        assert!(run(7, 0.0).iter().all(|f| !f));
        assert!(run(7, 1.0).iter().all(|f| *f));
    }

    #[test]
    fn fail_then_pass_counts_per_correlation_id() {
        let rules =
            ActiveRules::new(vec![FaultRule::new("ftp", FaultEffect::Reset {})
                .with_selection(Selection::FailThenPass(2))]);
        let with = |id: &'static str| SelectCtx {
            correlation_id: Some(id),
            ..ctx(false)
        };
        let seq: Vec<bool> = ["a", "a", "b", "a", "b", "b"]
            .iter()
            .map(|id| rules.decide(1, "d", &with(id)).is_some())
            .collect();
        assert_eq!(seq, vec![true, true, true, false, true, false]);
    }

    #[test]
    fn prompt_tokens_over_selects_by_size() {
        let rules = ActiveRules::new(vec![FaultRule::new(
            "big",
            FaultEffect::ContextWindowExceeded {},
        )
        .with_selection(Selection::PromptTokensOver(10))]);
        assert!(rules.decide(1, "d", &ctx(false)).is_none());
        let big = SelectCtx {
            prompt_tokens: 11,
            ..ctx(false)
        };
        assert!(rules.decide(1, "d", &big).is_some());
    }
}
