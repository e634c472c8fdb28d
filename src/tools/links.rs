//! `diemcau links` and `diemcau keys rotate`: which page each role opens, and every
//! role's and site's link, ready for a spreadsheet.

use std::path::Path;

use crate::auth::{Caller, Key, Role, Secrets, SecretsError};
use crate::core::sites::{Roster, SiteId};

#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error("`{0}` is not a 5-digit site code")]
    BadSite(String),
    #[error("site {0} is not in the roster")]
    NotInRoster(SiteId),
    #[error("say whose key: --site ID or --role NAME")]
    Nobody,
    #[error(transparent)]
    Secrets(#[from] SecretsError),
}

/// A new key, whose it is, and the page its link opens.
pub struct Rotated {
    pub holder: Caller,
    pub page: &'static str,
    pub key: Key,
}

/// Gives one site (by code) or role a new key in `data_dir`'s secrets.toml.
pub fn rotate(
    data_dir: &Path,
    roster: &Roster,
    site: Option<&str>,
    role: Option<Role>,
) -> Result<Rotated, RotateError> {
    let (holder, page) = match (site, role) {
        (Some(site), _) => {
            let id: SiteId = site
                .parse()
                .map_err(|_| RotateError::BadSite(site.to_string()))?;
            if roster.index_of(id).is_none() {
                return Err(RotateError::NotInRoster(id));
            }
            (Caller::Site(id), "/bridge")
        }
        (None, Some(role)) => (Caller::Role(role), page_of(role)),
        (None, None) => return Err(RotateError::Nobody),
    };
    let key = Secrets::rotate(data_dir, holder)?;
    Ok(Rotated { holder, page, key })
}

/// The page a role's link opens.
pub fn page_of(role: Role) -> &'static str {
    match role {
        Role::Admin => "/",
        Role::Operator => "/wall",
        Role::Secretary => "/console",
        Role::Display => "/display",
        Role::Notifier => "/api/relay/zalo",
    }
}

/// One line per role, then one per site: tab-separated, ready for a spreadsheet.
pub fn links_text(secrets: &Secrets, roster: &Roster, base: &str) -> String {
    let mut out = String::from("# role\tpage\tURL\n");
    for (role, label) in [
        (Role::Admin, "quản trị"),
        (Role::Operator, "tường điểm cầu"),
        (Role::Secretary, "thư ký điều hành"),
        (Role::Display, "màn hình hội trường"),
    ] {
        let page = page_of(role);
        let key = secrets.role_key(role).expose();
        out.push_str(&format!(
            "{}\t{label}\t{base}{page}?key={key}\n",
            role.as_str()
        ));
    }
    // No page: Alertmanager sends it as a Bearer key (README "Notifications").
    out.push_str(&format!(
        "# notifier\tAlertmanager → Zalo\twebhook URL, then its Bearer key\nnotifier\t{base}{}\t{}\n",
        page_of(Role::Notifier),
        secrets.role_key(Role::Notifier).expose()
    ));
    out.push_str("# site\tname\tjoin URL\n");
    for site in roster.sites() {
        if let Some(key) = secrets.site_key(site.id) {
            out.push_str(&format!(
                "{}\t{}\t{base}/bridge?key={}\n",
                site.id,
                site.name,
                key.expose()
            ));
        }
    }
    out
}
