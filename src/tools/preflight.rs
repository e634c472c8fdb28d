//! `diemcau check` on a data dir: the keys, the database and the disk, read without
//! changing anything — what to know on the morning of the conference.

use std::path::Path;

use crate::auth::{SECRETS_FILE, Secrets};
use crate::core::sites::Roster;
use crate::store::{DB_FILE, DatabaseHealth};

/// Below this, the day's history may not fit (a day of 3,321 sites is ~200 MB).
const LOW_DISK_BYTES: u64 = 1 << 30;

/// What the data dir holds, each line for the technician, and whether the service can
/// start on it.
#[derive(Debug, Default)]
pub struct DataDirReport {
    pub lines: Vec<String>,
    pub warnings: Vec<String>,
    pub errors: Vec<String>,
}

pub fn inspect(data_dir: &Path, roster: &Roster) -> DataDirReport {
    let mut report = DataDirReport::default();
    if !data_dir.exists() {
        report.lines.push(format!(
            "{} does not exist yet: the first `diemcau serve` creates it with new keys",
            data_dir.display()
        ));
        return report;
    }
    report.keys(data_dir, roster);
    report.database(data_dir);
    report.modes(data_dir);
    report.disk(data_dir);
    report
}

impl DataDirReport {
    fn keys(&mut self, data_dir: &Path, roster: &Roster) {
        let path = data_dir.join(SECRETS_FILE);
        let secrets = match Secrets::read(data_dir) {
            Ok(Some(secrets)) => secrets,
            Ok(None) => {
                self.lines.push(format!(
                    "keys: none yet — the first `diemcau serve` writes {}",
                    path.display()
                ));
                return;
            }
            Err(e) => {
                self.errors.push(e.to_string());
                return;
            }
        };
        let with_key = roster
            .sites()
            .iter()
            .filter(|site| secrets.site_key(site.id).is_some())
            .count();
        self.lines.push(format!(
            "keys: {} roles, {with_key}/{} sites ({})",
            crate::auth::Role::ALL.len(),
            roster.len(),
            path.display()
        ));
        if with_key < roster.len() {
            self.warnings.push(format!(
                "{} sites of the roster have no key yet: the next `diemcau serve` adds them; then send their links (`diemcau links`)",
                roster.len() - with_key
            ));
        }
    }

    /// The data dir holds keys and the day's evidence: only its owner may read it.
    fn modes(&mut self, data_dir: &Path) {
        let open = crate::store::readable_by_others(data_dir);
        if open.is_empty() {
            self.lines.push(format!(
                "files: private (the dir 0700, every file 0600) in {}",
                data_dir.display()
            ));
        }
        for (path, mode) in open {
            let private = if path.is_dir() { "700" } else { "600" };
            self.errors.push(format!(
                "{} can be read by other users (mode {mode:o}): `chmod {private} {}` (the service makes it private at its next start)",
                path.display(),
                path.display()
            ));
        }
    }

    fn database(&mut self, data_dir: &Path) {
        match crate::store::inspect(data_dir) {
            Ok(None) => self.lines.push(format!(
                "database: none yet — the first `diemcau serve` creates {DB_FILE}"
            )),
            Ok(Some(DatabaseHealth {
                bytes,
                schema,
                schema_known,
                integrity,
            })) => {
                let size = size(bytes);
                if integrity != "ok" {
                    self.errors.push(format!(
                        "database {DB_FILE} is damaged ({integrity}): restore the latest `diemcau backup` folder"
                    ));
                } else if schema > schema_known as i64 {
                    self.errors.push(format!(
                        "database {DB_FILE} was written by a newer diemcau (schema {schema}; this one knows {schema_known}): run the newer binary"
                    ));
                } else {
                    self.lines.push(format!(
                        "database: ok, {size}, schema {schema}/{schema_known}{}",
                        if schema < schema_known as i64 {
                            " (brought up to date at the next start)"
                        } else {
                            ""
                        }
                    ));
                }
            }
            Err(e @ crate::store::StoreError::NotADatabase { .. }) => {
                self.errors.push(e.to_string())
            }
            Err(e) => self.errors.push(format!(
                "database {} cannot be read ({e}): restore the latest `diemcau backup` folder",
                data_dir.join(DB_FILE).display()
            )),
        }
    }

