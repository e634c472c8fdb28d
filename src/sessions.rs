//! Page sessions: a page opened with `?key=` trades the key for an opaque token in an
//! HttpOnly, SameSite=Strict cookie. Tokens are stored, so a commune's bridge page
//! keeps working across a server restart.

use std::collections::HashMap;
use std::sync::RwLock;

use rusqlite::params;

use crate::auth::{Caller, Key};
use crate::clock::EpochMs;
use crate::store::{Store, StoreError};

pub const COOKIE: &str = "diemcau_session";
/// A week: longer than any rehearsal-to-conference stretch of one browser.
const MAX_AGE_SECONDS: u32 = 7 * 24 * 3600;

pub struct Sessions {
    by_token: RwLock<HashMap<String, Caller>>,
    store: Store,
}

impl Sessions {
    pub fn restore(store: Store) -> Result<Sessions, StoreError> {
        let by_token = store
            .load_web_sessions()?
            .into_iter()
            .filter_map(|(token, label)| Some((token, Caller::from_label(&label)?)))
            .collect();
        Ok(Sessions {
            by_token: RwLock::new(by_token),
            store,
        })
    }

    /// Starts a session for `caller`; returns the `Set-Cookie` value.
    pub fn start(&self, caller: Caller, now: EpochMs) -> String {
        let token = Key::generate().expose().to_string();
        self.by_token
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token.clone(), caller);
        let (stored, label) = (token.clone(), caller.label());
        self.store.write(move |tx| {
            tx.execute(
                "INSERT INTO web_sessions (token, caller, created_ms) VALUES (?1, ?2, ?3)",
                params![stored, label, now],
            )
            .map(drop)
        });
        format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={MAX_AGE_SECONDS}")
    }

    /// Ends every session of `caller` (its key was rotated).
    pub fn revoke(&self, caller: Caller) {
        self.by_token
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, held| *held != caller);
        let label = caller.label();
        self.store.write(move |tx| {
            tx.execute("DELETE FROM web_sessions WHERE caller = ?1", params![label])
                .map(drop)
        });
    }

    pub fn caller(&self, token: &str) -> Option<Caller> {
        self.by_token
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
            .copied()
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
        let sessions = Sessions::restore(store.clone()).unwrap();
        let cookie = sessions.start(Caller::Site("05443".parse().unwrap()), 1);
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
        let token = token_from_cookie_header(cookie.split(';').next().unwrap())
            .unwrap()
            .to_string();
        store.flush().await.unwrap();
        let again = Sessions::restore(store).unwrap();
        assert_eq!(
            again.caller(&token),
            Some(Caller::Site("05443".parse().unwrap()))
        );
        assert_eq!(again.caller("forged"), None);
    }
}
