//! The roster of bridge sites (`config/sites.csv`): who may connect, under which id.
//!
//! The site id is the official 5-digit administrative code, never a slug: two communes
//! ("Xã Văn Lăng", "Xã Văn Lang") fold to the same ASCII name.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::core::table::{Table, TableError};

/// Official 5-digit code of a commune-level unit, e.g. `05443`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SiteId([u8; 5]);

impl SiteId {
    pub fn as_str(&self) -> &str {
        // Only ASCII digits are ever stored.
        std::str::from_utf8(&self.0).expect("site id is ASCII")
    }

    /// The id of synthetic site number `n` (1-based), for generated rosters.
    pub fn synthetic(n: u32) -> Option<SiteId> {
        (n < 100_000).then(|| format!("{n:05}").parse().expect("5 digits"))
    }
}

/// A text that is not a site's 5-digit official code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("site id `{0}` must be the 5-digit official code")]
pub struct BadSiteId(String);

impl FromStr for SiteId {
    type Err = BadSiteId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadSiteId(s.to_string());
        let bytes: [u8; 5] = s.as_bytes().try_into().map_err(|_| bad())?;
        if !bytes.iter().all(u8::is_ascii_digit) {
            return Err(bad());
        }
        Ok(SiteId(bytes))
    }
}

impl fmt::Display for SiteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for SiteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SiteId({})", self.as_str())
    }
}

impl<'de> Deserialize<'de> for SiteId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for SiteId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Kind of commune-level unit.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SiteKind {
    Xa,
    Phuong,
    /// Special zone (đặc khu), on national rosters.
    DacKhu,
}

impl SiteKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            SiteKind::Xa => "xa",
            SiteKind::Phuong => "phuong",
            SiteKind::DacKhu => "dac_khu",
        }
    }
}

impl FromStr for SiteKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "xa" => Ok(SiteKind::Xa),
            "phuong" => Ok(SiteKind::Phuong),
            "dac_khu" => Ok(SiteKind::DacKhu),
            other => Err(format!(
                "unknown kind `{other}` (use xa, phuong or dac_khu)"
            )),
        }
    }
}

/// One bridge site as the organisers describe it.
#[derive(Clone, Debug, Serialize)]
pub struct Site {
    pub id: SiteId,
    pub name: String,
    pub kind: SiteKind,
    pub former_district: String,
    pub contact_name: Option<String>,
    pub contact_phone: Option<String>,
    /// `host:port` of the site's video codec, for active checks.
    pub probe: Option<String>,
}

/// Index of a site in the roster: cheap to copy, valid for the roster's lifetime.
pub type SiteIdx = usize;

/// All sites, in file order, with a lookup by id.
#[derive(Debug, Clone)]
pub struct Roster {
    sites: Vec<Site>,
    by_id: HashMap<SiteId, SiteIdx>,
}

const REQUIRED: &[&str] = &["code", "name", "kind", "former_district"];
const OPTIONAL: &[&str] = &["contact_name", "contact_phone", "probe"];

impl Roster {
    /// Parses a roster CSV; any bad row rejects the whole file.
    pub fn parse(file: &str, bytes: &[u8]) -> Result<Roster, TableError> {
        let table = Table::parse(file, bytes, REQUIRED, OPTIONAL)?;
        let mut sites = Vec::new();
        let mut by_id = HashMap::new();
        for row in table.rows() {
            let line = row.line;
            let code = row
                .get("code")
                .ok_or_else(|| table.error(line, "empty code"))?;
            let id: SiteId = code
                .parse()
                .map_err(|e: BadSiteId| table.error(line, e.to_string()))?;
            let name = row
                .get("name")
                .ok_or_else(|| table.error(line, format!("site {id} has an empty name")))?;
            let kind = row
                .get("kind")
                .unwrap_or("")
                .parse()
                .map_err(|e| table.error(line, format!("site {id}: {e}")))?;
            let probe = row.get("probe").map(str::to_string);
            if let Some(probe) = &probe {
                validate_probe(probe).map_err(|e| table.error(line, format!("site {id}: {e}")))?;
            }
            if by_id.insert(id, sites.len()).is_some() {
                return Err(table.error(line, format!("duplicate site id {id}")));
            }
            sites.push(Site {
                id,
                name: name.to_string(),
                kind,
                former_district: row.get("former_district").unwrap_or("").to_string(),
                contact_name: row.get("contact_name").map(str::to_string),
                contact_phone: row.get("contact_phone").map(str::to_string),
                probe,
            });
        }
        if sites.is_empty() {
            return Err(table.error(0, "no sites: the roster needs at least one row"));
        }
        Ok(Roster { sites, by_id })
    }

