//! Per-machine settings from a NATS KV bucket (MACHINE_CONFIG in the reference articles),
//! read at start and watched: a change applies from the next window, without a restart.
//!
//! One JSON document per machine, keyed by machine id:
//! ```json
//! {"machine_id": "cnc-001",
//!  "vibration": {"sample_rate": 25600, "fft_size": 1024, "alert_threshold_rms": 4.5,
//!                "bearing_type": "6205", "rpm": 1797},
//!  "alerts": {"vibration-rms": {"warning": 2.0, "critical": 3.5, "clear_below": 1.8}},
//!  "baseline_reset": "2026-12-07T10:00:00Z"}
//! ```
//! Other fields (maintenance records...) are ignored. `baseline_reset` (RFC 3339) makes every
//! baseline rule (`compare = "ratio"`/`"db"`) learn the machine's baseline anew from the first
//! window starting at or after that moment (after a repair or a bearing change). `alert_threshold_rms` replaces the top
//! level (critical, else warning) of every rule on the `rms` metric for that machine;
//! `alerts` overrides a rule's levels by name. A missing key means the pipeline's defaults;
//! an invalid document is reported and the previous settings stay in force.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::kv::{self, Operation};
use futures::StreamExt;
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::config::AlertRule;
use crate::waveform::MachineSettings;

/// A rule's levels for one machine.
#[derive(Debug, Clone, Copy, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelOverride {
    /// Warning level.
    pub warning: Option<f64>,
    /// Critical level.
    pub critical: Option<f64>,
    /// Clear level.
    pub clear_below: Option<f64>,
}

/// Everything the machine config says about one machine.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MachineConfig {
    /// Settings for the waveform analysis.
    pub settings: MachineSettings,
    /// `alert_threshold_rms`.
    pub alert_threshold_rms: Option<f64>,
    /// Level overrides by rule name.
    pub alerts: HashMap<String, LevelOverride>,
    /// `baseline_reset`, Unix ms.
    pub baseline_reset_ms: Option<i64>,
    /// KV revision it came from.
    pub revision: u64,
}

#[derive(Deserialize)]
struct Doc {
    vibration: Option<Vibration>,
    #[serde(default)]
    alerts: HashMap<String, LevelOverride>,
    baseline_reset: Option<String>,
}

#[derive(Deserialize)]
struct Vibration {
    sample_rate: Option<f64>,
    fft_size: Option<usize>,
    alert_threshold_rms: Option<f64>,
    bearing_type: Option<String>,
    rpm: Option<f64>,
}

/// Parses and checks one machine's document.
///
/// # Errors
/// What is wrong with it, for the log.
pub fn parse(bytes: &[u8], revision: u64) -> Result<MachineConfig, String> {
    let doc: Doc = serde_json::from_slice(bytes).map_err(|e| format!("not a machine config document: {e}"))?;
    let v = doc.vibration.unwrap_or(Vibration {
        sample_rate: None,
        fft_size: None,
        alert_threshold_rms: None,
        bearing_type: None,
        rpm: None,
    });
    if let Some(b) = v.bearing_type.as_deref()
        && stator_operators::bearing::catalog(b).is_none()
    {
        return Err(format!("bearing_type `{b}` is not in the catalog"));
    }
    if v.fft_size.is_some_and(|n| !(64..=1 << 20).contains(&n) || !n.is_multiple_of(2)) {
        return Err("fft_size must be even, from 64 to 1048576".into());
    }
    if v.rpm.is_some_and(|r| !(r > 0.0 && r < 200_000.0)) {
        return Err("rpm must be above 0 and below 200000".into());
    }
    if v.sample_rate.is_some_and(|r| !crate::waveform::decode::SAMPLE_RATE_RANGE.contains(&r)) {
        return Err("sample_rate must be from 100 Hz to 1 MHz".into());
    }
    if v.alert_threshold_rms.is_some_and(|t| !(t.is_finite() && t > 0.0)) {
        return Err("alert_threshold_rms must be a positive number".into());
    }
    for (rule, l) in &doc.alerts {
        let levels = [l.warning, l.critical, l.clear_below];
        if levels.iter().flatten().any(|x| !x.is_finite()) {
            return Err(format!("alerts.{rule}: levels must be numbers"));
        }
        if let (Some(w), Some(c)) = (l.warning, l.critical)
            && w >= c
        {
            return Err(format!("alerts.{rule}: critical must be above warning"));
        }
    }
    let baseline_reset_ms = doc
        .baseline_reset
        .as_deref()
        .map(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                .map(|t| i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX))
                .map_err(|e| format!("baseline_reset `{t}` is not an RFC 3339 time: {e}"))
        })
        .transpose()?;
    Ok(MachineConfig {
        settings: MachineSettings { bearing: v.bearing_type, rpm: v.rpm, fft_size: v.fft_size },
        alert_threshold_rms: v.alert_threshold_rms,
        alerts: doc.alerts,
        baseline_reset_ms,
        revision,
    })
}

