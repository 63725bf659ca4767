//! Pinned-client priority groups: several workers run one pipeline; for each consumer the
//! server delivers to one of them (the pinned one) and the others stand by. A worker learns it
//! is pinned from the `Nats-Pin-Id` header of what it receives, and takes over: it holds its
//! watermark until the messages the previous worker left unacknowledged are redelivered, and
//! reloads the alert state that worker saved. When the server pins another worker (this one
//! stalled past the pin's timeout, or an operator unpinned it), this one stands down: it drops
//! every open window and buffer without committing them and NAKs what it held, so the pinned
//! worker computes those windows, whole, instead.

use std::time::{Duration, Instant};

use async_nats::header::NATS_PIN_ID;
use async_nats::jetstream;

use super::commit::Awaiting;
use super::{Barrier, Op, Stats, Worker};
use crate::source::Bound;

/// A consumer's pin as this worker holds it: the id and when it first saw it.
#[derive(Debug, Clone)]
pub(super) struct Held {
    id: String,
    since: Instant,
    durable: String,
}

/// A pin found in what arrived: the consumer (by index), the pin id, the consumer sequence
/// of the first delivery under it, and whether any delivery that came with it was a
/// redelivery.
#[derive(Debug)]
pub(super) struct NewPin {
    consumer: usize,
    id: String,
    first: u64,
    redelivered: bool,
}

/// What the monitor last heard from the server: when it asked, and per consumer (by index)
/// the pinned client's id.
#[derive(Debug, Clone, Default)]
pub(crate) struct PinView {
    pub(crate) asked: Option<Instant>,
    pub(crate) pinned: Vec<Option<String>>,
    /// Messages delivered and not acknowledged, every consumer together.
    pub(crate) ack_pending: usize,
}

/// The pin id a message was delivered under, if its consumer pins a client.
pub(super) fn pin_of(msg: &jetstream::Message) -> Option<&str> {
    msg.headers.as_ref()?.get_last(NATS_PIN_ID).map(|v| v.as_str())
}

impl Worker {
    /// Pins in `chunk` this worker does not hold yet, at most one per consumer.
    pub(super) fn new_pins(
        &self,
        chunk: &[(usize, Option<Result<jetstream::Message, jetstream::consumer::pull::MessagesError>>)],
    ) -> Vec<NewPin> {
        let mut found: Vec<NewPin> = Vec::new();
        for (i, item) in chunk {
            let Some(Ok(msg)) = item else { continue };
            let Some(id) = pin_of(msg) else { continue };
            // The steady state, every message: the pin this worker holds. Nothing to parse.
            if self.pins.get(*i).and_then(Option::as_ref).is_some_and(|h| h.id == id) {
                continue;
            }
            let Ok(info) = msg.info() else { continue };
            match found.iter_mut().find(|p| p.consumer == *i) {
                Some(p) => p.redelivered |= info.delivered > 1,
                None => found.push(NewPin {
                    consumer: *i,
                    id: id.to_owned(),
                    first: info.consumer_sequence,
                    redelivered: info.delivered > 1,
                }),
            }
        }
        found
    }

    /// Takes over consumer `b`, pinned to this worker as `pin` says. A worker that held
    /// another pin of it lost that one on the way (it may have been given to another worker
    /// meanwhile), so it first stands down.
    pub(super) async fn take_pin(&mut self, pin: NewPin, b: &Bound) {
        let i = pin.consumer;
        if self.pins.get(i).is_some_and(Option::is_some) {
            self.pin_moved(i, &b.spec.durable, "its pin was renewed under another id").await;
        }
        let now = Instant::now();
        // Messages another worker (or an earlier run) left unacknowledged come back after its
        // ack wait, or at once when it NAKed them standing down. If there are any, the
        // watermark is held until the server counts no unacknowledged message this worker
        // does not hold (see [`Worker::settle`]), or one ack wait. There are some when
        // redeliveries came first, or when the consumer counts more unacknowledged messages
        // than it delivered since the pin.
        let info = match tokio::time::timeout(Duration::from_secs(3), b.consumer.get_info()).await {
            Ok(Ok(info)) => Some(info),
            _ => None,
        };
        // With another worker on the roll, the previous pinned one may hold messages that the
        // counts of a consumer whose leader just moved do not show yet: always wait for them.
        let others = match &self.roll {
            Some(roll) => roll.others().await,
            None => true,
        };
        let left = pin.redelivered
            || others
            || info.as_ref().is_none_or(|info| {
                let since_pin = info.delivered.consumer_sequence.saturating_sub(pin.first) + 1;
                info.num_ack_pending as u64 > since_pin
            });
        // Another worker may have archived what it was delivered before this one's pin.
        let delivered = match (&self.lane, left) {
            (_, false) => None,
            // Messages are known by their sequence in the pipeline's stream: any delivered
            // before this pin is at most its last one now.
            (Some(lane), true) => {
                Some(match tokio::time::timeout(Duration::from_secs(3), lane.origin.clone().info()).await {
                    Ok(Ok(info)) => info.state.last_sequence,
                    _ => u64::MAX,
                })
            }
            (None, true) => Some(info.as_ref().map_or(u64::MAX, |i| i.delivered.stream_sequence)),
        };
        if left {
            self.hold_until_settled(now);
        }
        if let (Some(sink), Some(upto)) = (self.archive.as_mut(), delivered) {
            sink.recheck_upto(upto);
        }
        self.pins_resize(i);
        self.pins[i] = Some(Held { id: pin.id, since: now, durable: b.spec.durable.clone() });
        self.stats.set_pinned(&b.spec.durable, true);
        tracing::info!(
            pipeline = %self.pipeline.name,
            consumer = %b.spec.durable,
            left_by_another = left,
            "pinned: this worker is now the active one for the consumer"
        );
        self.reload_states().await;
    }

