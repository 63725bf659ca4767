//! From a message to its windows, and from closed windows to features.

use std::collections::HashMap;
use std::time::Instant;

use stator_operators::Moments;

use crate::config::{EventTime, Format, MAX_KEY_FIELDS, Pipeline, WindowKind, WindowSpec};
use crate::features::Features;
use crate::machine::MachineConfig;
use crate::telemetry::{self, DecodeError};
use crate::waveform::{self, Analyzer, MachineSettings, WavePane, Waveform};
use crate::window::{Closed, Late, WindowOperator};

/// A closed window with its features.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowResult {
    /// Index of the window spec.
    pub window: usize,
    /// Key field values.
    pub key: Vec<String>,
    /// Start, Unix ms.
    pub start_ms: i64,
    /// End, Unix ms.
    pub end_ms: i64,
    /// What it computed.
    pub features: Features,
    /// Stream sequences of its messages, ascending.
    pub seqs: Vec<u64>,
}

/// A decoded message.
pub(crate) enum Input {
    Reading { t_ms: i64, value: f64 },
    Wave(Waveform),
}

/// Why a message could not be used, with the dead-letter reason code.
pub(crate) struct Refused {
    pub(crate) code: &'static str,
    pub(crate) detail: String,
}

impl From<DecodeError> for Refused {
    fn from(e: DecodeError) -> Self {
        Refused { code: e.code(), detail: e.to_string() }
    }
}

impl From<waveform::WaveformError> for Refused {
    fn from(e: waveform::WaveformError) -> Self {
        Refused { code: e.code(), detail: e.to_string() }
    }
}

/// Decodes a payload by the source's format.
pub(crate) fn decode(pipeline: &Pipeline, msg: &async_nats::Message, published_us: i64) -> Result<Input, Refused> {
    match pipeline.source.format {
        Format::Json => reading(pipeline, msg, published_us).map(|(t_ms, value)| Input::Reading { t_ms, value }),
        Format::Waveform => {
            Ok(Input::Wave(waveform::decode::decode(msg.headers.as_ref(), &msg.payload, published_us)?))
        }
    }
}

/// Decodes a scalar JSON reading: (event time ms, as the source says; value).
fn reading(pipeline: &Pipeline, msg: &async_nats::Message, published_us: i64) -> Result<(i64, f64), Refused> {
    let time_field = match &pipeline.source.event_time {
        EventTime::Field(f) => Some(f.as_str()),
        EventTime::PublishTime => None,
    };
    let r = telemetry::decode_json(&msg.payload, time_field)?;
    Ok((r.event_time_ms.unwrap_or(published_us / 1000), r.value))
}

/// Decodes a shaft speed reading (`rpm_subject`): a scalar JSON message whose value is in rpm.
pub(crate) fn decode_speed(
    pipeline: &Pipeline,
    msg: &async_nats::Message,
    published_us: i64,
) -> Result<(i64, f64), Refused> {
    let (t_ms, value) = reading(pipeline, msg, published_us)?;
    if !(0.0..200_000.0).contains(&value) {
        return Err(Refused {
            code: "bad_rpm",
            detail: format!("shaft speed {value} rpm is out of range (0 to 200000)"),
        });
    }
    Ok((t_ms, value))
}

/// Refuses an event time further ahead of the publish time than the source allows.
pub(crate) fn check_event_time(pipeline: &Pipeline, input: &Input, published_us: i64) -> Result<(), Refused> {
    let t_ms = match input {
        Input::Reading { t_ms, .. } => *t_ms,
        Input::Wave(w) => w.start_us.div_euclid(1000),
    };
    let ahead_ms = t_ms - published_us.div_euclid(1000);
    let max_ms = pipeline.source.max_event_time_ahead.as_millis() as i64;
    if ahead_ms > max_ms {
        return Err(Refused {
            code: "event_time_in_future",
            detail: format!(
                "event time {} is {} s ahead of the publish time (max_event_time_ahead is {} s)",
                super::output::rfc3339_ms(t_ms),
                ahead_ms / 1000,
                max_ms / 1000
            ),
        });
    }
    Ok(())
}

/// The windows of one `[[window]]`.
pub(crate) enum Op {
    Scalar(WindowOperator<Moments>),
    Wave(WindowOperator<WavePane>, Box<Analyzer>),
}

impl Op {
    pub(crate) fn new(index: usize, spec: &WindowSpec) -> Self {
        match &spec.kind {
            WindowKind::Scalar(_) => Op::Scalar(WindowOperator::new(index, spec)),
            WindowKind::Waveform(w) => Op::Wave(
                WindowOperator::new(index, spec),
                Box::new(Analyzer::with_speed(w.clone(), spec.size, spec.allowed_lateness)),
            ),
        }
    }

    /// Whether its windows take their speed from readings on `subject`.
    pub(crate) fn takes_speed(&mut self, subject: &str) -> bool {
        match self {
            Op::Wave(_, a) => a.speed().is_some_and(|t| crate::subject::matches(&t.spec().subject, subject)),
            Op::Scalar(_) => false,
        }
    }

