//! The pipeline worker: consumer → decode → windows → alerts → commit → ack.
//!
//! Delivery guarantee: a message is acknowledged only after every window it fell into has
//! closed and every alert transition and state change those windows caused is confirmed by
//! the server. A crash or stop before that leaves it unacknowledged, so JetStream redelivers
//! it; the replayed windows produce the same alert `Nats-Msg-Id`s (dropped by the stream as
//! duplicates) and the persisted alert state skips windows it has already applied.
//!
//! With an `[archive]`, a message also waits for the file holding it to be committed to the
//! object store, and a window's messages for the files holding its features and alerts; the
//! alert states those windows changed are saved only after those files (see
//! [`crate::archive::Sink`]).
//!
//! After a restart, messages the previous run held are redelivered only once their ack wait
//! runs out, after newer ones. So that they are not mistaken for late readings, the worker
//! *holds its watermark* (closes no window, marks nothing late) until the consumer's pending
//! messages have come back or one ack wait has passed.

mod commit;
pub mod output;
mod route;

pub use route::WindowResult;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind, consumer::PullConsumer};
use futures::StreamExt;
use rangemap::RangeInclusiveSet;
use tokio::sync::{mpsc, watch};
use tokio_util::task::AbortOnDropHandle;

pub use crate::observe::Stats;

use crate::alert::{self, RuleState};
use crate::archive::{self, Arrival, Layout, Sink, Table, WindowKey, WindowRef};
use crate::config::{Format, Pipeline};
use crate::machine::{self, MachineConfig};
use crate::sink::{Publisher, state};
use crate::source::{Bound, Lag};
use commit::{Awaiting, Commit, Sinks};
use output::Origin;
use route::{Op, Refused};

/// Why a worker stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// Binding to the consumer failed.
    #[error("pipeline `{pipeline}`: {source}")]
    Source {
        /// Pipeline name.
        pipeline: String,
        /// Cause.
        source: crate::source::SourceError,
    },
    /// The archive location cannot be used.
    #[error("pipeline `{pipeline}`: {source}")]
    Archive {
        /// Pipeline name.
        pipeline: String,
        /// Cause.
        source: crate::archive::LocationError,
    },
    /// NATS failed in a way the worker cannot ride out.
    #[error("pipeline `{pipeline}`: {message}")]
    Nats {
        /// Pipeline name.
        pipeline: String,
        /// Cause.
        message: String,
    },
}

/// How a run ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RunMode {
    /// Run until shutdown (a long-running worker).
    #[default]
    Follow,
    /// Stop once the consumer has delivered everything in the stream: close every open window,
    /// commit, and return (demo, replay, benchmarks).
    Drain,
}

/// How long shutdown waits for in-flight outputs before giving up on them (they are then
/// redelivered to the next run).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A message held until everything it went into is durable: only its reply subject (to ack
/// it), the number of windows and archive files still holding it, and when it was last kept
/// from redelivery. Small on purpose: a worker holds one per message since the last archive
/// roll.
struct InFlight {
    reply: async_nats::Subject,
    refs: u32,
    since: Instant,
}

struct Barrier {
    until: Instant,
    upto_seq: u64,
    remaining: usize,
}

struct Worker {
    pipeline: Arc<Pipeline>,
    ops: Vec<Op>,
    machines: HashMap<String, MachineConfig>,
    machine_updates: Option<mpsc::Receiver<machine::Update>>,
    inflight: HashMap<u64, InFlight>,
    done: RangeInclusiveSet<u64>,
    states: HashMap<String, RuleState>,
    barrier: Option<Barrier>,
    ack_wait: Duration,
    stats: Arc<Stats>,
    closed: Vec<WindowResult>,
    key_buf: String,
    archive: Option<Sink>,
    max_ack_pending: usize,
    stream: Option<jetstream::stream::Stream>,
    awaiting: Arc<std::sync::Mutex<Awaiting>>,
    js: jetstream::Context,
    client: async_nats::Client,
}

