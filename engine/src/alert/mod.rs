//! Threshold alert rules: a state machine per (rule, key) with hysteresis and debounce.
//!
//! Levels are `ok < warning < critical`. A window's value sets a *target* level: at or above
//! `critical` → critical; at or above `warning` → warning; below `clear_below` → ok; in the
//! band between `clear_below` and the lowest raise level the current level holds (a critical
//! alert in that band steps down to warning when the rule has one). A change is published
//! only when `for_windows` consecutive windows ask for a change in the same direction; it
//! moves to the least extreme level those windows agree on.

pub mod baseline;

use serde::{Deserialize, Serialize};
use stator_operators::faults::FaultKind;

use self::baseline::{Baseline, Change, Trend};

use crate::config::{AlertKind, AlertRule};

/// Alert level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// No alert.
    #[default]
    Ok,
    /// Warning raised.
    Warning,
    /// Critical raised.
    Critical,
}

impl Level {
    /// The level's name, as serialized: `ok`, `warning`, `critical`.
    pub fn name(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warning => "warning",
            Level::Critical => "critical",
        }
    }

    /// Name of the transition *into* this level, as published in `state`.
    pub fn transition_name(self) -> &'static str {
        match self {
            Level::Ok => "cleared",
            Level::Warning => "warning",
            Level::Critical => "critical",
        }
    }
}

/// Persistent state of one rule for one key.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct RuleState {
    /// Level in force.
    pub level: Level,
    /// Consecutive windows asking for a change.
    pub streak: u32,
    /// Whether the streak asks for a raise (else a lowering).
    pub streak_up: bool,
    /// The least extreme level the streak agrees on.
    pub streak_level: Level,
    /// End (Unix ms) of the last window applied; windows up to it are not applied again.
    pub last_window_end: i64,
    /// Bearing rules: the fault kind the open alert was raised for, so its later transitions
    /// (the clear above all, when the verdict is back to normal) say the same kind.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "fault_kind")]
    pub fault: Option<FaultKind>,
    /// `ratio`/`db` rules: the key's baseline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Baseline>,
    /// `rate` rules: the feature's smoothed level and slope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trend: Option<Trend>,
}

/// One window's value as the rule saw it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluated {
    /// The value compared with the levels (the feature, or its ratio, dB or rate).
    pub compared: f64,
    /// How it was derived from the feature, when it was.
    pub change: Option<Change>,
    /// The level change, if any.
    pub transition: Option<Transition>,
}

/// Applies one window's feature `value` (window `[start_ms, end_ms)`) to `state`: learns or
/// compares it as the rule's `compare` says, then runs the level state machine ([`apply`]).
/// `None` when the window was already applied (a replay) or only learned.
pub fn evaluate(
    rule: &AlertRule,
    state: &mut RuleState,
    value: f64,
    (start_ms, end_ms): (i64, i64),
    reset_ms: Option<i64>,
) -> Option<Evaluated> {
    if end_ms <= state.last_window_end {
        return None;
    }
    let derived =
        baseline::derive(rule.compare, &mut state.baseline, &mut state.trend, value, (start_ms, end_ms), reset_ms);
    let Some((compared, change)) = derived else {
        state.last_window_end = end_ms;
        return None;
    };
    let transition = apply(rule, state, compared, end_ms);
    Some(Evaluated { compared, change, transition })
}

/// A [`FaultKind`] in the state bucket: its name.
mod fault_kind {
    use serde::{Deserialize, Deserializer, Serializer};
    use stator_operators::faults::FaultKind;

