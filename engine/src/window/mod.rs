//! Event-time windows per key, closed by a watermark, an idle timeout or a drain.
//!
//! Each key (machine) has its own watermark: the newest event time seen for that key minus
//! the allowed lateness. A window `[start, end)` closes once its key's watermark reaches
//! `end`. Per-key watermarks let a site that replays hours of buffered data after an outage
//! (store-and-forward through a leaf node) be processed in full while other sites are live.
//! Input whose earliest window has already closed (or would close at once) is *late*: it is
//! not added anywhere and the caller dead-letters it. A key that receives nothing for
//! `idle_timeout` (wall clock) has all its windows closed, so a machine that goes quiet
//! still reports.
//!
//! The operator is generic over what a window accumulates (a [`Pane`]): running statistics
//! of scalar readings, or the samples of a waveform.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::config::WindowSpec;

/// What one window of one key accumulates.
pub trait Pane: Default {}

impl<T: Default> Pane for T {}

/// One closed window of one key, with the stream sequences of the messages in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Closed<P> {
    /// Index of the window spec in the pipeline.
    pub window: usize,
    /// Key field values, in the spec's key order.
    pub key: Vec<String>,
    /// Start, Unix ms (inclusive).
    pub start_ms: i64,
    /// End, Unix ms (exclusive).
    pub end_ms: i64,
    /// What the window accumulated.
    pub pane: P,
    /// Stream sequences of the messages in the window, ascending, without repeats.
    pub seqs: Vec<u64>,
}

/// Input arrived after its window closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Late {
    /// End of the input's earliest window, Unix ms.
    pub window_end_ms: i64,
    /// How far the windows had already been closed, Unix ms.
    pub closed_until_ms: i64,
}

#[derive(Debug)]
struct Slot<P> {
    pane: P,
    seqs: Vec<u64>,
}

#[derive(Debug)]
struct KeyState<P> {
    key: Vec<String>,
    panes: BTreeMap<i64, Slot<P>>,
    closed_until: i64,
    max_event: i64,
    last_arrival: Instant,
    /// In [`WindowOperator::due`]: the watermark has passed the end of its oldest window.
    due: bool,
}

/// The windows of one `[[window]]` spec over every key.
#[derive(Debug)]
pub struct WindowOperator<P> {
    index: usize,
    size: i64,
    every: i64,
    lateness: i64,
    idle: Duration,
    keys: HashMap<String, KeyState<P>>,
    /// Keys whose oldest window the watermark has passed, noted by [`Self::add`] (the only
    /// place a watermark moves), so that [`Self::advance`] closes windows in time
    /// proportional to what closes, not to the number of keys: it runs after every batch, and
    /// a live batch is a handful of messages among thousands of machines.
    due: Vec<String>,
    /// No key can go idle before this: the earliest `last_arrival + idle` over the keys with
    /// open windows at the last look at every key (arrivals only move it later). `None`: look
    /// at the next [`Self::advance`].
    idle_check_at: Option<Instant>,
}

impl<P: Pane> WindowOperator<P> {
    /// Windows for spec number `index`.
    pub fn new(index: usize, spec: &WindowSpec) -> Self {
        Self {
            index,
            size: spec.size.as_millis() as i64,
            every: spec.every.as_millis() as i64,
            lateness: spec.allowed_lateness.as_millis() as i64,
            idle: spec.idle_timeout,
            keys: HashMap::new(),
            due: Vec::new(),
            idle_check_at: None,
        }
    }

    /// The watermark of a key, Unix ms (`i64::MIN` before its first input).
    pub fn watermark(&self, key: &str) -> i64 {
        self.keys.get(key).map_or(i64::MIN, |k| k.max_event.saturating_sub(self.lateness))
    }

    /// The newest watermark over every key (Unix ms), `None` before any input.
    pub fn newest_watermark(&self) -> Option<i64> {
        self.keys.values().map(|k| k.max_event.saturating_sub(self.lateness)).max()
    }

    /// Number of open windows over all keys.
    pub fn open_windows(&self) -> usize {
        self.keys.values().map(|k| k.panes.len()).sum()
    }

