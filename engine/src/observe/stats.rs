//! The metrics of a running pipeline: Prometheus counters, gauges and histograms labelled by
//! pipeline, shared with the HTTP endpoints, the CLI and the tests.
//!
//! Every metric is declared once in [`pipeline_metrics!`]: its field in [`Stats`], its family
//! in the process-wide registry, its Prometheus name and help text.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A gauge in seconds.
pub type Seconds = Gauge<f64, AtomicU64>;

/// The label every pipeline metric carries.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PipelineLabel {
    /// Pipeline name.
    pub pipeline: String,
}

/// Labels of the per-reason counters.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Pipeline name.
    pub pipeline: String,
    /// Dead-letter reason code (`invalid_json`, `late`, `max_deliver`, ...).
    pub reason: String,
}

/// How a metric of the declaration below is made.
trait Make {
    fn make() -> Self;
}

impl Make for Counter {
    fn make() -> Self {
        Counter::default()
    }
}

impl Make for Gauge {
    fn make() -> Self {
        Gauge::default()
    }
}

impl Make for Seconds {
    fn make() -> Self {
        Seconds::default()
    }
}

impl Make for Histogram {
    /// 0.5 ms to ~70 min, doubling: covers the worker's own part of an alert (window close to
    /// PubAck, milliseconds), a commit to an object store, and an alert raised on a 10-minute
    /// window with its lateness.
    fn make() -> Self {
        Histogram::new(exponential_buckets(0.0005, 2.0, 24))
    }
}

/// Every dead-letter reason the worker gives, so that each series exists (at 0) from the
/// start: a rate over a series that appears only with its first increment misses it.
const REASONS: [&str; 16] = [
    "invalid_json",
    "missing_value",
    "non_finite_value",
    "missing_event_time",
    "bad_event_time",
    "subject_mismatch",
    "event_time_in_future",
    "odd_byte_count",
    "non_finite_sample",
    "bad_sample_rate",
    "missing_header",
    "bad_metadata",
    "empty_waveform",
    "bad_rpm",
    "late",
    "max_deliver",
];

/// Alerts kept for `stator status`.
const RECENT_ALERTS: usize = 20;

/// An alert transition confirmed by the server, as `stator status` shows it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RecentAlert {
    /// Subject it was published on.
    pub subject: String,
    /// Its payload (the alert JSON).
    pub alert: serde_json::Value,
}

/// Where a pipeline reads from, once bound.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SourceInfo {
    /// Stream name.
    pub stream: String,
    /// Durable consumer name.
    pub durable: String,
}

/// One worker's announcement.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Member {
    /// The worker's id: `{host}-{pid}`.
    pub worker: String,
    /// When it started (RFC 3339).
    pub started: String,
    /// The consumers it reads.
    pub consumers: Vec<String>,
    /// Those it is pinned (active) on; empty on a standby.
    pub pinned: Vec<String>,
    /// Messages it has received.
    pub fetched: u64,
}

