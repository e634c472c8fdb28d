//! The Zalo relay: Alertmanager's webhook groups become messages, queued (bounded) and
//! posted to the Zalo Bot API's `sendMessage` (`POST {api}/bot{token}/sendMessage`,
//! JSON `{chat_id, text}`, answer `{ok, result}` or `{ok: false, error_code,
//! description}`), tried again with a doubling wait on a timeout, a 5xx or a 429. A
//! message still not delivered is logged and counted, never dropped silently. The
//! token is part of the URL: neither is ever logged.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::auth::Key;
use crate::config::ZaloConfig;
use crate::metrics::Metrics;

/// Why a message was not queued.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(
        "the Zalo relay is off: set [notify.zalo] api_url and chat_id in diemcau.toml and [zalo] bot_token in secrets.toml (README \"Notifications\")"
    )]
    Off,
    #[error("{0} Zalo messages are waiting already: send again later")]
    Full(usize),
}

/// Where and how to post.
#[derive(Clone)]
struct Bot {
    send_url: String,
    chat_id: String,
    attempts: u32,
    first_retry: Duration,
}

/// How one try ended.
enum Outcome {
    Sent,
    /// Worth another try (timeout, connection, 5xx, 429).
    Again(String),
    /// Another try would get the same answer.
    Final(String),
}

pub struct ZaloRelay {
    queue: Option<mpsc::Sender<String>>,
    capacity: usize,
}

impl ZaloRelay {
    /// Starts the sender when the config and the token are there; otherwise a relay
    /// that says how to turn it on.
    pub fn start(config: &ZaloConfig, token: Option<&Key>, metrics: Arc<Metrics>) -> ZaloRelay {
        let (Some(api), Some(chat_id), Some(token)) = (&config.api_url, &config.chat_id, token) else {
            if config.api_url.is_some() {
                tracing::warn!("notify.zalo.api_url is set but secrets.toml has no [zalo] bot_token: the Zalo relay is off");
            }
            return ZaloRelay { queue: None, capacity: config.queue };
        };
        let bot = Bot {
            send_url: format!("{}/bot{}/sendMessage", api.trim_end_matches('/'), token.expose()),
            chat_id: chat_id.clone(),
            attempts: config.attempts,
            first_retry: Duration::from_millis(config.first_retry_ms),
        };
        let client = match crate::tls::client_config(None) {
            Ok(tls) => reqwest::Client::builder().tls_backend_preconfigured((*tls).clone()),
            Err(e) => {
                tracing::warn!(error = %e, "no certificates to trust: the Zalo relay can reach http:// only");
                reqwest::Client::builder()
            }
        }
        .timeout(Duration::from_millis(config.timeout_ms))
        .build()
        .expect("an HTTP client with a TLS config builds");
        let (queue, messages) = mpsc::channel(config.queue);
        tokio::spawn(send_all(bot, client, messages, metrics));
        ZaloRelay {
            queue: Some(queue),
            capacity: config.queue,
        }
    }

    /// Queues one message (the sender posts them in order).
    pub fn send(&self, text: String) -> Result<(), RelayError> {
        let queue = self.queue.as_ref().ok_or(RelayError::Off)?;
        queue
            .try_send(text)
            .map_err(|_| RelayError::Full(self.capacity))
    }
}

async fn send_all(
    bot: Bot,
    client: reqwest::Client,
    mut messages: mpsc::Receiver<String>,
    metrics: Arc<Metrics>,
) {
    while let Some(text) = messages.recv().await {
        let mut wait = bot.first_retry;
        let mut tries = 0;
        let failure = loop {
            tries += 1;
            match post(&client, &bot, &text).await {
                Outcome::Sent => break None,
                Outcome::Final(why) => break Some(why),
                Outcome::Again(why) if tries >= bot.attempts => break Some(why),
                Outcome::Again(why) => {
                    tracing::info!(try_ = tries, reason = %why, wait_ms = wait.as_millis() as u64, "Zalo did not take the message: trying again");
                    metrics.notify_retry("zalo");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
            }
        };
        match failure {
            None => metrics.notify_sent("zalo"),
            Some(reason) => {
                metrics.notify_failed("zalo");
                tracing::error!(
                    tries,
                    %reason,
                    message = %text,
                    "a Zalo notification was NOT delivered (alert DiemcauNotifyFailing reports it on the other channels)"
                );
            }
        }
    }
}

async fn post(client: &reqwest::Client, bot: &Bot, text: &str) -> Outcome {
    let body = serde_json::json!({ "chat_id": bot.chat_id, "text": text });
    let answer = match client.post(&bot.send_url).json(&body).send().await {
        // The error's URL holds the token: it is left out.
        Err(e) => return Outcome::Again(e.without_url().to_string()),
        Ok(answer) => answer,
    };
    let status = answer.status();
    let reply: serde_json::Value = answer.json().await.unwrap_or_default();
    let said = reply["description"].as_str().unwrap_or("").chars().take(200).collect::<String>();
    if status.is_success() && reply["ok"] == true {
        Outcome::Sent
    } else if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        Outcome::Again(format!("HTTP {status} {said}"))
    } else {
        Outcome::Final(format!("HTTP {status}, error_code {}: {said}", reply["error_code"]))
    }
}
