//! The runtime model a pipeline file builds: inert, validated data the worker runs.
//!
//! Component settings live with their component ([`ArchiveSpec`] in the archive, [`WaveformSpec`]
//! with the waveform operators), so that those modules need nothing from the config loader.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream::consumer::DeliverPolicy;
use stator_operators::Aggregate;

use super::Diagnostic;
use crate::archive::ArchiveSpec;
use crate::subject::{OutputTemplate, SubjectTemplate};
use crate::waveform::{FeatureDef, FeatureKind, WaveformSpec};

/// Most fields a window key may have.
pub const MAX_KEY_FIELDS: usize = 8;

/// Payload format of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Scalar JSON TelemetryMessage.
    Json,
    /// Waveform sample blocks.
    Waveform,
}

/// Where a reading's event time comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventTime {
    /// A payload field (RFC 3339 string or Unix seconds).
    Field(String),
    /// The time JetStream stored the message.
    PublishTime,
}

/// The validated `[source]`.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    /// Server URL(s).
    pub url: String,
    /// Stream name.
    pub stream: String,
    /// Durable consumer name.
    pub durable: String,
    /// Create the consumer when it is missing.
    pub create_consumer: bool,
    /// Create it with a pinned-client priority group, so that other workers can stand by.
    pub standby: bool,
    /// Filter subjects (empty: the whole stream).
    pub filter_subjects: Vec<String>,
    /// Partitions (1: not partitioned).
    pub partitions: u32,
    /// Subject-to-fields template.
    pub template: SubjectTemplate,
    /// Payload format.
    pub format: Format,
    /// Event time source.
    pub event_time: EventTime,
    /// Start position of a created consumer.
    pub deliver: DeliverPolicy,
    /// Ack wait of a created consumer.
    pub ack_wait: Duration,
    /// Max ack pending of a created consumer.
    pub max_ack_pending: i64,
    /// Max deliveries.
    pub max_deliver: i64,
    /// Messages per pull request.
    pub batch: usize,
    /// Largest accepted lead of event time over publish time.
    pub max_event_time_ahead: Duration,
    /// How to authenticate and encrypt the connection.
    pub auth: Auth,
}

/// A secret from the pipeline file (after `${VAR}` expansion). It never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub(super) String);

impl Secret {
    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// How a pipeline authenticates to NATS and secures the connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Auth {
    /// User and password.
    pub user: Option<(String, Secret)>,
    /// Token.
    pub token: Option<Secret>,
    /// NKey seed file.
    pub nkey_seed_file: Option<PathBuf>,
    /// Credentials file.
    pub creds_file: Option<PathBuf>,
    /// CA certificate file.
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate and key files.
    pub tls_client: Option<(PathBuf, PathBuf)>,
    /// TLS required.
    pub tls_required: bool,
}

/// The validated `[[window]]`.
#[derive(Debug, Clone)]
pub struct WindowSpec {
    /// Window name.
    pub name: String,
    /// Key field names.
    pub key: Vec<String>,
    /// Key field positions in the subject template.
    pub key_index: Vec<usize>,
    /// Optional subject filter.
    pub filter: Option<String>,
    /// Window length.
    pub size: Duration,
    /// Distance between window starts (`size` for tumbling windows).
    pub every: Duration,
    /// Allowed lateness.
    pub allowed_lateness: Duration,
    /// Wall-clock idle timeout per key.
    pub idle_timeout: Duration,
    /// What the window computes.
    pub kind: WindowKind,
    /// Subject its features are published to.
    pub publish: Option<OutputTemplate>,
}

/// What a window computes over its input.
#[derive(Debug, Clone, PartialEq)]
pub enum WindowKind {
    /// Aggregates of scalar readings.
    Scalar(Vec<Aggregate>),
    /// Operators over waveform samples.
    Waveform(WaveformSpec),
}

