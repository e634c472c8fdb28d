//! Keys and roles: `<data-dir>/secrets.toml`, created once (mode 0600), never rewritten
//! except to add keys for sites new to the roster. Keys are compared in constant time
//! and never logged (`Key`'s `Debug` hides it).

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::sites::{Roster, SiteId};

pub const SECRETS_FILE: &str = "secrets.toml";

/// A role key's holder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything, including key rotation.
    Admin,
    /// Wall, messages, roll call, rehearsal schedule.
    Operator,
    /// Timer and agenda control.
    Secretary,
    /// Read-only hall display.
    Display,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Operator, Role::Secretary, Role::Display];

    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Secretary => "secretary",
            Role::Display => "display",
        }
    }
}

/// Who is calling, once their key is recognised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    Role(Role),
    /// A site key: acts only as that site.
    Site(SiteId),
}

impl Caller {
    pub fn is_any_of(&self, roles: &[Role]) -> bool {
        matches!(self, Caller::Role(role) if roles.contains(role))
    }

    /// For logs and stored records: the role or site, never the key.
    pub fn label(&self) -> String {
        match self {
            Caller::Role(role) => role.as_str().to_string(),
            Caller::Site(id) => format!("site:{id}"),
        }
    }

    /// The inverse of `label`.
    pub fn from_label(label: &str) -> Option<Caller> {
        if let Some(id) = label.strip_prefix("site:") {
            return id.parse().ok().map(Caller::Site);
        }
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == label)
            .map(Caller::Role)
    }
}

/// A secret key. `Debug` and `Display` are redacted so it cannot reach a log by accident.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Key(String);

impl Key {
    /// 128 random bits as 32 lowercase hex characters.
    pub fn generate() -> Key {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).expect("the operating system provides randomness");
        Key(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The key itself, for printing join links on purpose.
    pub fn expose(&self) -> &str {
        &self.0
    }

    fn matches(&self, presented: &str) -> bool {
        self.0.as_bytes().ct_eq(presented.as_bytes()).into()
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(…)")
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleKeys {
    admin: Key,
    operator: Key,
    secretary: Key,
    display: Key,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretsFile {
    roles: RoleKeys,
    #[serde(default)]
    sites: BTreeMap<String, Key>,
}

/// All keys in force.
#[derive(Clone, Debug)]
pub struct Secrets {
    roles: RoleKeys,
    sites: BTreeMap<SiteId, Key>,
}

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("cannot use {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is damaged: {message} (restore it from a backup, or move it away to create new keys)"
    )]
    Parse { path: PathBuf, message: String },
}

/// What `load_or_create` did, so `serve` can say so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretsOrigin {
    Created,
    Loaded,
    /// Loaded, and keys were added for this many sites new to the roster.
    Extended(usize),
}

impl Secrets {
    /// Reads `<data_dir>/secrets.toml`, creating it on first start. Existing keys are
    /// never changed; sites new to the roster get keys.
    pub fn load_or_create(
        data_dir: &Path,
        roster: &Roster,
    ) -> Result<(Secrets, SecretsOrigin), SecretsError> {
        let path = data_dir.join(SECRETS_FILE);
        let io = |source| SecretsError::Io {
            path: path.clone(),
            source,
        };
        let file = match std::fs::read_to_string(&path) {
            Ok(text) => {
                Some(
                    toml::from_str::<SecretsFile>(&text).map_err(|e| SecretsError::Parse {
                        path: path.clone(),
                        message: e.to_string(),
                    })?,
                )
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(e)),
        };
        let existed = file.is_some();
        let mut file = file.unwrap_or_else(|| SecretsFile {
            roles: RoleKeys {
                admin: Key::generate(),
                operator: Key::generate(),
                secretary: Key::generate(),
                display: Key::generate(),
            },
            sites: BTreeMap::new(),
        });
        let mut added = 0;
        for site in roster.sites() {
            file.sites.entry(site.id.to_string()).or_insert_with(|| {
                added += 1;
                Key::generate()
            });
        }
        if !existed || added > 0 {
            std::fs::create_dir_all(data_dir).map_err(io)?;
            write_private(&path, &toml::to_string(&file).expect("secrets serialize"))
                .map_err(io)?;
        }
        let sites = file
            .sites
            .iter()
            .filter_map(|(id, key)| Some((id.parse().ok()?, key.clone())))
            .collect();
        let origin = match (existed, added) {
            (false, _) => SecretsOrigin::Created,
            (true, 0) => SecretsOrigin::Loaded,
            (true, n) => SecretsOrigin::Extended(n),
        };
        Ok((
            Secrets {
                roles: file.roles,
                sites,
            },
            origin,
        ))
    }

