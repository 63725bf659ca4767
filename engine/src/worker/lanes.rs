//! Partitioned pipelines (`[source] partitions = N`, see [`crate::source::partitions`]): this
//! worker runs the partitions it owns among the workers on the pipeline's roll, each as a run
//! of its own (its consumer, windows, archive buffers and acks), and gives up those another
//! worker comes to own. A run given up stops as at shutdown: open windows are dropped and what
//! it held is NAKed, its pin released, so the new owner computes those windows whole.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::DeliverPolicy};
use tokio::sync::watch;
use tokio_util::task::AbortOnDropHandle;

use super::{Lane, RunMode, Stats, WorkerError, lifecycle};
use crate::config::Pipeline;
use crate::source::members::{self, Roll};
use crate::source::{self, SourceError, partitions};

/// Runs `pipeline` on `client` until `shutdown` turns true (or, with [`RunMode::Drain`], until
/// it has processed everything), then stops cleanly: no more fetching, in-flight outputs
/// confirmed, durable messages acknowledged, the rest NAKed for the next run. A partitioned
/// pipeline runs the partitions this worker owns; in a drain, all of them. A run that ends
/// with an error NATS may get over is started again (counted in `stator_run_restarts_total`),
/// by a drain up to [`DRAIN_STARTS`] times in a row.
///
/// # Errors
/// [`WorkerError`] the user must fix: the stream or consumer missing or unfit, the archive
/// location unusable, a drain not finished, or in a drain NATS failing every start.
pub async fn run(
    pipeline: Arc<Pipeline>,
    client: async_nats::Client,
    shutdown: watch::Receiver<bool>,
    stats: Arc<Stats>,
    mode: RunMode,
) -> Result<(), WorkerError> {
    let mut wait = RETRY_FIRST;
    let mut failures = 0;
    loop {
        let started = tokio::time::Instant::now();
        let result = if pipeline.source.partitions <= 1 {
            lifecycle::run(pipeline.clone(), client.clone(), shutdown.clone(), stats.clone(), mode, None).await
        } else {
            match Keeper::start(pipeline.clone(), client.clone(), stats.clone(), mode).await {
                Ok(keeper) => keeper.keep(shutdown.clone()).await,
                Err(e) => Err(e),
            }
        };
        let Some(why) = result.as_ref().err().and_then(transient) else { return result };
        if *shutdown.borrow() {
            return result;
        }
        // A run that got going before it failed starts the count again.
        if started.elapsed() > RETRY_MAX {
            (wait, failures) = (RETRY_FIRST, 0);
        }
        failures += 1;
        if mode == RunMode::Drain && failures >= DRAIN_STARTS {
            // A drain is a job that ends: after about a minute of failures, say why.
            return result;
        }
        tracing::warn!(pipeline = %pipeline.name, error = %why, retry_in = ?wait, "the pipeline's run failed; starting it again");
        stats.run_restarts.inc();
        let mut stop = shutdown.clone();
        tokio::select! {
            r = stop.wait_for(|stop| *stop) => return if r.is_ok() { Ok(()) } else { result },
            () = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(RETRY_MAX);
    }
}

/// The first wait before a run is started again after NATS failed it (a request that timed
/// out while a cluster elects a stream leader must not end a worker meant to run for
/// months); it doubles with each failure in a row, up to [`RETRY_MAX`]. A partition's run
/// that fails so while the others go on is started again by [`Keeper::reap`].
const RETRY_FIRST: Duration = Duration::from_secs(1);
/// The longest wait between two starts.
const RETRY_MAX: Duration = Duration::from_secs(30);
/// Failed starts in a row after which a drain gives up and reports the last error (a
/// long-running worker goes on trying).
const DRAIN_STARTS: u32 = 6;

/// The cause of a run's error when it is one NATS may get over (a request not answered or
/// refused while the server or cluster is busy), so the run is worth starting again; `None`
/// for an error the user must fix.
fn transient(e: &WorkerError) -> Option<&str> {
    match e {
        WorkerError::Source { source: SourceError::Nats(e), .. } | WorkerError::Nats { message: e, .. } => Some(e),
        _ => None,
    }
}

/// How often ownership is looked at again: as often as workers announce themselves.
const LOOK_EVERY: Duration = members::ANNOUNCE_EVERY;

/// A partition's run: its stop signal and its task.
type Running = (watch::Sender<bool>, AbortOnDropHandle<Result<(), WorkerError>>);

/// The runs of one worker's partitions.
struct Keeper {
    pipeline: Arc<Pipeline>,
    client: async_nats::Client,
    stats: Arc<Stats>,
    mode: RunMode,
    origin: jetstream::stream::Stream,
    derived: String,
    roll: Option<Roll>,
    /// The runs, each with its stop signal; dropped with the keeper (a crash, as tested).
    lanes: BTreeMap<u32, Running>,
    /// Partitions a drain has finished.
    drained: Vec<u32>,
}

impl Keeper {
    async fn start(
        pipeline: Arc<Pipeline>,
        client: async_nats::Client,
        stats: Arc<Stats>,
        mode: RunMode,
    ) -> Result<Self, WorkerError> {
        let name = pipeline.name.clone();
        let source_err = |source| WorkerError::Source { pipeline: name.clone(), source };
        let js = jetstream::new(client.clone());
        let mut origin = source::stream(&js, &pipeline.source.stream).await.map_err(source_err)?;
        let derived = partitions::ensure(&js, &pipeline, &mut origin).await.map_err(source_err)?;
        let derived = derived.cached_info().config.name.clone();
        let n = pipeline.source.partitions;
        let durables: Vec<String> = (0..n).map(|p| partitions::durable(&pipeline, p)).collect();
        let _ = stats.source.set(crate::observe::SourceInfo {
            stream: derived.clone(),
            durable: format!("{} … {}", durables[0], durables[durables.len() - 1]),
        });
        let replicas = origin.cached_info().config.num_replicas;
        let roll = Roll::open(&js, &name, Vec::new(), replicas).await;
        stats.consumer_bound.set(1);
        tracing::info!(pipeline = %name, stream = %derived, partitions = n, "partitioned pipeline running");
        Ok(Self { pipeline, client, stats, mode, origin, derived, roll, lanes: BTreeMap::new(), drained: Vec::new() })
    }

    async fn keep(mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), WorkerError> {
        let announcer = self.roll.clone().map(|r| AbortOnDropHandle::new(tokio::spawn(r.run(self.stats.clone()))));
        let sourced = {
            let info = self.origin.cached_info();
            info.mirror.is_some() || !info.sources.is_empty()
        };
        let js = jetstream::new(self.client.clone());
        let upstream = match js.get_stream(&self.derived).await {
            Ok(derived) => {
                let origin = sourced.then(|| self.origin.clone());
                let watch = lifecycle::watch_partitioned(self.client.clone(), derived, origin, self.stats.clone());
                Some(AbortOnDropHandle::new(tokio::spawn(watch)))
            }
            Err(e) => {
                tracing::warn!(pipeline = %self.pipeline.name, error = %e, "cannot watch the partitioned stream's copying");
                None
            }
        };
        // Workers started together see each other on the roll after one announcement: the
        // first look waits for it, so that they do not all start every partition at first.
        let first = match self.mode {
            RunMode::Follow => tokio::time::Instant::now() + LOOK_EVERY,
            RunMode::Drain => tokio::time::Instant::now(),
        };
        let mut tick = tokio::time::interval_at(first, LOOK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let result = loop {
            tokio::select! {
                r = shutdown.changed() => if r.is_err() || *shutdown.borrow() { break Ok(()) },
                _ = tick.tick() => {}
            }
            if let Err(e) = self.reap().await {
                break Err(e);
            }
            if self.mode == RunMode::Drain && self.drained.len() == self.pipeline.source.partitions as usize {
                break Ok(());
            }
            let Some(want) = self.wanted().await else { continue };
            let gone: Vec<u32> = self.lanes.keys().filter(|p| !want.contains(p)).copied().collect();
            for p in gone {
                tracing::info!(pipeline = %self.pipeline.name, partition = p, "another worker owns the partition now; handing it over");
                self.stop(p).await;
            }
            for p in want {
                if !self.lanes.contains_key(&p) && !self.drained.contains(&p) {
                    self.spawn(p);
                }
            }
            let mut running: Vec<String> = self.lanes.keys().map(|p| partitions::durable(&self.pipeline, *p)).collect();
            running.sort();
            if let Some(roll) = &self.roll {
                roll.set_consumers(running);
            }
        };
        let all: Vec<u32> = self.lanes.keys().copied().collect();
        for p in all {
            self.stop(p).await;
        }
        drop(upstream);
        drop(announcer);
        if let Some(roll) = &self.roll {
            roll.leave().await;
        }
        self.stats.consumer_bound.set(0);
        result
    }

    /// The partitions this worker should run now: those it owns among the workers on the
    /// roll (all of them in a drain, or without a roll). `None` when the roll cannot be read:
    /// nothing changes then.
    async fn wanted(&self) -> Option<Vec<u32>> {
        let n = self.pipeline.source.partitions;
        let roll = match (&self.roll, self.mode) {
            (Some(roll), RunMode::Follow) => roll,
            _ => return Some((0..n).collect()),
        };
        let mut workers = roll.workers().await?;
        if !workers.iter().any(|w| w == roll.worker()) {
            workers.push(roll.worker().to_owned());
        }
        Some(partitions::owned(&workers, roll.worker(), &self.pipeline.name, n))
    }

    /// Takes in the runs that ended by themselves: a drained partition is done; an error the
    /// user must fix ends the pipeline; one NATS may get over is logged, and the partition
    /// run again at the next look.
    async fn reap(&mut self) -> Result<(), WorkerError> {
        let ended: Vec<u32> = self.lanes.iter().filter(|(_, (_, h))| h.is_finished()).map(|(p, _)| *p).collect();
        for p in ended {
            let Some((_, handle)) = self.lanes.remove(&p) else { continue };
            match handle.await {
                Ok(Ok(())) if self.mode == RunMode::Drain => self.drained.push(p),
                Ok(Ok(())) => {}
                Ok(Err(e)) => match transient(&e) {
                    Some(why) => {
                        tracing::warn!(pipeline = %self.pipeline.name, partition = p, error = %why, "the partition's run failed; starting it again");
                        self.stats.run_restarts.inc();
                    }
                    None => return Err(e),
                },
                Err(e) => {
                    tracing::error!(pipeline = %self.pipeline.name, partition = p, error = %e, "the partition's run panicked; starting it again")
                }
            }
        }
        Ok(())
    }

    fn spawn(&mut self, p: u32) {
        let (tx, rx) = watch::channel(false);
        let lane = Lane { origin: self.origin.clone(), roll: self.roll.clone() };
        let view = Arc::new(view_of(&self.pipeline, p, &self.derived));
        let run = lifecycle::run(view, self.client.clone(), rx, self.stats.clone(), self.mode, Some(lane));
        tracing::info!(pipeline = %self.pipeline.name, partition = p, "running the partition");
        self.lanes.insert(p, (tx, AbortOnDropHandle::new(tokio::spawn(run))));
    }

    /// Stops partition `p`'s run cleanly (it releases its pin, so the new owner is pinned at
    /// once) and waits for it.
    async fn stop(&mut self, p: u32) {
        let Some((tx, handle)) = self.lanes.remove(&p) else { return };
        let _ = tx.send(true);
        match handle.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(pipeline = %self.pipeline.name, partition = p, error = %e, "the partition's run ended with an error")
            }
            Err(e) => {
                tracing::error!(pipeline = %self.pipeline.name, partition = p, error = %e, "the partition's run panicked")
            }
        }
    }
}

/// Partition `p` of `pipeline` as one run sees it: its consumer on the partitioned stream
/// `derived`, created when missing (the stream is Stator's own).
fn view_of(pipeline: &Pipeline, p: u32, derived: &str) -> Pipeline {
    let mut view = pipeline.clone();
    view.source.stream = derived.to_owned();
    view.source.durable = partitions::durable(pipeline, p);
    view.source.filter_subjects = vec![partitions::filter(p)];
    view.source.create_consumer = true;
    view.source.deliver = DeliverPolicy::All;
    view.source.partitions = 1;
    view
}