    /// Adds input covering event times `[t0_ms, t1_ms)` (a point reading has `t1 = t0 + 1`)
    /// to every window overlapping it: `fill(start_ms, end_ms, pane)` is called once per
    /// window. Returns how many windows took it.
    ///
    /// `key` is the joined key (a map key), `fields` its parts. With `hold_watermark`, the
    /// watermark does not mark input late (used while redeliveries of a previous run are
    /// still expected).
    ///
    /// # Errors
    /// [`Late`] when the input's earliest window has closed; nothing is added.
    #[allow(clippy::too_many_arguments)]
    pub fn add(
        &mut self,
        key: &str,
        fields: &[&str],
        (t0_ms, t1_ms): (i64, i64),
        seq: u64,
        now: Instant,
        hold_watermark: bool,
        mut fill: impl FnMut(i64, i64, &mut P),
    ) -> Result<u32, Late> {
        let first_start = (t0_ms - self.size).div_euclid(self.every) * self.every + self.every;
        let first_end = first_start + self.size;
        let closed_until = self.keys.get(key).map_or(i64::MIN, |k| k.closed_until);
        let limit = if hold_watermark { closed_until } else { closed_until.max(self.watermark(key)) };
        if first_end <= limit {
            return Err(Late { window_end_ms: first_end, closed_until_ms: limit });
        }
        let state = match self.keys.get_mut(key) {
            Some(s) => s,
            None => self.keys.entry(key.to_owned()).or_insert_with(|| KeyState {
                key: fields.iter().map(|f| (*f).to_owned()).collect(),
                panes: BTreeMap::new(),
                closed_until: i64::MIN,
                max_event: i64::MIN,
                last_arrival: now,
                due: false,
            }),
        };
        state.last_arrival = now;
        let mut added = 0;
        let mut start = first_start;
        while start < t1_ms {
            let slot = state.panes.entry(start).or_insert_with(|| Slot { pane: P::default(), seqs: Vec::new() });
            fill(start, start + self.size, &mut slot.pane);
            slot.seqs.push(seq);
            added += 1;
            start += self.every;
        }
        state.max_event = state.max_event.max(t1_ms - 1);
        let watermark = state.max_event.saturating_sub(self.lateness);
        if !state.due && state.panes.first_key_value().is_some_and(|(&first, _)| first + self.size <= watermark) {
            state.due = true;
            self.due.push(key.to_owned());
        }
        Ok(added)
    }

    /// Closes every window the watermark has passed and every window of an idle key.
    pub fn advance(&mut self, now: Instant, hold_watermark: bool, out: &mut Vec<Closed<P>>) {
        if hold_watermark {
            return;
        }
        for key in self.due.drain(..) {
            let Some(state) = self.keys.get_mut(&key) else { continue };
            state.due = false;
            let idle = now.duration_since(state.last_arrival) >= self.idle;
            let limit = if idle { i64::MAX } else { state.max_event.saturating_sub(self.lateness) };
            close_until(self.index, self.size, state, limit, out);
        }
        if self.idle_check_at.is_some_and(|at| now < at) {
            return;
        }
        // A key whose idle time is out of `Instant`'s range never goes idle.
        let mut next = now.checked_add(self.idle);
        for state in self.keys.values_mut() {
            if state.panes.is_empty() {
                continue;
            }
            if now.duration_since(state.last_arrival) >= self.idle {
                close_until(self.index, self.size, state, i64::MAX, out);
            } else if let Some(at) = state.last_arrival.checked_add(self.idle) {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        // Keys that open windows later arrive later than now: their idle time is after
        // `now + idle`.
        self.idle_check_at = Some(next.unwrap_or(now));
    }

    /// Restarts every key's idle clock: while the stream is cut off from its upstream (a
    /// sourced stream whose source is silent), a key that receives nothing is not idle.
    pub fn hold_idle(&mut self, now: Instant) {
        for state in self.keys.values_mut() {
            state.last_arrival = state.last_arrival.max(now);
        }
    }

    /// Closes every open window (at the end of a drain).
    pub fn flush(&mut self, out: &mut Vec<Closed<P>>) {
        for state in self.keys.values_mut() {
            state.due = false;
            close_until(self.index, self.size, state, i64::MAX, out);
        }
        self.due.clear();
    }
}

fn close_until<P>(index: usize, size: i64, state: &mut KeyState<P>, limit: i64, out: &mut Vec<Closed<P>>) {
    while let Some(entry) = state.panes.first_entry() {
        let start = *entry.key();
        let end = start + size;
        if end > limit {
            break;
        }
        let mut slot = entry.remove();
        slot.seqs.sort_unstable();
        slot.seqs.dedup();
        state.closed_until = state.closed_until.max(end);
        out.push(Closed {
            window: index,
            key: state.key.clone(),
            start_ms: start,
            end_ms: end,
            pane: slot.pane,
            seqs: slot.seqs,
        });
    }
}

#[cfg(test)]
mod tests;
