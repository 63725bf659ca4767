//! Shaft speed from a tachometer subject (`rpm_subject`), aligned with waveform windows by event
//! time.
//!
//! Speed readings are scalar messages (`{"value": 1797, "timestamp": "..."}`) on their own
//! subject, keyed by the window key's machine fields (`rpm_key`, by default the window key
//! without `sensor`), so one tachometer serves every accelerometer of its machine. A window
//! `[start, end)` takes the mean of the readings inside it; without one, the last reading at most
//! `rpm_max_age` before its start; else its speed is unknown, with the reason.
//!
//! A reading is held (not acknowledged) while a window may still use it: until the machine's
//! newest reading is `2 x rpm_max_age + size + allowed_lateness` ahead of it. A waveform that
//! lags its tachometer by more than `rpm_max_age + allowed_lateness` therefore finds no speed,
//! and says so. A replay after a crash sees the same readings, so it gives the same speeds.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// `rpm_subject` and its settings, as a waveform window holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpeedSpec {
    /// The NATS subject filter of the speed readings.
    pub subject: String,
    /// The longest a reading stays valid after its time.
    pub max_age: Duration,
    /// The key fields of a machine's speed (`rpm_key`).
    pub key: Vec<String>,
    /// Their positions in the subject template (to key a reading).
    pub template_index: Vec<usize>,
    /// Their positions in the window key (to key a window).
    pub window_index: Vec<usize>,
}

/// The speed of a window: rpm, or why it is unknown.
pub type Speed = Result<f64, String>;

#[derive(Debug, Default)]
struct Readings {
    /// `(time ms, rpm, stream sequence)`, by time.
    items: VecDeque<(i64, f64, u64)>,
    newest_ms: i64,
}

/// The held speed readings of one window spec, per machine.
#[derive(Debug)]
pub struct SpeedTrack {
    spec: SpeedSpec,
    horizon_ms: i64,
    by_key: HashMap<String, Readings>,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

impl SpeedTrack {
    /// A track for windows of `size` with `lateness`.
    pub fn new(spec: SpeedSpec, size: Duration, lateness: Duration) -> Self {
        let horizon_ms = 2 * ms(spec.max_age) + ms(size) + ms(lateness);
        Self { spec, horizon_ms, by_key: HashMap::new() }
    }

    /// Its spec.
    pub fn spec(&self) -> &SpeedSpec {
        &self.spec
    }

    /// The speed key of a reading from its subject's fields.
    pub fn key_of_fields(&self, fields: &[&str]) -> String {
        self.spec
            .template_index
            .iter()
            .map(|i| fields.get(*i).copied().unwrap_or_default())
            .collect::<Vec<_>>()
            .join(".")
    }

    /// The speed key of a window from its key values.
    pub fn key_of_window(&self, key: &[String]) -> String {
        self.spec.window_index.iter().map(|i| key.get(*i).map_or("", String::as_str)).collect::<Vec<_>>().join(".")
    }

    /// Holds a reading; pushes to `released` the sequences of the readings of that machine no
    /// window can use any more.
    pub fn add(&mut self, key: String, t_ms: i64, rpm: f64, seq: u64, released: &mut Vec<u64>) {
        let r = self.by_key.entry(key).or_default();
        let at = r.items.partition_point(|(t, _, _)| *t <= t_ms);
        r.items.insert(at, (t_ms, rpm, seq));
        r.newest_ms = r.newest_ms.max(t_ms);
        while r.items.front().is_some_and(|(t, _, _)| *t < r.newest_ms - self.horizon_ms) {
            if let Some((_, _, s)) = r.items.pop_front() {
                released.push(s);
            }
        }
    }

