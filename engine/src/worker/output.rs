//! The messages a pipeline publishes: alert transitions and dead letters.

use std::collections::BTreeMap;

use async_nats::HeaderMap;
use bytes::Bytes;
use serde::Serialize;

use super::WindowResult;
use crate::alert::baseline::Change;
use crate::alert::{Level, Transition};
use crate::config::{AlertRule, Pipeline};
use crate::sink::Outbound;
use crate::waveform::FeatureKind;

pub use crate::telemetry::rfc3339_ms;

/// The `schema` of alert messages (docs/schemas/alert.v1.schema.json).
pub const ALERT_SCHEMA: &str = "urn:stator:schema:alert:1";
/// The `schema` of feature messages (docs/schemas/features.v1.schema.json).
pub const FEATURES_SCHEMA: &str = "urn:stator:schema:features:1";
/// The `Stator-Schema` header of dead letters (docs/schemas/dead-letter.v1.schema.json).
pub const DEAD_LETTER_SCHEMA: &str = "urn:stator:schema:dead-letter:1";

/// An alert transition as published.
#[derive(Debug, Serialize)]
pub struct AlertEvent<'a> {
    /// Schema and major version of this message ([`ALERT_SCHEMA`]).
    pub schema: &'static str,
    /// What the alert is about: a bearing fault kind (`outer_race`, `inner_race`, `ball`,
    /// `cage`) or the rule's `kind` (default `threshold`).
    pub kind: &'a str,
    /// Pipeline name.
    pub pipeline: &'a str,
    /// Rule name.
    pub rule: &'a str,
    /// `warning`, `critical` or `cleared`.
    pub state: &'static str,
    /// Level before the transition.
    pub previous: Level,
    /// Level after the transition.
    pub severity: Level,
    /// Aggregate compared.
    pub metric: &'a str,
    /// The value compared with the threshold: the window's value of `metric`, or for rules
    /// comparing a change its ratio, dB or rate (see `change`).
    pub value: f64,
    /// The threshold crossed.
    pub threshold: f64,
    /// Key fields of the window.
    pub key: BTreeMap<&'a str, &'a str>,
    /// Window start, RFC 3339.
    pub window_start: String,
    /// Window end, RFC 3339.
    pub window_end: String,
    /// Readings in the window.
    pub readings: usize,
    /// Source stream.
    pub stream: &'a str,
    /// First stream sequence in the window.
    pub first_seq: u64,
    /// Last stream sequence in the window.
    pub last_seq: u64,
    /// The window features the rule includes, by name.
    pub evidence: BTreeMap<&'static str, Evidence<'a>>,
    /// Rules comparing a change (`compare = "ratio"`, `"db"`, `"rate"`): what `value` was
    /// derived from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change: Option<ChangeEvent>,
}

/// How an alert's `value` was derived from the window's feature.
#[derive(Debug, Serialize, PartialEq)]
pub struct ChangeEvent {
    /// `ratio`, `db` or `rate`.
    pub compare: &'static str,
    /// The feature's own value in the window.
    pub feature_value: f64,
    /// `ratio`/`db`: the key's learned baseline of the feature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<f64>,
    /// `ratio`/`db`: windows it was learned over.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_windows: Option<u32>,
    /// `ratio`/`db`: start of the first learned window, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_start: Option<String>,
    /// `ratio`/`db`: end of the last learned window, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_end: Option<String>,
}

/// A window's value as a rule saw it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seen {
    /// The feature's value.
    pub feature: f64,
    /// What the levels were compared with.
    pub compared: f64,
    /// How `compared` was derived, when it was.
    pub change: Option<Change>,
}

fn change_event(rule: &AlertRule, seen: Seen) -> Option<ChangeEvent> {
    let change = seen.change?;
    let b = match change {
        Change::Baseline(b) => Some(b),
        Change::Rate => None,
    };
    Some(ChangeEvent {
        compare: rule.compare.name(),
        feature_value: seen.feature,
        baseline: b.map(|b| b.value()),
        baseline_windows: b.map(|b| b.windows),
        baseline_start: b.map(|b| rfc3339_ms(b.from_ms)),
        baseline_end: b.map(|b| rfc3339_ms(b.to_ms)),
    })
}

