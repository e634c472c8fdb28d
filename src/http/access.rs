//! Who is calling: the key from `Authorization: Bearer …` (or `?key=` where a browser
//! cannot set headers), else the page session cookie; checked on the server.

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;

use crate::auth::{Caller, Role};
use crate::core::sites::SiteId;
use crate::http::error::ApiError;
use crate::services::sessions::token_from_cookie_header;
use crate::state::AppState;

fn presented_key(parts: &Parts) -> Option<String> {
    if let Some(value) = parts.headers.get(axum::http::header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        return value.strip_prefix("Bearer ").map(|k| k.trim().to_string());
    }
    let query = parts.uri.query()?;
    url_key(query)
}

/// The `key` parameter of a query string, percent-decoded.
pub fn url_key(query: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let value = pair.strip_prefix("key=")?;
        percent_decode(value)
    })
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The session of a page that traded its key for a cookie.
fn session_caller(parts: &Parts, state: &AppState) -> Option<Caller> {
    let header = parts
        .headers
        .get(axum::http::header::COOKIE)?
        .to_str()
        .ok()?;
    state
        .sessions
        .caller(token_from_cookie_header(header)?, state.clock.now_ms())
}

/// A key in the request wins; otherwise the page session, if any.
pub fn identify(parts: &Parts, state: &AppState) -> Result<Option<Caller>, ApiError> {
    match presented_key(parts) {
        Some(key) => state
            .secrets
            .current()
            .identify(&key)
            .map(Some)
            .ok_or_else(|| {
                ApiError::Unauthorized(
                    "this key is not valid (ask the operator for a new link)".into(),
                )
            }),
        None => Ok(session_caller(parts, state)),
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        identify(parts, state)?.ok_or_else(|| {
            ApiError::Unauthorized("a key is required: send `Authorization: Bearer <key>`".into())
        })
    }
}

impl OptionalFromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(identify(parts, state).unwrap_or(None))
    }
}

impl Caller {
    /// Refuses (403) a caller that holds none of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if self.is_any_of(roles) {
            Ok(())
        } else {
            Err(self.forbidden())
        }
    }

    /// Allows `roles`, and a site key for its own site only.
    pub fn require_or_site(&self, roles: &[Role], site: SiteId) -> Result<(), ApiError> {
        match self {
            Caller::Site(own) if *own == site => Ok(()),
            _ => self.require(roles),
        }
    }

    fn forbidden(&self) -> ApiError {
        ApiError::Forbidden(format!("the {} key may not do this", self.label()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_found_in_the_query_string() {
        assert_eq!(url_key("a=1&key=ab%2Fc"), Some("ab/c".into()));
        assert_eq!(url_key("monkey=1"), None);
        assert_eq!(url_key("key=%zz"), None);
    }
}
