//! A request body with its declared type, bounded in size: over the limit it is a JSON 413.

use axum::body::Bytes;
use axum::http::header;

use crate::http::error::ApiError;

/// A request body and its declared type. Over the size limit it is a JSON 413.
pub struct Body {
    pub content_type: Option<String>,
    pub bytes: Bytes,
}

impl<S: Send + Sync> axum::extract::FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or("?").to_ascii_lowercase());
        let bytes = Bytes::from_request(request, state).await?;
        Ok(Body {
            content_type,
            bytes,
        })
    }
}

impl Body {
    pub fn declared(&self, media_type: &str) -> bool {
        self.content_type
            .as_deref()
            .is_some_and(|t| t.starts_with(media_type))
    }

    /// The body as JSON (an empty body means the defaults), with a 400 that shows the
    /// shape; a body declared as anything else is refused (415).
    pub fn json<T: serde::de::DeserializeOwned + Default>(
        &self,
        example: &str,
    ) -> Result<T, ApiError> {
        if self.bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(T::default());
        }
        if self.content_type.is_some() && !self.declared("application/json") {
            return Err(ApiError::UnsupportedMediaType(
                "send the body as JSON with Content-Type: application/json (curl: --json)".into(),
            ));
        }
        serde_json::from_slice(&self.bytes)
            .map_err(|e| ApiError::BadRequest(format!("body must be JSON like {example}: {e}")))
    }
}
