//! The `stator` command-line tool: running pipelines, validating pipeline files, simulating
//! a plant, and the self-contained demo. The test harness reuses [`nats_server`].

pub mod cli;
pub mod demo;
pub mod nats_server;
pub mod plant;
pub mod plot;
pub mod replay;
pub mod s3_server;
pub mod simulate;
pub mod status;
pub mod wan;

pub use stator_engine::worker::output::rfc3339_ms;

/// `stator --version`: the package version and the git commit it was built from
/// (`unknown` outside a git checkout).
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("STATOR_GIT_COMMIT"), ")");

/// The pipelines shipped in `pipelines/`, embedded so `stator demo` works from anywhere.
pub const SHIPPED_PIPELINES: [(&str, &str); 2] = [
    ("pipelines/line-health.toml", include_str!("../pipelines/line-health.toml")),
    ("pipelines/bearing-health.toml", include_str!("../pipelines/bearing-health.toml")),
];

/// The pipelines of the edge-to-cloud topology (docs/DEPLOYMENT.md), embedded for
/// `stator demo --edge`: alerts at the factory's edge, windows and archive in the cloud.
pub const EDGE_PIPELINES: [(&str, &str); 2] = [
    ("pipelines/edge-alerts.toml", include_str!("../pipelines/edge-alerts.toml")),
    ("pipelines/cloud-archive.toml", include_str!("../pipelines/cloud-archive.toml")),
];

/// Connects to NATS the way a long-running worker should: retrying the first connection and
/// reconnecting forever. `urls` may list several servers, comma-separated.
///
/// # Errors
/// When a URL is malformed.
pub async fn connect(urls: &str) -> Result<async_nats::Client, async_nats::ConnectError> {
    let addrs = stator_engine::source::server_addrs(urls)?;
    stator_engine::source::options(&stator_engine::config::Auth::default()).await?.connect(addrs).await
}
