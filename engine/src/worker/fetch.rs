//! The fetch loop: pull from every consumer, hand messages to the windows, tick the clock,
//! queue commits (waiting while the committer is behind), and notice the end of a drain.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::PullConsumer};
use futures::StreamExt;
use tokio::sync::{mpsc, watch};

use super::commit::{Awaiting, Commit};
use super::pin::PinView;
use super::{RunMode, Stats, Worker, WorkerError};
use crate::machine;
use crate::source::{Bound, Lag};

/// Idle heartbeat of a pull: well below [`crate::source::PULL_EXPIRES`].
const PULL_HEARTBEAT: Duration = Duration::from_secs(2);

impl Worker {
    pub(super) async fn pump(
        &mut self,
        consumers: &mut [Bound],
        mut advisories: Option<async_nats::Subscriber>,
        pins: &mut watch::Receiver<PinView>,
        shutdown: &mut watch::Receiver<bool>,
        commits: &mpsc::Sender<Commit>,
        mode: RunMode,
    ) -> Result<(), WorkerError> {
        let batch = self.pipeline.source.batch;
        let period = match mode {
            RunMode::Follow => (self.ack_wait / 4).clamp(Duration::from_millis(250), Duration::from_secs(5)),
            RunMode::Drain => Duration::from_millis(200),
        };
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut backoff = Duration::from_millis(100);
        'connect: loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            // One pull stream per consumer, merged; each says when it ends, so that the worker
            // pulls again.
            let mut streams = Vec::with_capacity(consumers.len());
            let mut failed = None;
            for (i, b) in consumers.iter().enumerate() {
                let mut pull = b
                    .consumer
                    .stream()
                    .max_messages_per_batch(batch)
                    .heartbeat(PULL_HEARTBEAT)
                    .expires(crate::source::PULL_EXPIRES);
                if let Some(group) = b.group() {
                    pull = pull.group(group);
                }
                let messages = pull.messages().await;
                match messages {
                    Ok(m) => streams.push(m.map(move |r| (i, Some(r))).chain(futures::stream::iter([(i, None)]))),
                    Err(e) => failed = Some(e),
                }
            }
            let mut messages = match failed {
                None => futures::stream::select_all(streams).ready_chunks(batch),
                Some(e) => {
                    tracing::warn!(pipeline = %self.pipeline.name, error = %e, "cannot pull; retrying");
                    tokio::select! {
                        _ = shutdown.changed() => return Ok(()),
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue 'connect;
                }
            };
            backoff = Duration::from_millis(100);
            loop {
                let mut commit = Commit::default();
                let mut reconnect = false;
                tokio::select! {
                    biased;
                    _ = shutdown.changed() => return Ok(()),
                    chunk = messages.next() => match chunk {
                        Some(chunk) => {
                            for pin in self.new_pins(&chunk) {
                                let i = pin.consumer();
                                self.take_pin(pin, &consumers[i]).await;
                            }
                            let now = Instant::now();
                            for (i, item) in chunk {
                                match item {
                                    Some(Ok(msg)) => self.on_message(msg, now, &mut commit),
                                    Some(Err(e)) => {
                                        tracing::warn!(pipeline = %self.pipeline.name, consumer = %consumers[i].spec.durable, error = %e, "consumer stream error");
                                        if consumer_may_be_gone(e.kind()) && let Some(c) = self.rebind(&mut consumers[i]).await {
                                            consumers[i].consumer = c;
                                            // A new consumer, a new pin: what this worker
                                            // holds carries over (see `rebind`).
                                            self.forget_pin(i);
                                            reconnect = true;
                                        }
                                    }
                                    None => reconnect = true,
                                }
                            }
                            self.close_windows(now, &mut commit);
                        }
                        None => reconnect = true,
                    },
                    Some(update) = next_update(&mut self.machine_updates) => self.on_machine_update(update),
                    Some(advisory) = next_advisory(&mut advisories) => self.on_max_deliveries(&advisory, &mut commit).await,
                    Ok(()) = pins.changed() => {
                        let view = pins.borrow_and_update().clone();
                        self.settle(&view);
                        let lost = self.pin_lost(&view);
                        if let Some(i) = lost {
                            self.pin_moved(i, &consumers[i].spec.durable, "the server pinned another client").await;
                        }
                    }
                    _ = tick.tick() => {
                        let now = Instant::now();
                        self.done.rotate(now);
                        self.keep_alive(now).await;
                        self.close_windows(now, &mut commit);
                        self.widen(consumers).await;
                        self.note_watermark();
                        if mode == RunMode::Drain && self.drained(consumers).await {
                            self.flush(&mut commit);
                            commit.confirm = true;
                            let _ = self.queue(commit, commits, &mut tick, shutdown).await;
                            return Ok(());
                        }
                    }
                }
                if !commit.is_empty() && !self.queue(commit, commits, &mut tick, shutdown).await {
                    return Ok(());
                }
                if reconnect {
                    continue 'connect;
                }
            }
        }
    }

