//! `diemcau links` and `diemcau keys rotate`: which page each role opens, and every
//! role's and site's link, ready for a spreadsheet.

use crate::auth::{Role, Secrets};
use crate::core::sites::Roster;

/// The page a role's link opens.
pub fn page_of(role: Role) -> &'static str {
    match role {
        Role::Admin => "/",
        Role::Operator => "/wall",
        Role::Secretary => "/console",
        Role::Display => "/display",
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
