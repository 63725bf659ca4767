//! Building an `[[alert]]`: the metric, the levels and the output subject.

use std::time::Duration;

use stator_operators::velocity::Zone;

use super::checker::{Checker, duration, is_name};
use super::file::{AlertSection, LevelValue, WindowSection};
use super::{AlertKind, AlertRule, BaselineSpec, Compare, KeyPath, WindowSpec};
use crate::subject::OutputTemplate;
use crate::waveform::{FeatureDef, FeatureKind};

/// What a rule on a `bearing.*` feature attaches by default (those its window computes).
const BEARING_EVIDENCE: &[&str] = &[
    "bearing.verdict",
    "bearing.evidence_kind",
    "bearing.defect_hz",
    "bearing.defect_orders",
    "bearing.fundamental_db",
    "bearing.harmonic2_db",
    "bearing.harmonic3_db",
    "bearing.harmonics_present",
    "bearing.sideband_db",
    "rpm",
    "rpm_source",
    "bearing.type",
    "iso_zone",
    "velocity_rms",
];

/// What an `iso_zone` rule attaches by default.
const ZONE_EVIDENCE: &[&str] = &["iso_zone", "velocity_rms"];

/// The features an alert attaches: the ones named in `include` (each must be a number or a
/// text of the window), else the rule's default set, as far as the window computes it.
fn included(cx: &mut Checker, p: &KeyPath, a: &AlertSection, w: &WindowSpec) -> Option<Vec<FeatureDef>> {
    let defs = w.feature_defs();
    let Some(names) = &a.include else {
        let defaults = if a.metric.starts_with("bearing.") {
            BEARING_EVIDENCE
        } else if a.metric == "iso_zone" {
            ZONE_EVIDENCE
        } else {
            &[]
        };
        return Some(defaults.iter().flat_map(|n| defs.iter().filter(move |d| d.name == *n)).copied().collect());
    };
    let mut out = Vec::new();
    let mut ok = true;
    for (i, name) in names.iter().enumerate() {
        let found: Vec<FeatureDef> = defs.iter().filter(|d| d.name == *name).copied().collect();
        if found.is_empty() {
            let vector = matches!(&w.kind, super::WindowKind::Waveform(s)
                if s.operators.iter().flat_map(|o| o.get().features()).any(|f| f.name == *name && f.kind == FeatureKind::Vector));
            let why = if vector {
                format!("`{name}` is a spectrum; spectra are published with the window's features, not in alerts")
            } else {
                let mut known: Vec<&str> = defs.iter().map(|d| d.name).collect();
                known.dedup(); // `iso_zone` is a number and a text
                format!("window `{}` does not compute `{name}`; it computes {}", w.name, known.join(", "))
            };
            cx.error(&p.key("include").index(i), why);
            ok = false;
        } else if out.iter().any(|d: &FeatureDef| d.name == *name) {
            cx.error(&p.key("include").index(i), format!("`{name}` is listed twice"));
            ok = false;
        }
        out.extend(found);
    }
    ok.then_some(out)
}

fn level(cx: &mut Checker, p: &KeyPath, key: &str, v: &Option<LevelValue>, metric: &str) -> Option<Option<f64>> {
    match v {
        None => Some(None),
        Some(LevelValue::Number(n)) if n.is_finite() => Some(Some(*n)),
        Some(LevelValue::Number(_)) => {
            cx.error(&p.key(key), "must be a finite number");
            None
        }
        Some(LevelValue::Zone(z)) if metric == "iso_zone" => match z.parse::<Zone>() {
            Ok(zone) => Some(Some(Zone::number(zone))),
            Err(e) => {
                cx.error(&p.key(key), e);
                None
            }
        },
        Some(LevelValue::Zone(z)) => {
            cx.error(
                &p.key(key),
                format!("`{z}` is not a number (zone letters are for `iso_zone` rules that compare the value)"),
            );
            None
        }
    }
}

/// `compare` and the settings that go with it; `None` after an error.
fn compare(cx: &mut Checker, p: &KeyPath, a: &AlertSection) -> Option<Compare> {
    let name = a.compare.as_deref().unwrap_or("value");
    let misplaced = |cx: &mut Checker, key: &str, set: bool, wants: &str| {
        if set {
            cx.error(&p.key(key), format!("`{key}` goes with `compare = {wants}`, not `{name}`"));
        }
        set
    };
    let baseline = (name == "ratio" || name == "db").then(|| {
        let windows = a.baseline_windows.unwrap_or(30);
        let period =
            a.baseline_period.as_deref().map(|t| duration(cx, &p.key("baseline_period"), Some(t), Duration::ZERO));
        BaselineSpec { windows, period }
    });
    let mut ok = true;
    if let Some(b) = &baseline {
        if a.baseline_windows.is_some() && a.baseline_period.is_some() {
            cx.error(&p.key("baseline_period"), "give `baseline_windows` or `baseline_period`, not both");
            ok = false;
        }
        if !(1..=100_000).contains(&b.windows) {
            cx.error(&p.key("baseline_windows"), "baseline_windows must be from 1 to 100000");
            ok = false;
        }
        if b.period.is_some_and(|d| d.is_zero()) {
            cx.error(&p.key("baseline_period"), "baseline_period must be longer than 0s");
            ok = false;
        }
    } else {
        ok &= !misplaced(cx, "baseline_windows", a.baseline_windows.is_some(), "\"ratio\" or \"db\"");
        ok &= !misplaced(cx, "baseline_period", a.baseline_period.is_some(), "\"ratio\" or \"db\"");
    }
    if name != "rate" {
        ok &= !misplaced(cx, "trend_windows", a.trend_windows.is_some(), "\"rate\"");
    }
    let trend = a.trend_windows.unwrap_or(10);
    if name == "rate" && !(2..=10_000).contains(&trend) {
        cx.error(&p.key("trend_windows"), "trend_windows must be from 2 to 10000");
        ok = false;
    }
    let compare = match (name, baseline) {
        ("value", _) => Compare::Value,
        ("ratio", Some(b)) => Compare::Ratio(b),
        ("db", Some(b)) => Compare::Db(b),
        ("rate", _) => Compare::Rate { windows: trend },
        _ => {
            cx.error(&p.key("compare"), format!("`{name}` is not a comparison: value, ratio, db or rate"));
            return None;
        }
    };
    ok.then_some(compare)
}

