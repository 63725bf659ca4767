//! The committer: makes a batch's outputs durable, then acknowledges its messages.
//!
//! Commits are handled strictly in order, so a message acknowledged by a later commit never
//! overtakes the outputs of an earlier one.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind, kv, message::Acker};
use async_nats::{Client, Subject};
use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use crate::archive::{Roll, Writer};
use crate::observe::Stats;
use crate::sink::{Outbound, Publisher};

/// What one batch produced.
#[derive(Default)]
pub(crate) struct Commit {
    /// Alert transitions to publish (in order).
    pub(crate) alerts: Vec<Outbound>,
    /// Archive files to commit.
    pub(crate) files: Vec<Roll>,
    /// Window features to publish.
    pub(crate) features: Vec<Outbound>,
    /// Dead letters to publish.
    pub(crate) dead_letters: Vec<Outbound>,
    /// Alert states to persist: (KV key, value).
    pub(crate) states: Vec<(String, Bytes)>,
    /// Messages to acknowledge once all of the above is durable (their reply subjects).
    pub(crate) acks: Vec<Subject>,
    /// Messages to terminate once all of the above is durable (dead-lettered).
    pub(crate) terms: Vec<Subject>,
    /// Wait for the server to confirm these acks (the last commit of a drain), so that a
    /// drained run has nothing pending when it returns.
    pub(crate) confirm: bool,
    /// Position in the commit order (set when queued).
    pub(crate) id: u64,
}

/// The acks of queued commits (a slow or unreachable sink may keep them waiting), kept from
/// redelivery by in-progress acks until their commit is durable. Queuing moves a commit's
/// acks here and the committer takes them back to send them, so each reply subject is held
/// once.
#[derive(Debug, Default)]
pub(crate) struct Awaiting {
    next: u64,
    commits: BTreeMap<u64, Acks>,
}

/// The messages a commit acknowledges or terminates, and when they were last kept alive.
#[derive(Debug)]
struct Acks {
    since: Instant,
    acks: Vec<Subject>,
    terms: Vec<Subject>,
}

impl Awaiting {
    /// Gives a commit about to be queued its id and takes its acks.
    pub(crate) fn queue(this: &Mutex<Self>, commit: &mut Commit, now: Instant) {
        let Ok(mut a) = this.lock() else { return };
        a.next += 1;
        commit.id = a.next;
        if !commit.acks.is_empty() || !commit.terms.is_empty() {
            let acks =
                Acks { since: now, acks: std::mem::take(&mut commit.acks), terms: std::mem::take(&mut commit.terms) };
            a.commits.insert(commit.id, acks);
        }
    }

    /// Messages whose acks wait in queued commits.
    pub(crate) fn held(this: &Mutex<Self>) -> usize {
        this.lock().map_or(0, |a| a.commits.values().map(|a| a.acks.len() + a.terms.len()).sum())
    }

    /// Takes back the acks of commit `id`, now durable: (acks, terms).
    fn take(this: &Mutex<Self>, id: u64) -> (Vec<Subject>, Vec<Subject>) {
        match this.lock().ok().and_then(|mut a| a.commits.remove(&id)) {
            Some(a) => (a.acks, a.terms),
            None => Default::default(),
        }
    }

    /// Sends in-progress acks for commits that have waited `after` since their last one.
    pub(crate) async fn keep_alive(this: &Mutex<Self>, client: &Client, now: Instant, after: Duration) -> u64 {
        let due: Vec<Subject> = match this.lock() {
            Ok(mut a) => a
                .commits
                .values_mut()
                .filter(|a| now.duration_since(a.since) >= after)
                .flat_map(|a| {
                    a.since = now;
                    a.acks.iter().chain(&a.terms).cloned()
                })
                .collect(),
            Err(_) => return 0,
        };
        for reply in &due {
            send(client, reply, AckKind::Progress).await;
        }
        due.len() as u64
    }
}

/// Sends an ack of `kind` to a message's reply subject. Not confirmed: a lost ack means a
/// redelivery, which the worker recognises.
pub(crate) async fn send(client: &Client, reply: &Subject, kind: AckKind) {
    if let Err(e) = client.publish(reply.clone(), kind.into()).await {
        tracing::debug!(error = %e, ?kind, "ack not sent");
    }
}

impl Commit {
    /// Acknowledges a message (its reply subject) once the commit is durable.
    pub(crate) fn ack(&mut self, reply: Subject) {
        self.acks.push(reply);
    }

    /// Terminates a message once the commit is durable.
    pub(crate) fn term(&mut self, reply: Subject) {
        self.terms.push(reply);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.alerts.is_empty()
            && self.files.is_empty()
            && self.features.is_empty()
            && self.dead_letters.is_empty()
            && self.states.is_empty()
            && self.acks.is_empty()
            && self.terms.is_empty()
    }
}

