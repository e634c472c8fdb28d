//! Who is calling: the key from `Authorization: Bearer …` (or `?key=` where a browser
//! cannot set headers: page links and websocket upgrades), else the page session
//! cookie; checked on the server.
//!
//! The cookie is not a blank cheque: a state-changing request or a websocket upgrade
//! that rides on it must come from the service's own origin (or `public_url`), since
//! SameSite=Strict lets another port of the same host, or a sibling domain, send it.

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;

use crate::auth::{Caller, Role};
use crate::core::sites::SiteId;
use crate::http::error::ApiError;
use crate::services::sessions::token_from_cookie_header;
use crate::state::AppState;

/// Where a key in the address is taken: page links trade it for the cookie, and a
/// websocket upgrade cannot set a header. The JSON and CSV API wants the header.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum KeyInLink {
    Accepted,
    Refused,
}

fn presented_key(parts: &Parts, links: KeyInLink) -> Result<Option<String>, ApiError> {
    if let Some(value) = parts.headers.get(axum::http::header::AUTHORIZATION) {
        let value = value.to_str().ok();
        return Ok(value
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|k| k.trim().to_string()));
    }
    let Some(key) = parts.uri.query().and_then(url_key) else {
        return Ok(None);
    };
    if links == KeyInLink::Refused && !is_websocket_upgrade(parts) {
        return Err(ApiError::Unauthorized(
            "`?key=` is only for page links and websockets: send the key as \
             `Authorization: Bearer <key>`"
                .into(),
        ));
    }
    Ok(Some(key))
}

fn is_websocket_upgrade(parts: &Parts) -> bool {
    parts
        .headers
        .get(axum::http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// A request that changes something, or opens a socket: the cookie must come with
/// the service's own origin.
fn needs_own_origin(parts: &Parts) -> bool {
    use axum::http::Method;
    !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS)
        || is_websocket_upgrade(parts)
}

/// The request's `Origin` is this service: `public_url`'s origin, or the address the
/// request was sent to (its `Host`), over http or https.
fn from_own_origin(parts: &Parts, state: &AppState) -> bool {
    let Some(origin) = parts
        .headers
        .get(axum::http::header::ORIGIN)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let origin = origin.to_ascii_lowercase();
    if state
        .config
        .public_origin()
        .is_some_and(|own| own == origin)
    {
        return true;
    }
    let host = parts
        .headers
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase);
    host.is_some_and(|host| {
        origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            == Some(host.as_str())
    })
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

/// The session of a page that traded its key for a cookie; refused (403) when the
/// request needs the service's own origin and comes from another.
fn session_caller(parts: &Parts, state: &AppState) -> Result<Option<Caller>, ApiError> {
    let Some(token) = parts
        .headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .find_map(|v| token_from_cookie_header(v.to_str().ok()?))
    else {
        return Ok(None);
    };
    let Some(caller) = state.sessions.caller(token, state.clock.now_ms()) else {
        return Ok(None);
    };
    if needs_own_origin(parts) && !from_own_origin(parts, state) {
        return Err(ApiError::Forbidden(
            "this request rides on the page cookie but does not come from this service's \
             own pages (Origin): refused"
                .into(),
        ));
    }
    Ok(Some(caller))
}

/// A key in the request wins; otherwise the page session, if any.
pub fn identify(
    parts: &Parts,
    state: &AppState,
    links: KeyInLink,
) -> Result<Option<Caller>, ApiError> {
    match presented_key(parts, links)? {
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
        None => session_caller(parts, state),
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        identify(parts, state, KeyInLink::Refused)?.ok_or_else(|| {
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
        // A wrong key may still say hello with the right one; a foreign origin may not.
        match identify(parts, state, KeyInLink::Refused) {
            Err(refused @ ApiError::Forbidden(_)) => Err(refused),
            found => Ok(found.unwrap_or(None)),
        }
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
