//! Pipeline files: loading, `${VAR}` expansion, validation with positions, and the runtime
//! [`Pipeline`] they build.

mod alert;
mod archive;
mod expand;
pub mod file;
mod locate;
mod window;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::jetstream::consumer::DeliverPolicy;
use stator_operators::Aggregate;
use toml::de::DeTable;

pub use alert::zone_number as alert_zone_number;
pub use archive::{ArchiveSpec, DEFAULT_ARCHIVE_URL};
pub use locate::{KeyPath, PathSeg};

use crate::subject::{self, OutputTemplate, SubjectTemplate};
use file::{PipelineFile, SourceSection};

/// Default subject template: the reference articles' hierarchy.
pub const DEFAULT_SUBJECT_TEMPLATE: &str = "{org}.{site}.{area}.{line}.{machine}.{sensor}.{metric}";

/// Most fields a window key may have.
pub const MAX_KEY_FIELDS: usize = 8;

/// How bad a [`Diagnostic`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The file cannot be used.
    Error,
    /// The file works, but probably not as meant.
    Warning,
}

/// One finding about a pipeline file, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The key the finding is about, e.g. `window[0].tumbling` (empty for syntax errors).
    pub key: String,
    /// What is wrong and, where it helps, how to fix it.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{}:{}:{}: {sev}", self.file.display(), self.line, self.column)?;
        if !self.key.is_empty() {
            write!(f, ": `{}`", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A pipeline file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read pipeline file: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file has errors; every one found is listed.
    #[error("{}", DisplayAll(.0))]
    Invalid(Vec<Diagnostic>),
}

struct DisplayAll<'a>(&'a [Diagnostic]);

impl fmt::Display for DisplayAll<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

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
    /// Filter subjects (empty: the whole stream).
    pub filter_subjects: Vec<String>,
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
pub struct Secret(String);

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
            WindowKind::Waveform(w) => w.operators.iter().flat_map(|o| o.scalar_features()).copied().collect(),
        }
    }
}

/// A waveform operator declared in a pipeline file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    /// RMS of the samples.
    Rms,
    /// Largest absolute sample.
    Peak,
    /// Max minus min.
    PeakToPeak,
    /// Peak over RMS.
    CrestFactor,
    /// Fourth standardised moment.
    Kurtosis,
    /// Third standardised moment.
    Skewness,
    /// Velocity RMS (mm/s) over the velocity band.
    VelocityRms,
    /// ISO 20816-3 zone of the velocity RMS.
    IsoZone,
    /// Welch amplitude spectrum.
    Spectrum,
    /// Squared-envelope spectrum.
    Envelope,
    /// Bearing defect scores and verdict.
    BearingFaults,
}

impl Operator {
    /// Every operator, as named in pipeline files.
    pub const ALL: [(&'static str, Operator); 11] = [
        ("rms", Operator::Rms),
        ("peak", Operator::Peak),
        ("peak_to_peak", Operator::PeakToPeak),
        ("crest_factor", Operator::CrestFactor),
        ("kurtosis", Operator::Kurtosis),
        ("skewness", Operator::Skewness),
        ("velocity_rms", Operator::VelocityRms),
        ("iso_zone", Operator::IsoZone),
        ("spectrum", Operator::Spectrum),
        ("envelope", Operator::Envelope),
        ("bearing_faults", Operator::BearingFaults),
    ];

    /// The numeric features it reports.
    pub fn scalar_features(self) -> &'static [&'static str] {
        match self {
            Operator::Rms => &["rms"],
            Operator::Peak => &["peak"],
            Operator::PeakToPeak => &["peak_to_peak"],
            Operator::CrestFactor => &["crest_factor"],
            Operator::Kurtosis => &["kurtosis"],
            Operator::Skewness => &["skewness"],
            Operator::VelocityRms => &["velocity_rms"],
            Operator::IsoZone => &["iso_zone"],
            Operator::Spectrum => &["spectrum.peak_hz", "spectrum.peak"],
            Operator::Envelope => &["envelope.peak_hz"],
            Operator::BearingFaults => &[
                "bearing.bpfo_db",
                "bearing.bpfi_db",
                "bearing.bsf_db",
                "bearing.ftf_db",
                "bearing.score_db",
                "bearing.fault_score_db",
            ],
        }
    }
}

