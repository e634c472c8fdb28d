//! `ApiError`: the one error type of the HTTP edge, rendered as
//! `{"error": code, "message": text}` with the right status. Internals are logged,
//! never shown.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 401: no key, or a key nobody holds.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: a valid key of a role that may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such resource.
    #[error("{0}")]
    NotFound(String),
    /// 400: the request itself is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// 413: a body over the size limit.
    #[error("{0}")]
    TooLarge(String),
    /// 415: a body that is not of the type the route takes.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 409: a valid request that the current state does not allow.
    #[error("{0}")]
    Conflict(String),
    /// 429: this key did this too often; the seconds to wait go in `Retry-After`.
    #[error("{message}")]
    TooMany { message: String, retry_after_s: i64 },
    /// 503: the service cannot do this right now (e.g. the store is not writable).
    #[error("{0}")]
    Unavailable(String),
    /// 500: a bug or an unexpected failure; the detail goes to the log only.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::TooMany { .. } => (StatusCode::TOO_MANY_REQUESTS, "too_many"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        if let ApiError::Internal(detail) = &self {
            tracing::error!(%detail, "request failed");
        }
        let mut response = (
            status,
            Json(json!({"error": code, "message": self.to_string()})),
        )
            .into_response();
        if let ApiError::TooMany { retry_after_s, .. } = self {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, retry_after_s.into());
        }
        response
    }
}

impl ApiError {
    /// 429 for a budget spent (services::limits): what was refused, when to retry.
    pub fn too_many(what: &str, spent: crate::core::budget::Spent) -> ApiError {
        let retry_after_s = spent.retry_after_seconds();
        ApiError::TooMany {
            message: format!("{what}: try again in {retry_after_s} s"),
            retry_after_s,
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl From<axum::extract::rejection::BytesRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::BytesRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge("the body is over 2 MB".into())
        } else {
            ApiError::BadRequest(format!("cannot read the body: {rejection}"))
        }
    }
}