/// Runs `pipeline` on `client` until `shutdown` turns true, then stops cleanly: no more
/// fetching, in-flight outputs confirmed, durable messages acknowledged, the rest NAKed for
/// the next run.
///
/// # Errors
/// [`WorkerError`] when the consumer cannot be bound or the state bucket opened.
pub async fn run(
    pipeline: Arc<Pipeline>,
    client: async_nats::Client,
    mut shutdown: watch::Receiver<bool>,
    stats: Arc<Stats>,
    mode: RunMode,
) -> Result<(), WorkerError> {
    let name = pipeline.name.clone();
    let nats_err = |message: String| WorkerError::Nats { pipeline: name.clone(), message };
    let js = jetstream::new(client.clone());
    let bound = crate::source::bind(&js, &pipeline)
        .await
        .map_err(|source| WorkerError::Source { pipeline: name.clone(), source })?;
    let durables: Vec<&str> = bound.iter().map(|b| b.spec.durable.as_str()).collect();
    let _ = stats
        .source
        .set(crate::observe::SourceInfo { stream: pipeline.source.stream.clone(), durable: durables.join(", ") });
    // What the consumers say together: the previous run's unacknowledged messages, the
    // newest delivered, and the tightest limits.
    let ack_pending: usize = bound.iter().map(|b| b.info.num_ack_pending).sum();
    let delivered = bound.iter().map(|b| b.info.delivered.stream_sequence).max().unwrap_or(0);
    let ack_wait = bound.iter().map(|b| b.info.config.ack_wait).max().unwrap_or_default();
    let max_ack_pending = bound.iter().map(|b| b.info.config.max_ack_pending).min().unwrap_or(-1);
    let consumer_config = bound.first().map(|b| b.info.config.clone()).unwrap_or_default();
    let store = state::open(&js, &pipeline.state_bucket).await.map_err(nats_err)?;
    let states = state::load(&store, &pipeline.name).await.map_err(nats_err)?;
    let (machines, machine_updates) = match &pipeline.machine_config_bucket {
        Some(bucket) => {
            let kv = js.get_key_value(bucket).await.map_err(|e| WorkerError::Nats {
                pipeline: name.clone(),
                message: format!("machine config bucket `{bucket}`: {e}"),
            })?;
            let (tx, rx) = mpsc::channel(64);
            let current = machine::watch(kv, tx).await.map_err(nats_err)?;
            let revision = current.values().map(|c| c.revision).max().unwrap_or(0);
            tracing::info!(pipeline = %name, bucket, machines = current.len(), revision, "machine config loaded");
            stats.config_revision.set(i64::try_from(revision).unwrap_or(i64::MAX));
            (current, Some(rx))
        }
        None => (HashMap::new(), None),
    };
    let barrier = (ack_pending > 0).then(|| Barrier {
        until: Instant::now() + ack_wait + Duration::from_secs(2),
        upto_seq: delivered,
        remaining: ack_pending,
    });
    if let Some(b) = &barrier {
        tracing::info!(pipeline = %name, pending = b.remaining, "holding the watermark until the previous run's messages are redelivered");
    }
    let mut worker = Worker {
        ops: pipeline.windows.iter().enumerate().map(|(i, w)| Op::new(i, w)).collect(),
        machines,
        machine_updates,
        pipeline: pipeline.clone(),
        inflight: HashMap::new(),
        done: RangeInclusiveSet::new(),
        states,
        barrier,
        ack_wait,
        stats: stats.clone(),
        closed: Vec::new(),
        key_buf: String::new(),
        archive: None,
        max_ack_pending: usize::MAX,
        stream: js.get_stream(&pipeline.source.stream).await.ok(),
        awaiting: Arc::default(),
        js: js.clone(),
        client: client.clone(),
    };
    let (sink, writer) = match &pipeline.archive {
        Some(spec) => {
            let location = spec.open().map_err(|source| WorkerError::Archive { pipeline: name.clone(), source })?;
            let layout = Layout::of(&pipeline.source.template);
            let raw = match pipeline.source.format {
                Format::Json => Table::Readings,
                Format::Waveform => Table::Waveforms,
            };
            check_roll(&pipeline, spec, &consumer_config);
            tracing::info!(pipeline = %name, archive = %spec.url, "archiving");
            let writer = archive::Writer::new(location, &name, &pipeline.source.stream, layout.clone())
                .with_health(stats.archive_available.clone());
            (Some(Sink::new(spec.clone(), layout, raw)), Some(writer))
        }
        None => (None, None),
    };
    worker.archive = sink;
    worker.max_ack_pending = usize::try_from(max_ack_pending).unwrap_or(usize::MAX);
    let (commit_tx, commit_rx) = mpsc::channel::<Commit>(16);
    let (abort_tx, abort_rx) = watch::channel(false);
    let publisher = Publisher::new(js.clone()).with_health(stats.outputs_available.clone());
    let sinks = Sinks { publisher, js: js.clone(), store, archive: writer, awaiting: worker.awaiting.clone() };
    // Both end with the run, also when it is dropped half-way (a task abort, as a crash is
    // tested): no ack goes out after the worker is gone.
    let mut committer = AbortOnDropHandle::new(tokio::spawn(commit::run(commit_rx, sinks, abort_rx, stats.clone())));
    for up in [&stats.nats_connected, &stats.archive_available, &stats.outputs_available, &stats.consumer_bound] {
        up.set(1);
    }
    let mut consumers: Vec<Bound> = bound;
    let watched = consumers.iter().map(|b| b.consumer.clone()).collect();
    let monitor = AbortOnDropHandle::new(tokio::spawn(monitor(client.clone(), watched, stats.clone())));
    tracing::info!(pipeline = %name, stream = %pipeline.source.stream, durable = %pipeline.source.durable, "pipeline running");

    // JetStream gives up on a message after max_deliver deliveries and says so in an
    // advisory; the worker dead-letters it, so it is not silently dropped.
    let advisory =
        format!("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.{}", pipeline.source.stream, pipeline.source.durable);
    let advisories = match client.subscribe(advisory).await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(pipeline = %name, error = %e, "cannot watch max-delivery advisories");
            None
        }
    };
    let result = worker.pump(&mut consumers, advisories, &mut shutdown, &commit_tx, mode).await;

    drop(commit_tx);
    let drained = tokio::select! {
        r = &mut committer => r.unwrap_or(false),
        _ = tokio::time::sleep(SHUTDOWN_GRACE) => {
            let _ = abort_tx.send(true);
            false
        }
    };
    worker.nak_inflight().await;
    monitor.abort();
    stats.consumer_bound.set(0);
    let _ = client.flush().await;
    tracing::info!(pipeline = %name, drained, "pipeline stopped");
    result
}

