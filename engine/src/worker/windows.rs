//! Closing windows: features, alert transitions and alert state from each closed window, the
//! watermark gauge, and live machine config changes.

use std::time::Instant;

use super::commit::{self, Commit};
use super::output;
use super::route::{Op, WindowResult};
use super::{Stats, Worker};
use crate::alert::{self, RuleState};
use crate::archive::{self, Sink, WindowKey, WindowRef};
use crate::machine;
use crate::sink::state;

/// How long a delivery the server reports may take to arrive before it counts as lost.
const DELIVERY_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

impl Worker {
    pub(super) fn close_windows(&mut self, now: Instant, commit: &mut Commit) {
        if let Some(b) = &self.barrier
            && b.released(now)
        {
            tracing::info!(pipeline = %self.pipeline.name, unreturned = b.remaining, "watermark released");
            self.barrier = None;
        }
        let hold = self.barrier.is_some();
        // A link that is down is not a machine that is idle: while the stream's upstream is
        // silent or catching up, the worker's own server unreachable, or deliveries the server
        // made have not arrived (they come back after ack_wait), idle clocks restart, so what
        // is still on its way finds its windows open.
        if self.stats.upstream_silent.get() == 1
            || self.stats.nats_connected.get() == 0
            || self.stats.deliveries_missing(&self.received, &self.consumers, now, DELIVERY_GRACE)
        {
            for op in &mut self.ops {
                op.hold_idle(now);
            }
        }
        self.close_all(now, hold, false, commit);
    }

    pub(super) fn close_all(&mut self, now: Instant, hold: bool, flush: bool, commit: &mut Commit) {
        let mut closed = std::mem::take(&mut self.closed);
        let pipeline = self.pipeline.clone();
        for (spec, op) in pipeline.windows.iter().zip(self.ops.iter_mut()) {
            op.close(spec, now, hold, flush, &self.machines, &mut closed);
        }
        for w in closed.drain(..) {
            self.on_closed(&w, now, commit);
        }
        self.closed = closed;
        self.roll_archive(now, flush, commit);
    }

    pub(super) fn on_closed(&mut self, w: &WindowResult, now: Instant, commit: &mut Commit) {
        Stats::add(&self.stats.windows_closed, 1);
        self.stats.window_close_latency.observe(commit::seconds_since(w.end_ms));
        let pipeline = self.pipeline.clone();
        let spec = &pipeline.windows[w.window];
        if let Some(subject) = &spec.publish {
            commit.features.push(output::features(&pipeline, subject, w));
        }
        let archived = self.archive.as_ref().is_some_and(Sink::archives_windows);
        // The archive's interning name of the window key; only built when window rows are
        // archived (this runs for every closed window).
        let key_name = if archived { format!("{}.{}", spec.name, w.key.join(".")) } else { String::new() };
        let window_key = WindowKey { name: &key_name, names: &spec.key, values: &w.key, start_ms: w.start_ms };
        let at = |id: String| WindowRef {
            key: 0,
            start_ms: w.start_ms,
            end_ms: w.end_ms,
            messages: w.seqs.len() as u32,
            first_seq: w.seqs.first().copied().unwrap_or_default(),
            seq: w.seqs.last().copied().unwrap_or_default(),
            id,
        };
        if let Some(sink) = self.archive.as_mut().filter(|_| archived) {
            let id = output::features_id(&pipeline, w);
            sink.add_features(&window_key, at(id), &spec.name, &w.features, now);
        }
        let machine = spec.key.iter().position(|k| k == "machine").and_then(|i| self.machines.get(&w.key[i]));
        for rule in pipeline.alerts.iter().filter(|r| r.window == w.window) {
            let overridden;
            let rule = match machine {
                Some(m) => {
                    overridden = machine::levels_for(rule, Some(m));
                    &overridden
                }
                None => rule,
            };
            let Some(value) = w.features.scalar(rule.metric) else {
                continue;
            };
            let key = state::state_key(&pipeline.name, &rule.name, &w.key);
            let state = self.states.entry(key.clone()).or_default();
            let before = *state;
            let reset = machine.and_then(|m| m.baseline_reset_ms);
            let evaluated = alert::evaluate(rule, state, value, (w.start_ms, w.end_ms), reset);
            let transition = evaluated.and_then(|e| e.transition);
            let kind = transition.map(|t| alert::transition_kind(rule, state, t, w.features.text("bearing.verdict")));
            // A save when anything but the last window's end changed (level, streak, kept kind,
            // baseline, trend).
            let changed = RuleState { last_window_end: state.last_window_end, ..before } != *state;
            let encoded = changed.then(|| state::encode(state));
            if let (Some(e), Some(t), Some(kind)) = (evaluated, transition, kind) {
                let seen = output::Seen { feature: value, compared: e.compared, change: e.change };
                let out =
                    crate::sink::Outbound { made: Some(now), ..output::alert(&pipeline, rule, w, seen, t, &kind) };
                if let Some(sink) = self.archive.as_mut().filter(|_| archived) {
                    let row = archive::AlertRow {
                        at: at(out.msg_id.clone()),
                        rule: rule.name.clone(),
                        state: t.to.transition_name(),
                        previous: t.from.name(),
                        severity: t.to.name(),
                        feature: rule.metric,
                        value: e.compared,
                        threshold: t.threshold,
                    };
                    sink.add_alert(&window_key, row, now);
                }
                commit.alerts.push(out);
            }
            match (encoded, self.archive.as_mut().filter(|_| archived)) {
                (Some(value), Some(sink)) => sink.hold_state(key, value),
                (Some(value), None) => commit.states.push((key, value)),
                (None, _) => {}
            }
        }
        match self.archive.as_mut().filter(|_| archived) {
            Some(sink) => sink.hold(&w.seqs, now),
            None => {
                for seq in &w.seqs {
                    self.release(*seq, commit);
                }
            }
        }
    }

    pub(super) fn on_machine_update(&mut self, update: machine::Update) {
        match update {
            machine::Update::Set(m, c) => {
                tracing::info!(pipeline = %self.pipeline.name, machine = %m, revision = c.revision, "machine config changed");
                Stats::add(&self.stats.config_updates, 1);
                let revision = i64::try_from(c.revision).unwrap_or(i64::MAX);
                self.stats.config_revision.set(self.stats.config_revision.get().max(revision));
                self.machines.insert(m, *c);
            }
            machine::Update::Removed(m) => {
                tracing::info!(pipeline = %self.pipeline.name, machine = %m, "machine config removed; pipeline defaults apply");
                Stats::add(&self.stats.config_updates, 1);
                self.machines.remove(&m);
            }
            machine::Update::Invalid { machine, reason } => {
                tracing::warn!(pipeline = %self.pipeline.name, machine, reason, "invalid machine config; previous settings stay in force");
                Stats::add(&self.stats.config_errors, 1);
            }
        }
    }

    /// Sets the watermark lag gauge: wall clock minus the newest watermark of the window spec
    /// furthest behind.
    pub(super) fn note_watermark(&self) {
        let watermark = self.ops.iter().filter_map(Op::newest_watermark).min();
        if let Some(w) = watermark {
            self.stats.watermark_lag.set(commit::seconds_since(w));
        }
    }

    /// Closes every open window (end of a drain).
    pub(super) fn flush(&mut self, commit: &mut Commit) {
        self.barrier = None;
        self.close_all(Instant::now(), false, true, commit);
        let mut released = std::mem::take(&mut self.speed_released);
        for op in &mut self.ops {
            op.release_speeds(&mut released);
        }
        for seq in released {
            self.release(seq, commit);
        }
    }
}
