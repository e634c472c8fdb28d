//! The one writer thread: it owns the write connection and applies queued writes in
//! order, batching bursts into one transaction, keeping and retrying what the disk
//! refuses.

use std::sync::mpsc;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::StoreHealth;

use super::WriteFn;

/// What a waiting writer is told.
pub(super) type Outcome = Result<(), WriteFailure>;

#[derive(Clone, Debug)]
pub(super) enum WriteFailure {
    /// This write itself is wrong (a bug): dropped, the others go on.
    Rejected(String),
    /// The disk refused: kept and retried.
    Pending(String),
}

pub(super) enum Op {
    Write(WriteFn, Option<oneshot::Sender<Outcome>>),
    /// The SQL of the writes kept because the disk refused them (they stay kept).
    Statements(oneshot::Sender<Result<Vec<String>, String>>),
}

/// Applies queued writes in order; a burst becomes one transaction. When the disk
/// refuses (full, read-only, I/O error), the writes are kept in order and retried
/// every second; a write that is itself wrong is dropped alone.
pub(super) fn run_writer(mut conn: Connection, queue: mpsc::Receiver<Op>, health: &StoreHealth) {
    const BATCH: usize = 512;
    const RETRY: std::time::Duration = std::time::Duration::from_secs(1);
    // Writes the disk refused, oldest first; their waiters were already told.
    let mut kept: Vec<WriteFn> = Vec::new();
    loop {
        let mut batch: Vec<Op> = Vec::new();
        let first = if kept.is_empty() {
            queue.recv().ok()
        } else {
            match queue.recv_timeout(RETRY) {
                Ok(op) => Some(op),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    if retry_kept(&mut conn, &mut kept, health) {
                        return;
                    }
                    std::thread::sleep(RETRY);
                    continue;
                }
            }
        };
        match first {
            Some(Op::Statements(reply)) => {
                let statements = super::recovery::statements_of(&kept);
                let _ = reply.send(statements.map_err(|e| e.to_string()));
                continue;
            }
            Some(op) => batch.push(op),
            None if kept.is_empty() => return, // every sender is gone
            None => {}
        }
        while batch.len() < BATCH {
            match queue.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let mut writes: Vec<(WriteFn, Option<oneshot::Sender<Outcome>>)> =
            kept.drain(..).map(|f| (f, None)).collect();
        for op in batch {
            match op {
                Op::Write(f, reply) => writes.push((f, reply)),
                // Asked within a burst: answered after it, from what is kept then.
                Op::Statements(reply) => {
                    kept = commit(&mut conn, std::mem::take(&mut writes), health);
                    let statements = super::recovery::statements_of(&kept);
                    let _ = reply.send(statements.map_err(|e| e.to_string()));
                    writes = kept.drain(..).map(|f| (f, None)).collect();
                }
            }
        }
        kept = commit(&mut conn, writes, health);
    }
}

/// Retries the kept writes alone (the queue is closed); true once they are stored.
fn retry_kept(conn: &mut Connection, kept: &mut Vec<WriteFn>, health: &StoreHealth) -> bool {
    let writes = kept.drain(..).map(|f| (f, None)).collect();
    *kept = commit(conn, writes, health);
    kept.is_empty()
}

/// Commits `writes` in one transaction; returns the writes to keep for a retry.
fn commit(
    conn: &mut Connection,
    mut writes: Vec<(WriteFn, Option<oneshot::Sender<Outcome>>)>,
    health: &StoreHealth,
) -> Vec<WriteFn> {
    loop {
        let mut failed_at = None;
        let result = (|| -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            for (i, (f, _)) in writes.iter().enumerate() {
                failed_at = Some(i);
                f(&tx)?;
            }
            failed_at = None;
            tx.commit()
        })();
        match result {
            Ok(()) => {
                if health.failure().is_some() {
                    tracing::warn!(
                        writes = writes.len(),
                        "store writable again: the writes kept in memory are stored"
                    );
                }
                *health.failing.lock().unwrap_or_else(|e| e.into_inner()) = None;
                health
                    .pending
                    .store(0, std::sync::atomic::Ordering::Relaxed);
                for (_, reply) in writes {
                    if let Some(reply) = reply {
                        let _ = reply.send(Ok(()));
                    }
                }
                return Vec::new();
            }
            Err(e) if is_disk_error(&e) => {
                health
                    .errors
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let message = e.to_string();
                let mut failing = health.failing.lock().unwrap_or_else(|e| e.into_inner());
                if failing.is_none() {
                    tracing::error!(error = %message, "STORE CANNOT WRITE: the service goes on from memory and keeps every write until the disk takes it (free space, or fix the data dir's permissions)");
                }
                *failing = Some(message.clone());
                drop(failing);
                health
                    .pending
                    .store(writes.len(), std::sync::atomic::Ordering::Relaxed);
                return writes
                    .into_iter()
                    .map(|(f, reply)| {
                        if let Some(reply) = reply {
                            let _ = reply.send(Err(WriteFailure::Pending(message.clone())));
                        }
                        f
                    })
                    .collect();
            }
            Err(e) => {
                // One write is wrong: drop it alone, tell its waiter, commit the rest.
                health
                    .errors
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::error!(error = %e, "store write failed");
                let Some(i) = failed_at else {
                    for (_, reply) in writes {
                        if let Some(reply) = reply {
                            let _ = reply.send(Err(WriteFailure::Rejected(e.to_string())));
                        }
                    }
                    return Vec::new();
                };
                let (_, reply) = writes.remove(i);
                if let Some(reply) = reply {
                    let _ = reply.send(Err(WriteFailure::Rejected(e.to_string())));
                }
                if writes.is_empty() {
                    return Vec::new();
                }
            }
        }
    }
}

/// Errors of the disk rather than of the write: worth keeping the write for.
fn is_disk_error(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::*;
    matches!(
        e.sqlite_error_code(),
        Some(DiskFull | SystemIoFailure | ReadOnly | CannotOpen | DatabaseBusy | DatabaseLocked)
    )
}
