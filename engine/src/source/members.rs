//! Who runs a pipeline: every worker announces itself, every [`ANNOUNCE_EVERY`], in the
//! [`BUCKET`] KV bucket (one key per pipeline and worker), with the consumers it is pinned on.
//! The bucket forgets a key not announced again within [`FORGET_AFTER`], so a worker that died
//! drops out by itself; one that stops cleanly removes its key. `stator status` reads it to
//! show the active worker and the standbys.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv};

pub use crate::observe::Member;
use crate::observe::Stats;

/// The bucket of announcements.
pub const BUCKET: &str = "STATOR_WORKERS";
/// How often a worker announces itself.
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(2);
/// How long an announcement lasts (the bucket's max age).
pub const FORGET_AFTER: Duration = Duration::from_secs(10);

/// This process's worker id: the host name and the process id (and, for the second and later
/// workers of a process, a number: tests run several in one).
pub fn worker_id() -> String {
    static STARTED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    match n {
        0 => format!("{host}-{}", std::process::id()),
        n => format!("{host}-{}-{}", std::process::id(), n + 1),
    }
}

fn key(pipeline: &str, worker: &str) -> String {
    let mut key = format!("{pipeline}.");
    crate::kv::push_escaped(&mut key, worker);
    key
}

/// Opens (creating when missing, at `replicas` copies) the bucket.
///
/// # Errors
/// The NATS error as text.
pub async fn open(js: &jetstream::Context, replicas: usize) -> Result<kv::Store, String> {
    let config = kv::Config {
        bucket: BUCKET.to_owned(),
        description: "Stator workers per pipeline, announced every 2 s".into(),
        history: 1,
        max_age: FORGET_AFTER,
        num_replicas: replicas.max(1),
        ..Default::default()
    };
    crate::kv::open_or_create(js, config).await
}

/// Announces `member` as a worker of `pipeline`.
///
/// # Errors
/// The NATS error as text.
pub async fn announce(store: &kv::Store, pipeline: &str, member: &Member) -> Result<(), String> {
    let value = serde_json::to_vec(member).map_err(|e| e.to_string())?;
    store.put(key(pipeline, &member.worker), value.into()).await.map(drop).map_err(|e| e.to_string())
}

/// Removes `worker`'s announcement (a clean stop).
///
/// # Errors
/// The NATS error as text.
pub async fn leave(store: &kv::Store, pipeline: &str, worker: &str) -> Result<(), String> {
    store.purge(key(pipeline, worker)).await.map_err(|e| e.to_string())
}

/// The workers of `pipeline` announced within [`FORGET_AFTER`], by id.
///
/// # Errors
/// The NATS error as text.
pub async fn list(store: &kv::Store, pipeline: &str) -> Result<Vec<Member>, String> {
    let entries = crate::kv::entries(store, &format!("{pipeline}.")).await?;
    let mut members: Vec<Member> =
        entries.into_iter().filter_map(|(_, bytes)| serde_json::from_slice(&bytes).ok()).collect();
    members.sort_by(|a, b| a.worker.cmp(&b.worker));
    Ok(members)
}

/// This worker's entry in a pipeline's roll of workers.
#[derive(Clone)]
pub struct Roll {
    store: kv::Store,
    pipeline: String,
    member: Member,
    /// The consumers it reads, when they change during the run (a partitioned pipeline's).
    consumers: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Roll {
    /// Opens the bucket and announces the worker once, so that it is on the roll before it
    /// pulls. `None` (and a warning) when the bucket cannot be opened: the worker runs without
    /// announcing itself.
    pub async fn open(
        js: &jetstream::Context,
        pipeline: &str,
        consumers: Vec<String>,
        replicas: usize,
    ) -> Option<Roll> {
        let store = match open(js, replicas).await {
            Ok(store) => store,
            Err(e) => {
                tracing::warn!(pipeline, bucket = BUCKET, error = %e, "cannot open the bucket of workers; `stator status` will not list this one");
                return None;
            }
        };
        let started =
            time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        let member =
            Member { worker: worker_id(), started, consumers: consumers.clone(), pinned: Vec::new(), fetched: 0 };
        let roll = Roll { store, pipeline: pipeline.to_owned(), member, consumers: Arc::new(consumers.into()) };
        roll.announce(&roll.member).await;
        Some(roll)
    }

    async fn announce(&self, member: &Member) {
        let put = announce(&self.store, &self.pipeline, member);
        if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(3), put).await {
            tracing::debug!(pipeline = %self.pipeline, error = %e, "announcing the worker failed");
        }
    }

    /// Announces the worker every [`ANNOUNCE_EVERY`] until aborted.
    pub async fn run(self, stats: Arc<Stats>) {
        let mut tick = tokio::time::interval(ANNOUNCE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let consumers = self.consumers.lock().map(|c| c.clone()).unwrap_or_default();
            let member = Member {
                consumers,
                pinned: stats.pinned_on(),
                fetched: Stats::get(&stats.fetched),
                ..self.member.clone()
            };
            self.announce(&member).await;
        }
    }

    /// This worker's id.
    pub fn worker(&self) -> &str {
        &self.member.worker
    }

    /// Sets the consumers it reads, for its next announcements.
    pub fn set_consumers(&self, consumers: Vec<String>) {
        if let Ok(mut c) = self.consumers.lock() {
            *c = consumers;
        }
    }

    /// The ids of the workers of the pipeline on the roll; `None` when it cannot be read.
    pub async fn workers(&self) -> Option<Vec<String>> {
        match tokio::time::timeout(Duration::from_secs(3), list(&self.store, &self.pipeline)).await {
            Ok(Ok(members)) => Some(members.into_iter().map(|m| m.worker).collect()),
            _ => None,
        }
    }

    /// Whether any other worker of the pipeline is on the roll; `true` when the roll cannot be
    /// read.
    pub async fn others(&self) -> bool {
        match tokio::time::timeout(Duration::from_secs(3), list(&self.store, &self.pipeline)).await {
            Ok(Ok(members)) => members.iter().any(|m| m.worker != self.member.worker),
            _ => true,
        }
    }

    /// Takes the worker off the roll (a clean stop).
    pub async fn leave(&self) {
        let leave = leave(&self.store, &self.pipeline, &self.member.worker);
        let _ = tokio::time::timeout(Duration::from_secs(3), leave).await;
    }
}