pub(super) fn build_alert(
    cx: &mut Checker,
    p: &KeyPath,
    a: &AlertSection,
    sections: &[WindowSection],
    windows: &[Option<WindowSpec>],
) -> Option<AlertRule> {
    let mut ok = is_name(&a.name);
    if !ok {
        cx.error(&p.key("name"), "a rule name uses only letters, digits, `-` and `_`");
    }
    let window = sections.iter().position(|w| w.name == a.window);
    if window.is_none() {
        let known: Vec<&str> = sections.iter().map(|w| w.name.as_str()).collect();
        cx.error(&p.key("window"), format!("no window named `{}` (windows: {})", a.window, known.join(", ")));
        ok = false;
    }
    let spec = window.and_then(|i| windows[i].as_ref());
    let metric = spec.and_then(|w| {
        let features = w.scalar_features();
        let found = features.iter().find(|f| **f == a.metric).copied();
        if found.is_none() {
            cx.error(
                &p.key("metric"),
                format!("window `{}` does not compute `{}`; it computes {}", w.name, a.metric, features.join(", ")),
            );
        }
        found
    });
    let compare = compare(cx, p, a);
    // Zone letters are levels of the zone itself, not of its change.
    let zones = if compare.is_some_and(|c| c != Compare::Value) { "" } else { a.metric.as_str() };
    let warning = level(cx, p, "warning", &a.warning, zones);
    let critical = level(cx, p, "critical", &a.critical, zones);
    let clear = level(cx, p, "clear_below", &a.clear_below, zones);
    let (Some(warning), Some(critical), Some(clear)) = (warning, critical, clear) else { return None };
    let lowest = match (warning, critical) {
        (None, None) => {
            cx.error(p, "a rule needs `warning`, `critical` or both");
            return None;
        }
        (Some(w), Some(c)) if w >= c => {
            cx.error(&p.key("critical"), format!("critical ({c}) must be above warning ({w})"));
            return None;
        }
        (Some(w), _) => w,
        (None, Some(c)) => c,
    };
    let clear_below = clear.unwrap_or(lowest);
    if clear_below > lowest {
        cx.error(
            &p.key("clear_below"),
            format!("clear_below ({clear_below}) must not be above the lowest raise level ({lowest})"),
        );
        ok = false;
    }
    let for_windows = a.for_windows.unwrap_or(1);
    if for_windows == 0 {
        cx.error(&p.key("for_windows"), "for_windows must be at least 1");
        ok = false;
    }
    let subject = match OutputTemplate::parse(&a.subject) {
        Ok(t) => Some(t),
        Err(e) => {
            cx.error(&p.key("subject"), e);
            None
        }
    };
    if let (Some(t), Some(w)) = (&subject, spec) {
        for f in t.fields() {
            if !w.key.contains(f) && !["pipeline", "rule", "kind"].contains(&f.as_str()) {
                cx.error(
                    &p.key("subject"),
                    format!("`{{{f}}}` is not in window `{}`'s key ({})", w.name, w.key.join(", ")),
                );
                ok = false;
            }
        }
        let tokens: Vec<&str> = t.as_str().split('.').collect();
        if tokens.get(2) != Some(&"alert") {
            cx.warn(
                &p.key("subject"),
                "alert subjects usually follow `acme.{site}.alert.>`; make sure a stream captures this one",
            );
        }
    }
    let include = spec.and_then(|w| included(cx, p, a, w));
    let verdict = spec.is_some_and(|w| w.feature_defs().iter().any(|d| d.name == "bearing.verdict"));
    let kind = match &a.kind {
        Some(k) if is_name(k) => AlertKind::Fixed(k.clone()),
        Some(_) => {
            cx.error(&p.key("kind"), "a kind uses only letters, digits, `-` and `_`");
            ok = false;
            AlertKind::Fixed(String::new())
        }
        None if verdict && a.metric.starts_with("bearing.") => AlertKind::BearingFault,
        None => AlertKind::Fixed("threshold".into()),
    };
    let (Some(window), Some(metric), Some(subject), Some(include), Some(compare), true) =
        (window, metric, subject, include, compare, ok)
    else {
        return None;
    };
    Some(AlertRule {
        name: a.name.clone(),
        window,
        metric,
        warning,
        critical,
        clear_below,
        for_windows,
        compare,
        subject,
        kind,
        include,
    })
}
