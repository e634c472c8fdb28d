//! The handshake: the first frame must be a valid `hello` for a roster site, with its
//! own key (or a page session of that site), within the hello timeout.

use axum::extract::ws::{Message, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};

use super::{close_message, is_too_large};
use crate::auth::Caller;
use crate::core::sites::{SiteId, SiteIdx};
use crate::protocol::{ClientMsg, Frame, ServerMsg, close};
use crate::state::AppState;

/// An accepted hello: the site and the program at the other end.
pub(super) struct Hello {
    pub id: SiteId,
    pub idx: SiteIdx,
    pub agent: crate::protocol::AgentKind,
    pub version: String,
}

/// Why the hello was refused: close code, error code, message.
pub(super) type Refusal = (u16, &'static str, String);

pub(super) async fn read_hello(
    app: &AppState,
    stream: &mut SplitStream<WebSocket>,
    caller: Option<Caller>,
) -> Result<Hello, Refusal> {
    // A few pings may come first; a stream of them is not a hello.
    let mut control_frames = 0;
    let text = loop {
        match stream.next().await {
            Some(Ok(Message::Text(text))) => break text,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) if control_frames < 8 => {
                control_frames += 1;
                continue;
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                return Err((
                    close::BAD_HELLO,
                    "bad_hello",
                    "say hello first: too many pings before it".into(),
                ));
            }
            Some(Ok(Message::Binary(_))) => {
                return Err((
                    close::BAD_HELLO,
                    "bad_hello",
                    "the first frame must be a JSON hello".into(),
                ));
            }
            Some(Err(e)) if is_too_large(&e) => {
                return Err((
                    close::TOO_LARGE,
                    "too_large",
                    "frame exceeds the size limit".into(),
                ));
            }
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                return Err((close::BAD_HELLO, "bad_hello", "closed before hello".into()));
            }
        }
    };
    let (site, key, agent, version) = match ClientMsg::decode(&text) {
        Ok(ClientMsg::Hello {
            site,
            key,
            agent,
            version,
        }) => (site, key, agent, version),
        Ok(_) => {
            return Err((
                close::BAD_HELLO,
                "bad_hello",
                "the first frame must be hello".into(),
            ));
        }
        Err(e) => {
            return Err((
                close::BAD_HELLO,
                "bad_hello",
                format!("bad hello: {}", e.message),
            ));
        }
    };
    let unknown = || {
        (
            close::UNKNOWN_SITE,
            "unknown_site",
            format!(
                "site `{}` is not in the roster",
                site.chars().take(16).collect::<String>()
            ),
        )
    };
    let id: SiteId = site.parse().map_err(|_| unknown())?;
    let idx = app.roster.index_of(id).ok_or_else(unknown)?;
    let authorised = match (&key, caller) {
        (Some(key), _) => app.secrets.current().is_site_key(id, key),
        // A page whose session already proved the site's key may leave the key out.
        (None, Some(Caller::Site(own))) => own == id,
        (None, _) => false,
    };
    if !authorised {
        return Err((
            close::BAD_KEY,
            "bad_key",
            format!("this key does not belong to site {id}"),
        ));
    }
    // Counted once the key is proven: nobody else can spend a site's connects.
    if let Err(spent) = app.limits.connect(idx, app.clock.now_ms()) {
        return Err((
            close::FLOODING,
            "too_many_connects",
            format!(
                "Kết nối lại quá nhiều lần, thử lại sau {} giây — more than {} connections in a minute",
                spent.retry_after_seconds(),
                app.config.protocol.max_connects_per_minute
            ),
        ));
    }
    Ok(Hello {
        id,
        idx,
        agent,
        version,
    })
}

/// Says why in an error frame, then closes.
pub(super) async fn refuse(
    sink: &mut SplitSink<WebSocket, Message>,
    code: u16,
    error: &str,
    message: &str,
) {
    tracing::debug!(code, error, "bridge connection refused");
    let frame = Frame::from(&ServerMsg::error(error, message));
    let _ = sink.send(crate::http::ws::text(&frame)).await;
    let _ = sink.send(close_message(code, message)).await;
}