    fn pins_resize(&mut self, i: usize) {
        if self.pins.len() <= i {
            self.pins.resize(i + 1, None);
        }
    }

    /// Holds the watermark until the server counts no unacknowledged message this worker
    /// does not hold, or one ack wait.
    fn hold_until_settled(&mut self, now: Instant) {
        let until = now + self.ack_wait + Duration::from_secs(2);
        match self.barrier.as_mut() {
            Some(bar) => {
                bar.until = bar.until.max(until);
                bar.settle_after = Some(now);
            }
            None => self.barrier = Some(Barrier { until, upto_seq: 0, remaining: 0, settle_after: Some(now) }),
        }
    }

    /// Takes in the alert state another worker saved since this one loaded it.
    async fn reload_states(&mut self) {
        match crate::sink::state::load(&self.store, &self.pipeline.name).await {
            Ok(saved) => {
                for (key, s) in saved {
                    let newer = self.states.get(&key).is_none_or(|m| s.last_window_end > m.last_window_end);
                    if newer {
                        self.states.insert(key, s);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(pipeline = %self.pipeline.name, error = %e, "cannot reload alert state on taking over")
            }
        }
    }

    /// Releases a barrier waiting to settle once the server, asked after it was set, counts no
    /// more unacknowledged messages than this worker holds: whatever another worker left is
    /// back. (Acks on their way make the server's count higher, deliveries on their way too:
    /// both only delay the release.)
    pub(super) fn settle(&mut self, view: &PinView) {
        let Some(asked) = view.asked else { return };
        let held = self.inflight.len() + Awaiting::held(&self.awaiting);
        if let Some(bar) = self.barrier.as_mut()
            && bar.settle_after.is_some_and(|t| asked > t)
            && view.ack_pending <= held
        {
            bar.settle_after = None;
        }
    }

    /// Whether the server, asked after this worker took a pin, has pinned another client (or
    /// none) for that consumer.
    pub(super) fn pin_lost(&self, view: &PinView) -> Option<usize> {
        let asked = view.asked?;
        self.pins.iter().enumerate().find_map(|(i, held)| {
            let held = held.as_ref()?;
            let server = view.pinned.get(i)?;
            (asked > held.since && server.as_deref() != Some(held.id.as_str())).then_some(i)
        })
    }

    /// Consumer `i`'s pin moved away from this worker (for a moment, at least). Another worker
    /// of the pipeline may hold it now: stand down. With no other worker on the roll (a
    /// server restart or a new consumer leader renews a lone worker's pin), nobody else got
    /// its messages: it only forgets the old pin.
    pub(super) async fn pin_moved(&mut self, i: usize, consumer: &str, why: &str) {
        let others = match &self.roll {
            Some(roll) => roll.others().await,
            None => true,
        };
        if others {
            self.stand_down(consumer, why).await;
        } else {
            tracing::info!(pipeline = %self.pipeline.name, consumer, why, "pin renewed; no other worker runs the pipeline, so nothing to give up");
            self.forget_pin(i);
        }
    }

    /// Gives up everything not yet committed: open windows, archive buffers, held messages
    /// (NAKed, so that the pinned worker gets them at once) and every pin. What was already
    /// handed to the committer is complete and still goes out.
    pub(super) async fn stand_down(&mut self, consumer: &str, why: &str) {
        tracing::warn!(
            pipeline = %self.pipeline.name,
            consumer,
            why,
            held = self.inflight.len(),
            "standing down: another worker is (or may be) pinned; dropping open windows, NAKing held messages"
        );
        let seen = self.seen_upto();
        self.nak_inflight().await;
        self.ops = self.pipeline.windows.iter().enumerate().map(|(i, w)| Op::new(i, w)).collect();
        if let Some(sink) = self.archive.as_mut() {
            sink.clear();
            sink.recheck_upto(seen);
        }
        self.closed.clear();
        self.received.clear();
        self.barrier = None;
        for held in self.pins.iter_mut().filter_map(Option::take) {
            self.stats.set_pinned(&held.durable, false);
        }
        Stats::add(&self.stats.stand_downs, 1);
    }

    /// Forgets the pin of consumer `i` without standing down: the consumer was created anew.
    pub(super) fn forget_pin(&mut self, i: usize) {
        if let Some(held) = self.pins.get_mut(i).and_then(Option::take) {
            self.stats.set_pinned(&held.durable, false);
        }
    }

    /// Releases this worker's pins (a clean stop), so that a standby takes over at once
    /// instead of after the pin's timeout.
    pub(super) async fn release_pins(&mut self, consumers: &[Bound]) {
        let Some(stream) = &self.stream else { return };
        for (held, b) in self.pins.iter_mut().zip(consumers) {
            let Some(held) = held.take() else { continue };
            self.stats.set_pinned(&held.durable, false);
            let Some(group) = b.group() else { continue };
            if let Err(e) = stream.unpin_consumer(&b.spec.durable, group).await {
                tracing::warn!(pipeline = %self.pipeline.name, consumer = %b.spec.durable, error = %e, "cannot release the pin; a standby takes over after its timeout");
            }
        }
    }
}

impl NewPin {
    /// The consumer's index.
    pub(super) fn consumer(&self) -> usize {
        self.consumer
    }
}
