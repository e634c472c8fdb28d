//! Page sessions: a page opened with `?key=` trades the key for an opaque token in an
//! HttpOnly, SameSite=Strict cookie. Tokens are stored, so a commune's bridge page
//! keeps working across a server restart. A session ends after a week on the server as
//! well as in the browser: a cookie copied off a shared machine stops working.

use std::collections::HashMap;
use std::sync::RwLock;

use crate::auth::{Caller, Key};
use crate::core::time::EpochMs;
use crate::store::{Store, StoreError};

pub const COOKIE: &str = "diemcau_session";
/// A week: longer than any rehearsal-to-conference stretch of one browser.
const MAX_AGE_SECONDS: u32 = 7 * 24 * 3600;
const MAX_AGE_MS: EpochMs = MAX_AGE_SECONDS as EpochMs * 1000;

/// Who holds a session, and since when.
#[derive(Clone, Copy)]
struct Session {
    caller: Caller,
    started_ms: EpochMs,
}

pub struct Sessions {
    /// Guards the live page sessions by cookie token. A std `RwLock`: every page
    /// request reads it, only a new session or a key rotation writes, and no holder
    /// awaits. Never call the store (or anything that may block) while holding it.
    by_token: RwLock<HashMap<String, Session>>,
    store: Store,
}

impl Sessions {
    /// The stored sessions still within their week at `now`; older ones are deleted.
    pub fn restore(store: Store, now: EpochMs) -> Result<Sessions, StoreError> {
        let by_token = store
            .load_web_sessions()?
            .into_iter()
            .filter_map(|(token, label, started_ms)| {
                let caller = Caller::from_label(&label)?;
                Some((token, Session { caller, started_ms }))
            })
            .filter(|(_, session)| session.is_valid_at(now))
            .collect();
        store.forget_web_sessions_before(now - MAX_AGE_MS);
        Ok(Sessions {
            by_token: RwLock::new(by_token),
            store,
        })
    }

    /// Starts a session for `caller`; returns the `Set-Cookie` value.
    pub fn start(&self, caller: Caller, now: EpochMs) -> String {
        let token = Key::generate().expose().to_string();
        let mut by_token = self.by_token.write().unwrap_or_else(|e| e.into_inner());
        by_token.retain(|_, held| held.is_valid_at(now)); // ended ones need no memory
        by_token.insert(
            token.clone(),
            Session {
                caller,
                started_ms: now,
            },
        );
        drop(by_token);
        let (stored, label) = (token.clone(), caller.label());
        self.store.record_web_session(stored, label, now);
        format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={MAX_AGE_SECONDS}")
    }

    /// Ends every session of `caller` (its key was rotated).
    pub fn revoke(&self, caller: Caller) {
        self.by_token
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, held| held.caller != caller);
        let label = caller.label();
        self.store.forget_web_sessions_of(label);
    }

    /// Who holds `token` at `now`, if it is a session less than a week old.
    pub fn caller(&self, token: &str, now: EpochMs) -> Option<Caller> {
        let session = *self
            .by_token
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)?;
        session.is_valid_at(now).then_some(session.caller)
    }
}

impl Session {
    fn is_valid_at(&self, now: EpochMs) -> bool {
        now - self.started_ms < MAX_AGE_MS
    }
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
        let sessions = Sessions::restore(store.clone(), 1).unwrap();
        let cookie = sessions.start(Caller::Site("05443".parse().unwrap()), 1);
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
        let token = token_from_cookie_header(cookie.split(';').next().unwrap())
            .unwrap()
            .to_string();
        store.flush().await.unwrap();
        let again = Sessions::restore(store, 2).unwrap();
        assert_eq!(
            again.caller(&token, 2),
            Some(Caller::Site("05443".parse().unwrap()))
        );
        assert_eq!(again.caller("forged", 2), None);
    }

    #[tokio::test]
    async fn a_session_ends_on_the_server_after_a_week_and_restarts_forget_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 0).unwrap();
        let started = 1_000_000;
        let sessions = Sessions::restore(store.clone(), started).unwrap();
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

        let within = Sessions::restore(store.clone(), started + week - 1).unwrap();
        assert_eq!(
            within.caller(&token, started + week - 1),
            Some(Caller::Role(crate::auth::Role::Operator))
        );
        let after = Sessions::restore(store.clone(), started + week).unwrap();
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