    /// The speed of the window `[start_ms, end_ms)` of a machine.
    pub fn at(&self, key: &str, start_ms: i64, end_ms: i64) -> Speed {
        let subject = &self.spec.subject;
        let Some(r) = self.by_key.get(key) else {
            return Err(format!("no speed reading on `{subject}` for `{key}`"));
        };
        let (sum, n) = r
            .items
            .iter()
            .filter(|(t, _, _)| (start_ms..end_ms).contains(t))
            .fold((0.0, 0u32), |(sum, n), (_, rpm, _)| (sum + rpm, n + 1));
        if n > 0 {
            return Ok(sum / f64::from(n));
        }
        let oldest = start_ms - ms(self.spec.max_age);
        r.items.iter().rev().find(|(t, _, _)| (oldest..start_ms).contains(t)).map(|(_, rpm, _)| *rpm).ok_or_else(|| {
            format!(
                "no speed reading on `{subject}` for `{key}` from {} to {} (rpm_max_age {})",
                crate::telemetry::rfc3339_ms(oldest),
                crate::telemetry::rfc3339_ms(end_ms),
                humantime::format_duration(self.spec.max_age)
            )
        })
    }

    /// Gives up every held reading (all windows closed).
    pub fn release_all(&mut self, released: &mut Vec<u64>) {
        for (_, r) in self.by_key.drain() {
            released.extend(r.items.into_iter().map(|(_, _, s)| s));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track() -> SpeedTrack {
        let spec = SpeedSpec {
            subject: "acme.*.*.*.*.tach.rpm".into(),
            max_age: Duration::from_secs(5),
            key: vec!["machine".into()],
            template_index: vec![4],
            window_index: vec![1],
        };
        SpeedTrack::new(spec, Duration::from_secs(2), Duration::from_secs(1))
    }

    #[test]
    fn a_window_takes_its_own_readings_else_a_recent_one_else_says_why_not() {
        let mut t = track();
        let mut released = Vec::new();
        for (i, (at, rpm)) in [(1_000, 1790.0), (3_500, 1500.0), (2_500, 1510.0)].into_iter().enumerate() {
            t.add("cnc-1".into(), at, rpm, i as u64 + 1, &mut released);
        }
        assert_eq!(t.at("cnc-1", 2_000, 4_000), Ok(1505.0), "the mean of the readings inside");
        assert_eq!(t.at("cnc-1", 4_000, 6_000), Ok(1500.0), "the last one before, 0.5 s old");
        assert_eq!(t.at("cnc-1", 8_000, 10_000), Ok(1500.0), "4.5 s old: within rpm_max_age");
        let stale = t.at("cnc-1", 9_000, 11_000).unwrap_err();
        assert!(stale.contains("from 1970-01-01T00:00:04Z to 1970-01-01T00:00:11Z (rpm_max_age 5s)"), "{stale}");
        assert!(t.at("cnc-2", 0, 2_000).unwrap_err().contains("for `cnc-2`"));
        assert!(released.is_empty());
        assert_eq!(t.key_of_fields(&["acme", "munich", "a", "l", "cnc-1", "tach", "rpm"]), "cnc-1");
        assert_eq!(t.key_of_window(&["munich".into(), "cnc-1".into(), "drive-end".into()]), "cnc-1");
    }

    #[test]
    fn readings_are_released_once_no_window_can_use_them() {
        let mut t = track();
        let mut released = Vec::new();
        // Horizon: 2 x 5 s + 2 s + 1 s = 13 s behind the machine's newest reading.
        for s in 0..20 {
            t.add("cnc-1".into(), s * 1000, 1797.0, s as u64 + 1, &mut released);
        }
        assert_eq!(released, (1..=6).collect::<Vec<u64>>(), "readings before 19 s - 13 s = 6 s");
        t.add("cnc-2".into(), 0, 900.0, 100, &mut released);
        assert_eq!(released.len(), 6, "machines are apart");
        released.clear();
        t.release_all(&mut released);
        released.sort_unstable();
        assert_eq!(released, (7..=20).chain([100]).collect::<Vec<u64>>());
    }
}
