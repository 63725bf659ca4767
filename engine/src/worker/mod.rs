//! The pipeline worker: consumer → decode → windows → alerts → commit → ack.
//!
//! Delivery guarantee: a message is acknowledged only after every window it fell into has
//! closed and every alert transition and state change those windows caused is confirmed by
//! the server. A crash or stop before that leaves it unacknowledged, so JetStream redelivers
//! it; the replayed windows produce the same alert `Nats-Msg-Id`s (dropped by the stream as
//! duplicates) and the persisted alert state skips windows it has already applied.
//!
//! With an `[archive]`, a message also waits for the file holding it to be committed to the
//! object store, and a window's messages for the files holding its features and alerts; the
//! alert states those windows changed are saved only after those files (see
//! [`crate::archive::Sink`]).
//!
//! After a restart, messages the previous run held are redelivered only once their ack wait
//! runs out, after newer ones. So that they are not mistaken for late readings, the worker
//! *holds its watermark* (closes no window, marks nothing late) until the consumer's pending
//! messages have come back or one ack wait has passed.
//!
//! The work is split by job: `lifecycle` binds, starts and stops a run; `fetch` is the loop
//! that pulls messages and queues commits; `receive` decodes and routes one message into its
//! windows (with `route`); `windows` closes windows and turns them into features and alerts
//! (with `output`); `ack` tracks every held message until it can be acknowledged; `commit`
//! makes outputs durable in order and sends the acks; `pin` takes over and gives up consumers
//! as the server pins workers (several workers on one pipeline: one active, the others
//! standing by).

mod ack;
mod commit;
mod fetch;
mod lanes;
mod lifecycle;
pub mod output;
mod pin;
mod receive;
mod route;
mod windows;

pub use lanes::run;
pub use route::WindowResult;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use tokio::sync::mpsc;

pub use crate::observe::Stats;

use crate::alert::RuleState;
use crate::archive::Sink;
use crate::config::Pipeline;
use crate::machine::{self, MachineConfig};
use ack::{Barrier, Done, InFlight};
use commit::Awaiting;
use route::Op;

/// Why a worker stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// Binding to the consumer failed.
    #[error("pipeline `{pipeline}`: {source}")]
    Source {
        /// Pipeline name.
        pipeline: String,
        /// Cause.
        source: crate::source::SourceError,
    },
    /// The archive location cannot be used.
    #[error("pipeline `{pipeline}`: {source}")]
    Archive {
        /// Pipeline name.
        pipeline: String,
        /// Cause.
        source: crate::archive::LocationError,
    },
    /// A drain ended with outputs or acknowledgements not confirmed: the stream was not
    /// fully processed (its messages stay unacknowledged for the next run).
    #[error("pipeline `{pipeline}`: the drain did not finish: {reason}")]
    NotDrained {
        /// Pipeline name.
        pipeline: String,
        /// Why, as far as the worker knows.
        reason: String,
    },
    /// NATS failed in a way the worker cannot ride out.
    #[error("pipeline `{pipeline}`: {message}")]
    Nats {
        /// Pipeline name.
        pipeline: String,
        /// Cause.
        message: String,
    },
}

/// How a run ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RunMode {
    /// Run until shutdown (a long-running worker).
    #[default]
    Follow,
    /// Stop once the consumer has delivered everything in the stream: close every open window,
    /// commit, and return (demo, replay, benchmarks).
    Drain,
}

/// How long shutdown waits for in-flight outputs before giving up on them (they are then
/// redelivered to the next run).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// One pipeline's running state: its windows, the messages it holds, and the sinks' handles.
struct Worker {
    pipeline: Arc<Pipeline>,
    ops: Vec<Op>,
    machines: HashMap<String, MachineConfig>,
    machine_updates: Option<mpsc::Receiver<machine::Update>>,
    inflight: HashMap<u64, InFlight>,
    /// Per consumer, the consumer sequence of the latest delivery received (deliveries lost on the way show
    /// as the server's being ahead: [`Stats::deliveries_missing`]).
    received: HashMap<String, u64>,
    /// The durable names of the consumers this worker reads.
    consumers: Vec<String>,
    done: Done,
    /// The newest stream sequence delivered (of the stream the consumers are on).
    delivered_upto: u64,
    /// The partition this worker runs, for a partitioned pipeline.
    lane: Option<Lane>,
    /// The stream messages are known in: the pipeline's (also for a partition).
    origin_stream: Arc<str>,
    states: HashMap<String, RuleState>,
    barrier: Option<Barrier>,
    /// Per consumer (by index), the pin this worker holds (see [`pin`]).
    pins: Vec<Option<pin::Held>>,
    /// The alert state bucket (reloaded when this worker takes over a consumer).
    store: jetstream::kv::Store,
    /// This worker's entry on the pipeline's roll of workers, once announced.
    roll: Option<crate::source::members::Roll>,
    ack_wait: Duration,
    stats: Arc<Stats>,
    closed: Vec<WindowResult>,
    /// Speed readings no window can use any more, to release.
    speed_released: Vec<u64>,
    key_buf: String,
    archive: Option<Sink>,
    max_ack_pending: usize,
    /// Whether this run said that deliveries stopped on a full consumer it may not raise
    /// (see [`ack`]'s `widen`).
    said_saturated: bool,
    stream: Option<jetstream::stream::Stream>,
    awaiting: Arc<std::sync::Mutex<Awaiting>>,
    js: jetstream::Context,
    client: async_nats::Client,
}

/// One partition of a partitioned pipeline as a worker runs it (see [`lanes`]): the
/// partition's consumer is on the partitioned stream, and its messages are known by their
/// sequence in the pipeline's own stream (`origin`).
#[derive(Clone)]
pub(crate) struct Lane {
    /// The pipeline's stream, which the partitioned stream copies.
    pub(crate) origin: jetstream::stream::Stream,
    /// This worker's entry on the pipeline's roll (kept by [`lanes`]).
    pub(crate) roll: Option<crate::source::members::Roll>,
}