impl WindowSpec {
    /// Names of the numeric features this window reports (what alert rules may compare).
    pub fn scalar_features(&self) -> Vec<&'static str> {
        match &self.kind {
            WindowKind::Scalar(aggs) => aggs.iter().map(|a| a.name()).collect(),
            WindowKind::Waveform(w) => w.scalar_features().collect(),
        }
    }

    /// The keys its inputs are grouped by: the window key, and the speed key of its tachometer
    /// subject (a partition must hold a machine's speed readings with its waveforms).
    pub fn keys(&self) -> impl Iterator<Item = &[String]> {
        let speed = match &self.kind {
            WindowKind::Waveform(w) => w.speed.as_ref().map(|s| s.key.as_slice()),
            WindowKind::Scalar(_) => None,
        };
        std::iter::once(self.key.as_slice()).chain(speed)
    }

    /// Every number and text this window reports, with its unit: what an alert may include.
    /// Aggregates are in the readings' own unit (`count` is a number of readings).
    pub fn feature_defs(&self) -> Vec<FeatureDef> {
        match &self.kind {
            WindowKind::Scalar(aggs) => aggs
                .iter()
                .map(|a| FeatureDef::scalar(a.name(), if *a == Aggregate::Count { "readings" } else { "input unit" }))
                .collect(),
            WindowKind::Waveform(w) => w
                .operators
                .iter()
                .flat_map(|o| o.get().features())
                .filter(|f| f.kind != FeatureKind::Vector)
                .copied()
                .collect(),
        }
    }
}

/// What a rule compares with its levels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Compare {
    /// The feature's value (`compare = "value"`, the default).
    Value,
    /// The value over the key's learned baseline, as a factor (`compare = "ratio"`).
    Ratio(BaselineSpec),
    /// The same in dB, `20 log10(value / baseline)` (`compare = "db"`).
    Db(BaselineSpec),
    /// The feature's rate of change, in its unit per hour, smoothed over about `windows`
    /// windows (`compare = "rate"`).
    Rate {
        /// Smoothing horizon and warm-up, in windows (`trend_windows`).
        windows: u32,
    },
}

impl Compare {
    /// Its name in pipeline files and alert messages.
    pub fn name(self) -> &'static str {
        match self {
            Compare::Value => "value",
            Compare::Ratio(_) => "ratio",
            Compare::Db(_) => "db",
            Compare::Rate { .. } => "rate",
        }
    }
}

/// How a baseline is learned: over the first `windows` windows of a key, or over the windows
/// of `period` (event time) when set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BaselineSpec {
    /// Windows learned (`baseline_windows`).
    pub windows: u32,
    /// Event time learned (`baseline_period`), instead of a window count.
    pub period: Option<Duration>,
}

/// What an alert's `kind` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertKind {
    /// The same text on every transition (`kind = "..."`; default `threshold`).
    Fixed(String),
    /// The bearing verdict of the window that raised the alert (`outer_race`, `inner_race`,
    /// `ball`, `cage`), kept until it clears: the default of rules on `bearing.*` features.
    BearingFault,
}

/// The validated `[[alert]]`.
#[derive(Debug, Clone)]
pub struct AlertRule {
    /// Rule name.
    pub name: String,
    /// Index into [`Pipeline::windows`].
    pub window: usize,
    /// Numeric feature compared (an aggregate, or an operator output such as `iso_zone`).
    pub metric: &'static str,
    /// Warning level.
    pub warning: Option<f64>,
    /// Critical level.
    pub critical: Option<f64>,
    /// Clear below this value.
    pub clear_below: f64,
    /// Debounce, in windows.
    pub for_windows: u32,
    /// What the levels are compared with: the value, or its change.
    pub compare: Compare,
    /// Output subject.
    pub subject: OutputTemplate,
    /// What the alert is about, for routing without reading numbers.
    pub kind: AlertKind,
    /// Window features attached to each transition as evidence, with their units.
    pub include: Vec<FeatureDef>,
}

/// A validated pipeline, ready to run.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// The file it came from.
    pub file: PathBuf,
    /// Pipeline name.
    pub name: String,
    /// Dead-letter subject.
    pub dead_letter_subject: String,
    /// Alert state bucket.
    pub state_bucket: String,
    /// Source.
    pub source: SourceSpec,
    /// Windows.
    pub windows: Vec<WindowSpec>,
    /// Alert rules.
    pub alerts: Vec<AlertRule>,
    /// KV bucket of per-machine settings.
    pub machine_config_bucket: Option<String>,
    /// The Parquet archive, when the file has an `[archive]` section.
    pub archive: Option<ArchiveSpec>,
}

/// A loaded pipeline and the warnings found on the way.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The pipeline.
    pub pipeline: Pipeline,
    /// Warnings (never errors).
    pub warnings: Vec<Diagnostic>,
}
