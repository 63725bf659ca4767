//! Stator's engine: everything async and I/O.
//!
//! A [`config::Pipeline`] is loaded from a TOML file and run by [`worker::run`]: a JetStream
//! durable pull consumer feeds per-key event-time windows, whose results drive threshold
//! alerts. A message is acknowledged only once every output derived from it is durable.

pub mod alert;
pub mod archive;
pub mod config;
pub mod features;
#[doc(hidden)]
pub mod fuzz;
pub mod kv;
pub mod machine;
pub mod observe;
pub mod query;
pub mod replay;
pub mod sink;
pub mod source;
pub mod subject;
pub mod telemetry;
pub mod waveform;
pub mod window;
pub mod worker;
