//! A run from start to stop: bind the consumers, load alert state and machine config, start
//! the committer and the monitor, pump, then stop cleanly.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::PullConsumer};
use tokio::sync::{mpsc, watch};
use tokio_util::task::AbortOnDropHandle;

use super::commit::{self, Commit, Sinks};
use super::pin::PinView;
use super::route::Op;
use super::{Barrier, Done, Lane, RunMode, SHUTDOWN_GRACE, Stats, Worker, WorkerError};
use crate::archive::{self, Layout, Sink, Table};
use crate::config::{ArchiveSpec, Format, Pipeline};
use crate::machine;
use crate::sink::{Publisher, state};
use crate::source::upstream::GapWatch;
use crate::source::{Bound, Lag, members};

/// Runs `pipeline` (or, with `lane`, one partition of it: `pipeline` is then the partition's
/// view, see [`super::lanes`]) on `client` until `shutdown` turns true, then stops cleanly: no
/// more fetching, in-flight outputs confirmed, durable messages acknowledged, the rest NAKed
/// for the next run.
///
/// # Errors
/// [`WorkerError`] when the consumer cannot be bound or the state bucket opened.
pub(super) async fn run(
    pipeline: Arc<Pipeline>,
    client: async_nats::Client,
    mut shutdown: watch::Receiver<bool>,
    stats: Arc<Stats>,
    mode: RunMode,
    lane: Option<Lane>,
) -> Result<(), WorkerError> {
    let name = pipeline.name.clone();
    let nats_err = |message: String| WorkerError::Nats { pipeline: name.clone(), message };
    let js = jetstream::new(client.clone());
    let bound = crate::source::bind(&js, &pipeline)
        .await
        .map_err(|source| WorkerError::Source { pipeline: name.clone(), source })?;
    let durables: Vec<&str> = bound.iter().map(|b| b.spec.durable.as_str()).collect();
    let scope = durables.join(", ");
    if lane.is_none() {
        let _ = stats
            .source
            .set(crate::observe::SourceInfo { stream: pipeline.source.stream.clone(), durable: scope.clone() });
    }
    // What the consumers say together: the previous run's unacknowledged messages, the
    // newest delivered, and the tightest limits.
    let ack_pending: usize = bound.iter().map(|b| b.info.num_ack_pending).sum();
    let delivered = bound.iter().map(|b| b.info.delivered.stream_sequence).max().unwrap_or(0);
    let ack_wait = bound.iter().map(|b| b.info.config.ack_wait).max().unwrap_or_default();
    let consumer_config = bound.first().map(|b| b.info.config.clone()).unwrap_or_default();
    let stream = js.get_stream(&pipeline.source.stream).await.ok();
    // Buckets the worker creates get as many copies as the stream it reads.
    let replicas = stream.as_ref().map_or(1, |s| s.cached_info().config.num_replicas);
    let store = state::open(&js, &pipeline.state_bucket, replicas).await.map_err(nats_err)?;
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
    // Consumers that pin a worker hold the watermark when this one is pinned (see `pin`).
    let barrier = (ack_pending > 0 && bound.iter().all(|b| b.group().is_none())).then(|| Barrier {
        until: Instant::now() + ack_wait + Duration::from_secs(2),
        upto_seq: delivered,
        remaining: ack_pending,
        settle_after: None,
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
        received: HashMap::new(),
        consumers: bound.iter().map(|b| b.spec.durable.clone()).collect(),
        done: Done::new((ack_wait * 2).max(Duration::from_secs(60)), Instant::now()),
        delivered_upto: 0,
        origin_stream: origin_name(&pipeline, lane.as_ref()).into(),
        lane: lane.clone(),
        states,
        barrier,
        pins: Vec::new(),
        store: store.clone(),
        roll: None,
        ack_wait,
        stats: stats.clone(),
        closed: Vec::new(),
        speed_released: Vec::new(),
        key_buf: String::new(),
        archive: None,
        max_ack_pending: usize::MAX,
        said_saturated: false,
        stream,
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
            let writer = archive::Writer::new(location, &name, origin_name(&pipeline, lane.as_ref()), layout.clone())
                .with_health(stats.archive_available.clone());
            (Some(Sink::new(spec.clone(), layout, raw)), Some(writer))
        }
        None => (None, None),
    };
    worker.archive = sink;
    worker.max_ack_pending = super::ack::limit_of(&bound);
    let (commit_tx, commit_rx) = mpsc::channel::<Commit>(16);
    let (abort_tx, abort_rx) = watch::channel(false);
    let publisher = Publisher::new(js.clone()).with_stats(stats.clone());
    let sinks = Sinks { publisher, js: js.clone(), store, archive: writer, awaiting: worker.awaiting.clone() };
    // Both end with the run, also when it is dropped half-way (a task abort, as a crash is
    // tested): no ack goes out after the worker is gone.
    let mut committer = AbortOnDropHandle::new(tokio::spawn(commit::run(commit_rx, sinks, abort_rx, stats.clone())));
    for up in [&stats.nats_connected, &stats.archive_available, &stats.outputs_available, &stats.consumer_bound] {
        up.set(1);
    }
    let mut consumers: Vec<Bound> = bound;
    // A consumer without a priority group has one worker, which is the active one.
    let unpinned: Vec<String> =
        consumers.iter().filter(|b| b.group().is_none()).map(|b| b.spec.durable.clone()).collect();
    for d in &unpinned {
        stats.set_pinned(d, true);
    }
    let watched = consumers.iter().map(|b| b.consumer.clone()).collect();
    let sourced = match &worker.stream {
        Some(s) => s.cached_info().mirror.is_some() || !s.cached_info().sources.is_empty(),
        None => false,
    };
    // A partition's stream is sourced by design; the lanes' keeper watches the pipeline's.
    let upstream = worker.stream.clone().filter(|_| sourced && lane.is_none());
    let (pins_tx, mut pins_rx) = watch::channel(PinView::default());
    let durables: Vec<String> = consumers.iter().map(|b| b.spec.durable.clone()).collect();
    // A partition's worker is on the roll once, for all its partitions (see `lanes`).
    let roll = match &lane {
        Some(lane) => lane.roll.clone(),
        None => members::Roll::open(&js, &pipeline.name, durables, replicas).await,
    };
    worker.roll = roll.clone();
    let monitor = AbortOnDropHandle::new(tokio::spawn(monitor(
        client.clone(),
        watched,
        upstream,
        stats.clone(),
        pins_tx,
        scope.clone(),
    )));
    let announcer =
        roll.clone().filter(|_| lane.is_none()).map(|r| AbortOnDropHandle::new(tokio::spawn(r.run(stats.clone()))));
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
    let result = worker.pump(&mut consumers, advisories, &mut pins_rx, &mut shutdown, &commit_tx, mode).await;

    drop(commit_tx);
    let drained = tokio::select! {
        r = &mut committer => r.unwrap_or(false),
        _ = tokio::time::sleep(SHUTDOWN_GRACE) => {
            let _ = abort_tx.send(true);
            false
        }
    };
    worker.nak_inflight().await;
    worker.release_pins(&consumers).await;
    monitor.abort();
    if let Some(announcer) = announcer {
        announcer.abort();
    }
    if let Some(roll) = roll.as_ref().filter(|_| lane.is_none()) {
        roll.leave().await;
    }
    for d in &unpinned {
        stats.set_pinned(d, false);
    }
    stats.set_lag(&scope, None);
    if lane.is_none() {
        stats.consumer_bound.set(0);
    }
    let _ = client.flush().await;
    tracing::info!(pipeline = %name, drained, "pipeline stopped");
    if mode == RunMode::Drain && !drained && result.is_ok() {
        let reason = match stats.refusal() {
            Some(why) => format!("the server refuses an output, {why}"),
            None => format!("outputs were not confirmed within {SHUTDOWN_GRACE:?} of the end"),
        };
        return Err(WorkerError::NotDrained { pipeline: name, reason });
    }
    result
}