/// Settings of a waveform window.
#[derive(Debug, Clone, PartialEq)]
pub struct WaveformSpec {
    /// Operators, in the file's order.
    pub operators: Vec<Operator>,
    /// Spectrum FFT size.
    pub fft_size: usize,
    /// Welch overlap.
    pub overlap: f64,
    /// Spectral window.
    pub spectral_window: stator_operators::spectrum::WindowFn,
    /// Envelope band (None: the default for the sample rate).
    pub envelope_band: Option<(f64, f64)>,
    /// Whiten before demodulating.
    pub whiten: bool,
    /// Velocity band.
    pub velocity_band: (f64, f64),
    /// ISO machine group.
    pub machine_group: stator_operators::velocity::MachineGroup,
    /// ISO foundation.
    pub foundation: stator_operators::velocity::Foundation,
    /// Default bearing designation.
    pub bearing: Option<String>,
    /// Default shaft speed, rpm.
    pub rpm: Option<f64>,
    /// Default acceleration unit.
    pub units: stator_operators::velocity::AccelUnit,
    /// Fault scoring.
    pub score: stator_operators::faults::ScoreConfig,
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
    /// Output subject.
    pub subject: OutputTemplate,
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

/// Reads, expands and validates a pipeline file, with variables from the process environment.
///
/// # Errors
/// [`ConfigError::Read`] when the file cannot be read; [`ConfigError::Invalid`] with every
/// problem found, each with its line, column and key.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    load_str(path, &text, &|name| std::env::var(name).ok())
}

