//! Console sessions: who is logged in, kept in memory only (a restart logs everyone out).
//!
//! A session is a random 256-bit id in an `HttpOnly; SameSite=Strict` cookie, plus a
//! second random value, its CSRF token, that every state-changing form carries in a hidden
//! field. Both are compared in constant time. A session ends at logout or after
//! [`IDLE_LIMIT`] without a request.

use rand::rngs::OsRng;
use rand::RngCore;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// The session cookie's name.
pub const COOKIE: &str = "ferry_console";

/// A session unused this long is gone.
pub const IDLE_LIMIT: Duration = Duration::from_secs(8 * 3600);

/// Most sessions kept at once; a login beyond it drops the least recently used.
const MAX_SESSIONS: usize = 256;

/// One logged-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    pub csrf: String,
    last_used: Instant,
    /// A one-time message for the next page (the outcome of the last change).
    pub notice: Option<String>,
}

/// All live sessions, by id.
#[derive(Debug, Default)]
pub struct Sessions {
    live: Mutex<HashMap<String, Session>>,
}

/// 32 random bytes from the operating system, hex-encoded.
fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

impl Sessions {
    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // A panic while holding the lock cannot leave the map half-updated: recover it.
        self.live.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts a session; returns its id (for the cookie).
    pub fn start(&self, now: Instant) -> String {
        let mut live = self.live();
        live.retain(|_, s| now.duration_since(s.last_used) < IDLE_LIMIT);
        if live.len() >= MAX_SESSIONS {
            if let Some(oldest) = live.iter().min_by_key(|(_, s)| s.last_used).map(|(id, _)| id.clone()) {
                live.remove(&oldest);
            }
        }
        let id = random_hex();
        live.insert(
            id.clone(),
            Session {
                csrf: random_hex(),
                last_used: now,
                notice: None,
            },
        );
        id
    }

    /// The live session with this id (touching it), taking its one-time notice.
    pub fn find(&self, id: &str, now: Instant) -> Option<Session> {
        let mut live = self.live();
        // Look the id up by constant-time comparison, so response time says nothing about it.
        let key = live
            .keys()
            .find(|k| bool::from(k.as_bytes().ct_eq(id.as_bytes())))?
            .clone();
        let session = live.get_mut(&key)?;
        if now.duration_since(session.last_used) >= IDLE_LIMIT {
            live.remove(&key);
            return None;
        }
        session.last_used = now;
        let found = session.clone();
        session.notice = None;
        Some(found)
    }

    /// Leaves a message for the session's next page.
    pub fn notify(&self, id: &str, notice: String) {
        if let Some(session) = self.live().get_mut(id) {
            session.notice = Some(notice);
        }
    }

    pub fn end(&self, id: &str) {
        self.live().remove(id);
    }
}

/// Whether the form's CSRF token is the session's.
pub fn csrf_matches(session: &Session, given: Option<&str>) -> bool {
    given.is_some_and(|g| bool::from(g.as_bytes().ct_eq(session.csrf.as_bytes())))
}

/// The session id in a `Cookie` header, if any.
pub fn cookie_value<'a>(cookie_header: &'a str, name: &str) -> Option<&'a str> {
    cookie_header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// The `Set-Cookie` value that starts a session.
pub fn set_cookie(id: &str) -> String {
    format!(
        "{COOKIE}={id}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}",
        IDLE_LIMIT.as_secs()
    )
}

/// The `Set-Cookie` value that removes it.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_start_find_expire_and_end() {
        let sessions = Sessions::default();
        let t0 = Instant::now();
        let id = sessions.start(t0);
        assert_eq!(id.len(), 64);
        let s = sessions.find(&id, t0).expect("live");
        assert!(csrf_matches(&s, Some(&s.csrf)));
        assert!(!csrf_matches(&s, Some("nope")));
        assert!(!csrf_matches(&s, None));
        assert!(sessions.find("other", t0).is_none());
        sessions.notify(&id, "done".into());
        assert_eq!(sessions.find(&id, t0).unwrap().notice.as_deref(), Some("done"));
        assert_eq!(sessions.find(&id, t0).unwrap().notice, None, "a notice shows once");
        assert!(sessions.find(&id, t0 + IDLE_LIMIT).is_none(), "idle sessions expire");
        let id = sessions.start(t0);
        sessions.end(&id);
        assert!(sessions.find(&id, t0).is_none());
    }

    #[test]
    fn cookies_are_parsed_and_flagged() {
        assert_eq!(cookie_value("a=1; ferry_console=abc ; b=2", COOKIE), Some("abc"));
        assert_eq!(cookie_value("a=1", COOKIE), None);
        let set = set_cookie("abc");
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
    }
}
