//! Ack tracking: every held message until the last window or archive file holding it is
//! durable; in-progress acks while it waits; NAKs for what a stopping run still holds; the
//! restart barrier that holds the watermark until the previous run's messages are back.

use std::time::{Duration, Instant};

use async_nats::jetstream::AckKind;
use rangemap::RangeInclusiveSet;

use super::commit::{self, Awaiting, Commit};
use super::{Stats, Worker};
use crate::archive;
use crate::source::Bound;

/// How far a worker raises the `max_ack_pending` of a consumer it created, at most: this many
/// times the pipeline's (see [`Worker::widen`]).
pub(super) const RAISE_LIMIT: i64 = 16;

/// A message held until everything it went into is durable: only its reply subject (to ack
/// it), the number of windows and archive files still holding it, and when it was last kept
/// from redelivery. Small on purpose: a worker holds one per message since the last archive
/// roll.
pub(super) struct InFlight {
    pub(super) reply: async_nats::Subject,
    pub(super) refs: u32,
    pub(super) since: Instant,
}

/// Holds the watermark after a restart until the previous run's unacknowledged messages are
/// redelivered (`remaining`, counting redeliveries up to `upto_seq`) and, after this worker
/// was pinned (`settle_after`), until the server counts no unacknowledged message it does not
/// hold; or until `until`.
pub(super) struct Barrier {
    pub(super) until: Instant,
    pub(super) upto_seq: u64,
    pub(super) remaining: usize,
    pub(super) settle_after: Option<Instant>,
}

impl Barrier {
    /// Whether it no longer holds at `now`.
    pub(super) fn released(&self, now: Instant) -> bool {
        (self.remaining == 0 && self.settle_after.is_none()) || now >= self.until
    }
}

/// Messages handled in this run (acknowledged, or refused for good), by sequence: a
/// redelivery of one whose ack was lost is acknowledged again, not handled twice. The server
/// redelivers such a message one ack wait after its last delivery, so an entry is kept for at
/// least `period` (two ack waits) and then forgotten: the set stays small also when the
/// sequences a worker sees are far apart (one partition of a stream).
pub(super) struct Done {
    recent: RangeInclusiveSet<u64>,
    older: RangeInclusiveSet<u64>,
    since: Instant,
    period: Duration,
}

impl Done {
    /// Nothing handled yet; entries live at least `period`.
    pub(super) fn new(period: Duration, now: Instant) -> Self {
        Self { recent: RangeInclusiveSet::new(), older: RangeInclusiveSet::new(), since: now, period }
    }

    pub(super) fn insert(&mut self, seq: u64) {
        self.recent.insert(seq..=seq);
    }

    pub(super) fn contains(&self, seq: u64) -> bool {
        self.recent.contains(&seq) || self.older.contains(&seq)
    }

    /// The highest sequence in the set.
    pub(super) fn last(&self) -> Option<u64> {
        let end = |s: &RangeInclusiveSet<u64>| s.iter().next_back().map(|r| *r.end());
        end(&self.recent).max(end(&self.older))
    }

    /// Forgets what was handled more than two periods ago.
    pub(super) fn rotate(&mut self, now: Instant) {
        if now.duration_since(self.since) >= self.period {
            self.older = std::mem::take(&mut self.recent);
            self.since = now;
        }
    }
}

impl Worker {
    /// Follows each consumer's delivery sequence. A jump is deliveries the server made that
    /// never arrived (a pull response lost while a restarted server recovered, for one): they
    /// come back after `ack_wait`, and until then the watermark is held, as after a restart, so
    /// that the later readings that did arrive do not close their windows without them.
    pub(super) fn note_delivery(&mut self, consumer: &str, consumer_seq: u64, seq: u64, now: Instant) {
        // The latest, not the highest: a server restarted from an older consumer state numbers
        // its deliveries from there again.
        let Some(last) = self.received.get_mut(consumer) else {
            self.received.insert(consumer.to_owned(), consumer_seq);
            return;
        };
        let last = std::mem::replace(last, consumer_seq);
        if consumer_seq <= last + 1 {
            return;
        }
        let lost = (consumer_seq - last - 1) as usize;
        let until = now + self.ack_wait + Duration::from_secs(2);
        tracing::warn!(pipeline = %self.pipeline.name, consumer, lost, "deliveries lost on the way; holding the watermark until they are redelivered");
        match self.barrier.as_mut() {
            Some(b) => {
                b.remaining += lost;
                b.upto_seq = b.upto_seq.max(seq);
                b.until = b.until.max(until);
            }
            None => self.barrier = Some(Barrier { until, upto_seq: seq, remaining: lost, settle_after: None }),
        }
    }

    /// Rolls due archive files into `commit` and releases what they held. Files roll early
    /// when the messages waiting for them near the consumer's max_ack_pending, which would
    /// otherwise stop deliveries.
    pub(super) fn roll_archive(&mut self, now: Instant, flush: bool, commit: &mut Commit) {
        let Some(sink) = self.archive.as_mut() else { return };
        let crowded =
            self.inflight.len() >= self.max_ack_pending / 10 * 9 && sink.buffered_rows() >= self.max_ack_pending / 4;
        let mut rolled = archive::Rolled::default();
        sink.roll(now, flush || crowded, &mut rolled);
        Stats::add(&self.stats.archive_rolls, rolled.files.len() as u64);
        commit.files.extend(rolled.files);
        commit.states.extend(rolled.states);
        for seq in rolled.release {
            self.release(seq, commit);
        }
    }