    /// A roster of `n` generated sites (ids 00001…), for drills and benchmarks.
    pub fn synthetic(n: u32) -> Roster {
        let sites: Vec<Site> = (1..=n)
            .filter_map(SiteId::synthetic)
            .map(|id| Site {
                id,
                name: format!("Điểm cầu thử {id}"),
                kind: SiteKind::Xa,
                former_district: format!("Cụm {}", &id.as_str()[..3]),
                contact_name: None,
                contact_phone: None,
                probe: None,
            })
            .collect();
        let by_id = sites.iter().enumerate().map(|(i, s)| (s.id, i)).collect();
        Roster { sites, by_id }
    }

    pub fn len(&self) -> usize {
        self.sites.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sites.is_empty()
    }

    pub fn sites(&self) -> &[Site] {
        &self.sites
    }

    pub fn site(&self, idx: SiteIdx) -> &Site {
        &self.sites[idx]
    }

    pub fn index_of(&self, id: SiteId) -> Option<SiteIdx> {
        self.by_id.get(&id).copied()
    }

    /// Finds a site by exact name (agenda rows name their unit).
    pub fn find_by_name(&self, name: &str) -> Option<&Site> {
        self.sites.iter().find(|s| s.name == name)
    }
}

fn validate_probe(probe: &str) -> Result<(), String> {
    let (host, port) = probe
        .rsplit_once(':')
        .ok_or_else(|| format!("probe `{probe}` must be host:port"))?;
    if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(format!(
            "probe `{probe}` must be host:port with a port 1–65535"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "code,name,kind,former_district\n";

    fn parse(rows: &str) -> Result<Roster, TableError> {
        Roster::parse("sites.csv", format!("{HEADER}{rows}").as_bytes())
    }

    #[test]
    fn shipped_roster_has_the_92_units_by_official_code() {
        let roster = Roster::parse("sites.csv", include_bytes!("../../config/sites.csv")).unwrap();
        assert_eq!(roster.len(), 92);
        let xa = roster
            .sites()
            .iter()
            .filter(|s| s.kind == SiteKind::Xa)
            .count();
        assert_eq!((xa, roster.len() - xa), (77, 15));
        let idx = roster.index_of("05443".parse().unwrap()).unwrap();
        assert_eq!(roster.site(idx).name, "Phường Phan Đình Phùng");
    }

    #[test]
    fn site_ids_are_five_digit_codes() {
        assert!("05443".parse::<SiteId>().is_ok());
        for bad in ["5443", "054430", "05a43", "", "０５４４３"] {
            assert!(bad.parse::<SiteId>().is_err(), "{bad}");
        }
        assert_eq!(SiteId::synthetic(7).unwrap().as_str(), "00007");
    }

    #[test]
    fn duplicate_id_is_refused_with_file_and_line() {
        let err = parse("05443,A,phuong,X\n05443,B,xa,Y\n").err().unwrap();
        assert_eq!(err.to_string(), "sites.csv:3: duplicate site id 05443");
    }

    #[test]
    fn empty_name_is_refused() {
        let err = parse("05443, ,phuong,X\n").err().unwrap();
        assert_eq!(
            (err.line, err.reason.contains("empty name")),
            (2, true),
            "{err}"
        );
    }

    #[test]
    fn unknown_kind_is_refused() {
        let err = parse("05443,A,huyen,X\n").err().unwrap();
        assert_eq!(
            (err.line, err.reason.contains("unknown kind `huyen`")),
            (2, true),
            "{err}"
        );
    }

    #[test]
    fn bad_code_and_bad_probe_are_refused() {
        let err = parse("5443,A,xa,X\n").err().unwrap();
        assert!(err.reason.contains("5-digit"), "{err}");
        let err = Roster::parse(
            "s.csv",
            b"code,name,kind,former_district,probe\n05443,A,xa,X,10.0.0.1\n",
        )
        .err()
        .unwrap();
        assert!(err.reason.contains("host:port"), "{err}");
    }

    #[test]
    fn wrong_column_count_and_bad_utf8_are_refused() {
        let err = parse("05443,Phường A, B,phuong,X\n").err().unwrap();
        assert_eq!(err.line, 2);
        assert!(err.reason.contains("wrong number of columns"));
        let err = Roster::parse(
            "s.csv",
            b"code,name,kind,former_district\n05443,X\xe1,xa,Y\n",
        )
        .err()
        .unwrap();
        assert!(err.reason.contains("UTF-8"), "{err}");
    }

    #[test]
    fn empty_roster_is_refused() {
        assert!(parse("").err().unwrap().reason.contains("no sites"));
    }
}