macro_rules! pipeline_metrics {
    ($( $(#[doc = $doc:literal])+ $field:ident: $kind:ty = $name:literal, )*) => {
        /// Metrics of one pipeline run.
        #[derive(Debug)]
        pub struct Stats {
            $( $(#[doc = $doc])+ pub $field: $kind, )*
            /// Pipeline name.
            pub pipeline: String,
            /// Stream and consumer, once bound.
            pub source: OnceLock<SourceInfo>,
            dead_letter_reasons: Family<ReasonLabels, Counter>,
            decode_error_reasons: Family<ReasonLabels, Counter>,
            recent_alerts: Mutex<VecDeque<RecentAlert>>,
            refusal: Mutex<Option<String>>,
            /// Per consumer, the sequence of the server's last delivery and when it was polled.
            delivered: Mutex<HashMap<String, (u64, Instant)>>,
            /// The consumers this worker is pinned on.
            pinned_on: Mutex<std::collections::BTreeSet<String>>,
            /// Per set of consumers (a partition), their counts: pending, ack pending, ack floor.
            lags: Mutex<HashMap<String, [u64; 3]>>,
        }

        /// The families of every pipeline's metrics, registered once per process.
        #[derive(Debug)]
        struct Families {
            $( $field: Family<PipelineLabel, $kind, fn() -> $kind>, )*
            dead_letter_reasons: Family<ReasonLabels, Counter>,
            decode_error_reasons: Family<ReasonLabels, Counter>,
        }

        impl Families {
            fn new() -> Self {
                Self {
                    $( $field: Family::new_with_constructor(<$kind as Make>::make as fn() -> $kind), )*
                    dead_letter_reasons: Family::default(),
                    decode_error_reasons: Family::default(),
                }
            }

            fn register(&self, registry: &mut Registry) {
                $( // The registry ends every help text with a full stop.
                registry.register(
                    concat!("stator_", $name),
                    concat!($($doc),+).trim().trim_end_matches('.'),
                    self.$field.clone(),
                ); )*
                registry.register(
                    "stator_dead_letters",
                    "Messages dead-lettered, by reason (counted when refused)",
                    self.dead_letter_reasons.clone(),
                );
                registry.register(
                    "stator_decode_errors",
                    "Messages the decoder or its checks refused, by reason",
                    self.decode_error_reasons.clone(),
                );
            }

            fn stats(&self, pipeline: &str) -> Stats {
                let label = PipelineLabel { pipeline: pipeline.to_owned() };
                Stats {
                    $( $field: self.$field.get_or_create(&label).clone(), )*
                    pipeline: pipeline.to_owned(),
                    source: OnceLock::new(),
                    dead_letter_reasons: self.dead_letter_reasons.clone(),
                    decode_error_reasons: self.decode_error_reasons.clone(),
                    recent_alerts: Mutex::default(),
                    refusal: Mutex::default(),
                    delivered: Mutex::default(),
                    pinned_on: Mutex::default(),
                    lags: Mutex::default(),
                }
            }
        }
    };
}

pipeline_metrics! {
    /// Messages received from the consumer.
    fetched: Counter = "messages_fetched",
    /// Messages that were redeliveries.
    redelivered: Counter = "messages_redelivered",
    /// Messages acknowledged.
    acked: Counter = "messages_acked",
    /// In-progress acks sent (messages kept from redelivery while they wait).
    in_progress: Counter = "messages_in_progress_acked",
    /// Messages NAKed (at shutdown, for prompt redelivery).
    naked: Counter = "messages_naked",
    /// Messages terminated after dead-lettering.
    terminated: Counter = "messages_terminated",
    /// Dead letters published.
    dead_letters: Counter = "dead_letters_published",
    /// Readings that arrived after their window closed.
    late: Counter = "late_readings",
    /// Windows closed.
    windows_closed: Counter = "windows_closed",
    /// Alert transitions confirmed by the server (new, not duplicates).
    alerts_published: Counter = "alerts_published",
    /// Alert transitions the stream reported as duplicates.
    alerts_duplicate: Counter = "alerts_duplicate",
    /// Feature records published.
    features_published: Counter = "features_published",
    /// Machine config changes applied.
    config_updates: Counter = "machine_config_updates",
    /// Invalid machine config documents ignored.
    config_errors: Counter = "machine_config_errors",
    /// Times the consumer was found gone and created again.
    consumer_rebinds: Counter = "consumer_rebinds",
    /// Ticks spent waiting for the committer (a slow or unreachable sink) instead of fetching.
    backpressure_ticks: Counter = "backpressure_ticks",
    /// Archive files handed to the committer.
    archive_rolls: Counter = "archive_rolls",
    /// Archive files committed.
    archive_files: Counter = "archive_files",
    /// Archive rows committed.
    archive_rows: Counter = "archive_rows",
    /// Archive bytes committed.
    archive_bytes: Counter = "archive_bytes",
    /// Archive rows skipped because an earlier run had committed them.
    archive_skipped: Counter = "archive_rows_skipped",
    /// Messages the consumer has not delivered yet (JetStream num_pending, polled).
    consumer_pending: Gauge = "consumer_pending_messages",
    /// Messages delivered and not yet acknowledged (JetStream num_ack_pending, polled).
    consumer_ack_pending: Gauge = "consumer_ack_pending_messages",
    /// Stream sequence below which every message is acknowledged (the ack floor, polled).
    consumer_ack_floor: Gauge = "consumer_ack_floor_sequence",
    /// Wall clock minus the pipeline's newest watermark (event time), seconds.
    watermark_lag: Seconds = "watermark_lag_seconds",
    /// Wall clock at a window's close minus the window's end (event time), seconds.
    window_close_latency: Histogram = "window_close_latency_seconds",
    /// Event time (window end) to the server's PubAck of the alert transition, seconds.
    alert_latency: Histogram = "alert_latency_seconds",
    /// The worker's own part of an alert's latency: from the moment it closed the window (its
    /// watermark past the window's end plus the allowed lateness) to the server's PubAck of
    /// the alert transition, seconds.
    alert_publish_latency: Histogram = "alert_publish_seconds",
    /// Time to commit one archive file to the object store (retries included), seconds.
    archive_commit_latency: Histogram = "archive_commit_seconds",
    /// KV revision of the newest machine config in force (0: none).
    config_revision: Gauge = "machine_config_revision",
    /// 1 once the pipeline is bound to its consumer.
    consumer_bound: Gauge = "consumer_bound",
    /// Consumers this worker is the pinned (active) one for; 0 on a standby. A consumer
    /// without a priority group (one worker only) counts as pinned.
    consumers_pinned: Gauge = "consumers_pinned",
    /// Runs of the pipeline (or of one of its partitions) that ended with an error NATS may get
    /// over (a request not answered during a leader election, a lost connection) and were
    /// started again.
    run_restarts: Counter = "run_restarts",
    /// Times this worker raised the `max_ack_pending` of a consumer it created, because the
    /// open windows held all of it and deliveries had stopped.
    max_ack_pending_raised: Counter = "max_ack_pending_raised",
    /// Times this worker stood down: the server pinned another worker for a consumer it was
    /// active on, and it dropped its open windows for that worker to compute.
    stand_downs: Counter = "stand_downs",
    /// 1 while the NATS connection is up.
    nats_connected: Gauge = "nats_connected",
    /// 0 while archive writes are failing and being retried.
    archive_available: Gauge = "archive_available",
    /// 0 while publishing alerts, features or dead letters is failing and being retried.
    outputs_available: Gauge = "outputs_available",
    /// 1 while a source (or the mirror) of the pipeline's stream has not been heard from for
    /// more than 3 s (a WAN cut between a leaf node and the cloud) or holds messages not yet
    /// forwarded (the backlog after it): no key counts as idle then.
    upstream_silent: Gauge = "upstream_silent",
    /// Messages a source of the pipeline's stream lost before forwarding them (a WAN cut
    /// longer than the edge stream's limits), from the source sequences around the silence.
    upstream_lost: Counter = "upstream_lost_messages",
    /// Publish attempts the server refused (answered with an error, e.g. a stream limit or a
    /// header it will not take); the output is kept and retried.
    outputs_refused: Counter = "outputs_refused",
}

impl Default for Stats {
    /// Metrics not registered anywhere (tests, benchmarks, one-off runs).
    fn default() -> Self {
        Families::new().stats("")
    }
}

impl Stats {
    /// Adds `n` to a counter.
    pub fn add(counter: &Counter, n: u64) {
        counter.inc_by(n);
    }

    /// Reads a counter.
    pub fn get(counter: &Counter) -> u64 {
        counter.get()
    }

    /// Counts a dead letter by reason.
    pub fn dead_letter(&self, reason: &str) {
        self.dead_letter_reasons.get_or_create(&self.reason(reason)).inc();
    }

    /// Counts a message refused by the decoder or its checks.
    pub fn decode_error(&self, reason: &str) {
        self.decode_error_reasons.get_or_create(&self.reason(reason)).inc();
    }

    /// Dead letters counted for `reason`.
    pub fn dead_letters_for(&self, reason: &str) -> u64 {
        self.dead_letter_reasons.get(&self.reason(reason)).map_or(0, |c| c.get())
    }

    fn reason(&self, reason: &str) -> ReasonLabels {
        ReasonLabels { pipeline: self.pipeline.clone(), reason: reason.to_owned() }
    }

    /// Remembers an alert transition the server confirmed.
    pub fn alert_confirmed(&self, subject: &str, payload: &[u8]) {
        let alert = serde_json::from_slice(payload).unwrap_or(serde_json::Value::Null);
        if let Ok(mut recent) = self.recent_alerts.lock() {
            if recent.len() == RECENT_ALERTS {
                recent.pop_front();
            }
            recent.push_back(RecentAlert { subject: subject.to_owned(), alert });
        }
    }

    /// Records the consumer sequence of the server's last delivery on `consumer` (polled).
    pub fn set_delivered(&self, consumer: &str, consumer_seq: u64) {
        if let Ok(mut d) = self.delivered.lock() {
            d.insert(consumer.to_owned(), (consumer_seq, Instant::now()));
        }
    }

    /// Whether the server made deliveries on `consumers` (a worker's own: a partitioned
    /// pipeline's runs share these metrics), polled at least `grace` ago, that never arrived
    /// (`received`: per consumer, the consumer sequence of the latest delivery received): the
    /// tail of a pull response lost on the way, for instance while a restarted server
    /// recovered. Those messages come back only after `ack_wait`; until then no key counts as
    /// idle. (A loss followed by later deliveries shows as a jump in the consumer sequence
    /// and holds the watermark instead.)
    pub fn deliveries_missing(
        &self,
        received: &HashMap<String, u64>,
        consumers: &[String],
        now: Instant,
        grace: Duration,
    ) -> bool {
        let Ok(d) = self.delivered.lock() else { return false };
        consumers.iter().any(|consumer| {
            d.get(consumer).is_some_and(|(seq, at)| {
                now.saturating_duration_since(*at) >= grace && received.get(consumer).copied().unwrap_or(0) < *seq
            })
        })
    }

    /// Says whether this worker is pinned on `consumer` (and sets the `consumers_pinned` gauge).
    pub fn set_pinned(&self, consumer: &str, pinned: bool) {
        if let Ok(mut p) = self.pinned_on.lock() {
            if pinned {
                p.insert(consumer.to_owned());
            } else {
                p.remove(consumer);
            }
            self.consumers_pinned.set(p.len() as i64);
        }
    }

    /// The consumers this worker is pinned on.
    pub fn pinned_on(&self) -> Vec<String> {
        self.pinned_on.lock().map(|p| p.iter().cloned().collect()).unwrap_or_default()
    }

    /// Sets the counts of the consumers `scope` stands for (a pipeline's, or one partition's):
    /// `[pending, ack pending, ack floor]`, or `None` when the worker no longer reads them. The
    /// gauges show them summed over the scopes (the lowest ack floor).
    pub fn set_lag(&self, scope: &str, counts: Option<[u64; 3]>) {
        let Ok(mut lags) = self.lags.lock() else { return };
        match counts {
            Some(c) => drop(lags.insert(scope.to_owned(), c)),
            None => drop(lags.remove(scope)),
        }
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.consumer_pending.set(gauge(lags.values().map(|c| c[0]).sum()));
        self.consumer_ack_pending.set(gauge(lags.values().map(|c| c[1]).sum()));
        self.consumer_ack_floor.set(gauge(lags.values().map(|c| c[2]).min().unwrap_or(0)));
    }

    /// Sets (or, with `None`, clears) why the server refuses the output being published.
    pub fn set_refusal(&self, why: Option<String>) {
        if let Ok(mut r) = self.refusal.lock() {
            *r = why;
        }
    }

    /// Why the server refuses the output being published, while it does.
    pub fn refusal(&self) -> Option<String> {
        self.refusal.lock().ok().and_then(|r| r.clone())
    }

    /// The newest confirmed alert transitions, oldest first.
    pub fn recent_alerts(&self) -> Vec<RecentAlert> {
        self.recent_alerts.lock().map(|r| r.iter().cloned().collect()).unwrap_or_default()
    }
}

/// The metrics of every pipeline in this process.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    families: Families,
    pipelines: Mutex<Vec<std::sync::Arc<Stats>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let families = Families::new();
        let mut registry = Registry::default();
        families.register(&mut registry);
        Self { registry, families, pipelines: Mutex::default() }
    }
}

impl Metrics {
    /// The metrics of a pipeline, registered under its name.
    pub fn pipeline(&self, name: &str) -> std::sync::Arc<Stats> {
        let stats = std::sync::Arc::new(self.families.stats(name));
        stats.archive_available.set(1);
        stats.outputs_available.set(1);
        for reason in REASONS {
            let labels = stats.reason(reason);
            drop(stats.dead_letter_reasons.get_or_create(&labels));
            if !matches!(reason, "late" | "max_deliver") {
                drop(stats.decode_error_reasons.get_or_create(&labels));
            }
        }
        if let Ok(mut p) = self.pipelines.lock() {
            p.push(stats.clone());
        }
        stats
    }

    /// Every registered pipeline's metrics.
    pub fn pipelines(&self) -> Vec<std::sync::Arc<Stats>> {
        self.pipelines.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// The OpenMetrics text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    /// The dead-letter schema lists exactly the reasons the worker gives.
    #[test]
    fn the_dead_letter_schema_lists_every_reason() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/schemas/dead-letter.v1.schema.json");
        let schema: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).expect(path)).expect(path);
        let listed: Vec<&str> = schema["properties"]["Stator-Reason"]["enum"]
            .as_array()
            .expect("an enum of reasons")
            .iter()
            .filter_map(serde_json::Value::as_str)
            .collect();
        assert_eq!(listed, super::REASONS);
    }
}