    /// Drops one reference to a message; the last one acknowledges it.
    pub(super) fn release(&mut self, seq: u64, commit: &mut Commit) {
        let Some(f) = self.inflight.get_mut(&seq) else {
            return;
        };
        f.refs -= 1;
        if f.refs == 0
            && let Some(f) = self.inflight.remove(&seq)
        {
            commit.ack(f.reply);
            self.done.insert(seq);
        }
    }

    pub(super) fn seen_upto(&self) -> u64 {
        let inflight = self.inflight.keys().max().copied().unwrap_or(0);
        let done = self.done.last().unwrap_or(0);
        inflight.max(done)
    }

    /// Sends in-progress acks for messages held longer than half the ack wait, in windows,
    /// buffers or queued commits.
    pub(super) async fn keep_alive(&mut self, now: Instant) {
        let half = self.ack_wait / 2;
        let mut sent = Awaiting::keep_alive(&self.awaiting, &self.client, now, half).await;
        for f in self.inflight.values_mut() {
            if now.duration_since(f.since) >= half {
                commit::send(&self.client, &f.reply, AckKind::Progress).await;
                f.since = now;
                sent += 1;
            }
        }
        Stats::add(&self.stats.in_progress, sent);
    }

    /// Raises the `max_ack_pending` of a consumer that the open windows have filled.
    ///
    /// A window holds its messages unacknowledged until it closes, and it closes when later
    /// readings move the watermark past its end plus the lateness: a plant publishing faster
    /// than `max_ack_pending / (window + allowed_lateness)` readings a second fills the
    /// consumer's limit with messages of open windows, the server stops delivering, no later
    /// reading arrives to close them, and the keys would only close as idle, their readings
    /// then arriving late. So when the worker holds the limit while the consumer has more to
    /// deliver, a consumer Stator creates (`create_consumer = true`) gets twice the limit, up
    /// to [`RAISE_LIMIT`] times the pipeline's `max_ack_pending`, with a warning saying what to
    /// set; the server keeps the new value, so a restart starts with it. A consumer the
    /// operator manages is left alone, with an error saying what to change.
    pub(super) async fn widen(&mut self, consumers: &mut [Bound]) {
        if self.inflight.len() < self.max_ack_pending {
            return;
        }
        let spec = &self.pipeline.source;
        let ceiling = spec.max_ack_pending.saturating_mul(RAISE_LIMIT);
        for b in consumers.iter_mut() {
            let Ok(info) = b.consumer.info().await.cloned() else { continue };
            let limit = info.config.max_ack_pending;
            if limit < 1 || (info.num_ack_pending as i64) < limit || info.num_pending == 0 {
                continue;
            }
            let durable = b.spec.durable.as_str();
            if !spec.create_consumer || limit >= ceiling {
                if !self.said_saturated {
                    self.said_saturated = true;
                    tracing::error!(
                        pipeline = %self.pipeline.name,
                        consumer = durable,
                        max_ack_pending = limit,
                        "deliveries stopped: the open windows hold as many messages as the consumer's max_ack_pending, so \
                         nothing arrives to close them; raise [source] max_ack_pending (or the consumer's) to more than \
                         readings per second x (window + allowed_lateness)"
                    );
                }
                continue;
            }
            let raised = limit.saturating_mul(2).min(ceiling);
            let config = async_nats::jetstream::consumer::Config { max_ack_pending: raised, ..info.config };
            match self.js.update_consumer_on_stream(config, &info.stream_name).await {
                Ok(_) => {
                    b.info.config.max_ack_pending = raised;
                    Stats::add(&self.stats.max_ack_pending_raised, 1);
                    tracing::warn!(
                        pipeline = %self.pipeline.name,
                        consumer = durable,
                        from = limit,
                        to = raised,
                        "the open windows held the consumer's max_ack_pending, which stopped deliveries: raised it; set \
                         [source] max_ack_pending to more than readings per second x (window + allowed_lateness)"
                    );
                }
                Err(e) => {
                    tracing::warn!(pipeline = %self.pipeline.name, consumer = durable, error = %e, "raising max_ack_pending failed")
                }
            }
        }
        self.max_ack_pending = limit_of(consumers);
    }

    pub(super) async fn nak_inflight(&mut self) {
        let n = self.inflight.len() as u64;
        for (_, f) in self.inflight.drain() {
            commit::send(&self.client, &f.reply, AckKind::Nak(None)).await;
        }
        Stats::add(&self.stats.naked, n);
    }
}

/// The messages the server delivers to a worker on `consumers` before it waits for acks: the
/// smallest `max_ack_pending` among them (unlimited when none sets one).
pub(super) fn limit_of(consumers: &[Bound]) -> usize {
    let least = consumers.iter().map(|b| b.info.config.max_ack_pending).min().unwrap_or(-1);
    usize::try_from(least).unwrap_or(usize::MAX)
}
