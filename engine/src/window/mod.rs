//! Event-time windows per key, closed by a watermark, an idle timeout or shutdown.
//!
//! The watermark of a window operator is the newest event time it has seen minus the allowed
//! lateness. A window `[start, end)` closes once the watermark reaches `end`. A reading whose
//! earliest window has already closed (or would close at once) is *late*: it is not added
//! anywhere and the caller dead-letters it. A key that receives nothing for `idle_timeout`
//! (wall clock) has all its windows closed, so a machine that goes quiet still reports.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use stator_operators::{Aggregate, Moments};

use crate::config::WindowSpec;

/// One closed window of one key, with the stream sequences of the readings in it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClosedWindow {
    /// Index of the window spec in the pipeline.
    pub window: usize,
    /// Key field values, in the spec's key order.
    pub key: Vec<String>,
    /// Start, Unix ms (inclusive).
    pub start_ms: i64,
    /// End, Unix ms (exclusive).
    pub end_ms: i64,
    /// The aggregates, in the spec's order.
    pub values: Vec<(Aggregate, f64)>,
    /// Stream sequences of the readings in the window, ascending.
    pub seqs: Vec<u64>,
}

impl ClosedWindow {
    /// The value of one aggregate.
    pub fn get(&self, aggregate: Aggregate) -> Option<f64> {
        self.values.iter().find(|(a, _)| *a == aggregate).map(|(_, v)| *v)
    }
}

/// A reading arrived after its window closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Late {
    /// End of the reading's earliest window, Unix ms.
    pub window_end_ms: i64,
    /// How far the window had already been closed, Unix ms.
    pub closed_until_ms: i64,
}

/// One reading as the windows see it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Event time, Unix ms.
    pub t_ms: i64,
    /// Value.
    pub value: f64,
    /// Stream sequence of the message it came from.
    pub seq: u64,
}

#[derive(Debug, Default)]
struct Pane {
    moments: Moments,
    seqs: Vec<u64>,
}

#[derive(Debug)]
struct KeyState {
    key: Vec<String>,
    panes: BTreeMap<i64, Pane>,
    closed_until: i64,
    last_arrival: Instant,
}

/// The windows of one `[[window]]` spec over every key.
#[derive(Debug)]
pub struct WindowOperator {
    index: usize,
    size: i64,
    every: i64,
    lateness: i64,
    idle: Duration,
    aggregates: Vec<Aggregate>,
    keys: HashMap<String, KeyState>,
    max_event: i64,
    earliest_end: i64,
}

impl WindowOperator {
    /// Windows for spec number `index`.
    pub fn new(index: usize, spec: &WindowSpec) -> Self {
        Self {
            index,
            size: spec.size.as_millis() as i64,
            every: spec.every.as_millis() as i64,
            lateness: spec.allowed_lateness.as_millis() as i64,
            idle: spec.idle_timeout,
            aggregates: spec.aggregates.clone(),
            keys: HashMap::new(),
            max_event: i64::MIN,
            earliest_end: i64::MAX,
        }
    }

    /// Current watermark, Unix ms (`i64::MIN` before the first reading).
    pub fn watermark(&self) -> i64 {
        self.max_event.saturating_sub(self.lateness)
    }

    /// Number of open windows over all keys.
    pub fn open_windows(&self) -> usize {
        self.keys.values().map(|k| k.panes.len()).sum()
    }

    /// Adds a reading to every window containing its event time; returns how many windows took it.
    ///
    /// `key` is the joined key (a map key), `fields` its parts. With `hold_watermark`, the
    /// watermark does not mark readings late (used while redeliveries of a previous run are
    /// still expected).
    ///
    /// # Errors
    /// [`Late`] when the reading's earliest window has closed; nothing is added.
    pub fn add(
        &mut self,
        key: &str,
        fields: &[&str],
        sample: Sample,
        now: Instant,
        hold_watermark: bool,
    ) -> Result<u32, Late> {
        let Sample { t_ms, value, seq } = sample;
        let first_start = t_ms.div_euclid(self.every) * self.every - self.size + self.every;
        let first_end = first_start + self.size;
        let closed_until = self.keys.get(key).map_or(i64::MIN, |k| k.closed_until);
        let limit = if hold_watermark { closed_until } else { closed_until.max(self.watermark()) };
        if first_end <= limit {
            return Err(Late { window_end_ms: first_end, closed_until_ms: limit });
        }
        let state = match self.keys.get_mut(key) {
            Some(s) => s,
            None => self.keys.entry(key.to_owned()).or_insert_with(|| KeyState {
                key: fields.iter().map(|f| (*f).to_owned()).collect(),
                panes: BTreeMap::new(),
                closed_until: i64::MIN,
                last_arrival: now,
            }),
        };
        state.last_arrival = now;
        let mut added = 0;
        let mut start = first_start;
        while start <= t_ms {
            let pane = state.panes.entry(start).or_default();
            pane.moments.push(value);
            pane.seqs.push(seq);
            added += 1;
            start += self.every;
        }
        self.earliest_end = self.earliest_end.min(first_end);
        self.max_event = self.max_event.max(t_ms);
        Ok(added)
    }

    /// Closes every window the watermark has passed and every window of an idle key.
    pub fn advance(&mut self, now: Instant, hold_watermark: bool, out: &mut Vec<ClosedWindow>) {
        let watermark = if hold_watermark { i64::MIN } else { self.watermark() };
        let idle_due =
            self.keys.values().any(|k| !k.panes.is_empty() && now.duration_since(k.last_arrival) >= self.idle);
        if watermark < self.earliest_end && (hold_watermark || !idle_due) {
            return;
        }
        let mut earliest = i64::MAX;
        for state in self.keys.values_mut() {
            let idle = !hold_watermark && now.duration_since(state.last_arrival) >= self.idle;
            let limit = if idle { i64::MAX } else { watermark };
            close_until(self.index, self.size, &self.aggregates, state, limit, out);
            if let Some((&start, _)) = state.panes.first_key_value() {
                earliest = earliest.min(start + self.size);
            }
        }
        self.earliest_end = earliest;
    }

    /// Closes every open window (at shutdown of a bounded run, or on demand).
    pub fn flush(&mut self, out: &mut Vec<ClosedWindow>) {
        for state in self.keys.values_mut() {
            close_until(self.index, self.size, &self.aggregates, state, i64::MAX, out);
        }
        self.earliest_end = i64::MAX;
    }
}

fn close_until(
    index: usize,
    size: i64,
    aggregates: &[Aggregate],
    state: &mut KeyState,
    limit: i64,
    out: &mut Vec<ClosedWindow>,
) {
    while let Some(entry) = state.panes.first_entry() {
        let start = *entry.key();
        let end = start + size;
        if end > limit {
            break;
        }
        let mut pane = entry.remove();
        pane.seqs.sort_unstable();
        let values = aggregates.iter().filter_map(|a| pane.moments.get(*a).map(|v| (*a, v))).collect();
        state.closed_until = state.closed_until.max(end);
        out.push(ClosedWindow {
            window: index,
            key: state.key.clone(),
            start_ms: start,
            end_ms: end,
            values,
            seqs: pane.seqs,
        });
    }
}

#[cfg(test)]
mod tests;
