//! The committer: makes a batch's outputs durable, then acknowledges its messages.
//!
//! Commits are handled strictly in order, so a message acknowledged by a later commit never
//! overtakes the outputs of an earlier one.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{AckKind, kv, message::Acker};
use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use super::stats::Stats;
use crate::archive::{Roll, Writer};
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
    /// Messages to acknowledge once all of the above is durable.
    pub(crate) acks: Vec<Acker>,
    /// Messages to terminate once all of the above is durable (dead-lettered).
    pub(crate) terms: Vec<Acker>,
    /// Wait for the server to confirm these acks (the last commit of a drain), so that a
    /// drained run has nothing pending when it returns.
    pub(crate) confirm: bool,
}

impl Commit {
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

/// Where the committer makes things durable.
pub(crate) struct Sinks {
    pub(crate) publisher: Publisher,
    pub(crate) store: kv::Store,
    pub(crate) archive: Option<Writer>,
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
    let Sinks { publisher, store, archive } = sinks;
    for out in &c.alerts {
        match publisher.publish(out, abort).await {
            Ok(true) => Stats::add(&stats.alerts_duplicate, 1),
            Ok(false) => Stats::add(&stats.alerts_published, 1),
            Err(_) => return false,
        }
    }
    for roll in c.files {
        let Some(writer) = archive.as_mut() else { continue };
        match writer.commit(roll, abort).await {
            Ok(file) => {
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
    for out in &c.features {
        if publisher.publish(out, abort).await.is_err() {
            return false;
        }
        Stats::add(&stats.features_published, 1);
    }
    for out in &c.dead_letters {
        if publisher.publish(out, abort).await.is_err() {
            return false;
        }
        Stats::add(&stats.dead_letters, 1);
    }
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
    // Acks need no confirmation: a lost ack means a redelivery, which the worker recognises.
    if c.confirm {
        for chunk in c.acks.chunks(256) {
            for r in futures::future::join_all(chunk.iter().map(Acker::double_ack)).await {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "ack not confirmed");
                }
            }
        }
    } else {
        for a in &c.acks {
            if let Err(e) = a.ack().await {
                tracing::debug!(error = %e, "ack not sent");
            }
        }
    }
    Stats::add(&stats.acked, c.acks.len() as u64);
    for t in &c.terms {
        if let Err(e) = t.ack_with(AckKind::Term).await {
            tracing::debug!(error = %e, "term not sent");
        }
    }
    Stats::add(&stats.terminated, c.terms.len() as u64);
    true
}
