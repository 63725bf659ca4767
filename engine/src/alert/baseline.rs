//! Alerting on change rather than on a fixed level: a rule may compare a feature with the key's
//! own learned baseline (`compare = "ratio"` or `"db"`, ISO 13379 style: "×2" or "+6 dB over
//! normal") or watch its rate of change (`compare = "rate"`).
//!
//! - **Baseline**: the mean of the feature over the first `baseline_windows` windows of the key
//!   (or the windows within `baseline_period` of the first one). Those windows are learned, not
//!   compared. A `baseline_reset` time in the machine config (after a repair, a bearing change)
//!   makes the first window starting at or after it learn anew.
//! - **Trend**: Holt's linear exponential smoothing in event time (level and slope, both with
//!   weight `2 / (trend_windows + 1)`, the slope per hour of event time, so gaps between windows
//!   count for what they are). A linear ramp's slope is estimated without bias once the
//!   smoothing has settled; the first `trend_windows` windows only warm it up.
//!
//! Both live in the rule's state ([`super::RuleState`]), which is saved to the state bucket with
//! the alert level, so a restart keeps what was learned and a replayed window changes nothing.

use serde::{Deserialize, Serialize};

use crate::config::{BaselineSpec, Compare};

/// A baseline being learned or learned.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Baseline {
    /// Windows learned.
    pub windows: u32,
    /// Sum of their values.
    pub sum: f64,
    /// Start of the first learned window, Unix ms.
    pub from_ms: i64,
    /// End of the last learned window, Unix ms.
    pub to_ms: i64,
    /// Learning is over.
    pub learned: bool,
}

impl Baseline {
    /// The learned value: the mean of the learned windows.
    pub fn value(&self) -> f64 {
        self.sum / f64::from(self.windows.max(1))
    }
}

/// A smoothed level and slope.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Trend {
    /// Windows seen.
    pub windows: u32,
    /// Smoothed level, in the feature's unit.
    pub level: f64,
    /// Smoothed slope, the feature's unit per hour.
    pub per_hour: f64,
    /// End of the last window seen, Unix ms.
    pub at_ms: i64,
}

/// What a window's value was compared as, for the alert message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Change {
    /// Over the baseline (`ratio` or `db`).
    Baseline(Baseline),
    /// Rate per hour.
    Rate,
}

/// Feeds one window's `value` (of the window `[start_ms, end_ms)`) to the comparison; returns
/// the value the levels are compared with, or `None` while the window is learned or the
/// comparison is not defined (a baseline of 0, a non-finite value).
pub fn derive(
    compare: Compare,
    baseline: &mut Option<Baseline>,
    trend: &mut Option<Trend>,
    value: f64,
    (start_ms, end_ms): (i64, i64),
    reset_ms: Option<i64>,
) -> Option<(f64, Option<Change>)> {
    if !value.is_finite() {
        return None;
    }
    match compare {
        Compare::Value => Some((value, None)),
        Compare::Ratio(spec) | Compare::Db(spec) => {
            let b = learn(spec, baseline.get_or_insert_default(), value, (start_ms, end_ms), reset_ms)?;
            let ratio = value / b.value();
            let compared = if matches!(compare, Compare::Db(_)) { 20.0 * ratio.log10() } else { ratio };
            (b.value() > 0.0 && compared.is_finite()).then_some((compared, Some(Change::Baseline(b))))
        }
        Compare::Rate { windows } => {
            let t = trend.get_or_insert_default();
            smooth(t, windows, value, end_ms).then_some((t.per_hour, Some(Change::Rate)))
        }
    }
}

/// Learns `value` while the baseline is not learned (`None`); else the learned baseline.
fn learn(
    spec: BaselineSpec,
    b: &mut Baseline,
    value: f64,
    (start_ms, end_ms): (i64, i64),
    reset_ms: Option<i64>,
) -> Option<Baseline> {
    if reset_ms.is_some_and(|r| b.windows > 0 && b.from_ms < r && start_ms >= r) {
        *b = Baseline::default();
    }
    if b.learned {
        return Some(*b);
    }
    if b.windows == 0 {
        b.from_ms = start_ms;
    }
    b.windows += 1;
    b.sum += value;
    b.to_ms = end_ms;
    b.learned = match spec.period {
        Some(p) => end_ms - b.from_ms >= i64::try_from(p.as_millis()).unwrap_or(i64::MAX),
        None => b.windows >= spec.windows,
    };
    None
}

