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
    /// `[machine_config]`: per-machine settings from a NATS KV bucket, applied live.
    pub machine_config: Option<MachineConfigSection>,
    /// `[archive]`: Parquet files on object storage, committed before messages are acked.
    pub archive: Option<ArchiveSection>,
}

/// `[archive]`.
#[derive(Debug, Clone, Deserialize)]
pub struct ArchiveSection {
    /// Where the archive lives: a directory path, `file:///abs/dir`, `s3://bucket/prefix`,
    /// `gs://bucket/prefix` or `az://container/prefix`. Default: `file://./archive`.
    pub url: Option<String>,
    /// Tables written: `readings` (json sources) or `waveforms` (waveform sources),
    /// `features`, `alerts`. Default: all that apply to the source.
    pub tables: Option<Vec<String>>,
    /// A file rolls when its partition has buffered this many rows. Default: 500000.
    pub roll_rows: Option<usize>,
    /// ... or this many bytes in memory (`64MB`, `1GiB`). Default: `64MiB`.
    pub roll_bytes: Option<String>,
    /// ... or its oldest row has waited this long (wall clock). Default: `5m`.
    pub roll_age: Option<String>,
    /// Object store options on top of the environment (`endpoint`, `region`,
    /// `access_key_id`, `secret_access_key`, `allow_http`...). Values may use `${VAR}`.
    #[serde(default)]
    pub options: std::collections::BTreeMap<String, String>,
}

/// `[machine_config]`.
#[derive(Debug, Clone, Deserialize)]
pub struct MachineConfigSection {
    /// KV bucket holding one JSON document per machine, e.g. `MACHINE_CONFIG`.
    pub bucket: String,
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
    /// Whether other workers may stand by for this one: the consumer Stator creates pins one
    /// worker in a priority group. `false` creates it without one, for a pipeline that runs
    /// on one worker only: nats-server then adds no pin header to each message, which costs
    /// it about a sixth of its CPU per message (docs/BENCHMARKS.md); a second worker is
    /// refused while the first pulls. Default: `true`. Not with `partitions`.
    pub standby: Option<bool>,
    /// Subjects the consumer delivers. Default: all of the stream's subjects.
    #[serde(default)]
    pub filter_subjects: Vec<String>,
    /// Partitions of the pipeline's keys, each active on one worker at a time, so that up to
    /// this many workers share the work (docs/SCALING.md). Default: 1 (one active worker, the
    /// others standing by).
    pub partitions: Option<u32>,
    /// How subject tokens become fields. The last `{field}` takes the remaining tokens.
    /// Default: `{org}.{site}.{area}.{line}.{machine}.{sensor}.{metric}`.
    pub subject: Option<String>,
    /// Payload format: `json` (scalar TelemetryMessage) or `waveform` (sample blocks, binary
    /// with headers or JSON). Default: `json`.
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
    /// How far a message's event time may be ahead of the time JetStream stored it before it
    /// is dead-lettered as `event_time_in_future` (a device clock gone wrong would otherwise
    /// push its machine's windows ahead and make every true reading late). Default: `1d`.
    pub max_event_time_ahead: Option<String>,
    /// User name, with `password` (write `password = "${NATS_PASSWORD}"`: secrets belong in
    /// the environment, not the file).
    pub user: Option<String>,
    /// Password for `user`.
    pub password: Option<String>,
    /// Authentication token.
    pub token: Option<String>,
    /// File holding an NKey seed (`SU...`).
    pub nkey_seed_file: Option<String>,
    /// Credentials file (`.creds`: a user JWT and its NKey seed).
    pub creds_file: Option<String>,
    /// PEM file of the CA that signed the server's certificate (TLS).
    pub tls_ca_file: Option<String>,
    /// PEM client certificate, for servers that verify clients (with `tls_key_file`).
    pub tls_cert_file: Option<String>,
    /// PEM private key of `tls_cert_file`.
    pub tls_key_file: Option<String>,
    /// Refuse to talk to a server without TLS. Default: `false` (`tls://` URLs and the
    /// `tls_*` files imply TLS).
    #[serde(default)]
    pub tls_required: bool,
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
    /// Scalar sources: aggregates computed per window. Default:
    /// `["count", "mean", "min", "max", "rms"]`.
    #[serde(default)]
    pub aggregates: Vec<String>,
    /// Waveform sources: operators run on each window's samples (`rms`, `peak`,
    /// `peak_to_peak`, `crest_factor`, `kurtosis`, `skewness`, `velocity_rms`, `iso_zone`,
    /// `spectrum`, `envelope`, `bearing_faults`).
    #[serde(default)]
    pub operators: Vec<String>,
    /// Waveform: FFT size of the spectrum (Welch segments). Default: 4096.
    pub fft_size: Option<usize>,
    /// Waveform: overlap of Welch segments, 0 to 0.9. Default: 0.5.
    pub overlap: Option<f64>,
    /// Waveform: `hann`, `flat_top` or `rectangular`. Default: `hann`.
    pub spectral_window: Option<String>,
    /// Waveform: envelope band-pass `[low_hz, high_hz]`, or `"kurtogram"`: the most impulsive
    /// band, chosen per window by spectral kurtosis (needs the bearing and the speed; else
    /// 1 kHz to 40 % of the sample rate, at most 10 kHz). Default: `"kurtogram"`.
    pub envelope_band: Option<BandSetting>,
    /// Waveform: whiten the band before demodulating. Default: false.
    pub whiten: Option<bool>,
    /// Waveform: velocity band `[low_hz, high_hz]`. Default: `[10, 1000]` (ISO 20816).
    pub velocity_band: Option<[f64; 2]>,
    /// Waveform: ISO 20816-3 machine group, `large` or `medium`. Default: `medium`.
    pub machine_group: Option<String>,
    /// Waveform: `rigid` or `flexible`. Default: `rigid`.
    pub foundation: Option<String>,
    /// Waveform: bearing designation from the catalog (`6205`...), unless the machine config
    /// says otherwise.
    pub bearing: Option<String>,
    /// Waveform: shaft speed (rpm) when neither the message nor the machine config gives one.
    pub rpm: Option<f64>,
    /// Waveform: subject filter of shaft speed readings (a tachometer publishing scalar JSON
    /// messages, value in rpm), e.g. `acme.*.*.*.*.tach.speed`. When set, a window's speed is
    /// the mean of its machine's readings inside the window, else the last one within
    /// `rpm_max_age` before it, else unknown (with the reason). The source must deliver them.
    pub rpm_subject: Option<String>,
    /// Waveform: analyse the envelope over this many shaft revolutions of the window (when its
    /// speed is known), so its bins fall on orders of the shaft speed. Default: the whole window.
    pub revolutions: Option<u32>,
    /// Waveform: how long a speed reading stays valid. Default: `10s`.
    pub rpm_max_age: Option<String>,
    /// Waveform: the key fields a speed reading belongs to. Default: the window key without
    /// `sensor` and `metric` (one tachometer per machine serves all its sensors).
    pub rpm_key: Option<Vec<String>>,
    /// Waveform: acceleration unit when the message does not say: `g` or `m/s^2`. Default: `g`.
    pub units: Option<String>,
    /// Waveform: fundamental SNR (dB) for a fault verdict. Default: 10.
    pub fault_threshold_db: Option<f64>,
    /// Publish each closed window's features to this subject (`{field}` from the key), e.g.
    /// `acme.{site}.features.{machine}.{sensor}`.
    pub publish: Option<String>,
}

