//! The `stator` command-line tool: running pipelines, validating pipeline files, simulating
//! a plant, and the self-contained demo. The test harness reuses [`nats_server`].

pub mod demo;
pub mod nats_server;
pub mod plant;
pub mod simulate;

pub use stator_engine::worker::output::rfc3339_ms;

/// The pipelines shipped in `pipelines/`, embedded so `stator demo` works from anywhere.
pub const SHIPPED_PIPELINES: [(&str, &str); 1] =
    [("pipelines/line-health.toml", include_str!("../pipelines/line-health.toml"))];

/// Connects to NATS the way a long-running worker should: retrying the first connection and
/// reconnecting forever.
///
/// # Errors
/// When the URL is malformed.
pub async fn connect(url: &str) -> Result<async_nats::Client, async_nats::ConnectError> {
    async_nats::ConnectOptions::new().name("stator").retry_on_initial_connect().max_reconnects(None).connect(url).await
}
