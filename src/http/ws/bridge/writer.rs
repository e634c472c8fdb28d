//! The writer half: one task per site drains its bounded queue into the socket, so
//! nothing else ever waits on a slow site.

use axum::extract::ws::{Message, WebSocket};
use futures_util::SinkExt;
use futures_util::stream::SplitSink;
use tokio::sync::{mpsc, oneshot};

use crate::services::hub::Outbound;

/// Drains the queue into the socket; a close frame from the reader goes first.
pub(super) async fn write_frames(
    mut sink: SplitSink<WebSocket, Message>,
    mut queue: mpsc::Receiver<Outbound>,
    mut close: oneshot::Receiver<Message>,
) {
    loop {
        tokio::select! {
            biased;
            frame = &mut close => {
                if let Ok(frame) = frame {
                    let _ = sink.send(frame).await;
                }
                break;
            }
            next = queue.recv() => match next {
                Some(outbound) => {
                    // Everything already queued goes out in one flush: one write, one wake-up
                    // of the peer.
                    let mut batch = Some(outbound);
                    let mut written = Ok(());
                    let mut deliveries = Vec::new();
                    while let Some(outbound) = batch.take() {
                        let (message, delivery) = crate::http::ws::to_message(outbound);
                        deliveries.extend(delivery);
                        written = sink.feed(message).await;
                        if written.is_err() {
                            break;
                        }
                        batch = queue.try_recv().ok();
                    }
                    if written.is_err() || sink.flush().await.is_err() {
                        break;
                    }
                    drop(deliveries); // handed to the kernel: this site is done
                }
                None => {
                    // The reader is done; it may still send a close frame.
                    if let Ok(frame) = close.await {
                        let _ = sink.send(frame).await;
                    }
                    break;
                }
            }
        }
    }
    let _ = sink.close().await;
}