    pub fn role_key(&self, role: Role) -> &Key {
        match role {
            Role::Admin => &self.roles.admin,
            Role::Operator => &self.roles.operator,
            Role::Secretary => &self.roles.secretary,
            Role::Display => &self.roles.display,
        }
    }

    pub fn site_key(&self, id: SiteId) -> Option<&Key> {
        self.sites.get(&id)
    }

    /// Whose key this is. Compares against every key so the time taken does not
    /// depend on which one (if any) matched.
    pub fn identify(&self, presented: &str) -> Option<Caller> {
        let mut found = None;
        for role in Role::ALL {
            if self.role_key(role).matches(presented) {
                found = Some(Caller::Role(role));
            }
        }
        for (id, key) in &self.sites {
            if key.matches(presented) {
                found = Some(Caller::Site(*id));
            }
        }
        found
    }

    /// Whether `presented` is the key of site `id`.
    pub fn is_site_key(&self, id: SiteId, presented: &str) -> bool {
        self.sites
            .get(&id)
            .is_some_and(|key| key.matches(presented))
    }
}

/// Writes a file readable only by its owner, atomically (temp file + rename).
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("toml.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(
        b"# diemcau keys: keep this file private (mode 0600). One key per role and per site.\n",
    )?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roster() -> Roster {
        Roster::parse(
            "s.csv",
            b"code,name,kind,former_district\n05443,A,phuong,D\n05710,B,phuong,D\n",
        )
        .unwrap()
    }

    #[test]
    fn first_start_creates_a_private_file_that_is_never_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let (first, origin) = Secrets::load_or_create(dir.path(), &roster()).unwrap();
        assert_eq!(origin, SecretsOrigin::Created);
        let path = dir.path().join(SECRETS_FILE);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let before = std::fs::read_to_string(&path).unwrap();

        let (second, origin) = Secrets::load_or_create(dir.path(), &roster()).unwrap();
        assert_eq!(origin, SecretsOrigin::Loaded);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
        assert_eq!(first.role_key(Role::Admin), second.role_key(Role::Admin));
    }

    #[test]
    fn new_sites_get_keys_and_old_keys_stay() {
        let dir = tempfile::tempdir().unwrap();
        let small = Roster::parse(
            "s.csv",
            b"code,name,kind,former_district\n05443,A,phuong,D\n",
        )
        .unwrap();
        let (first, _) = Secrets::load_or_create(dir.path(), &small).unwrap();
        let (second, origin) = Secrets::load_or_create(dir.path(), &roster()).unwrap();
        assert_eq!(origin, SecretsOrigin::Extended(1));
        let id: SiteId = "05443".parse().unwrap();
        assert_eq!(first.site_key(id), second.site_key(id));
        assert!(second.site_key("05710".parse().unwrap()).is_some());
    }

    #[test]
    fn keys_identify_their_holder_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let (secrets, _) = Secrets::load_or_create(dir.path(), &roster()).unwrap();
        let id: SiteId = "05443".parse().unwrap();
        let site_key = secrets.site_key(id).unwrap().expose().to_string();
        assert_eq!(secrets.identify(&site_key), Some(Caller::Site(id)));
        let display = secrets.role_key(Role::Display).expose().to_string();
        assert_eq!(
            secrets.identify(&display),
            Some(Caller::Role(Role::Display))
        );
        assert_eq!(secrets.identify("wrong"), None);
        assert_eq!(secrets.identify(""), None);
        assert!(secrets.is_site_key(id, &site_key));
        assert!(!secrets.is_site_key("05710".parse().unwrap(), &site_key));
        assert_eq!(format!("{:?}", secrets.site_key(id).unwrap()), "Key(…)");
    }

    #[test]
    fn caller_labels_round_trip() {
        for caller in [
            Caller::Role(Role::Display),
            Caller::Site("05443".parse().unwrap()),
        ] {
            assert_eq!(Caller::from_label(&caller.label()), Some(caller));
        }
        assert_eq!(Caller::from_label("site:x"), None);
        assert_eq!(Caller::from_label("root"), None);
    }

    #[test]
    fn a_damaged_file_is_reported_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SECRETS_FILE), "roles = 3").unwrap();
        let err = Secrets::load_or_create(dir.path(), &roster()).unwrap_err();
        assert!(err.to_string().contains("damaged"), "{err}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join(SECRETS_FILE)).unwrap(),
            "roles = 3"
        );
    }
}