    pub(super) fn serialize<S: Serializer>(kind: &Option<FaultKind>, s: S) -> Result<S::Ok, S::Error> {
        match kind {
            Some(k) => s.serialize_some(k.name()),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<FaultKind>, D::Error> {
        Option::<String>::deserialize(d)?.map(|n| n.parse().map_err(serde::de::Error::custom)).transpose()
    }
}

/// A change of level, to be published.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transition {
    /// Level before.
    pub from: Level,
    /// Level after.
    pub to: Level,
    /// The threshold crossed: the raise level for a raise, `clear_below` for a clear.
    pub threshold: f64,
}

/// Applies one window's `value` to `state`.
///
/// Returns `None` without touching `state` when the window was already applied (its end is
/// not after `last_window_end`): a replay after a crash changes nothing.
pub fn apply(rule: &AlertRule, state: &mut RuleState, value: f64, window_end: i64) -> Option<Transition> {
    if window_end <= state.last_window_end {
        return None;
    }
    state.last_window_end = window_end;
    let target = target(rule, state.level, value);
    if target == state.level {
        state.streak = 0;
        return None;
    }
    let up = target > state.level;
    if state.streak > 0 && state.streak_up == up {
        state.streak += 1;
        state.streak_level = if up { state.streak_level.min(target) } else { state.streak_level.max(target) };
    } else {
        state.streak = 1;
        state.streak_up = up;
        state.streak_level = target;
    }
    if state.streak < rule.for_windows {
        return None;
    }
    let from = state.level;
    let to = state.streak_level;
    state.level = to;
    state.streak = 0;
    let threshold = match to {
        Level::Ok => rule.clear_below,
        Level::Warning => rule.warning.unwrap_or(rule.clear_below),
        Level::Critical => rule.critical.unwrap_or(f64::NAN),
    };
    Some(Transition { from, to, threshold })
}

/// What a transition is about (`kind` in the message). A bearing rule says the fault kind of
/// the window's `verdict` when it raises or escalates and keeps it in `state`, so the clear
/// (when the verdict is back to normal) says the kind it clears; `bearing` when no verdict
/// named one (a rule on one defect's level raised by a window judged normal overall).
pub fn transition_kind(rule: &AlertRule, state: &mut RuleState, t: Transition, verdict: Option<&str>) -> String {
    match &rule.kind {
        AlertKind::Fixed(k) => k.clone(),
        AlertKind::BearingFault => {
            let kind = if t.to == Level::Ok {
                state.fault.take()
            } else {
                state.fault = verdict.and_then(|v| v.parse().ok()).or(state.fault);
                state.fault
            };
            kind.map_or("bearing", FaultKind::name).to_owned()
        }
    }
}

fn target(rule: &AlertRule, current: Level, v: f64) -> Level {
    if rule.critical.is_some_and(|c| v >= c) {
        Level::Critical
    } else if rule.warning.is_some_and(|w| v >= w) {
        Level::Warning
    } else if v < rule.clear_below {
        Level::Ok
    } else if current == Level::Critical && rule.warning.is_some() {
        Level::Warning
    } else {
        current
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subject::OutputTemplate;

    fn rule(for_windows: u32) -> AlertRule {
        AlertRule {
            name: "r".into(),
            window: 0,
            metric: "rms",
            warning: Some(2.8),
            critical: Some(4.5),
            clear_below: 2.5,
            for_windows,
            subject: OutputTemplate::parse("acme.{site}.alert.x").unwrap(),
            compare: crate::config::Compare::Value,
            kind: crate::config::AlertKind::Fixed("threshold".into()),
            include: Vec::new(),
        }
    }

    fn run(rule: &AlertRule, values: &[f64]) -> Vec<(usize, Level)> {
        let mut s = RuleState::default();
        values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| apply(rule, &mut s, *v, (i as i64 + 1) * 10).map(|t| (i, t.to)))
            .collect()
    }

    #[test]
    fn raises_escalates_steps_down_and_clears() {
        let got = run(&rule(1), &[1.0, 3.0, 5.0, 3.0, 2.6, 2.4]);
        assert_eq!(got, vec![(1, Level::Warning), (2, Level::Critical), (3, Level::Warning), (5, Level::Ok)]);
    }

    #[test]
    fn hysteresis_holds_inside_the_band() {
        let got = run(&rule(1), &[3.0, 2.7, 2.6, 2.9, 2.5, 2.49]);
        assert_eq!(got, vec![(0, Level::Warning), (5, Level::Ok)]);
    }

    #[test]
    fn debounce_needs_consecutive_windows_and_takes_the_agreed_level() {
        let r = rule(2);
        assert_eq!(run(&r, &[3.0, 1.0, 3.0, 1.0]), vec![]);
        assert_eq!(
            run(&r, &[3.0, 5.0, 5.0]),
            vec![(1, Level::Warning), (2, Level::Critical)].into_iter().take(1).collect::<Vec<_>>()
        );
        assert_eq!(run(&r, &[5.0, 5.0, 1.0, 1.0]), vec![(1, Level::Critical), (3, Level::Ok)]);
    }

    #[test]
    fn a_replayed_window_changes_nothing() {
        let r = rule(1);
        let mut s = RuleState::default();
        assert!(apply(&r, &mut s, 5.0, 10).is_some());
        let before = s;
        assert_eq!(apply(&r, &mut s, 1.0, 10), None);
        assert_eq!(s, before);
    }

    #[test]
    fn a_bearing_alert_keeps_the_kind_it_was_raised_for_until_it_clears() {
        let r = AlertRule { kind: AlertKind::BearingFault, ..rule(1) };
        let mut s = RuleState::default();
        let mut step = |value: f64, end: i64, verdict: &str| {
            apply(&r, &mut s, value, end).map(|t| (t.to, transition_kind(&r, &mut s, t, Some(verdict))))
        };
        assert_eq!(step(3.0, 10, "outer_race"), Some((Level::Warning, "outer_race".into())));
        assert_eq!(step(5.0, 20, "normal"), Some((Level::Critical, "outer_race".into())));
        assert_eq!(step(1.0, 30, "normal"), Some((Level::Ok, "outer_race".into())));
        assert_eq!(step(3.0, 40, "normal"), Some((Level::Warning, "bearing".into())), "nothing kept after a clear");
        assert_eq!(step(5.0, 50, "inner_race"), Some((Level::Critical, "inner_race".into())));
        let fixed = rule(1);
        let mut s = RuleState::default();
        let t = apply(&fixed, &mut s, 5.0, 10).unwrap();
        assert_eq!(transition_kind(&fixed, &mut s, t, Some("ball")), "threshold");
        assert_eq!(s.fault, None);
    }

    #[test]
    fn the_kept_kind_survives_the_state_bucket_and_old_states_still_load() {
        let s = RuleState { level: Level::Warning, fault: Some(FaultKind::Ball), ..Default::default() };
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains(r#""fault":"ball""#), "{json}");
        assert_eq!(serde_json::from_str::<RuleState>(&json).unwrap(), s);
        let old = r#"{"level":"warning","streak":0,"streak_up":false,"streak_level":"ok","last_window_end":7}"#;
        assert_eq!(serde_json::from_str::<RuleState>(old).unwrap().fault, None);
        assert!(serde_json::from_str::<RuleState>(&json.replace("ball", "wheel")).is_err());
    }
}
