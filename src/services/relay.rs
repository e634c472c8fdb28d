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
    #[error(
        "the Zalo relay has no bot token: add [zalo] bot_token = \"…\" to secrets.toml (taken within a second, no restart)"
    )]
    NoToken,
    #[error("{0} Zalo messages are waiting already: send again later")]
    Full(usize),
}

/// Where and how to post.
#[derive(Clone)]
struct Bot {
    api_url: String,
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

/// A message and the bot token in force when it was taken (secrets.toml is followed).
struct Message {
    text: String,
    token: Key,
}

pub struct ZaloRelay {
    queue: Option<mpsc::Sender<Message>>,
    capacity: usize,
}

impl ZaloRelay {
    /// Starts the sender when the config names a bot; otherwise a relay that says how
    /// to turn it on.
    pub fn start(config: &ZaloConfig, metrics: Arc<Metrics>) -> ZaloRelay {
        let (Some(api), Some(chat_id)) = (&config.api_url, &config.chat_id) else {
            return ZaloRelay {
                queue: None,
                capacity: config.queue,
            };
        };
        let bot = Bot {
            api_url: api.trim_end_matches('/').to_string(),
            chat_id: chat_id.clone(),
            attempts: config.attempts,
            first_retry: Duration::from_millis(config.first_retry_ms),
        };
        let client = crate::tls::HttpsClient::new(Duration::from_millis(config.timeout_ms));
        let (queue, messages) = mpsc::channel(config.queue);
        tokio::spawn(send_all(bot, client, messages, metrics));
        ZaloRelay {
            queue: Some(queue),
            capacity: config.queue,
        }
    }

    /// Queues one message for the bot of `token` (the sender posts them in order).
    pub fn send(&self, text: String, token: Option<&Key>) -> Result<(), RelayError> {
        let queue = self.queue.as_ref().ok_or(RelayError::Off)?;
        let token = token.ok_or(RelayError::NoToken)?.clone();
        queue
            .try_send(Message { text, token })
            .map_err(|_| RelayError::Full(self.capacity))
    }
}

async fn send_all(
    bot: Bot,
    client: crate::tls::HttpsClient,
    mut messages: mpsc::Receiver<Message>,
    metrics: Arc<Metrics>,
) {
    while let Some(Message { text, token }) = messages.recv().await {
        let url = format!("{}/bot{}/sendMessage", bot.api_url, token.expose());
        let mut wait = bot.first_retry;
        let mut tries = 0;
        let failure = loop {
            tries += 1;
            match post(&client, &url, &bot.chat_id, &text).await {
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

async fn post(client: &crate::tls::HttpsClient, url: &str, chat_id: &str, text: &str) -> Outcome {
    let body = serde_json::json!({ "chat_id": chat_id, "text": text }).to_string();
    let (status, bytes) = match client.post_json(url, body).await {
        Ok(answer) => answer,
        Err(crate::tls::PostError::BadAddress) => {
            return Outcome::Final("notify.zalo.api_url does not make a valid address".into());
        }
        Err(e) => return Outcome::Again(e.to_string()),
    };
    let reply: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let said = reply["description"]
        .as_str()
        .unwrap_or("")
        .chars()
        .take(200)
        .collect::<String>();
    if (200..300).contains(&status) && reply["ok"] == true {
        Outcome::Sent
    } else if status >= 500 || status == 429 {
        Outcome::Again(format!("HTTP {status} {said}"))
    } else {
        Outcome::Final(format!(
            "HTTP {status}, error_code {}: {said}",
            reply["error_code"]
        ))
    }
}
