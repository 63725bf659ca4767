//! The pipeline file as written: inert data, deserialized from TOML.
//!
//! Every field is documented here and in `docs/PIPELINES.md`; [`super::build`] turns this into
//! the validated runtime [`super::Pipeline`].

use serde::Deserialize;

/// A whole pipeline file.
#[derive(Debug, Clone, Deserialize)]
pub struct PipelineFile {
    /// `[pipeline]`: name and pipeline-wide outputs.
    pub pipeline: PipelineSection,
    /// `[source]`: the JetStream durable consumer the pipeline reads.
    pub source: SourceSection,
    /// `[[window]]`: event-time windows per key.
    #[serde(default, rename = "window")]
    pub windows: Vec<WindowSection>,
    /// `[[alert]]`: threshold rules over window aggregates.
    #[serde(default, rename = "alert")]
    pub alerts: Vec<AlertSection>,
}

/// `[pipeline]`.
#[derive(Debug, Clone, Deserialize)]
pub struct PipelineSection {
    /// Name of the pipeline: letters, digits, `-` and `_`. Part of every alert's `Nats-Msg-Id`.
    pub name: String,
    /// Subject that undecodable and late messages are republished to, with the reason in the
    /// `Stator-Reason` header. Default: `stator.deadletter.<name>`.
    pub dead_letter_subject: Option<String>,
    /// KV bucket holding the alert state of each rule and key, so a restart neither forgets
    /// an open alert nor raises it twice. Created when missing. Default: `STATOR_STATE`.
    pub state_bucket: Option<String>,
}

/// `[source]`.
#[derive(Debug, Clone, Deserialize)]
pub struct SourceSection {
    /// NATS server URL(s), comma separated. Default: `nats://127.0.0.1:4222`.
    pub url: Option<String>,
    /// The JetStream stream to read.
    pub stream: String,
    /// Name of the durable pull consumer.
    pub durable: String,
    /// Create the consumer when it does not exist. Default: `false` (an existing consumer is
    /// required, and it is never changed).
    #[serde(default)]
    pub create_consumer: bool,
    /// Subjects the consumer delivers. Default: all of the stream's subjects.
    #[serde(default)]
    pub filter_subjects: Vec<String>,
    /// How subject tokens become fields. The last `{field}` takes the remaining tokens.
    /// Default: `{org}.{site}.{area}.{line}.{machine}.{sensor}.{metric}`.
    pub subject: Option<String>,
    /// Payload format: `json` (the TelemetryMessage). Default: `json`.
    pub format: Option<String>,
    /// Where a reading's event time comes from: a payload field name (RFC 3339 string or
    /// Unix seconds), or `publish_time` for the JetStream publish time. Default: `timestamp`.
    pub event_time: Option<String>,
    /// Where a created consumer starts: `all`, `new`, `start_sequence`, `start_time`,
    /// `last_per_subject`. Default: `all`.
    pub deliver: Option<String>,
    /// First stream sequence, with `deliver = "start_sequence"`.
    pub start_sequence: Option<u64>,
    /// First publish time (RFC 3339), with `deliver = "start_time"`.
    pub start_time: Option<String>,
    /// Ack wait of a created consumer. Default: twice the longest window plus its lateness,
    /// at least 30s.
    pub ack_wait: Option<String>,
    /// Max unacknowledged messages of a created consumer. Default: 100000.
    pub max_ack_pending: Option<i64>,
    /// Max deliveries of a message before it is dead-lettered. Default: 5.
    pub max_deliver: Option<i64>,
    /// Messages requested per pull. Default: 500.
    pub batch: Option<usize>,
}

/// `[[window]]`.
#[derive(Debug, Clone, Deserialize)]
pub struct WindowSection {
    /// Name the alert rules refer to.
    pub name: String,
    /// Fields from the subject template that key the window. Default: `["machine"]`.
    #[serde(default)]
    pub key: Vec<String>,
    /// Only readings whose subject matches this NATS filter enter the window.
    pub filter: Option<String>,
    /// Tumbling window length, e.g. `10s`.
    pub tumbling: Option<String>,
    /// Hopping window: `{ size = "1m", every = "10s" }`.
    pub hopping: Option<HoppingSection>,
    /// How far event time may run behind the newest reading before a window closes.
    /// Default: `0s`.
    pub allowed_lateness: Option<String>,
    /// Wall-clock quiet time after which a key's open windows are closed. Default: `30s`.
    pub idle_timeout: Option<String>,
    /// Aggregates computed per window. Default: `["count", "mean", "min", "max", "rms"]`.
    #[serde(default)]
    pub aggregates: Vec<String>,
}

/// `hopping = { size, every }`.
#[derive(Debug, Clone, Deserialize)]
pub struct HoppingSection {
    /// Window length.
    pub size: String,
    /// Distance between window starts; must divide `size`.
    pub every: String,
}

/// `[[alert]]`.
#[derive(Debug, Clone, Deserialize)]
pub struct AlertSection {
    /// Rule name. Part of the alert's `Nats-Msg-Id`.
    pub name: String,
    /// Window whose aggregates the rule reads.
    pub window: String,
    /// Aggregate the rule compares, e.g. `rms`.
    pub metric: String,
    /// Raise `warning` at or above this value.
    pub warning: Option<f64>,
    /// Raise `critical` at or above this value.
    pub critical: Option<f64>,
    /// Clear only below this value (hysteresis). Default: the lowest raise level.
    pub clear_below: Option<f64>,
    /// Consecutive windows a change must hold before it is published (debounce). Default: 1.
    pub for_windows: Option<u32>,
    /// Subject of the alert events, with `{field}` from the window key and `{pipeline}`,
    /// `{rule}`.
    pub subject: String,
}
