//! `POST /api/relay/zalo`: Alertmanager's webhook (its notifier key as a Bearer key),
//! one Zalo message per notification, queued for the relay.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::auth::{Caller, Role};
use crate::core::notify::{AlertGroup, zalo_text};
use crate::http::body::Body;
use crate::http::error::ApiError;
use crate::services::relay::RelayError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/relay/zalo", post(relay))
}

async fn relay(
    State(app): State<AppState>,
    caller: Caller,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(&[Role::Notifier, Role::Admin])?;
    let group: AlertGroup =
        body.json(r#"{"status": "firing", "groupLabels": {}, "alerts": []}"#)?;
    let text = zalo_text(&group);
    let secrets = app.secrets.current();
    app.zalo
        .send(text, secrets.zalo_bot_token())
        .map_err(|e: RelayError| ApiError::Unavailable(e.to_string()))?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "queued": true }))))
}
