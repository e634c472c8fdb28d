//! Keys and roles: `<data-dir>/secrets.toml`, created once (mode 0600), rewritten only
//! to add keys for sites new to the roster or to rotate one holder's key
//! (`diemcau keys rotate`). The running service watches the file (`Keyring`). Keys are
//! compared in constant time and never logged (`Key`'s `Debug` hides it).

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::core::sites::{Roster, SiteId};

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
    /// Alertmanager's webhook into the Zalo relay, and nothing else.
    Notifier,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::Operator,
        Role::Secretary,
        Role::Display,
        Role::Notifier,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Secretary => "secretary",
            Role::Display => "display",
            Role::Notifier => "notifier",
        }
    }
}

/// Who is calling, once their key is recognised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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
    /// Added by a later version: a file without it gets one at the next start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    notifier: Option<Key>,
}

/// The Zalo bot the relay posts through (`[zalo] bot_token` in secrets.toml; the
/// token is part of the bot's URL, so it is never logged).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZaloSecret {
    pub bot_token: Option<Key>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretsFile {
    roles: RoleKeys,
    #[serde(default)]
    sites: BTreeMap<String, Key>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    zalo: Option<ZaloSecret>,
}

impl SecretsFile {
    fn holder_of_a_weak_key(&self) -> Option<String> {
        let weak = |key: &Key| key.0.trim().len() < MIN_KEY_CHARS || key.0.trim() != key.0;
        let roles = [
            ("admin", &self.roles.admin),
            ("operator", &self.roles.operator),
            ("secretary", &self.roles.secretary),
            ("display", &self.roles.display),
        ];
        let notifier = self.roles.notifier.as_ref().map(|key| ("notifier", key));
        roles
            .into_iter()
            .chain(notifier)
            .find(|(_, key)| weak(key))
            .map(|(role, _)| role.to_string())
            .or_else(|| {
                self.sites
                    .iter()
                    .find(|(_, key)| weak(key))
                    .map(|(site, _)| site.clone())
            })
    }
}