    fn disk(&mut self, data_dir: &Path) {
        match rustix::fs::statvfs(data_dir) {
            Ok(fs) => {
                let free = fs.f_bavail.saturating_mul(fs.f_frsize);
                self.lines.push(format!("disk: {} free", size(free)));
                if free < LOW_DISK_BYTES {
                    self.warnings.push(format!(
                        "only {} free on the data dir's disk: the service goes on if it fills, but stores nothing until space is freed",
                        size(free)
                    ));
                }
            }
            Err(e) => self.warnings.push(format!(
                "cannot read the free space of {}: {e}",
                data_dir.display()
            )),
        }
    }
}

fn size(bytes: u64) -> String {
    match bytes as f64 {
        b if b >= 1e9 => format!("{:.1} GB", b / 1e9),
        b => format!("{:.1} MB", b / 1e6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roster() -> Roster {
        Roster::parse("sites.csv", include_bytes!("../../config/sites.csv")).unwrap()
    }

    /// A temporary dir that only its owner may enter, as the service makes its own.
    fn private_dir() -> tempfile::TempDir {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        dir
    }

    #[test]
    fn a_fresh_data_dir_is_fine_and_says_what_the_first_start_creates() {
        let dir = tempfile::tempdir().unwrap();
        let report = inspect(&dir.path().join("data"), &roster());
        assert!(report.errors.is_empty() && report.warnings.is_empty());
        assert!(
            report.lines[0].contains("first `diemcau serve`"),
            "{report:?}"
        );
    }

    #[test]
    fn keys_missing_for_new_sites_are_warned_about_and_a_readable_file_is_an_error() {
        use std::os::unix::fs::PermissionsExt;
        let dir = private_dir();
        let small = Roster::parse(
            "sites.csv",
            b"code,name,kind,former_district\n05443,A,phuong,X\n",
        )
        .unwrap();
        Secrets::load_or_create(dir.path(), &small).unwrap();
        let report = inspect(dir.path(), &roster());
        assert!(
            report.lines.iter().any(|l| l.contains("1/92 sites")),
            "{report:?}"
        );
        assert!(report.warnings[0].contains("91 sites"), "{report:?}");

        let path = dir.path().join(SECRETS_FILE);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let report = inspect(dir.path(), &roster());
        assert_eq!(report.errors.len(), 1, "{report:?}");
        assert!(
            report.errors[0].contains("secrets.toml") && report.errors[0].contains("chmod 600"),
            "{report:?}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let report = inspect(dir.path(), &roster());
        assert!(report.errors[0].contains("chmod 700"), "{report:?}");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let report = inspect(dir.path(), &roster());
        assert!(report.errors.is_empty(), "{report:?}");
        assert!(
            report.lines.iter().any(|l| l.contains("private")),
            "{report:?}"
        );
    }

    #[test]
    fn damaged_keys_or_database_are_errors_that_say_what_to_do() {
        use std::os::unix::fs::PermissionsExt;
        let dir = private_dir();
        std::fs::write(dir.path().join(SECRETS_FILE), "[roles\n").unwrap();
        std::fs::write(dir.path().join(DB_FILE), vec![0x42; 8192]).unwrap();
        for file in [SECRETS_FILE, DB_FILE] {
            let path = dir.path().join(file);
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let report = inspect(dir.path(), &roster());
        assert_eq!(report.errors.len(), 2, "{report:?}");
        assert!(report.errors[0].contains("damaged"), "{report:?}");
        assert!(report.errors[1].contains(DB_FILE), "{report:?}");
    }
}