    /// Holds a speed reading if its windows take speed from `subject`; pushes to `released`
    /// the readings no window can use any more. Whether it holds it.
    pub(crate) fn add_speed(
        &mut self,
        subject: &str,
        fields: &[&str],
        reading: (i64, f64),
        seq: u64,
        released: &mut Vec<u64>,
    ) -> bool {
        let Op::Wave(_, a) = self else { return false };
        let Some(track) = a.speed().filter(|t| crate::subject::matches(&t.spec().subject, subject)) else {
            return false;
        };
        let key = track.key_of_fields(fields);
        track.add(key, reading.0, reading.1, seq, released);
        true
    }

    /// Gives up every held speed reading (all windows closed).
    pub(crate) fn release_speeds(&mut self, released: &mut Vec<u64>) {
        if let Op::Wave(_, a) = self
            && let Some(t) = a.speed()
        {
            t.release_all(released);
        }
    }

    /// The newest watermark over every key (Unix ms), `None` before any input.
    pub(crate) fn hold_idle(&mut self, now: Instant) {
        match self {
            Op::Scalar(op) => op.hold_idle(now),
            Op::Wave(op, _) => op.hold_idle(now),
        }
    }

    pub(crate) fn newest_watermark(&self) -> Option<i64> {
        match self {
            Op::Scalar(op) => op.newest_watermark(),
            Op::Wave(op, _) => op.newest_watermark(),
        }
    }

    /// Adds a decoded message to its windows; returns how many took it.
    pub(crate) fn add(
        &mut self,
        key: &str,
        fields: &[&str],
        input: &Input,
        seq: u64,
        now: Instant,
        hold: bool,
    ) -> Result<u32, Late> {
        match (self, input) {
            (Op::Scalar(op), Input::Reading { t_ms, value }) => {
                op.add(key, fields, (*t_ms, t_ms + 1), seq, now, hold, |_, _, m| m.push(*value))
            }
            (Op::Wave(op, _), Input::Wave(w)) => {
                let span = (w.start_us.div_euclid(1000), (w.end_us() + 999).div_euclid(1000));
                op.add(key, fields, span, seq, now, hold, |lo, hi, pane| {
                    pane.add(&w.samples, w.start_us, w.sample_rate, lo, hi);
                    pane.note(w.units, w.rpm);
                })
            }
            _ => Ok(0),
        }
    }

    /// Closes due windows (`flush`: all of them) and computes their features.
    pub(crate) fn close(
        &mut self,
        spec: &WindowSpec,
        now: Instant,
        hold: bool,
        flush: bool,
        machines: &HashMap<String, MachineConfig>,
        out: &mut Vec<WindowResult>,
    ) {
        match self {
            Op::Scalar(op) => {
                let mut closed = Vec::new();
                if flush {
                    op.flush(&mut closed)
                } else {
                    op.advance(now, hold, &mut closed)
                }
                let WindowKind::Scalar(aggs) = &spec.kind else { return };
                out.extend(closed.into_iter().map(|c| {
                    let features = Features {
                        scalars: aggs.iter().filter_map(|a| c.pane.get(*a).map(|v| (a.name(), v))).collect(),
                        ..Features::default()
                    };
                    result(c, features)
                }));
            }
            Op::Wave(op, analyzer) => {
                let mut closed = Vec::new();
                if flush {
                    op.flush(&mut closed)
                } else {
                    op.advance(now, hold, &mut closed)
                }
                let machine_at = spec.key.iter().position(|k| k == "machine");
                let none = MachineSettings::default();
                out.extend(closed.into_iter().map(|mut c| {
                    let settings = machine_at.and_then(|i| machines.get(&c.key[i])).map_or(&none, |m| &m.settings);
                    if let Some(track) = analyzer.speed() {
                        let key = track.key_of_window(&c.key);
                        c.pane.set_tachometer(track.at(&key, c.start_ms, c.end_ms));
                    }
                    let features = analyzer.analyze(&mut c.pane, settings);
                    result(c, features)
                }));
            }
        }
    }
}

fn result<P>(c: Closed<P>, features: Features) -> WindowResult {
    WindowResult { window: c.window, key: c.key, start_ms: c.start_ms, end_ms: c.end_ms, features, seqs: c.seqs }
}

/// Builds the joined key and its parts for a window spec from the subject's fields.
pub(crate) fn key_of<'f>(
    spec: &WindowSpec,
    fields: &[&'f str],
    buf: &mut String,
) -> ([&'f str; MAX_KEY_FIELDS], usize) {
    buf.clear();
    let mut parts: [&str; MAX_KEY_FIELDS] = [""; MAX_KEY_FIELDS];
    for (n, &i) in spec.key_index.iter().enumerate().take(MAX_KEY_FIELDS) {
        if n > 0 {
            buf.push('.');
        }
        buf.push_str(fields[i]);
        parts[n] = fields[i];
    }
    (parts, spec.key_index.len().min(MAX_KEY_FIELDS))
}