/// `envelope_band`: a band or a method.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum BandSetting {
    /// `[low_hz, high_hz]`.
    Range([f64; 2]),
    /// `"kurtogram"`.
    Method(String),
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
    /// Raise `warning` at or above this value (for `iso_zone`: a zone letter).
    pub warning: Option<LevelValue>,
    /// Raise `critical` at or above this value.
    pub critical: Option<LevelValue>,
    /// Clear only below this value (hysteresis). Default: the lowest raise level.
    pub clear_below: Option<LevelValue>,
    /// Consecutive windows a change must hold before it is published (debounce). Default: 1.
    pub for_windows: Option<u32>,
    /// What the levels are compared with: `value` (the feature), `ratio` (the feature over the
    /// key's learned baseline), `db` (the same in dB) or `rate` (its change per hour).
    /// Default: `value`.
    pub compare: Option<String>,
    /// `ratio`/`db`: windows the baseline is learned over. Default: 30.
    pub baseline_windows: Option<u32>,
    /// `ratio`/`db`: event time the baseline is learned over, instead of `baseline_windows`.
    pub baseline_period: Option<String>,
    /// `rate`: smoothing horizon and warm-up, in windows. Default: 10.
    pub trend_windows: Option<u32>,
    /// Subject of the alert events, with `{field}` from the window key and `{pipeline}`,
    /// `{rule}`, `{kind}`.
    pub subject: String,
    /// What the alert is about, in its `kind` field and `Stator-Kind` header: a name. Default:
    /// the bearing verdict (`outer_race`, `inner_race`, `ball`, `cage`) for rules on `bearing.*`
    /// features, else `threshold`.
    pub kind: Option<String>,
    /// Window features attached to every transition as `evidence` (numbers with their unit,
    /// texts). Default: for `bearing.*` rules the verdict's evidence (kind, defect frequency in
    /// Hz and orders, line levels, sidebands, speed and its source, bearing type, ISO zone);
    /// for `iso_zone` rules the zone letter and velocity; else none.
    pub include: Option<Vec<String>>,
}

/// A threshold: a number, or an ISO zone letter for `iso_zone` rules.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum LevelValue {
    /// A number.
    Number(f64),
    /// A zone letter `A` to `D`.
    Zone(String),
}
