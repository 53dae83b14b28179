//! Admin UI sessions: an opaque random id in an `HttpOnly`, `SameSite=Strict` cookie, mapped in
//! memory to an expiry and a per-session CSRF token. Only a hash of the id is kept, so a memory
//! dump does not hand out live sessions. Who may log in is decided by the gateway's
//! authenticator (`keys::auth`); this file only remembers that they did.

use std::collections::HashMap;
use std::time::Duration;

use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue};
use parking_lot::Mutex;
use rand::distributions::{Alphanumeric, DistString};
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::keys::auth::secrets_equal;

pub const COOKIE_NAME: &str = "sy_ui_session";
/// Eight hours: a working day, after which the master key is asked for again.
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// Bounds memory: logins beyond this push out the session closest to expiry.
const MAX_SESSIONS: usize = 10_000;
/// 32 alphanumerics ≈ 190 bits: not guessable, fits a cookie.
const TOKEN_LEN: usize = 32;

#[derive(Clone, Debug)]
pub struct Session {
    pub csrf: String,
    expires: Instant,
}

impl Session {
    /// Constant-time check of a token sent with a state-changing request.
    pub fn csrf_ok(&self, presented: &str) -> bool {
        !presented.is_empty() && secrets_equal(presented, &self.csrf)
    }
}

#[derive(Default)]
pub struct Sessions {
    by_hash: Mutex<HashMap<[u8; 32], Session>>,
}

fn hash(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

fn token() -> String {
    Alphanumeric.sample_string(&mut OsRng, TOKEN_LEN)
}

impl Sessions {
    /// Starts a session; returns the cookie value (the only copy of the id).
    pub fn create(&self) -> String {
        let id = token();
        let now = Instant::now();
        let mut map = self.by_hash.lock();
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k) {
                map.remove(&oldest);
            }
        }
        map.insert(
            hash(&id),
            Session {
                csrf: token(),
                expires: now + SESSION_TTL,
            },
        );
        id
    }

    /// The live session named by the request's cookie.
    pub fn get(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie(headers)?;
        let key = hash(id);
        let mut map = self.by_hash.lock();
        match map.get(&key) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                map.remove(&key);
                None
            }
            None => None,
        }
    }

    pub fn remove(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers) {
            self.by_hash.lock().remove(&hash(id));
        }
    }
}

/// The session id from the `Cookie` header(s).
fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// Whether the browser reached us over TLS: directly (an `https` URI) or through a proxy that
/// says so. The cookie gets `Secure` then, and works over plain HTTP on loopback otherwise.
pub fn is_tls(headers: &HeaderMap, uri: &axum::http::Uri) -> bool {
    uri.scheme_str() == Some("https")
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// `Set-Cookie` for a new session (`Some(id)`) or for logging out (`None`).
pub fn set_cookie(id: Option<&str>, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let v = match id {
        Some(id) => format!(
            "{COOKIE_NAME}={id}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            SESSION_TTL.as_secs()
        ),
        None => format!("{COOKIE_NAME}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    };
    // Only alphanumerics and fixed text: always a valid header value.
    HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static(""))
}

pub fn set_cookie_header(headers: &mut HeaderMap, id: Option<&str>, secure: bool) {
    headers.insert(SET_COOKIE, set_cookie(id, secure));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_round_trips_through_the_cookie_and_logout_ends_it() {
        let s = Sessions::default();
        let id = s.create();
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_str(&format!("other=1; {COOKIE_NAME}={id}")).unwrap(),
        );
        let session = s.get(&h).expect("live session");
        assert!(session.csrf_ok(&session.csrf));
        assert!(!session.csrf_ok(""));
        assert!(!session.csrf_ok("wrong"));
        s.remove(&h);
        assert!(s.get(&h).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn sessions_expire() {
        let s = Sessions::default();
        let id = s.create();
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_str(&format!("{COOKIE_NAME}={id}")).unwrap(),
        );
        assert!(s.get(&h).is_some());
        tokio::time::advance(SESSION_TTL + Duration::from_secs(1)).await;
        assert!(s.get(&h).is_none());
    }

    #[test]
    fn cookie_attributes() {
        let v = set_cookie(Some("abc"), true);
        let v = v.to_str().unwrap();
        for attr in [
            "HttpOnly",
            "SameSite=Strict",
            "Secure",
            "Max-Age=28800",
            "Path=/ui",
        ] {
            assert!(v.contains(attr), "{v} lacks {attr}");
        }
        assert!(!set_cookie(Some("abc"), false)
            .to_str()
            .unwrap()
            .contains("Secure"));
    }
}