/// The levels of `rule` for a machine: the rule's own, with the machine's overrides.
pub fn levels_for(rule: &AlertRule, machine: Option<&MachineConfig>) -> AlertRule {
    let mut r = rule.clone();
    let Some(m) = machine else { return r };
    if let (Some(t), "rms") = (m.alert_threshold_rms, rule.metric) {
        if r.critical.is_some() {
            r.critical = Some(t);
            r.warning = r.warning.filter(|w| *w < t);
        } else {
            r.warning = Some(t);
        }
        r.clear_below = r.clear_below.min(t);
    }
    if let Some(o) = m.alerts.get(&rule.name) {
        r.warning = o.warning.or(r.warning);
        r.critical = o.critical.or(r.critical);
        let lowest = r.warning.or(r.critical).unwrap_or(r.clear_below);
        r.clear_below = o.clear_below.unwrap_or(r.clear_below).min(lowest);
    }
    r
}

/// A change to one machine's config.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// New settings for a machine.
    Set(String, Box<MachineConfig>),
    /// The machine's key was deleted: back to the pipeline's defaults.
    Removed(String),
    /// An invalid document: the previous settings stay.
    Invalid {
        /// Machine id.
        machine: String,
        /// What is wrong.
        reason: String,
    },
}

/// Reads the current configs of every machine, then keeps sending changes until the
/// receiver is dropped. Returns the current configs.
///
/// # Errors
/// The NATS error as text.
pub async fn watch(store: kv::Store, tx: mpsc::Sender<Update>) -> Result<HashMap<String, MachineConfig>, String> {
    let mut current = HashMap::new();
    let pending = store.status().await.map_err(|e| e.to_string())?.values();
    let mut watch = store.watch_with_history(">").await.map_err(|e| e.to_string())?;
    if pending > 0 {
        loop {
            let next = tokio::time::timeout(Duration::from_secs(10), watch.next()).await;
            let Ok(Some(Ok(entry))) = next else { break };
            let last = entry.delta == 0;
            match to_update(entry) {
                Update::Set(m, c) => {
                    current.insert(m, *c);
                }
                Update::Removed(m) => {
                    current.remove(&m);
                }
                Update::Invalid { machine, reason } => {
                    tracing::warn!(machine, reason, "invalid machine config ignored");
                }
            }
            if last {
                break;
            }
        }
    }
    tokio::spawn(async move {
        while let Some(entry) = watch.next().await {
            match entry {
                Ok(entry) => {
                    if tx.send(to_update(entry)).await.is_err() {
                        return;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "machine config watch error"),
            }
        }
    });
    Ok(current)
}

fn to_update(entry: kv::Entry) -> Update {
    match entry.operation {
        Operation::Delete | Operation::Purge => Update::Removed(entry.key),
        Operation::Put => match parse(&entry.value, entry.revision) {
            Ok(c) => Update::Set(entry.key, Box::new(c)),
            Err(reason) => Update::Invalid { machine: entry.key, reason },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subject::OutputTemplate;

    fn rule() -> AlertRule {
        AlertRule {
            name: "vibration-rms".into(),
            window: 0,
            metric: "rms",
            warning: Some(2.8),
            critical: Some(4.5),
            clear_below: 2.5,
            for_windows: 1,
            subject: OutputTemplate::parse("acme.x.alert.y").unwrap(),
            compare: crate::config::Compare::Value,
            kind: crate::config::AlertKind::Fixed("threshold".into()),
            include: Vec::new(),
        }
    }

    #[test]
    fn the_reference_document_parses() {
        let doc = br#"{"machine_id":"cnc-001","vibration":{"sample_rate":25600,"fft_size":1024,"alert_threshold_rms":4.5,"bearing_type":"6205"},"maintenance":{"operating_hours":4280}}"#;
        let c = parse(doc, 3).unwrap();
        assert_eq!(c.settings.bearing.as_deref(), Some("6205"));
        assert_eq!((c.alert_threshold_rms, c.settings.fft_size, c.revision), (Some(4.5), Some(1024), 3));
    }

    #[test]
    fn invalid_documents_are_refused_with_a_reason() {
        assert!(parse(b"not json", 1).unwrap_err().contains("not a machine config"));
        assert!(parse(br#"{"vibration":{"bearing_type":"9999"}}"#, 1).unwrap_err().contains("catalog"));
        assert!(parse(br#"{"vibration":{"rpm":-5}}"#, 1).unwrap_err().contains("rpm"));
        assert!(parse(br#"{"alerts":{"r":{"warning":5,"critical":4}}}"#, 1).unwrap_err().contains("above warning"));
        assert!(
            parse(br#"{"baseline_reset":"last tuesday"}"#, 1).unwrap_err().contains("baseline_reset `last tuesday`")
        );
    }

    #[test]
    fn a_baseline_reset_is_a_moment() {
        let c = parse(br#"{"baseline_reset":"2026-11-22T08:06:40Z"}"#, 1).unwrap();
        assert_eq!(c.baseline_reset_ms, Some(1_795_334_800_000));
        assert_eq!(parse(b"{}", 1).unwrap().baseline_reset_ms, None);
    }

    #[test]
    fn the_rms_threshold_replaces_the_top_level() {
        let c = parse(br#"{"vibration":{"alert_threshold_rms":2.0}}"#, 1).unwrap();
        let r = levels_for(&rule(), Some(&c));
        assert_eq!((r.warning, r.critical, r.clear_below), (None, Some(2.0), 2.0));
        let c = parse(br#"{"alerts":{"vibration-rms":{"warning":1.0}}}"#, 1).unwrap();
        let r = levels_for(&rule(), Some(&c));
        assert_eq!((r.warning, r.critical, r.clear_below), (Some(1.0), Some(4.5), 1.0));
        assert_eq!(levels_for(&rule(), None).critical, Some(4.5));
    }
}
