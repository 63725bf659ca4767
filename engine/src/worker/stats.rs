//! Counters of a running pipeline, shared with the CLI and tests.

use std::sync::atomic::{AtomicU64, Ordering};

/// Monotonic counters of one pipeline run.
#[derive(Debug, Default)]
pub struct Stats {
    /// Messages received from the consumer.
    pub fetched: AtomicU64,
    /// Messages that were redeliveries.
    pub redelivered: AtomicU64,
    /// Messages acknowledged.
    pub acked: AtomicU64,
    /// In-progress acks sent.
    pub in_progress: AtomicU64,
    /// Messages NAKed (at shutdown, for prompt redelivery).
    pub naked: AtomicU64,
    /// Messages terminated after dead-lettering.
    pub terminated: AtomicU64,
    /// Dead letters published.
    pub dead_letters: AtomicU64,
    /// Readings that arrived after their window closed.
    pub late: AtomicU64,
    /// Windows closed.
    pub windows_closed: AtomicU64,
    /// Alert transitions confirmed by the server (new, not duplicates).
    pub alerts_published: AtomicU64,
    /// Alert transitions the stream reported as duplicates.
    pub alerts_duplicate: AtomicU64,
    /// Feature records published.
    pub features_published: AtomicU64,
    /// Machine config changes applied.
    pub config_updates: AtomicU64,
    /// Invalid machine config documents ignored.
    pub config_errors: AtomicU64,
    /// Times the consumer was found gone and created again.
    pub consumer_rebinds: AtomicU64,
    /// Ticks spent waiting for the committer (a slow or unreachable sink) instead of fetching.
    pub backpressure_ticks: AtomicU64,
    /// Archive files handed to the committer.
    pub archive_rolls: AtomicU64,
    /// Archive files committed.
    pub archive_files: AtomicU64,
    /// Archive rows committed.
    pub archive_rows: AtomicU64,
    /// Archive bytes committed.
    pub archive_bytes: AtomicU64,
    /// Archive rows skipped because an earlier run had committed them.
    pub archive_skipped: AtomicU64,
}

impl Stats {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