/// Says (at info level: both are handled, and the defaults meet the first) when files will
/// roll before `roll_rows` because the consumer would otherwise stop delivering, and when only
/// in-progress acks keep buffered messages from redelivery.
fn check_roll(pipeline: &Pipeline, spec: &crate::config::ArchiveSpec, consumer: &jetstream::consumer::Config) {
    let name = &pipeline.name;
    if consumer.max_ack_pending > 0 && (consumer.max_ack_pending as usize) < spec.roll_rows {
        tracing::info!(
            pipeline = %name,
            max_ack_pending = consumer.max_ack_pending,
            roll_rows = spec.roll_rows,
            "the consumer's max_ack_pending is below roll_rows: files roll early, whenever 90% of max_ack_pending messages wait for them"
        );
    }
    if spec.roll_age >= consumer.ack_wait {
        tracing::info!(
            pipeline = %name,
            roll_age = ?spec.roll_age,
            ack_wait = ?consumer.ack_wait,
            "roll_age is not shorter than the consumer's ack_wait: buffered messages are kept from redelivery only by in-progress acks"
        );
    }
}

/// Keeps the connection and consumer gauges current: the connection every second, the
/// consumer's lag every five (polled from JetStream, with a timeout so that an unreachable
/// server does not stall it).
async fn monitor(client: async_nats::Client, mut consumers: Vec<PullConsumer>, stats: Arc<Stats>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for n in 0u64.. {
        tick.tick().await;
        let connected = client.connection_state() == async_nats::connection::State::Connected;
        stats.nats_connected.set(i64::from(connected));
        if !connected || n % 5 != 0 {
            continue;
        }
        let mut lag = Lag::new();
        let all = async {
            for c in consumers.iter_mut() {
                let Ok(info) = c.info().await else { return false };
                lag.add(info);
            }
            true
        };
        if let Ok(true) = tokio::time::timeout(Duration::from_secs(3), all).await {
            let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            stats.consumer_pending.set(gauge(lag.pending));
            stats.consumer_ack_pending.set(gauge(lag.ack_pending as u64));
            stats.consumer_ack_floor.set(gauge(lag.ack_floor));
        }
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

impl Worker {
    async fn pump(
        &mut self,
        consumers: &mut [Bound],
        mut advisories: Option<async_nats::Subscriber>,
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
                let messages = b
                    .consumer
                    .stream()
                    .max_messages_per_batch(batch)
                    .heartbeat(Duration::from_secs(5))
                    .expires(Duration::from_secs(30))
                    .messages()
                    .await;
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
                            let now = Instant::now();
                            for (i, item) in chunk {
                                match item {
                                    Some(Ok(msg)) => self.on_message(msg, now, &mut commit),
                                    Some(Err(e)) => {
                                        tracing::warn!(pipeline = %self.pipeline.name, consumer = %consumers[i].spec.durable, error = %e, "consumer stream error");
                                        if consumer_may_be_gone(e.kind()) && let Some(c) = self.rebind(&mut consumers[i]).await {
                                            consumers[i].consumer = c;
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
                    _ = tick.tick() => {
                        let now = Instant::now();
                        self.keep_alive(now).await;
                        self.close_windows(now, &mut commit);
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
    async fn rebind(&mut self, b: &mut Bound) -> Option<PullConsumer> {
        if b.consumer.info().await.is_ok() {
            return None;
        }
        let resume = self.inflight.keys().min().copied().unwrap_or_else(|| self.seen_upto() + 1);
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
    async fn queue(
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

    fn on_message(&mut self, msg: jetstream::Message, now: Instant, commit: &mut Commit) {
        let Ok(info) = msg.info() else {
            tracing::warn!(subject = %msg.subject, "message without JetStream metadata ignored");
            return;
        };
        let (seq, delivered) = (info.stream_sequence, info.delivered);
        let published_us = (info.published.unix_timestamp_nanos() / 1000) as i64;
        Stats::add(&self.stats.fetched, 1);
        if delivered > 1 {
            Stats::add(&self.stats.redelivered, 1);
            if let Some(b) = self.barrier.as_mut().filter(|b| seq <= b.upto_seq) {
                b.remaining = b.remaining.saturating_sub(1);
            }
        }
        let jetstream::Message { message: mut msg, .. } = msg;
        let Some(reply) = msg.reply.take() else {
            return; // JetStream metadata comes from the reply subject: not reached
        };
        if let Some(f) = self.inflight.get_mut(&seq) {
            f.reply = reply; // a redelivery of a message we hold: ack the newest delivery
            return;
        }
        if self.done.contains(&seq) {
            commit.ack(reply); // handled in this run, its ack was lost: ack again
            return;
        }
        let pipeline = self.pipeline.clone();
        let origin = Origin { stream: &pipeline.source.stream, seq, subject: msg.subject.as_str() };
        let arrival = Arrival { now, redelivered: delivered > 1 };
        let (refs, late) = match self.route(&msg, published_us, seq, arrival) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(pipeline = %self.pipeline.name, seq, reason = e.code, "dead letter");
                self.stats.decode_error(e.code);
                self.stats.dead_letter(e.code);
                let out = output::dead_letter(
                    &self.pipeline,
                    origin,
                    msg.headers.as_ref(),
                    msg.payload.clone(),
                    e.code,
                    &e.detail,
                );
                commit.dead_letters.push(out);
                commit.term(reply);
                self.done.insert(seq..=seq);
                return;
            }
        };
        if let Some(detail) = late {
            Stats::add(&self.stats.late, 1);
            self.stats.dead_letter("late");
            let out =
                output::dead_letter(&self.pipeline, origin, msg.headers.as_ref(), msg.payload.clone(), "late", &detail);
            commit.dead_letters.push(out);
            if refs == 0 {
                commit.term(reply);
                self.done.insert(seq..=seq);
                return;
            }
        }
        if refs == 0 {
            commit.ack(reply);
            self.done.insert(seq..=seq);
        } else {
            self.inflight.insert(seq, InFlight { reply, refs, since: now });
        }
        if self.archive.as_mut().is_some_and(Sink::take_full) {
            self.roll_archive(now, false, commit);
        }
    }

    /// Decodes a message and adds it to its windows: (windows taken, late detail).
    fn route(
        &mut self,
        msg: &async_nats::Message,
        published_us: i64,
        seq: u64,
        arrival: Arrival,
    ) -> Result<(u32, Option<String>), Refused> {
        let now = arrival.now;
        let pipeline = self.pipeline.clone();
        let mut fields = Vec::with_capacity(8);
        pipeline
            .source
            .template
            .extract(msg.subject.as_str(), &mut fields)
            .map_err(|e| Refused::from(crate::telemetry::DecodeError::SubjectMismatch(e.to_string())))?;
        let input = route::decode(&pipeline, msg, published_us)?;
        route::check_event_time(&pipeline, &input, published_us)?;
        let hold = self.barrier.is_some();
        let (mut refs, mut late) = (0, None);
        for (spec, op) in pipeline.windows.iter().zip(self.ops.iter_mut()) {
            if spec.filter.as_deref().is_some_and(|f| !crate::subject::matches(f, msg.subject.as_str())) {
                continue;
            }
            let (parts, n) = route::key_of(spec, &fields, &mut self.key_buf);
            match op.add(&self.key_buf, &parts[..n], &input, seq, now, hold) {
                Ok(n) => refs += n,
                Err(l) => {
                    late = Some(format!(
                        "window `{}` ending {} closed (closed up to {})",
                        spec.name,
                        output::rfc3339_ms(l.window_end_ms),
                        output::rfc3339_ms(l.closed_until_ms),
                    ))
                }
            }
        }
        if let Some(sink) = self.archive.as_mut().filter(|s| s.archives_messages()) {
            let subject = msg.subject.as_str();
            match &input {
                route::Input::Reading { t_ms, value } => {
                    sink.add_reading(&fields, subject, *t_ms, *value, seq, arrival)
                }
                route::Input::Wave(w) => sink.add_wave(&fields, subject, w, seq, arrival),
            }
            refs += 1;
        }
        Ok((refs, late))
    }

    fn close_windows(&mut self, now: Instant, commit: &mut Commit) {
        if let Some(b) = &self.barrier
            && (b.remaining == 0 || now >= b.until)
        {
            tracing::info!(pipeline = %self.pipeline.name, unreturned = b.remaining, "watermark released");
            self.barrier = None;
        }
        let hold = self.barrier.is_some();
        self.close_all(now, hold, false, commit);
    }

    fn close_all(&mut self, now: Instant, hold: bool, flush: bool, commit: &mut Commit) {
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

    /// Rolls due archive files into `commit` and releases what they held. Files roll early
    /// when the messages waiting for them near the consumer's max_ack_pending, which would
    /// otherwise stop deliveries.
    fn roll_archive(&mut self, now: Instant, flush: bool, commit: &mut Commit) {
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
    fn release(&mut self, seq: u64, commit: &mut Commit) {
        let Some(f) = self.inflight.get_mut(&seq) else {
            return;
        };
        f.refs -= 1;
        if f.refs == 0
            && let Some(f) = self.inflight.remove(&seq)
        {
            commit.ack(f.reply);
            self.done.insert(seq..=seq);
        }
    }

    fn on_closed(&mut self, w: &WindowResult, now: Instant, commit: &mut Commit) {
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
            let transition = alert::apply(rule, state, value, w.end_ms);
            let changed = (before.level, before.streak, before.streak_up, before.streak_level)
                != (state.level, state.streak, state.streak_up, state.streak_level);
            let encoded = changed.then(|| state::encode(state));
            if let Some(t) = transition {
                let out = output::alert(&pipeline, rule, w, value, t);
                if let Some(sink) = self.archive.as_mut().filter(|_| archived) {
                    let row = archive::AlertRow {
                        at: at(out.msg_id.clone()),
                        rule: rule.name.clone(),
                        state: t.to.transition_name(),
                        previous: t.from.name(),
                        severity: t.to.name(),
                        feature: rule.metric,
                        value,
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

    /// A message JetStream will not deliver again: dead-letter it with reason `max_deliver`.
    async fn on_max_deliveries(&mut self, advisory: &async_nats::Message, commit: &mut Commit) {
        #[derive(serde::Deserialize)]
        struct MaxDeliveries {
            stream_seq: u64,
            deliveries: u64,
        }
        let Ok(a) = serde_json::from_slice::<MaxDeliveries>(&advisory.payload) else {
            tracing::warn!(pipeline = %self.pipeline.name, "unreadable max-delivery advisory");
            return;
        };
        if self.done.contains(&a.stream_seq) || self.inflight.contains_key(&a.stream_seq) {
            return; // handled, or held and about to be
        }
        let Some(stream) = &self.stream else { return };
        let msg = match stream.get_raw_message(a.stream_seq).await {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(pipeline = %self.pipeline.name, seq = a.stream_seq, error = %e, "message past max_deliver is gone from the stream; not dead-lettered");
                return;
            }
        };
        tracing::warn!(pipeline = %self.pipeline.name, seq = a.stream_seq, deliveries = a.deliveries, "message past max_deliver dead-lettered");
        let origin = Origin { stream: &self.pipeline.source.stream, seq: a.stream_seq, subject: msg.subject.as_str() };
        let detail = format!("delivered {} times without being acknowledged (max_deliver)", a.deliveries);
        self.stats.dead_letter("max_deliver");
        let out = output::dead_letter(&self.pipeline, origin, Some(&msg.headers), msg.payload, "max_deliver", &detail);
        commit.dead_letters.push(out);
    }

    fn on_machine_update(&mut self, update: machine::Update) {
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

    /// Whether the consumer has nothing more to deliver and every delivery was seen. The
    /// server's count of unacknowledged deliveries must not exceed what the worker holds: in a
    /// cluster a consumer's info can show nothing delivered while deliveries are on their way
    /// (seen with an R3 consumer just created), and acks on their way make it briefly higher.
    async fn drained(&mut self, consumers: &mut [Bound]) -> bool {
        let mut lag = Lag::new();
        for b in consumers.iter_mut() {
            let Ok(info) = b.consumer.info().await else { return false };
            lag.add(info);
        }
        let held = self.inflight.len() + Awaiting::held(&self.awaiting);
        self.barrier.is_none() && lag.pending == 0 && lag.delivered <= self.seen_upto() && lag.ack_pending <= held
    }

    fn seen_upto(&self) -> u64 {
        let inflight = self.inflight.keys().max().copied().unwrap_or(0);
        let done = self.done.iter().next_back().map_or(0, |r| *r.end());
        inflight.max(done)
    }

    /// Sets the watermark lag gauge: wall clock minus the newest watermark of the window spec
    /// furthest behind.
    fn note_watermark(&self) {
        let watermark = self.ops.iter().filter_map(Op::newest_watermark).min();
        if let Some(w) = watermark {
            self.stats.watermark_lag.set(commit::seconds_since(w));
        }
    }

    /// Closes every open window (end of a drain).
    fn flush(&mut self, commit: &mut Commit) {
        self.barrier = None;
        self.close_all(Instant::now(), false, true, commit);
    }

    /// Sends in-progress acks for messages held longer than half the ack wait, in windows,
    /// buffers or queued commits.
    async fn keep_alive(&mut self, now: Instant) {
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

    async fn nak_inflight(&mut self) {
        let n = self.inflight.len() as u64;
        for (_, f) in self.inflight.drain() {
            commit::send(&self.client, &f.reply, AckKind::Nak(None)).await;
        }
        Stats::add(&self.stats.naked, n);
    }
}
