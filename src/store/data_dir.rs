//! The data dir as the service holds it: one service at a time (an exclusive lock,
//! taken before anything is written), and private (0700, every file 0600).

use std::fs::{File, OpenOptions, Permissions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::StoreError;

/// Held by a running `serve`; says its PID.
pub const LOCK_FILE: &str = "diemcau.lock";

/// The running service's claim on its data dir, released when dropped (or when the
/// process ends, however it ends).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

/// Makes the process write private files (umask 077), creates the data dir 0700,
/// takes the lock, and makes what an older version left readable private again.
pub fn claim(dir: &Path) -> Result<DataDirLock, StoreError> {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let io = |source| StoreError::Dir {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(io)?;
    if let Err(e) = file.try_lock() {
        let mut pid = String::new();
        let _ = file.read_to_string(&mut pid);
        return Err(match e {
            std::fs::TryLockError::WouldBlock => StoreError::Locked {
                dir: dir.to_path_buf(),
                pid: pid.trim().parse().ok(),
            },
            std::fs::TryLockError::Error(source) => io(source),
        });
    }
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    writeln!(file, "{}", std::process::id()).map_err(io)?;
    for (path, mode) in readable_by_others(dir) {
        let private = if path.is_dir() { 0o700 } else { 0o600 };
        tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "made private");
        let _ = std::fs::set_permissions(&path, Permissions::from_mode(private));
    }
    Ok(DataDirLock { _file: file })
}

/// The service's own pulse: a file it rewrites in place every 40 ms while it runs
/// (`<ms> running`) and once more when it stops cleanly (`<ms> stopped`). After a
/// crash or `kill -9`, the next start reads when the service was last alive, to within
/// 40 ms, and that interval is nobody's uptime and nobody's outage.
pub const ALIVE_FILE: &str = "alive";

/// How the previous run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LastRun {
    pub alive_ms: i64,
    /// It stopped cleanly (else it crashed, was killed, or the machine went down).
    pub stopped: bool,
}

/// The open pulse file.
#[derive(Debug)]
pub struct Pulse {
    file: File,
}

impl Pulse {
    /// Opens the pulse of `dir`; says how the previous run ended, if there was one.
    pub fn open(dir: &Path) -> Result<(Pulse, Option<LastRun>), StoreError> {
        let path = dir.join(ALIVE_FILE);
        let last = std::fs::read_to_string(&path).ok().and_then(|text| {
            let mut words = text.split_whitespace();
            let alive_ms = words.next()?.parse().ok()?;
            Some(LastRun {
                alive_ms,
                stopped: words.next() == Some("stopped"),
            })
        });
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|source| StoreError::Dir {
                path: path.clone(),
                source,
            })?;
        Ok((Pulse { file }, last))
    }

    /// The service is alive at `now` (one small write in place, no fsync: it must
    /// survive the process, not a power cut).
    pub fn beat(&self, now: i64) {
        self.write(&format!("{now:>15} running\n"));
    }

    /// The service stops cleanly at `now`.
    pub fn stopped(&self, now: i64) {
        self.write(&format!("{now:>15} stopped\n"));
        let _ = self.file.sync_all();
    }

    fn write(&self, text: &str) {
        use std::os::unix::fs::FileExt;
        let _ = self.file.write_all_at(text.as_bytes(), 0);
    }
}

/// Everything in `dir` (and `dir` itself) that users other than its owner may read,
/// write or enter, with its mode.
pub fn readable_by_others(dir: &Path) -> Vec<(PathBuf, u32)> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o777;
        if meta.file_type().is_symlink() {
            continue;
        }
        if mode & 0o077 != 0 {
            found.push((path.clone(), mode));
        }
        if meta.is_dir()
            && let Ok(entries) = std::fs::read_dir(&path)
        {
            pending.extend(entries.flatten().map(|e| e.path()));
        }
    }
    found.sort();
    found
}

/// A database file that is there but is not SQLite (empty, or something else copied
/// over it) is refused: opening it would start an empty history.
pub(super) fn check_database_file(path: &Path) -> Result<(), StoreError> {
    const HEADER: &[u8; 16] = b"SQLite format 3\0";
    let mut head = [0u8; 16];
    let read = match File::open(path) {
        Ok(mut file) => file.read(&mut head).unwrap_or(0),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(StoreError::Dir {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    if read < HEADER.len() || &head != HEADER {
        return Err(StoreError::NotADatabase {
            path: path.to_path_buf(),
            empty: read == 0,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::DB_FILE;

    #[test]
    fn a_second_claim_names_the_holder_and_the_dir_becomes_private() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::set_permissions(&data, Permissions::from_mode(0o755)).unwrap();
        std::fs::write(data.join("old.txt"), "x").unwrap();
        std::fs::set_permissions(data.join("old.txt"), Permissions::from_mode(0o644)).unwrap();
        assert_eq!(readable_by_others(&data).len(), 2);
        let held = claim(&data).unwrap();
        assert!(
            readable_by_others(&data).is_empty(),
            "{:?}",
            readable_by_others(&data)
        );
        match claim(&data) {
            Err(StoreError::Locked { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected Locked, got {other:?}"),
        }
        drop(held);
        claim(&data).expect("free again once the holder is gone");
    }

    #[test]
    fn the_pulse_says_when_the_last_run_was_alive_and_how_it_ended() {
        let dir = tempfile::tempdir().unwrap();
        let (pulse, last) = Pulse::open(dir.path()).unwrap();
        assert_eq!(last, None, "a first start");
        pulse.beat(1_000);
        pulse.beat(1_100);
        drop(pulse); // as a kill -9 leaves it
        let (pulse, last) = Pulse::open(dir.path()).unwrap();
        assert_eq!(
            last,
            Some(LastRun {
                alive_ms: 1_100,
                stopped: false
            })
        );
        pulse.stopped(2_000);
        let (_, last) = Pulse::open(dir.path()).unwrap();
        assert_eq!(
            last,
            Some(LastRun {
                alive_ms: 2_000,
                stopped: true
            })
        );
    }

    #[test]
    fn an_empty_or_foreign_database_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DB_FILE);
        check_database_file(&path).expect("none yet is fine");
        std::fs::write(&path, b"").unwrap();
        assert!(matches!(
            check_database_file(&path),
            Err(StoreError::NotADatabase { empty: true, .. })
        ));
        std::fs::write(&path, b"id,name\n05443,A\n").unwrap();
        assert!(matches!(
            check_database_file(&path),
            Err(StoreError::NotADatabase { empty: false, .. })
        ));
    }
}
