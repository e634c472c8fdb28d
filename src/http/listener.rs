//! The public port, served by hyper's HTTP/1.1 server with the two limits a public port
//! needs: a cap on open connections (over it, a new one gets `503` at once) and hyper's
//! own header-read timeout, which runs from the moment a connection is accepted and
//! again from each answer until the next request's head is complete, whatever bytes
//! arrive meanwhile (blank lines included). Websockets keep their connection's slot
//! until they close; once upgraded they have no deadline.

use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::Metrics;

const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\
Retry-After: 2\r\nConnection: close\r\nContent-Length: 84\r\n\r\n\
{\"error\":\"unavailable\",\"message\":\"too many open connections: try again in a moment\"}";

pub struct GuardedListener {
    inner: TcpListener,
    slots: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

impl GuardedListener {
    pub fn new(inner: TcpListener, max_connections: usize, metrics: Arc<Metrics>) -> Self {
        Self {
            inner,
            slots: Arc::new(Semaphore::new(max_connections)),
            metrics,
        }
    }

    /// The next connection that fits under the cap; those over it are answered 503.
    async fn accept(&self) -> Guarded {
        loop {
            let stream = match self.inner.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors or the like: wait rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(slot) = self.slots.clone().try_acquire_owned() else {
                self.metrics.connection_refused();
                // Never blocks: the answer fits in a fresh socket's send buffer.
                let _ = stream.try_write(REFUSAL);
                continue;
            };
            // Probes are tiny: do not let Nagle hold them back.
            let _ = stream.set_nodelay(true);
            return Guarded {
                stream,
                _slot: slot,
            };
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// Serves `router` until `shutdown` resolves; then stops accepting, lets each open
/// request finish (connections close once answered) and returns.
pub async fn serve(
    listener: GuardedListener,
    router: Router,
    header_timeout: Duration,
    shutdown: CancellationToken,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let connections = TaskTracker::new();
    loop {
        let io = tokio::select! {
            io = listener.accept() => io,
            _ = shutdown.cancelled() => break,
        };
        let conn = http
            .serve_connection(TokioIo::new(io), TowerToHyperService::new(router.clone()))
            .with_upgrades();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let mut conn = pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = shutdown.cancelled() => conn.as_mut().graceful_shutdown(),
            }
            let _ = conn.await;
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// An accepted connection holding one of the listener's slots until it closes (an
/// upgraded websocket keeps it).
struct Guarded {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_a_complete_http_response() {
        let text = std::str::from_utf8(REFUSAL).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        serde_json::from_str::<serde_json::Value>(body).unwrap();
    }
}