/// Holt's update in event time; `true` once warmed up.
fn smooth(t: &mut Trend, windows: u32, value: f64, end_ms: i64) -> bool {
    if t.windows == 0 {
        *t = Trend { windows: 1, level: value, per_hour: 0.0, at_ms: end_ms };
        return false;
    }
    let hours = (end_ms - t.at_ms) as f64 / 3.6e6;
    if hours <= 0.0 {
        return false;
    }
    let w = 2.0 / (f64::from(windows) + 1.0);
    let level = w * value + (1.0 - w) * (t.level + t.per_hour * hours);
    t.per_hour = w * (level - t.level) / hours + (1.0 - w) * t.per_hour;
    t.level = level;
    t.at_ms = end_ms;
    t.windows = t.windows.saturating_add(1);
    t.windows > windows
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const MIN: i64 = 60_000;

    fn window(i: i64) -> (i64, i64) {
        (i * MIN, (i + 1) * MIN)
    }

    #[test]
    fn a_baseline_is_learned_then_compared_and_learned_again_after_a_reset() {
        let spec = BaselineSpec { windows: 3, period: None };
        let (mut b, mut t) = (None, None);
        let mut feed = |c: Compare, v: f64, i: i64, reset: Option<i64>| {
            derive(c, &mut b, &mut t, v, window(i), reset).map(|(x, _)| (x * 1e6).round() / 1e6)
        };
        assert_eq!([1.0, 2.0, 3.0].map(|v| feed(Compare::Ratio(spec), v, v as i64, None)), [None; 3], "learning");
        assert_eq!(feed(Compare::Ratio(spec), 4.0, 4, None), Some(2.0), "4 over a baseline of 2");
        assert_eq!(feed(Compare::Db(spec), 4.0, 5, None), Some(6.0206), "+6 dB is x2");
        assert_eq!(feed(Compare::Ratio(spec), f64::NAN, 6, None), None, "a missing value compares as nothing");
        // A reset at minute 7: windows starting from then learn anew; one before it does not.
        assert_eq!(feed(Compare::Ratio(spec), 4.0, 6, Some(7 * MIN)), Some(2.0));
        assert_eq!([7, 8, 9].map(|i| feed(Compare::Ratio(spec), 5.0, i, Some(7 * MIN))), [None; 3]);
        assert_eq!(feed(Compare::Ratio(spec), 10.0, 10, Some(7 * MIN)), Some(2.0), "the new baseline is 5");
        assert_eq!(b.unwrap().from_ms, 7 * MIN);
    }

    #[test]
    fn a_baseline_may_be_learned_over_a_period() {
        let spec = BaselineSpec { windows: 30, period: Some(Duration::from_secs(300)) };
        let (mut b, mut t) = (None, None);
        let learned: Vec<bool> =
            (0..6).map(|i| derive(Compare::Ratio(spec), &mut b, &mut t, 1.0, window(i), None).is_some()).collect();
        assert_eq!(learned, [false, false, false, false, false, true], "five 1-minute windows make 5 minutes");
    }

    #[test]
    fn the_trend_of_a_ramp_is_its_slope_per_hour_whatever_the_window_spacing() {
        for spacing in [1, 3] {
            let (mut b, mut t) = (None, None);
            let mut last = None;
            for k in 0..200 {
                let i = k * spacing;
                // 0.6 units per hour: 0.01 per minute.
                let v = 2.0 + 0.01 * (i + 1) as f64;
                let out = derive(Compare::Rate { windows: 10 }, &mut b, &mut t, v, window(i), None);
                assert_eq!(out.is_some(), k >= 10, "warm-up of 10 windows, then a rate ({k})");
                last = out.map(|(r, _)| r);
            }
            assert!((last.unwrap() - 0.6).abs() < 1e-6, "{last:?} at spacing {spacing}");
        }
        let (mut b, mut t) = (None, None);
        let flat: Vec<f64> = (0..40)
            .filter_map(|i| derive(Compare::Rate { windows: 10 }, &mut b, &mut t, 3.0, window(i), None))
            .map(|(r, _)| r)
            .collect();
        assert!(flat.iter().all(|r| r.abs() < 1e-12), "a steady value has no trend: {flat:?}");
    }
}