    /// Binds consumer `b` again when it is gone (see [`crate::source::rebind`]), resuming at
    /// the oldest message not finished. `None` when it still exists or cannot be recreated
    /// (the error is logged, and the worker keeps trying).
    pub(super) async fn rebind(&mut self, b: &mut Bound) -> Option<PullConsumer> {
        if b.consumer.info().await.is_ok() {
            return None;
        }
        let resume = match &self.lane {
            // A partition's stream keeps only what is not acknowledged: all of it.
            Some(_) => 1,
            None => self.inflight.keys().min().copied().unwrap_or_else(|| self.seen_upto() + 1),
        };
        match crate::source::rebind(&self.js, &self.pipeline, &b.spec, resume).await {
            Ok(c) => {
                Stats::add(&self.stats.consumer_rebinds, 1);
                Some(c)
            }
            Err(e) => {
                tracing::error!(pipeline = %self.pipeline.name, consumer = %b.spec.durable, error = %e, "the consumer is gone");
                None
            }
        }
    }

    /// Queues a commit. While the committer is behind (a slow or unreachable sink) this waits,
    /// so the worker fetches nothing more, but keeps every held message alive. Returns false
    /// when the committer is gone or shutdown was asked for.
    pub(super) async fn queue(
        &mut self,
        mut commit: Commit,
        commits: &mpsc::Sender<Commit>,
        tick: &mut tokio::time::Interval,
        shutdown: &mut watch::Receiver<bool>,
    ) -> bool {
        Awaiting::queue(&self.awaiting, &mut commit, Instant::now());
        loop {
            tokio::select! {
                biased;
                permit = commits.reserve() => match permit {
                    Ok(permit) => {
                        permit.send(commit);
                        return true;
                    }
                    Err(_) => return false,
                },
                _ = shutdown.changed() => return false,
                _ = tick.tick() => {
                    Stats::add(&self.stats.backpressure_ticks, 1);
                    self.keep_alive(Instant::now()).await;
                }
            }
        }
    }

    /// Whether the consumer has nothing more to deliver and every delivery was seen. The
    /// server's count of unacknowledged deliveries must not exceed what the worker holds: in a
    /// cluster a consumer's info can show nothing delivered while deliveries are on their way
    /// (seen with an R3 consumer just created), and acks on their way make it briefly higher.
    pub(super) async fn drained(&mut self, consumers: &mut [Bound]) -> bool {
        let mut lag = Lag::new();
        for b in consumers.iter_mut() {
            let Ok(info) = b.consumer.info().await else { return false };
            lag.add(info);
        }
        let held = self.inflight.len() + Awaiting::held(&self.awaiting);
        let seen = self.barrier.is_none()
            && lag.pending == 0
            && lag.delivered <= self.delivered_upto
            && lag.ack_pending <= held;
        match (&self.lane, self.stream.as_mut()) {
            (Some(_), Some(stream)) if seen => copied_all(stream).await,
            _ => seen,
        }
    }
}

/// Whether a partitioned stream has copied in everything its source holds: heard from it,
/// with nothing left to copy.
async fn copied_all(stream: &mut jetstream::stream::Stream) -> bool {
    match stream.info().await {
        Ok(info) => info.sources.iter().all(|s| s.active.is_some() && s.lag == 0),
        Err(_) => false,
    }
}

fn consumer_may_be_gone(kind: jetstream::consumer::pull::MessagesErrorKind) -> bool {
    use jetstream::consumer::pull::MessagesErrorKind as K;
    matches!(kind, K::ConsumerDeleted | K::MissingHeartbeat | K::NoResponders)
}

async fn next_advisory(sub: &mut Option<async_nats::Subscriber>) -> Option<async_nats::Message> {
    match sub {
        Some(sub) => sub.next().await,
        None => std::future::pending().await,
    }
}

async fn next_update(rx: &mut Option<mpsc::Receiver<machine::Update>>) -> Option<machine::Update> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