/// One included feature: a number with its unit, a text, or both (`iso_zone` is a zone
/// number and its letter).
#[derive(Debug, Default, Serialize, PartialEq)]
pub struct Evidence<'a> {
    /// The number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Its unit (`Hz`, `dB`, `orders`, `mm/s`, `rpm`...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<&'static str>,
    /// The text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<&'a str>,
}

/// The features `rule` includes, as the window computed them; features the window did not
/// produce this time (no sidebands for an outer race) and non-finite numbers are left out.
fn evidence<'a>(rule: &AlertRule, w: &'a WindowResult) -> BTreeMap<&'static str, Evidence<'a>> {
    let mut out: BTreeMap<&'static str, Evidence<'a>> = BTreeMap::new();
    for def in &rule.include {
        match def.kind {
            FeatureKind::Scalar => {
                if let Some(v) = w.features.scalar(def.name).filter(|v| v.is_finite()) {
                    let e = out.entry(def.name).or_default();
                    (e.value, e.unit) = (Some(v), Some(def.unit));
                }
            }
            FeatureKind::Text => {
                if let Some(t) = w.features.text(def.name) {
                    out.entry(def.name).or_default().text = Some(t);
                }
            }
            FeatureKind::Vector => {}
        }
    }
    out
}

/// A window's key as `{field: value}`, and the values an output subject template can use: the
/// key fields, `{pipeline}` and one more (`{rule}` or `{window}`).
fn key_fields<'a>(
    pipeline: &'a Pipeline,
    w: &'a WindowResult,
    extra: (&'static str, &'a str),
) -> (BTreeMap<&'a str, &'a str>, std::collections::HashMap<&'a str, &'a str>) {
    let spec = &pipeline.windows[w.window];
    let key: BTreeMap<&str, &str> = spec.key.iter().map(String::as_str).zip(w.key.iter().map(String::as_str)).collect();
    let mut fields: std::collections::HashMap<&str, &str> = key.iter().map(|(k, v)| (*k, *v)).collect();
    fields.insert("pipeline", &pipeline.name);
    fields.insert(extra.0, extra.1);
    (key, fields)
}

/// The outbound message of one transition, about `kind`. Its `Nats-Msg-Id` is
/// `{pipeline}.{rule}.{key...}.{window end ms}.{state}`, so a replay publishes nothing new.
pub fn alert<'a>(
    pipeline: &'a Pipeline,
    rule: &'a AlertRule,
    w: &'a WindowResult,
    seen: Seen,
    t: Transition,
    kind: &'a str,
) -> Outbound {
    let (key, mut fields) = key_fields(pipeline, w, ("rule", &rule.name));
    fields.insert("kind", kind);
    let state = t.to.transition_name();
    let event = AlertEvent {
        schema: ALERT_SCHEMA,
        kind,
        pipeline: &pipeline.name,
        rule: &rule.name,
        state,
        previous: t.from,
        severity: t.to,
        metric: rule.metric,
        value: seen.compared,
        threshold: t.threshold,
        key,
        window_start: rfc3339_ms(w.start_ms),
        window_end: rfc3339_ms(w.end_ms),
        readings: w.seqs.len(),
        stream: &pipeline.source.stream,
        first_seq: w.seqs.first().copied().unwrap_or_default(),
        last_seq: w.seqs.last().copied().unwrap_or_default(),
        evidence: evidence(rule, w),
        change: change_event(rule, seen),
    };
    let msg_id = format!("{}.{}.{}.{}.{state}", pipeline.name, rule.name, w.key.join("."), w.end_ms);
    let mut headers = HeaderMap::new();
    headers.insert("Stator-Pipeline", pipeline.name.as_str());
    headers.insert("Stator-Rule", rule.name.as_str());
    headers.insert("Stator-Kind", kind);
    headers.insert("Stator-Schema", ALERT_SCHEMA);
    Outbound {
        subject: rule.subject.render(&fields),
        msg_id,
        headers,
        payload: Bytes::from(serde_json::to_vec(&event).unwrap_or_default()),
        event_ms: w.end_ms,
        made: None,
    }
}

/// Where a dead letter came from.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// Stream name.
    pub stream: &'a str,
    /// Stream sequence.
    pub seq: u64,
    /// Original subject.
    pub subject: &'a str,
}