/// How long an archive commit may take before the store counts as unavailable.
const SLOW_COMMIT: Duration = Duration::from_secs(10);

/// Seconds from an event time (Unix ms) to now; 0 when the clock is behind it.
pub(crate) fn seconds_since(event_ms: i64) -> f64 {
    let now_ms = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    ((now_ms - i128::from(event_ms)).max(0) as f64) / 1000.0
}

/// Where the committer makes things durable.
pub(crate) struct Sinks {
    pub(crate) publisher: Publisher,
    pub(crate) js: jetstream::Context,
    pub(crate) store: kv::Store,
    pub(crate) archive: Option<Writer>,
    pub(crate) awaiting: Arc<Mutex<Awaiting>>,
}

/// Runs until the channel closes or `abort` turns true; returns whether it drained fully.
pub(crate) async fn run(
    mut rx: mpsc::Receiver<Commit>,
    mut sinks: Sinks,
    abort: watch::Receiver<bool>,
    stats: Arc<Stats>,
) -> bool {
    while let Some(commit) = rx.recv().await {
        if !apply(commit, &mut sinks, &abort, &stats).await {
            return false;
        }
    }
    true
}

async fn apply(c: Commit, sinks: &mut Sinks, abort: &watch::Receiver<bool>, stats: &Stats) -> bool {
    let Sinks { publisher, js, store, archive, awaiting } = sinks;
    let Ok(duplicates) = publisher.publish_all(&c.alerts, abort).await else { return false };
    for (out, duplicate) in c.alerts.iter().zip(duplicates) {
        if duplicate {
            Stats::add(&stats.alerts_duplicate, 1);
            continue;
        }
        Stats::add(&stats.alerts_published, 1);
        stats.alert_latency.observe(seconds_since(out.event_ms));
        if let Some(made) = out.made {
            stats.alert_publish_latency.observe(made.elapsed().as_secs_f64());
        }
        stats.alert_confirmed(&out.subject, &out.payload);
    }
    for roll in c.files {
        let Some(writer) = archive.as_mut() else { continue };
        let started = Instant::now();
        let committing = writer.commit(roll, abort);
        tokio::pin!(committing);
        // A store that hangs fails no request for a long while: call it unavailable once a
        // commit takes this long (the writer marks it available again when one succeeds).
        let result = tokio::select! {
            r = &mut committing => r,
            _ = tokio::time::sleep(SLOW_COMMIT) => {
                stats.archive_available.set(0);
                tracing::warn!(after = ?SLOW_COMMIT, "archive commit is slow; still trying");
                committing.await
            }
        };
        match result {
            Ok(file) => {
                stats.archive_commit_latency.observe(started.elapsed().as_secs_f64());
                Stats::add(&stats.archive_files, u64::from(file.path.is_some()));
                Stats::add(&stats.archive_rows, file.rows as u64);
                Stats::add(&stats.archive_bytes, file.bytes as u64);
                Stats::add(&stats.archive_skipped, file.skipped as u64);
            }
            Err(e) => {
                tracing::error!(error = %e, "archive file not committed; its messages stay unacknowledged");
                return false;
            }
        }
    }
    if publisher.publish_all(&c.features, abort).await.is_err() {
        return false;
    }
    Stats::add(&stats.features_published, c.features.len() as u64);
    if publisher.publish_all(&c.dead_letters, abort).await.is_err() {
        return false;
    }
    Stats::add(&stats.dead_letters, c.dead_letters.len() as u64);
    for (key, value) in &c.states {
        let mut backoff = Duration::from_millis(50);
        while let Err(e) = store.put(key, value.clone()).await {
            tracing::warn!(key, error = %e, "saving alert state failed");
            if *abort.borrow() {
                return false;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
    // Acks need no confirmation, except at the end of a drain: a lost ack means a
    // redelivery, which the worker recognises.
    let (acks, terms) = Awaiting::take(awaiting, c.id);
    let client = js.client();
    if c.confirm {
        for chunk in acks.chunks(256) {
            let confirmed = chunk.iter().map(|reply| async {
                if let Err(e) = Acker::new(js.clone(), Some(reply.clone())).double_ack().await {
                    tracing::debug!(error = %e, "ack not confirmed");
                }
            });
            futures::future::join_all(confirmed).await;
        }
    } else {
        for reply in &acks {
            send(&client, reply, AckKind::Ack).await;
        }
    }
    Stats::add(&stats.acked, acks.len() as u64);
    for reply in &terms {
        send(&client, reply, AckKind::Term).await;
    }
    Stats::add(&stats.terminated, terms.len() as u64);
    true
}
