//! `diemcau roster --synthetic N`: a generated roster of N sites as CSV, with their
//! keys, for drills and benchmarks (`serve --sites` takes it).

use std::io::Write;
use std::path::Path;

use crate::auth::{Secrets, SecretsError};
use crate::core::sites::Roster;

#[derive(Debug, thiserror::Error)]
pub enum RosterError {
    #[error("--synthetic takes 1 to 99999 sites")]
    Count,
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error("cannot write the roster: {0}")]
    Write(#[from] csv::Error),
}

/// Writes the roster of `n` sites to `out` and their keys into `data_dir`.
pub fn write_synthetic(n: u32, data_dir: &Path, out: impl Write) -> Result<(), RosterError> {
    if !(1..100_000).contains(&n) {
        return Err(RosterError::Count);
    }
    let roster = Roster::synthetic(n);
    Secrets::load_or_create(data_dir, &roster)?;
    let mut out = csv::Writer::from_writer(out);
    out.write_record(["code", "name", "kind", "former_district"])?;
    for site in roster.sites() {
        out.write_record([
            site.id.as_str(),
            &site.name,
            site.kind.as_str(),
            &site.former_district,
        ])?;
    }
    out.flush().map_err(csv::Error::from)?;
    Ok(())
}
