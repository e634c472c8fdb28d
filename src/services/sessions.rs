//! Page sessions: a page opened with `?key=` trades the key for an opaque token in an
//! HttpOnly, SameSite=Strict cookie (and `Secure` behind https). Only the token's
//! SHA-256 is kept, in memory and in the store: a copy of the database opens no page.
//! Sessions survive a restart, so a commune's bridge page keeps working. A session ends
//! after a week on the server as well as in the browser, and one key holds at most
//! [`MAX_SESSIONS_PER_KEY`]: its oldest ends when it starts one more.

use std::collections::HashMap;
use std::sync::RwLock;

use sha2::{Digest, Sha256};

use crate::auth::{Caller, Key};
use crate::core::time::EpochMs;
use crate::store::{Store, StoreError};

pub const COOKIE: &str = "diemcau_session";
/// A week: longer than any rehearsal-to-conference stretch of one browser.
const MAX_AGE_SECONDS: u32 = 7 * 24 * 3600;
const MAX_AGE_MS: EpochMs = MAX_AGE_SECONDS as EpochMs * 1000;
/// Every staff member's browsers and a commune's few machines, with room to spare; a
/// key opening pages in a loop stores no more than this.
pub const MAX_SESSIONS_PER_KEY: usize = 64;

/// Who holds a session, and since when.
#[derive(Clone, Copy)]
struct Session {
    caller: Caller,
    started_ms: EpochMs,
}

pub struct Sessions {
    /// Guards the live page sessions by the SHA-256 of their cookie token. A std `RwLock`: every page
    /// request reads it, only a new session or a key rotation writes, and no holder
    /// awaits. Never call the store (or anything that may block) while holding it.
    by_hash: RwLock<HashMap<String, Session>>,
    store: Store,
    /// The cookie says `Secure` (the service is reached over https).
    secure: bool,
}

impl Sessions {
    /// The stored sessions still within their week at `now`; older ones are deleted.
    pub fn restore(store: Store, now: EpochMs, secure: bool) -> Result<Sessions, StoreError> {
        let by_hash = store
            .load_web_sessions()?
            .into_iter()
            .filter_map(|(hash, label, started_ms)| {
                let caller = Caller::from_label(&label)?;
                Some((hash, Session { caller, started_ms }))
            })
            .filter(|(_, session)| session.is_valid_at(now))
            .collect();
        store.forget_web_sessions_before(now - MAX_AGE_MS);
        Ok(Sessions {
            by_hash: RwLock::new(by_hash),
            store,
            secure,
        })
    }

    /// Starts a session for `caller`; returns the `Set-Cookie` value.
    pub fn start(&self, caller: Caller, now: EpochMs) -> String {
        let token = Key::generate().expose().to_string();
        let hash = token_hash(&token);
        let mut by_hash = self.by_hash.write().unwrap_or_else(|e| e.into_inner());
        by_hash.retain(|_, held| held.is_valid_at(now)); // ended ones need no memory
        let mut own: Vec<(EpochMs, String)> = by_hash
            .iter()
            .filter(|(_, held)| held.caller == caller)
            .map(|(hash, held)| (held.started_ms, hash.clone()))
            .collect();
        own.sort();
        let excess = (own.len() + 1).saturating_sub(MAX_SESSIONS_PER_KEY);
        let ended: Vec<String> = own.into_iter().take(excess).map(|(_, h)| h).collect();
        for hash in &ended {
            by_hash.remove(hash);
        }
        by_hash.insert(
            hash.clone(),
            Session {
                caller,
                started_ms: now,
            },
        );
        drop(by_hash);
        for hash in ended {
            self.store.forget_web_session(hash);
        }
        self.store.record_web_session(hash, caller.label(), now);
        let secure = if self.secure { "; Secure" } else { "" };
        format!(
            "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={MAX_AGE_SECONDS}{secure}"
        )
    }

    /// Ends every session of `caller` (its key was rotated).
    pub fn revoke(&self, caller: Caller) {
        self.by_hash
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, held| held.caller != caller);
        let label = caller.label();
        self.store.forget_web_sessions_of(label);
    }

    /// Who holds `token` at `now`, if it is a session less than a week old.
    pub fn caller(&self, token: &str, now: EpochMs) -> Option<Caller> {
        let session = *self
            .by_hash
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&token_hash(token))?;
        session.is_valid_at(now).then_some(session.caller)
    }
}