/// All keys in force.
#[derive(Clone, Debug)]
pub struct Secrets {
    roles: RoleKeys,
    /// The notifier's key (a file read without being extended may lack one: then a
    /// key nobody holds).
    notifier: Key,
    sites: BTreeMap<SiteId, Key>,
    zalo_bot_token: Option<Key>,
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
    #[error("{path} has no key for {holder}")]
    NoSuchHolder { path: PathBuf, holder: String },
    #[error(
        "{path} has no site keys (its [sites] section is missing or empty): restore it from a backup, since new keys would break every link already sent; to give every site a new key on purpose, move the file away and send the new links"
    )]
    LostSites { path: PathBuf },
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
        let file = read_file(&path)?;
        let existed = file.is_some();
        if file.as_ref().is_some_and(|f| f.sites.is_empty()) && !roster.sites().is_empty() {
            return Err(SecretsError::LostSites { path });
        }
        let mut file = file.unwrap_or_else(|| SecretsFile {
            roles: RoleKeys {
                admin: Key::generate(),
                operator: Key::generate(),
                secretary: Key::generate(),
                display: Key::generate(),
                notifier: None,
            },
            sites: BTreeMap::new(),
            zalo: None,
        });
        // A new file, or one from before the notifier role: its key is written down.
        let notifier_added = file.roles.notifier.is_none();
        if notifier_added {
            file.roles.notifier = Some(Key::generate());
        }
        let mut added = 0;
        for site in roster.sites() {
            file.sites.entry(site.id.to_string()).or_insert_with(|| {
                added += 1;
                Key::generate()
            });
        }
        if !existed || added > 0 || notifier_added {
            std::fs::create_dir_all(data_dir).map_err(io)?;
            write_private(&path, &toml::to_string(&file).expect("secrets serialize"))
                .map_err(io)?;
        }
        let origin = match (existed, added) {
            (false, _) => SecretsOrigin::Created,
            (true, 0) => SecretsOrigin::Loaded,
            (true, n) => SecretsOrigin::Extended(n),
        };
        Ok((Secrets::from_file(file), origin))
    }

    /// Reads `<data_dir>/secrets.toml` without creating or extending it.
    pub fn read(data_dir: &Path) -> Result<Option<Secrets>, SecretsError> {
        Ok(read_file(&data_dir.join(SECRETS_FILE))?.map(Secrets::from_file))
    }

    fn from_file(file: SecretsFile) -> Secrets {
        let sites = file
            .sites
            .iter()
            .filter_map(|(id, key)| Some((id.parse().ok()?, key.clone())))
            .collect();
        Secrets {
            notifier: file.roles.notifier.clone().unwrap_or_else(Key::generate),
            roles: file.roles,
            sites,
            zalo_bot_token: file.zalo.and_then(|z| z.bot_token),
        }
    }

    /// Gives `holder` a new key in `<data_dir>/secrets.toml` and returns it. A running
    /// service sees the change within a second and ends the old key's sessions and sockets.
    pub fn rotate(data_dir: &Path, holder: Caller) -> Result<Key, SecretsError> {
        let path = data_dir.join(SECRETS_FILE);
        let no_such = || SecretsError::NoSuchHolder {
            path: path.clone(),
            holder: holder.label(),
        };
        let mut file = read_file(&path)?.ok_or_else(no_such)?;
        let key = Key::generate();
        let slot = match holder {
            Caller::Role(Role::Admin) => &mut file.roles.admin,
            Caller::Role(Role::Operator) => &mut file.roles.operator,
            Caller::Role(Role::Secretary) => &mut file.roles.secretary,
            Caller::Role(Role::Display) => &mut file.roles.display,
            Caller::Role(Role::Notifier) => file.roles.notifier.insert(Key::generate()),
            Caller::Site(id) => file.sites.get_mut(&id.to_string()).ok_or_else(no_such)?,
        };
        *slot = key.clone();
        write_private(&path, &toml::to_string(&file).expect("secrets serialize")).map_err(
            |source| SecretsError::Io {
                path: path.clone(),
                source,
            },
        )?;
        Ok(key)
    }

    /// The holders whose key is different in `newer` (or gone from it).
    pub fn changed(&self, newer: &Secrets) -> Vec<Caller> {
        let roles = Role::ALL
            .into_iter()
            .filter(|role| self.role_key(*role) != newer.role_key(*role))
            .map(Caller::Role);
        let sites = self
            .sites
            .iter()
            .filter(|(id, key)| newer.site_key(**id) != Some(*key))
            .map(|(id, _)| Caller::Site(*id));
        roles.chain(sites).collect()
    }

    pub fn role_key(&self, role: Role) -> &Key {
        match role {
            Role::Admin => &self.roles.admin,
            Role::Operator => &self.roles.operator,
            Role::Secretary => &self.roles.secretary,
            Role::Display => &self.roles.display,
            Role::Notifier => &self.notifier,
        }
    }

    /// The Zalo bot's token, when the relay is to be used.
    pub fn zalo_bot_token(&self) -> Option<&Key> {
        self.zalo_bot_token.as_ref()
    }

    /// The key `holder` holds now, if any.
    pub fn key_of(&self, holder: Caller) -> Option<&Key> {
        match holder {
            Caller::Role(role) => Some(self.role_key(role)),
            Caller::Site(id) => self.site_key(id),
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

/// A key shorter than this is not one diemcau made (they are 32 hex digits).
const MIN_KEY_CHARS: usize = 16;

fn read_file(path: &Path) -> Result<Option<SecretsFile>, SecretsError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let damaged = |message: String| SecretsError::Parse {
                path: path.to_path_buf(),
                message,
            };
            let file = toml::from_str::<SecretsFile>(&text).map_err(|e| damaged(e.to_string()))?;
            if let Some(holder) = file.holder_of_a_weak_key() {
                return Err(damaged(format!(
                    "the key of {holder} is empty or shorter than {MIN_KEY_CHARS} characters \
                     (make a new one: `diemcau keys rotate --role {holder}` or `--site {holder}`)"
                )));
            }
            Ok(Some(file))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SecretsError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The keys in force in a running service, following `secrets.toml` on disk.
pub struct Keyring {
    /// Guards the keys in force. A std `RwLock` around an `Arc`: every request reads
    /// it (and clones the `Arc` out at once), the once-a-second file check writes it
    /// after reading the file with the lock released. Never read the file under it.
    current: RwLock<Arc<Secrets>>,
    path: PathBuf,
    /// Guards (inode, modification time, length) of the file last looked at. A std
    /// `Mutex` taken only by the file follower, once a second.
    seen: Mutex<Option<(u64, std::time::SystemTime, u64)>>,
}

impl Keyring {
    pub fn new(secrets: Secrets, data_dir: &Path) -> Keyring {
        let path = data_dir.join(SECRETS_FILE);
        let seen = Mutex::new(file_stamp(&path));
        Keyring {
            current: RwLock::new(Arc::new(secrets)),
            path,
            seen,
        }
    }

    pub fn current(&self) -> Arc<Secrets> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// When the file changed since last time, takes its keys and returns the holders
    /// whose key changed. A damaged file is an error and the keys in force stay.
    pub fn reload_if_changed(&self) -> Result<Vec<Caller>, SecretsError> {
        let stamp = file_stamp(&self.path);
        {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if *seen == stamp {
                return Ok(Vec::new());
            }
            *seen = stamp; // a damaged file is reported once, not every second
        }
        let newer = match read_file(&self.path)? {
            Some(file) => Secrets::from_file(file),
            None => {
                return Err(SecretsError::Io {
                    path: self.path.clone(),
                    source: std::io::ErrorKind::NotFound.into(),
                });
            }
        };
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        let changed = current.changed(&newer);
        *current = Arc::new(newer);
        Ok(changed)
    }
}

fn file_stamp(path: &Path) -> Option<(u64, std::time::SystemTime, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.ino(), meta.modified().ok()?, meta.len()))
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
    fn a_rotated_key_replaces_only_its_holder_and_the_keyring_follows_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (before, _) = Secrets::load_or_create(dir.path(), &roster()).unwrap();
        let keyring = Keyring::new(before.clone(), dir.path());
        assert_eq!(
            keyring.reload_if_changed().unwrap(),
            vec![],
            "nothing changed yet"
        );

        let site: SiteId = "05443".parse().unwrap();
        let new_key = Secrets::rotate(dir.path(), Caller::Site(site)).unwrap();
        assert_eq!(
            keyring.reload_if_changed().unwrap(),
            vec![Caller::Site(site)]
        );
        let now = keyring.current();
        assert!(now.is_site_key(site, new_key.expose()));
        assert!(!now.is_site_key(site, before.site_key(site).unwrap().expose()));
        assert_eq!(now.role_key(Role::Admin), before.role_key(Role::Admin));

        Secrets::rotate(dir.path(), Caller::Role(Role::Display)).unwrap();
        assert_eq!(
            keyring.reload_if_changed().unwrap(),
            vec![Caller::Role(Role::Display)]
        );
        assert!(
            Secrets::rotate(dir.path(), Caller::Site("99999".parse().unwrap())).is_err(),
            "a site without a key"
        );

        std::fs::write(dir.path().join(SECRETS_FILE), "roles = [").unwrap();
        assert!(keyring.reload_if_changed().is_err());
        assert!(
            keyring.current().is_site_key(site, new_key.expose()),
            "a damaged file changes nothing"
        );
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
    fn a_file_from_before_the_notifier_role_gets_its_key_and_keeps_every_other() {
        let dir = tempfile::tempdir().unwrap();
        let (first, _) = Secrets::load_or_create(dir.path(), &roster()).unwrap();
        let path = dir.path().join(SECRETS_FILE);
        let old: String = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .filter(|line| !line.starts_with("notifier"))
            .map(|line| format!("{line}\n"))
            .collect();
        std::fs::write(&path, &old).unwrap();
        let (second, _) = Secrets::load_or_create(dir.path(), &roster()).unwrap();
        let now = std::fs::read_to_string(&path).unwrap();
        assert!(now.contains("notifier = "), "{now}");
        let notifier = second.role_key(Role::Notifier).expose();
        assert_eq!(
            second.identify(notifier),
            Some(Caller::Role(Role::Notifier))
        );
        assert_eq!(first.role_key(Role::Admin), second.role_key(Role::Admin));
        let (third, origin) = Secrets::load_or_create(dir.path(), &roster()).unwrap();
        assert_eq!(origin, SecretsOrigin::Loaded);
        assert_eq!(
            third.role_key(Role::Notifier),
            second.role_key(Role::Notifier),
            "written once"
        );
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