/// Like [`load`], from text, with variables from `env`.
///
/// # Errors
/// [`ConfigError::Invalid`] with every problem found.
pub fn load_str(path: &Path, text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Loaded, ConfigError> {
    let mut cx = Checker { file: path.to_owned(), text: String::new(), found: Vec::new() };
    let expanded = match expand::expand(text, env) {
        Ok(t) => t,
        Err(errors) => {
            for e in errors {
                cx.push_at(Severity::Error, e.line, e.column, String::new(), e.message);
            }
            return Err(ConfigError::Invalid(cx.found));
        }
    };
    cx.text = expanded;
    let parsed: PipelineFile = match cx.parse() {
        Some(p) => p,
        None => return Err(ConfigError::Invalid(cx.found)),
    };
    let pipeline = build(&mut cx, parsed);
    cx.found.sort_by_key(|d| (d.line, d.column));
    let (errors, warnings): (Vec<_>, Vec<_>) = cx.found.into_iter().partition(|d| d.severity == Severity::Error);
    match pipeline {
        Some(pipeline) if errors.is_empty() => Ok(Loaded { pipeline, warnings }),
        _ => Err(ConfigError::Invalid(errors)),
    }
}

/// Collects diagnostics and places them in the file.
struct Checker {
    file: PathBuf,
    text: String,
    found: Vec<Diagnostic>,
}

impl Checker {
    fn push_at(&mut self, severity: Severity, line: usize, column: usize, key: String, message: String) {
        self.found.push(Diagnostic { severity, file: self.file.clone(), line, column, key, message });
    }

    fn push_span(&mut self, severity: Severity, offset: usize, key: String, message: String) {
        let (line, column) = locate::line_col(&self.text, offset);
        self.push_at(severity, line, column, key, message);
    }

    fn report(&mut self, severity: Severity, path: &KeyPath, message: impl Into<String>) {
        let offset =
            DeTable::parse(&self.text).ok().and_then(|d| locate::span_of(d.get_ref(), path)).map_or(0, |s| s.start);
        self.push_span(severity, offset, path.to_string(), message.into());
    }

    fn error(&mut self, path: &KeyPath, message: impl Into<String>) {
        self.report(Severity::Error, path, message);
    }

    fn warn(&mut self, path: &KeyPath, message: impl Into<String>) {
        self.report(Severity::Warning, path, message);
    }

    /// Parses the TOML and the file structure, reporting every unknown key.
    fn parse(&mut self) -> Option<PipelineFile> {
        let text = self.text.clone();
        if let Err(e) = DeTable::parse(&text) {
            {
                let offset = e.span().map_or(0, |s| s.start);
                self.push_span(Severity::Error, offset, String::new(), e.message().trim().to_owned());
                return None;
            }
        }
        let mut unknown = Vec::new();
        let deserializer = toml::Deserializer::parse(&text).ok()?;
        let result: Result<PipelineFile, _> =
            serde_ignored::deserialize(deserializer, |path| unknown.push(ignored_path(&path)));
        for path in unknown {
            self.error(&path, "unknown key");
        }
        match result {
            Ok(file) => Some(file),
            Err(e) => {
                let offset = e.span().map_or(0, |s| s.start);
                let key = key_at(&text, offset);
                self.push_span(Severity::Error, offset, key, e.message().trim().to_owned());
                None
            }
        }
    }
}

fn ignored_path(path: &serde_ignored::Path<'_>) -> KeyPath {
    fn walk(path: &serde_ignored::Path<'_>, out: &mut Vec<PathSeg>) {
        use serde_ignored::Path as P;
        match path {
            P::Root => {}
            P::Seq { parent, index } => {
                walk(parent, out);
                out.push(PathSeg::Index(*index));
            }
            P::Map { parent, key } => {
                walk(parent, out);
                out.push(PathSeg::Key(key.clone()));
            }
            P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => walk(parent, out),
        }
    }
    let mut segs = Vec::new();
    walk(path, &mut segs);
    KeyPath(segs)
}

/// The key written at the start of the line holding `offset`, for errors serde reports by span.
fn key_at(text: &str, offset: usize) -> String {
    let start = text[..offset.min(text.len())].rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next().unwrap_or("");
    line.split_once('=').map(|(k, _)| k.trim().to_owned()).unwrap_or_default()
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn duration(cx: &mut Checker, path: &KeyPath, text: Option<&str>, default: Duration) -> Duration {
    let Some(text) = text else { return default };
    match humantime::parse_duration(text) {
        Ok(d) => d,
        Err(e) => {
            cx.error(path, format!("`{text}` is not a duration ({e}); write e.g. `10s`, `5m`, `1h30m`"));
            default
        }
    }
}

fn build(cx: &mut Checker, file: PipelineFile) -> Option<Pipeline> {
    let root = KeyPath::default();
    let p = root.key("pipeline");
    if !is_name(&file.pipeline.name) {
        cx.error(&p.key("name"), "a pipeline name uses only letters, digits, `-` and `_`");
    }
    let name = file.pipeline.name.clone();
    let dead_letter_subject =
        file.pipeline.dead_letter_subject.clone().unwrap_or_else(|| format!("stator.deadletter.{name}"));
    if !subject::is_valid_subject(&dead_letter_subject) {
        cx.error(&p.key("dead_letter_subject"), format!("`{dead_letter_subject}` is not a valid subject"));
    }
    if let Some(m) = &file.machine_config
        && !is_name(&m.bucket)
    {
        cx.error(&root.key("machine_config").key("bucket"), "a bucket name uses only letters, digits, `-` and `_`");
    }
    let state_bucket = file.pipeline.state_bucket.clone().unwrap_or_else(|| "STATOR_STATE".into());
    if !is_name(&state_bucket) {
        cx.error(&p.key("state_bucket"), "a bucket name uses only letters, digits, `-` and `_`");
    }
    let template = build_template(cx, &file.source);
    let waveform = file.source.format.as_deref() == Some("waveform");
    let windows: Vec<Option<WindowSpec>> = file
        .windows
        .iter()
        .enumerate()
        .map(|(i, w)| window::build_window(cx, &root.key("window").index(i), w, template.as_ref(), waveform))
        .collect();
    check_unique(cx, "window", file.windows.iter().map(|w| w.name.as_str()));
    if file.windows.is_empty() {
        cx.error(&root, "the pipeline has no `[[window]]`");
    }
    let alerts: Vec<AlertRule> = file
        .alerts
        .iter()
        .enumerate()
        .filter_map(|(i, a)| alert::build_alert(cx, &root.key("alert").index(i), a, &file.windows, &windows))
        .collect();
    let windows: Vec<WindowSpec> = windows.into_iter().flatten().collect();
    check_unique(cx, "alert", file.alerts.iter().map(|a| a.name.as_str()));
    let fields: Vec<String> = template.as_ref().map(|t| t.field_names().to_vec()).unwrap_or_default();
    let archive = file.archive.as_ref().map(|a| archive::build_archive(cx, a, source_format(&file.source), &fields));
    let source = build_source(cx, &root.key("source"), &file.source, template?, &windows)?;
    let complete = windows.len() == file.windows.len()
        && alerts.len() == file.alerts.len()
        && archive.as_ref().is_none_or(Option::is_some);
    complete.then(|| Pipeline {
        file: cx.file.clone(),
        name,
        dead_letter_subject,
        state_bucket,
        machine_config_bucket: file.machine_config.as_ref().map(|m| m.bucket.clone()),
        archive: archive.flatten(),
        source,
        windows,
        alerts,
    })
}

fn check_unique<'a>(cx: &mut Checker, section: &str, names: impl Iterator<Item = &'a str>) {
    let mut seen: Vec<&str> = Vec::new();
    for (i, n) in names.enumerate() {
        if seen.contains(&n) {
            cx.error(&KeyPath::default().key(section).index(i).key("name"), format!("`{n}` is already used"));
        }
        seen.push(n);
    }
}

fn build_template(cx: &mut Checker, s: &SourceSection) -> Option<SubjectTemplate> {
    let text = s.subject.as_deref().unwrap_or(DEFAULT_SUBJECT_TEMPLATE);
    SubjectTemplate::parse(text).map_err(|e| cx.error(&KeyPath::default().key("source").key("subject"), e)).ok()
}

fn build_source(
    cx: &mut Checker,
    p: &KeyPath,
    s: &SourceSection,
    template: SubjectTemplate,
    windows: &[WindowSpec],
) -> Option<SourceSpec> {
    let mut ok = true;
    for (field, value) in [("stream", &s.stream), ("durable", &s.durable)] {
        if !is_name(value) {
            cx.error(&p.key(field), "use only letters, digits, `-` and `_`");
            ok = false;
        }
    }
    for (i, f) in s.filter_subjects.iter().enumerate() {
        if !subject::is_valid_filter(f) {
            cx.error(&p.key("filter_subjects").index(i), format!("`{f}` is not a valid subject filter"));
            ok = false;
        }
    }
    let format = match source_format(s) {
        Some(f) => f,
        None => {
            let other = s.format.as_deref().unwrap_or_default();
            cx.error(&p.key("format"), format!("unknown format `{other}`, expected `json` or `waveform`"));
            ok = false;
            Format::Json
        }
    };
    let event_time = match s.event_time.as_deref().unwrap_or("timestamp") {
        "publish_time" => EventTime::PublishTime,
        field if is_name(field) => EventTime::Field(field.to_owned()),
        other => {
            cx.error(&p.key("event_time"), format!("`{other}` is neither a field name nor `publish_time`"));
            ok = false;
            EventTime::PublishTime
        }
    };
    let deliver = build_deliver(cx, p, s)?;
    let longest = windows.iter().map(|w| w.size + w.allowed_lateness).max().unwrap_or_default();
    let default_wait = (longest * 2).max(Duration::from_secs(30));
    let ack_wait = duration(cx, &p.key("ack_wait"), s.ack_wait.as_deref(), default_wait);
    if s.ack_wait.is_some() && ack_wait < longest {
        cx.error(
            &p.key("ack_wait"),
            format!("ack_wait must be at least the longest window plus its lateness ({longest:?})"),
        );
        ok = false;
    }
    let max_event_time_ahead =
        duration(cx, &p.key("max_event_time_ahead"), s.max_event_time_ahead.as_deref(), Duration::from_secs(86_400));
    let auth = build_auth(cx, p, s);
    ok &= auth.is_some();
    let max_ack_pending = s.max_ack_pending.unwrap_or(100_000);
    let max_deliver = s.max_deliver.unwrap_or(5);
    let batch = s.batch.unwrap_or(500);
    for (field, bad) in [
        ("max_ack_pending", max_ack_pending < 1),
        ("max_deliver", max_deliver < 1),
        ("batch", batch == 0 || batch > 10_000),
    ] {
        if bad {
            cx.error(&p.key(field), "out of range");
            ok = false;
        }
    }
    ok.then(|| SourceSpec {
        url: s.url.clone().unwrap_or_else(|| "nats://127.0.0.1:4222".into()),
        stream: s.stream.clone(),
        durable: s.durable.clone(),
        create_consumer: s.create_consumer,
        filter_subjects: s.filter_subjects.clone(),
        template,
        format,
        event_time,
        deliver,
        ack_wait,
        max_ack_pending,
        max_deliver,
        batch,
        max_event_time_ahead,
        auth: auth.unwrap_or_default(),
    })
}

fn build_auth(cx: &mut Checker, p: &KeyPath, s: &SourceSection) -> Option<Auth> {
    let mut ok = true;
    let methods = [s.user.is_some(), s.token.is_some(), s.nkey_seed_file.is_some(), s.creds_file.is_some()];
    if methods.iter().filter(|m| **m).count() > 1 {
        cx.error(p, "use one of `user`/`password`, `token`, `nkey_seed_file` or `creds_file`");
        ok = false;
    }
    if s.user.is_some() != s.password.is_some() {
        let key = if s.user.is_some() { "user" } else { "password" };
        cx.error(&p.key(key), "`user` and `password` go together");
        ok = false;
    }
    if s.tls_cert_file.is_some() != s.tls_key_file.is_some() {
        let key = if s.tls_cert_file.is_some() { "tls_cert_file" } else { "tls_key_file" };
        cx.error(&p.key(key), "`tls_cert_file` and `tls_key_file` go together");
        ok = false;
    }
    let mut file = |key: &str, value: &Option<String>| -> Option<PathBuf> {
        let path = PathBuf::from(value.as_ref()?);
        if !path.is_file() {
            cx.error(&p.key(key), format!("`{}` is not a readable file", path.display()));
            ok = false;
        }
        Some(path)
    };
    let nkey_seed_file = file("nkey_seed_file", &s.nkey_seed_file);
    let creds_file = file("creds_file", &s.creds_file);
    let tls_ca_file = file("tls_ca_file", &s.tls_ca_file);
    let cert = file("tls_cert_file", &s.tls_cert_file);
    let key = file("tls_key_file", &s.tls_key_file);
    let auth = Auth {
        user: s.user.clone().zip(s.password.clone().map(Secret)),
        token: s.token.clone().map(Secret),
        nkey_seed_file,
        creds_file,
        tls_ca_file,
        tls_client: cert.zip(key),
        tls_required: s.tls_required,
    };
    ok.then_some(auth)
}

fn source_format(s: &SourceSection) -> Option<Format> {
    match s.format.as_deref().unwrap_or("json") {
        "json" => Some(Format::Json),
        "waveform" => Some(Format::Waveform),
        _ => None,
    }
}

fn build_deliver(cx: &mut Checker, p: &KeyPath, s: &SourceSection) -> Option<DeliverPolicy> {
    let path = p.key("deliver");
    Some(match s.deliver.as_deref().unwrap_or("all") {
        "all" => DeliverPolicy::All,
        "new" => DeliverPolicy::New,
        "last_per_subject" => DeliverPolicy::LastPerSubject,
        "start_sequence" => match s.start_sequence {
            Some(start_sequence) if start_sequence > 0 => DeliverPolicy::ByStartSequence { start_sequence },
            _ => {
                cx.error(&path, "`start_sequence` deliver needs `start_sequence = N` (N >= 1)");
                return None;
            }
        },
        "start_time" => {
            let parsed = s
                .start_time
                .as_deref()
                .map(|t| time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339));
            match parsed {
                Some(Ok(start_time)) => DeliverPolicy::ByStartTime { start_time },
                _ => {
                    cx.error(&path, "`start_time` deliver needs `start_time = \"2026-11-22T08:00:00Z\"`");
                    return None;
                }
            }
        }
        other => {
            cx.error(
                &path,
                format!("unknown deliver `{other}`, expected all, new, start_sequence, start_time or last_per_subject"),
            );
            return None;
        }
    })
}

#[cfg(test)]
mod tests;