impl Session {
    fn is_valid_at(&self, now: EpochMs) -> bool {
        now - self.started_ms < MAX_AGE_MS
    }
}

/// What is kept of a token: its SHA-256, in hex.
fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The session token in a `Cookie` header, if any.
pub fn token_from_cookie_header(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        assert_eq!(
            token_from_cookie_header("a=1; diemcau_session=abc; b=2"),
            Some("abc")
        );
        assert_eq!(token_from_cookie_header("a=1"), None);
    }

    #[tokio::test]
    async fn sessions_survive_a_restart_and_the_cookie_is_strict() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 0).unwrap();
        let sessions = Sessions::restore(store.clone(), 1, false).unwrap();
        let cookie = sessions.start(Caller::Site("05443".parse().unwrap()), 1);
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
        let token = token_from_cookie_header(cookie.split(';').next().unwrap())
            .unwrap()
            .to_string();
        store.flush().await.unwrap();
        let again = Sessions::restore(store.clone(), 2, false).unwrap();
        assert_eq!(
            again.caller(&token, 2),
            Some(Caller::Site("05443".parse().unwrap()))
        );
        assert_eq!(again.caller("forged", 2), None);
        let stored = store.load_web_sessions().unwrap();
        assert_eq!(stored.len(), 1);
        assert_ne!(stored[0].0, token, "the store never holds the cookie value");
        assert_eq!(stored[0].0, token_hash(&token));
        assert!(!cookie.contains("Secure"), "plain http: no Secure flag");
    }

    #[tokio::test]
    async fn one_key_holds_a_bounded_number_of_sessions_and_https_cookies_are_secure() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 0).unwrap();
        let sessions = Sessions::restore(store.clone(), 1, true).unwrap();
        let site = Caller::Site("05443".parse().unwrap());
        let token_of = |cookie: &str| {
            token_from_cookie_header(cookie.split(';').next().unwrap())
                .unwrap()
                .to_string()
        };
        let first_cookie = sessions.start(site, 1);
        assert!(first_cookie.ends_with("; Secure"), "{first_cookie}");
        let first = token_of(&first_cookie);
        let staff = token_of(&sessions.start(Caller::Role(crate::auth::Role::Operator), 1));
        let mut last = String::new();
        for i in 0..MAX_SESSIONS_PER_KEY as i64 * 3 {
            last = token_of(&sessions.start(site, 2 + i));
        }
        assert_eq!(sessions.caller(&first, 1000), None, "the oldest ended");
        assert_eq!(sessions.caller(&last, 1000), Some(site));
        assert!(
            sessions.caller(&staff, 1000).is_some(),
            "another key's session stays"
        );
        store.flush().await.unwrap();
        let stored = store.load_web_sessions().unwrap();
        assert_eq!(
            stored.len(),
            MAX_SESSIONS_PER_KEY + 1,
            "bounded in the store too"
        );
    }

    #[tokio::test]
    async fn a_session_ends_on_the_server_after_a_week_and_restarts_forget_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 0).unwrap();
        let started = 1_000_000;
        let sessions = Sessions::restore(store.clone(), started, false).unwrap();
        let cookie = sessions.start(Caller::Role(crate::auth::Role::Operator), started);
        let token = token_from_cookie_header(cookie.split(';').next().unwrap())
            .unwrap()
            .to_string();
        let week = i64::from(MAX_AGE_SECONDS) * 1000;
        assert_eq!(
            sessions.caller(&token, started + week - 1),
            Some(Caller::Role(crate::auth::Role::Operator))
        );
        assert_eq!(sessions.caller(&token, started + week), None, "a week old");
        store.flush().await.unwrap();

        let within = Sessions::restore(store.clone(), started + week - 1, false).unwrap();
        assert_eq!(
            within.caller(&token, started + week - 1),
            Some(Caller::Role(crate::auth::Role::Operator))
        );
        let after = Sessions::restore(store.clone(), started + week, false).unwrap();
        assert_eq!(
            after.caller(&token, started + week - 1),
            None,
            "not restored"
        );
        store.flush().await.unwrap();
        let rows = store.load_web_sessions().unwrap();
        assert!(rows.is_empty(), "the expired session is deleted: {rows:?}");
    }
}
