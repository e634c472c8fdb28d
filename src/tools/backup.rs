//! `diemcau backup`: a consistent copy of the data dir while the service runs — the
//! database as one snapshot (SQLite `VACUUM INTO`, a read transaction: the service
//! goes on writing) and the keys — into a new folder, checked before it is called done.

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use chrono_tz::Asia::Ho_Chi_Minh;

use crate::auth::SECRETS_FILE;
use crate::store::{BackupCounts, DB_FILE, StoreError, backup_database};

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(
        "no database at {0}: is --data-dir the service's data dir? (the service creates it on its first start)"
    )]
    NoDatabase(PathBuf),
    #[error(
        "no keys file at {0}: is --data-dir the service's data dir? (the service creates it on its first start)"
    )]
    NoSecrets(PathBuf),
    #[error("{0} already exists: a backup never overwrites another")]
    Exists(PathBuf),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database {path}: {source}")]
    Sql { path: PathBuf, source: StoreError },
    #[error("the copy {path} failed its integrity check ({found}); the original is untouched")]
    Damaged { path: PathBuf, found: String },
}

/// A finished backup: where, and what it holds.
#[derive(Debug)]
pub struct Backup {
    pub folder: PathBuf,
    pub contents: BackupCounts,
}

/// Copies `data_dir`'s database and keys into a new folder `to/diemcau-YYYYMMDD-HHMMSS`
/// (Vietnam time of `now`), readable only by its owner.
pub fn run(data_dir: &Path, to: &Path, now: DateTime<Utc>) -> Result<Backup, BackupError> {
    let source_db = data_dir.join(DB_FILE);
    let source_secrets = data_dir.join(SECRETS_FILE);
    if !source_db.is_file() {
        return Err(BackupError::NoDatabase(source_db));
    }
    if !source_secrets.is_file() {
        return Err(BackupError::NoSecrets(source_secrets));
    }
    let stamp = now
        .with_timezone(&Ho_Chi_Minh)
        .format("diemcau-%Y%m%d-%H%M%S");
    let folder = to.join(stamp.to_string());
    if folder.exists() {
        return Err(BackupError::Exists(folder));
    }
    std::fs::create_dir_all(to).map_err(write_error(to))?;
    DirBuilder::new()
        .mode(0o700)
        .create(&folder)
        .map_err(write_error(&folder))?;
    match fill(&folder, &source_db, &source_secrets) {
        Ok(contents) => Ok(Backup { folder, contents }),
        Err(e) => {
            // A half-made backup would be trusted later: leave none.
            let _ = std::fs::remove_dir_all(&folder);
            Err(e)
        }
    }
}

fn fill(
    folder: &Path,
    source_db: &Path,
    source_secrets: &Path,
) -> Result<BackupCounts, BackupError> {
    let copy_db = folder.join(DB_FILE);
    let checked = backup_database(source_db, &copy_db).map_err(|source| BackupError::Sql {
        path: source_db.to_path_buf(),
        source,
    })?;
    std::fs::set_permissions(&copy_db, Permissions::from_mode(0o600))
        .map_err(write_error(&copy_db))?;
    let keys = std::fs::read(source_secrets).map_err(|source| BackupError::Read {
        path: source_secrets.to_path_buf(),
        source,
    })?;
    let copy_secrets = folder.join(SECRETS_FILE);
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&copy_secrets)
        .and_then(|mut file| file.write_all(&keys).and_then(|()| file.sync_all()))
        .map_err(write_error(&copy_secrets))?;
    checked.map_err(|found| BackupError::Damaged {
        path: copy_db,
        found,
    })
}

fn write_error(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError {
    let path = path.to_path_buf();
    move |source| BackupError::Write { path, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::core::liveness::{SiteState, Transition};
    use crate::store::Store;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn data_dir_with_history() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SECRETS_FILE), "[roles]\nadmin = \"k\"\n").unwrap();
        let store = Store::open(dir.path(), 0).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let online = Transition {
                from: SiteState::NeverSeen,
                to: SiteState::Online,
                at_ms: 1,
                detected_at_ms: 1,
                reason: "hello".into(),
            };
            store.record_transition("05443".parse().unwrap(), &online);
            store.flush().await.unwrap();
        });
        dir
    }

    #[test]
    fn a_backup_is_a_new_private_folder_named_by_vietnam_time_with_the_history_and_keys() {
        let data = data_dir_with_history();
        let to = tempfile::tempdir().unwrap();
        // 02:30 UTC is 09:30 in Hà Nội.
        let backup = run(data.path(), to.path(), at("2026-12-03T02:30:05Z")).unwrap();

        assert_eq!(
            backup.folder,
            to.path().join("diemcau-20261203-093005"),
            "named by the local time"
        );
        assert_eq!(backup.contents.transitions, 1);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&backup.folder), 0o700);
        assert_eq!(mode(&backup.folder.join(DB_FILE)), 0o600);
        assert_eq!(mode(&backup.folder.join(SECRETS_FILE)), 0o600);
        assert_eq!(
            std::fs::read(backup.folder.join(SECRETS_FILE)).unwrap(),
            std::fs::read(data.path().join(SECRETS_FILE)).unwrap()
        );

        let again = run(data.path(), to.path(), at("2026-12-03T02:30:05Z")).unwrap_err();
        assert!(
            matches!(again, BackupError::Exists(_)),
            "never overwrites: {again}"
        );
    }

    #[test]
    fn a_data_dir_without_a_database_or_keys_is_named_in_the_error() {
        let empty = tempfile::tempdir().unwrap();
        let to = tempfile::tempdir().unwrap();
        let why = run(empty.path(), to.path(), Utc::now())
            .unwrap_err()
            .to_string();
        assert!(why.contains(DB_FILE) && why.contains("--data-dir"), "{why}");

        let data = data_dir_with_history();
        std::fs::remove_file(data.path().join(SECRETS_FILE)).unwrap();
        let why = run(data.path(), to.path(), Utc::now())
            .unwrap_err()
            .to_string();
        assert!(why.contains(SECRETS_FILE), "{why}");
    }

    #[test]
    fn a_backup_that_fails_half_way_leaves_no_folder_behind() {
        let data = tempfile::tempdir().unwrap();
        std::fs::write(data.path().join(SECRETS_FILE), "[roles]\n").unwrap();
        std::fs::write(data.path().join(DB_FILE), vec![0x42; 8192]).unwrap();
        let to = tempfile::tempdir().unwrap();
        let why = run(data.path(), to.path(), Utc::now()).unwrap_err();
        assert!(matches!(why, BackupError::Sql { .. }), "{why}");
        assert_eq!(
            std::fs::read_dir(to.path()).unwrap().count(),
            0,
            "a half-made backup would be trusted later"
        );
    }
}