/// A dead letter: the original payload and headers, plus `Stator-Reason` (a short code),
/// `Stator-Detail`, `Stator-Stream`, `Stator-Seq`, `Stator-Subject`, `Stator-Pipeline` and
/// `Stator-Schema`.
pub fn dead_letter(
    pipeline: &Pipeline,
    origin: Origin<'_>,
    original_headers: Option<&HeaderMap>,
    payload: Bytes,
    code: &str,
    detail: &str,
) -> Outbound {
    let mut headers = carried_over(original_headers);
    headers.insert("Stator-Reason", code);
    headers.insert("Stator-Detail", sanitize_header(detail).as_str());
    headers.insert("Stator-Stream", origin.stream);
    headers.insert("Stator-Seq", origin.seq.to_string().as_str());
    headers.insert("Stator-Subject", origin.subject);
    headers.insert("Stator-Pipeline", pipeline.name.as_str());
    headers.insert("Stator-Schema", DEAD_LETTER_SCHEMA);
    Outbound {
        subject: pipeline.dead_letter_subject.clone(),
        msg_id: format!("{}.dlq.{}.{}", pipeline.name, origin.stream, origin.seq),
        headers,
        payload,
        event_ms: 0,
        made: None,
    }
}

/// The original message's headers as a dead letter carries them. nats-server gives meaning to
/// `Nats-*` headers on publish (`Nats-Stream-Source` of a sourced stream, `Nats-Expected-*`,
/// `Nats-Rollup`, `Nats-TTL`, `Nats-Msg-Id`...) and refuses or drops a dead letter that carries
/// them, so those keep their values under `Stator-Original-{name}`; every other header is copied.
pub fn carried_over(original: Option<&HeaderMap>) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, values) in original.into_iter().flat_map(HeaderMap::iter) {
        let name = name.to_string();
        let reserved = name.get(..5).is_some_and(|p| p.eq_ignore_ascii_case("nats-"));
        let name = if reserved { format!("Stator-Original-{name}") } else { name };
        for value in values {
            out.append(name.as_str(), value.as_str());
        }
    }
    out
}

/// Header values are one line of printable text, at most 512 bytes.
fn sanitize_header(text: &str) -> String {
    let mut out: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if out.len() > 512 {
        let mut cut = 512;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}

/// The identity of a window's features: `{pipeline}.{window}.{key...}.{window end ms}`.
pub fn features_id(pipeline: &Pipeline, w: &WindowResult) -> String {
    format!("{}.{}.{}.{}", pipeline.name, pipeline.windows[w.window].name, w.key.join("."), w.end_ms)
}

/// A window's features as published: scalars and texts in `features`, spectra in `spectra`.
/// `Nats-Msg-Id: {pipeline}.{window}.{key...}.{window end ms}`.
pub fn features(pipeline: &Pipeline, subject: &crate::subject::OutputTemplate, w: &WindowResult) -> Outbound {
    let spec = &pipeline.windows[w.window];
    let (key, fields) = key_fields(pipeline, w, ("window", &spec.name));
    let mut values = serde_json::Map::new();
    for (name, v) in &w.features.scalars {
        values.insert((*name).to_owned(), serde_json::json!(v));
    }
    for (name, v) in &w.features.texts {
        values.insert((*name).to_owned(), serde_json::json!(v));
    }
    let spectra: serde_json::Map<String, serde_json::Value> = w
        .features
        .vectors
        .iter()
        .map(|(name, v)| ((*name).to_owned(), serde_json::json!({ "step_hz": v.step, "values": v.values })))
        .collect();
    let body = serde_json::json!({
        "schema": FEATURES_SCHEMA,
        "pipeline": pipeline.name,
        "window": spec.name,
        "key": key,
        "window_start": rfc3339_ms(w.start_ms),
        "window_end": rfc3339_ms(w.end_ms),
        "messages": w.seqs.len(),
        "first_seq": w.seqs.first(),
        "last_seq": w.seqs.last(),
        "features": values,
        "spectra": spectra,
    });
    let mut headers = HeaderMap::new();
    headers.insert("Stator-Schema", FEATURES_SCHEMA);
    Outbound {
        subject: subject.render(&fields),
        msg_id: features_id(pipeline, w),
        headers,
        payload: Bytes::from(body.to_string()),
        event_ms: w.end_ms,
        made: None,
    }
}