/// The stream messages are known in: the pipeline's, also for a partition (whose view of the
/// pipeline names the partitioned stream).
fn origin_name<'a>(pipeline: &'a Pipeline, lane: Option<&'a Lane>) -> &'a str {
    lane.map_or(&pipeline.source.stream, |l| &l.origin.cached_info().config.name)
}

/// Says (at info level: both are handled, and the defaults meet the first) when files will
/// roll before `roll_rows` because the consumer would otherwise stop delivering, and when only
/// in-progress acks keep buffered messages from redelivery.
fn check_roll(pipeline: &Pipeline, spec: &ArchiveSpec, consumer: &jetstream::consumer::Config) {
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

/// Keeps the connection and consumer gauges current, every second: the connection, the
/// consumers' lag and last delivery (polled from JetStream, with a timeout so that an
/// unreachable server does not stall it) and, for a stream that sources others (`upstream`),
/// whether they are heard from.
async fn monitor(
    client: async_nats::Client,
    mut consumers: Vec<PullConsumer>,
    mut upstream: Option<jetstream::stream::Stream>,
    stats: Arc<Stats>,
    pins: watch::Sender<PinView>,
    scope: String,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut gaps = GapWatch::default();
    loop {
        tick.tick().await;
        let connected = client.connection_state() == async_nats::connection::State::Connected;
        stats.nats_connected.set(i64::from(connected));
        if let Some(stream) = upstream.as_mut().filter(|_| connected) {
            watch_upstream(&client, stream, &stats, &mut gaps).await;
        }
        if !connected {
            continue;
        }
        let mut lag = Lag::new();
        let mut view =
            PinView { asked: Some(Instant::now()), pinned: Vec::with_capacity(consumers.len()), ack_pending: 0 };
        let all = async {
            for c in consumers.iter_mut() {
                let Ok(info) = c.info().await else { return false };
                stats.set_delivered(&info.name, info.delivered.consumer_sequence);
                lag.add(info);
                view.pinned.push(info.priority_groups.first().and_then(|g| g.pinned_client_id.clone()));
                view.ack_pending += info.num_ack_pending;
            }
            true
        };
        if let Ok(true) = tokio::time::timeout(Duration::from_secs(3), all).await {
            pins.send_replace(view);
            stats.set_lag(&scope, Some([lag.pending, lag.ack_pending as u64, lag.ack_floor]));
        }
    }
}

/// For a partitioned pipeline (see [`super::lanes`]): sets `upstream_silent` every second,
/// until aborted, from the partitioned stream's copying of the pipeline's stream (`derived`:
/// while nats-server re-establishes it, after the loss of a stream leader for instance,
/// nothing arrives and idle windows must stay open) and, when the pipeline's stream is itself
/// sourced (`origin`), from its upstream, as [`watch_upstream`] does.
pub(super) async fn watch_partitioned(
    client: async_nats::Client,
    mut derived: jetstream::stream::Stream,
    mut origin: Option<jetstream::stream::Stream>,
    stats: Arc<Stats>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut gaps = GapWatch::default();
    loop {
        tick.tick().await;
        if client.connection_state() != async_nats::connection::State::Connected {
            continue;
        }
        let Ok(Ok(info)) = tokio::time::timeout(Duration::from_secs(3), derived.info()).await else { continue };
        let mut silent: Vec<String> = crate::source::silent_sources(info)
            .into_iter()
            .map(|(name, active)| format!("the partitioned stream's copy of {name} (last heard {active:?} ago)"))
            .collect();
        if let Some(origin) = origin.as_mut() {
            match upstream_silence(&client, origin, &stats, &mut gaps).await {
                Some(more) => silent.extend(more),
                None => continue,
            }
        }
        report_silence(&stats, &silent);
    }
}

/// Sets `upstream_silent` from the stream's sources (cut off, or with messages still to
/// forward), and says when it changes; reports the messages a source lost before it forwarded
/// them (see [`GapWatch`]).
async fn watch_upstream(
    client: &async_nats::Client,
    stream: &mut jetstream::stream::Stream,
    stats: &Stats,
    gaps: &mut GapWatch,
) {
    if let Some(silent) = upstream_silence(client, stream, stats, gaps).await {
        report_silence(stats, &silent);
    }
}

/// The stream's sources that are cut off or behind, described; `None` when the server did not
/// answer. Reports the messages a source lost before it forwarded them (see [`GapWatch`]).
async fn upstream_silence(
    client: &async_nats::Client,
    stream: &mut jetstream::stream::Stream,
    stats: &Stats,
    gaps: &mut GapWatch,
) -> Option<Vec<String>> {
    let Ok(Ok(info)) = tokio::time::timeout(Duration::from_secs(3), stream.info()).await else { return None };
    let mut silent: Vec<String> = crate::source::silent_sources(info)
        .into_iter()
        .map(|(name, active)| format!("{name} (last heard {active:?} ago)"))
        .collect();
    let (last_seq, sources) = (info.state.last_sequence, info.sources.len());
    let configured = info.config.sources.clone().unwrap_or_default();
    let step = tokio::time::timeout(Duration::from_secs(5), gaps.step(stream, last_seq, sources)).await;
    for gap in step.unwrap_or_default() {
        stats.upstream_lost.inc_by(gap.len());
        tracing::error!(
            pipeline = %stats.pipeline,
            source = %gap.source,
            from = gap.from,
            to = gap.to,
            lost = gap.len(),
            "a source of the stream lost messages before forwarding them (a cut longer than its stream's limits?): windows over that time miss them"
        );
    }
    let behind = crate::source::upstream::sources_behind(client, &configured, gaps).await;
    silent.extend(behind.iter().map(|(name, n)| format!("{name} ({n} messages still to forward)")));
    Some(silent)
}

/// Sets `upstream_silent` (1 while `silent` names anything), saying when it changes.
fn report_silence(stats: &Stats, silent: &[String]) {
    let was = stats.upstream_silent.get() == 1;
    match (was, silent.is_empty()) {
        (false, false) => {
            tracing::warn!(pipeline = %stats.pipeline, sources = %silent.join(", "), "the stream's upstream is cut off or catching up: idle windows stay open until it is current");
            stats.upstream_silent.set(1);
        }
        (true, true) => {
            tracing::info!(pipeline = %stats.pipeline, "the stream's upstream is current: idle windows close again");
            stats.upstream_silent.set(0);
        }
        _ => {}
    }
}
