//! The TCP listener behind `axum::serve`, with the two limits a public port needs:
//! a cap on open connections (over it, a new one gets `503` at once) and a deadline
//! for each request's headers (a connection that never sends them, or idles after an
//! answer, is closed). Websockets keep their connection's slot until they close.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

use crate::metrics::Metrics;

const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\
Retry-After: 2\r\nConnection: close\r\nContent-Length: 84\r\n\r\n\
{\"error\":\"unavailable\",\"message\":\"too many open connections: try again in a moment\"}";

pub struct GuardedListener {
    inner: TcpListener,
    slots: Arc<Semaphore>,
    handshake_timeout: Duration,
    metrics: Arc<Metrics>,
}

impl GuardedListener {
    pub fn new(
        inner: TcpListener,
        max_connections: usize,
        handshake_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            inner,
            slots: Arc::new(Semaphore::new(max_connections)),
            handshake_timeout,
            metrics,
        }
    }
}

impl axum::serve::Listener for GuardedListener {
    type Io = Guarded;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Guarded, SocketAddr) {
        loop {
            let (stream, addr) = match self.inner.accept().await {
                Ok(accepted) => accepted,
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
            return (
                Guarded {
                    stream,
                    _slot: slot,
                    headers: HeadersDeadline::new(self.handshake_timeout),
                },
                addr,
            );
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// Until a request's headers are complete, reads race a deadline: for the first
/// request from the moment of accepting, for the next one from the last response
/// written (an idle keep-alive connection). A websocket, once upgraded, has none.
struct HeadersDeadline {
    timeout: Duration,
    sleep: Pin<Box<Sleep>>,
    armed: bool,
    upgraded: bool,
    /// How much of "\r\n\r\n" the bytes read so far end with.
    matched: usize,
}

impl HeadersDeadline {
    fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            sleep: Box::pin(tokio::time::sleep(timeout)),
            armed: true,
            upgraded: false,
            matched: 0,
        }
    }

    /// Notes bytes read; true once the end of the headers went by.
    fn saw(&mut self, bytes: &[u8]) -> bool {
        const END: &[u8] = b"\r\n\r\n";
        for &b in bytes {
            self.matched = if b == END[self.matched] {
                self.matched + 1
            } else if b == END[0] {
                1
            } else {
                0
            };
            if self.matched == END.len() {
                self.matched = 0;
                return true;
            }
        }
        false
    }

    /// Notes bytes written: a `101` ends all deadlines, a response starts the next one.
    /// The deadline is polled at once with the connection's waker: the connection may
    /// already be waiting to read and would not look at it otherwise.
    fn wrote(&mut self, bytes: &[u8], cx: &mut Context<'_>) {
        if self.upgraded {
            return;
        }
        if bytes.starts_with(b"HTTP/1.1 101") {
            self.upgraded = true;
            self.armed = false;
        } else if !self.armed {
            self.sleep
                .as_mut()
                .reset(tokio::time::Instant::now() + self.timeout);
            self.armed = true;
            self.matched = 0;
            let _ = self.sleep.as_mut().poll(cx);
        }
    }
}

/// An accepted connection holding one of the listener's slots.
pub struct Guarded {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
    headers: HeadersDeadline,
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.headers.armed {
            return Pin::new(&mut this.stream).poll_read(cx, buf);
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let read = &buf.filled()[before..];
                // HTTP/2 with prior knowledge has no header blocks to wait for.
                if this.headers.saw(read) || (before == 0 && read.starts_with(b"PRI * HTTP/2.0")) {
                    this.headers.armed = false;
                    this.headers.upgraded |= read.starts_with(b"PRI * HTTP/2.0");
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                ready!(this.headers.sleep.as_mut().poll(cx));
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no complete request headers within the handshake timeout",
                )))
            }
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.headers.wrote(buf, cx);
        Pin::new(&mut this.stream).poll_write(cx, buf)
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
        let this = self.get_mut();
        // Open websockets (every frame to every site) skip the look at the bytes.
        if !this.headers.upgraded
            && let Some(first) = bufs.iter().find(|b| !b.is_empty())
        {
            this.headers.wrote(first, cx);
        }
        Pin::new(&mut this.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_response_arms_the_deadline_again_and_an_upgrade_ends_it() {
        let waker = futures_util::task::noop_waker();
        let cx = &mut Context::from_waker(&waker);
        let mut deadline = HeadersDeadline::new(Duration::from_secs(1));
        assert!(deadline.saw(b"GET / HTTP/1.1\r\n\r\n"));
        deadline.armed = false;
        deadline.wrote(b"HTTP/1.1 200 OK\r\n", cx);
        assert!(
            deadline.armed,
            "idle keep-alive: the next request has a deadline"
        );
        deadline.armed = false;
        deadline.wrote(b"HTTP/1.1 101 Switching Protocols\r\n", cx);
        assert!(!deadline.armed && deadline.upgraded);
        deadline.wrote(b"\x81\x05hello", cx);
        assert!(!deadline.armed, "websocket frames never arm it");
    }

    #[tokio::test]
    async fn the_end_of_the_headers_is_found_across_reads() {
        let mut deadline = HeadersDeadline::new(Duration::from_secs(1));
        assert!(!deadline.saw(b"GET / HTTP/1.1\r\nHost: x\r"));
        assert!(!deadline.saw(b"\n\r"));
        assert!(deadline.saw(b"\nbody"));
        let mut other = HeadersDeadline::new(Duration::from_secs(1));
        assert!(
            !other.saw(b"a\r\n\r\r\nb"),
            "a broken terminator is not the end"
        );
        assert!(other.saw(b"\r\n\r\n"));
    }

    #[test]
    fn the_refusal_is_a_complete_http_response() {
        let text = std::str::from_utf8(REFUSAL).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        serde_json::from_str::<serde_json::Value>(body).unwrap();
    }
}
