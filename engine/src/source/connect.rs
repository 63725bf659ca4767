//! Connecting to NATS as a long-running worker: every server of the URL list, retrying the
//! first connection, reconnecting forever, with the pipeline's credentials and TLS settings.

use async_nats::{ConnectError, ConnectErrorKind, ConnectOptions, ServerAddr};

use crate::config::{Auth, SourceSpec};

/// The server addresses of a comma-separated URL list.
///
/// # Errors
/// [`ConnectErrorKind::ServerParse`] for a malformed URL.
pub fn server_addrs(urls: &str) -> Result<Vec<ServerAddr>, ConnectError> {
    urls.split(',')
        .map(|u| u.trim().parse::<ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ConnectError::with_source(ConnectErrorKind::ServerParse, e))
}

/// Connection options with `auth` applied (no server contacted yet).
///
/// # Errors
/// When a credentials or key file cannot be read.
pub async fn options(auth: &Auth) -> Result<ConnectOptions, ConnectError> {
    let mut o = ConnectOptions::new().name("stator").retry_on_initial_connect().max_reconnects(None);
    if let Some((user, password)) = &auth.user {
        o = o.user_and_password(user.clone(), password.expose().to_owned());
    }
    if let Some(token) = &auth.token {
        o = o.token(token.expose().to_owned());
    }
    if let Some(path) = &auth.nkey_seed_file {
        let seed = std::fs::read_to_string(path)
            .map_err(|e| ConnectError::with_source(ConnectErrorKind::Io, e))?
            .trim()
            .to_owned();
        o = o.nkey(seed);
    }
    if let Some(path) = &auth.creds_file {
        o = o.credentials_file(path).await?;
    }
    if let Some(ca) = &auth.tls_ca_file {
        o = o.add_root_certificates(ca.clone());
    }
    if let Some((cert, key)) = &auth.tls_client {
        o = o.add_client_certificate(cert.clone(), key.clone());
    }
    if auth.tls_required || auth.tls_ca_file.is_some() || auth.tls_client.is_some() {
        o = o.require_tls(true);
    }
    Ok(o)
}

/// Connects to the source's servers.
///
/// # Errors
/// A malformed URL or an unreadable credentials file.
pub async fn connect(spec: &SourceSpec) -> Result<async_nats::Client, ConnectError> {
    options(&spec.auth).await?.connect(server_addrs(&spec.url)?).await
}
