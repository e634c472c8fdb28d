//! TLS for the tools that connect to the service (`agent`, `simulate`): a service put
//! behind https is reached over `wss://`, trusting what `crate::tls` trusts.

use std::path::Path;

use tokio_tungstenite::Connector;

pub use crate::tls::TlsError;

/// How the tools connect: the system's roots, plus `ca` if given.
pub fn connector(ca: Option<&Path>) -> Result<Connector, TlsError> {
    Ok(Connector::Rustls(crate::tls::client_config(ca)?))
}
