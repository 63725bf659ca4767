//! Commits rolled files to the object store, exactly once.
//!
//! Before a file is written, rows that files of the same partition already hold are dropped:
//! a replay after a crash (the file was written, the acks were not) finds its rows there. The
//! partition is listed the first time this run writes to it and whenever a roll holds
//! redelivered messages; only files whose sequence range (in their name) covers a row are
//! opened, and only their `_seq` or `_id` column is read. Writes retry with backoff until they
//! succeed or the worker gives up on shutdown.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::UInt64Type;
use datafusion::parquet::arrow::ProjectionMask;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use futures::StreamExt;
use object_store::{ObjectStoreExt, PutPayload};
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::watch;

use super::buffer::Roll;
use super::encode::{FileContext, encode};
use super::partition::sanitize;
use super::table::Layout;
use super::{ArchiveLocation, object_path};

/// Why a file could not be committed.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The object store failed (the outside world's fault; retrying helps).
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    /// A file in the archive could not be read (someone else's file, or damage).
    #[error("reading `{path}`: {reason}")]
    Read {
        /// Object path.
        path: String,
        /// What failed.
        reason: String,
    },
    /// Encoding failed (our bug).
    #[error("encoding a file: {0}")]
    Encode(String),
    /// The worker is shutting down.
    #[error("aborted")]
    Aborted,
}

/// What committing a roll did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// Object path below the archive prefix; `None` when every row was already archived.
    pub path: Option<String>,
    /// Rows dropped because files of an earlier run hold them.
    pub skipped: usize,
    /// Rows written.
    pub rows: usize,
    /// Bytes written.
    pub bytes: usize,
}

#[derive(Debug, Default)]
struct Listed {
    files: Vec<(String, u64, u64)>,
    max_last: u64,
    ids: HashMap<String, HashSet<String>>,
    seqs: HashMap<String, HashSet<u64>>,
}

/// Writes one pipeline's files.
pub struct Writer {
    location: ArchiveLocation,
    pipeline: String,
    stream: String,
    layout: Layout,
    listed: HashMap<String, Listed>,
    available: Gauge,
}

impl Writer {
    /// A writer for `pipeline` reading `stream`.
    pub fn new(location: ArchiveLocation, pipeline: &str, stream: &str, layout: Layout) -> Self {
        Self {
            location,
            pipeline: pipeline.to_owned(),
            stream: stream.to_owned(),
            layout,
            listed: HashMap::new(),
            available: Gauge::default(),
        }
    }

    /// Reports on `available` (1, or 0 while writes fail and are retried).
    pub fn with_health(mut self, available: Gauge) -> Self {
        self.available = available;
        self
    }

    /// Commits `roll`, retrying store errors with backoff until `abort` turns true.
    ///
    /// # Errors
    /// [`ArchiveError::Aborted`] on shutdown, [`ArchiveError::Encode`] on a bug.
    pub async fn commit(&mut self, mut roll: Roll, abort: &watch::Receiver<bool>) -> Result<Committed, ArchiveError> {
        let dir = format!("{}/{}", roll.table.name(), roll.partition.path());
        let mut backoff = Duration::from_millis(100);
        let before = roll.rows.len();
        loop {
            match self.drop_archived(&dir, &mut roll).await {
                Ok(()) => break,
                Err(e) => retry(e, abort, &mut backoff, &self.available).await?,
            }
        }
        self.available.set(1);
        let skipped = before - roll.rows.len();
        if roll.rows.is_empty() {
            return Ok(Committed { path: None, skipped, rows: 0, bytes: 0 });
        }
        let seqs = roll.rows.seqs();
        let (first, last) = (seqs.iter().min().copied().unwrap_or(0), seqs.iter().max().copied().unwrap_or(0));
        let mut path = object_path(roll.table.name(), &roll.partition, &self.pipeline, first, last);
        if !roll.table.is_raw() {
            // Window rows of the same sequences can fall into different files (two windows
            // ending on one message): their identities tell the files apart.
            let mut ids = roll.rows.ids();
            ids.sort_unstable();
            let digest = ring::digest::digest(&ring::digest::SHA256, ids.join("\n").as_bytes());
            let tag: String = digest.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect();
            path = path.replace(".parquet", &format!("-{tag}.parquet"));
        }
        let (pipeline, stream, layout) = (self.pipeline.clone(), self.stream.clone(), self.layout.clone());
        let encoded = tokio::task::spawn_blocking(move || {
            let cx = FileContext { pipeline: &pipeline, stream: &stream, layout: &layout };
            encode(&cx, roll.table, &roll.keys, &mut roll.rows)
        })
        .await
        .map_err(|e| ArchiveError::Encode(e.to_string()))?
        .map_err(ArchiveError::Encode)?;
        let object = self.location.path(&path);
        let payload = PutPayload::from_bytes(encoded.bytes.clone());
        let mut backoff = Duration::from_millis(100);
        while let Err(e) = self.location.store.put(&object, payload.clone()).await {
            retry(ArchiveError::Store(e), abort, &mut backoff, &self.available).await?;
        }
        self.available.set(1);
        tracing::debug!(pipeline = %self.pipeline, path, rows = encoded.rows, bytes = encoded.bytes.len(), "archive file committed");
        Ok(Committed { path: Some(path), skipped, rows: encoded.rows, bytes: encoded.bytes.len() })
    }

    /// Drops the rows of `roll` that files already in `dir` hold.
    async fn drop_archived(&mut self, dir: &str, roll: &mut Roll) -> Result<(), ArchiveError> {
        if roll.recheck || !self.listed.contains_key(dir) {
            let files = self.list(dir).await?;
            let listed = self.listed.entry(dir.to_owned()).or_default();
            listed.max_last = files.iter().map(|f| f.2).max().unwrap_or(0);
            listed.files = files;
        }
        let seqs = roll.rows.seqs();
        let Some(listed) = self.listed.get(dir) else { return Ok(()) };
        if seqs.iter().all(|s| *s > listed.max_last) {
            return Ok(());
        }
        let candidates: Vec<String> = listed
            .files
            .iter()
            .filter(|(_, first, last)| seqs.iter().any(|s| (first..=last).contains(&s)))
            .map(|(p, _, _)| p.clone())
            .collect();
        let raw = roll.table.is_raw();
        for path in candidates {
            match self.load_identities(dir, &path, raw).await {
                Err(e @ ArchiveError::Read { .. }) => {
                    // Not ours, or damaged: it cannot vouch for any row, and must not stall
                    // the pipeline.
                    tracing::error!(pipeline = %self.pipeline, error = %e, "archive file ignored");
                    self.remember(dir, &path, raw, HashSet::new(), HashSet::new());
                }
                other => other?,
            }
        }
        let Some(listed) = self.listed.get(dir) else { return Ok(()) };
        let before = roll.rows.len();
        roll.rows.retain(|seq, id| {
            if raw {
                !listed.seqs.values().any(|s| s.contains(&seq))
            } else {
                !listed.ids.values().any(|s| s.contains(id))
            }
        });
        let dropped = before - roll.rows.len();
        if dropped > 0 {
            tracing::info!(pipeline = %self.pipeline, dir, dropped, "rows already archived by an earlier run skipped");
        }
        Ok(())
    }

    /// This pipeline's files in `dir`: (path below the prefix, first seq, last seq).
    async fn list(&self, dir: &str) -> Result<Vec<(String, u64, u64)>, ArchiveError> {
        let prefix = self.location.path(dir);
        let own = format!("{}-", sanitize(&self.pipeline));
        let mut out = Vec::new();
        let mut listing = self.location.store.list(Some(&prefix));
        while let Some(meta) = listing.next().await.transpose()? {
            let Some(name) = meta.location.filename() else { continue };
            let Some(range) = name.strip_prefix(&own).and_then(|r| r.strip_suffix(".parquet")) else { continue };
            let mut parts = range.split('-');
            if let (Some(Ok(first)), Some(Ok(last))) =
                (parts.next().map(str::parse::<u64>), parts.next().map(str::parse::<u64>))
            {
                out.push((format!("{dir}/{name}"), first, last));
            }
        }
        Ok(out)
    }

    async fn load_identities(&mut self, dir: &str, path: &str, raw: bool) -> Result<(), ArchiveError> {
        let loaded = self
            .listed
            .get(dir)
            .is_some_and(|l| if raw { l.seqs.contains_key(path) } else { l.ids.contains_key(path) });
        if loaded {
            return Ok(());
        }
        let bytes = self.location.store.get(&self.location.path(path)).await?.bytes().await?;
        let column = if raw { "_seq" } else { "_id" };
        let bad = |reason: String| ArchiveError::Read { path: path.to_owned(), reason };
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| bad(e.to_string()))?;
        let index = builder
            .schema()
            .index_of(column)
            .map_err(|_| bad(format!("no `{column}` column: not a file of this archive")))?;
        let mask = ProjectionMask::roots(builder.parquet_schema(), [index]);
        let reader = builder.with_projection(mask).build().map_err(|e| bad(e.to_string()))?;
        let (mut seqs, mut ids) = (HashSet::new(), HashSet::new());
        for batch in reader {
            let batch = batch.map_err(|e| bad(e.to_string()))?;
            let col = batch.column(0);
            if raw {
                let a = col.as_primitive_opt::<UInt64Type>().ok_or_else(|| bad("`_seq` is not UInt64".into()))?;
                seqs.extend(a.iter().flatten());
            } else {
                let a = col.as_string_opt::<i32>().ok_or_else(|| bad("`_id` is not a string".into()))?;
                ids.extend(a.iter().flatten().map(str::to_owned));
            }
        }
        self.remember(dir, path, raw, seqs, ids);
        Ok(())
    }

    fn remember(&mut self, dir: &str, path: &str, raw: bool, seqs: HashSet<u64>, ids: HashSet<String>) {
        let listed = self.listed.entry(dir.to_owned()).or_default();
        if raw {
            listed.seqs.insert(path.to_owned(), seqs);
        } else {
            listed.ids.insert(path.to_owned(), ids);
        }
    }
}

/// Waits out `backoff` (doubling it, up to 10 s) after a retryable error, or gives up.
async fn retry(
    e: ArchiveError,
    abort: &watch::Receiver<bool>,
    backoff: &mut Duration,
    available: &Gauge,
) -> Result<(), ArchiveError> {
    if matches!(e, ArchiveError::Encode(_) | ArchiveError::Aborted) {
        return Err(e);
    }
    available.set(0);
    tracing::warn!(error = %e, retry_in = ?*backoff, "archive write failed; retrying");
    let mut abort = abort.clone();
    tokio::select! {
        _ = tokio::time::sleep(*backoff) => {}
        _ = abort.wait_for(|a| *a) => return Err(ArchiveError::Aborted),
    }
    *backoff = (*backoff * 2).min(Duration::from_secs(10));
    if *abort.borrow() { Err(ArchiveError::Aborted) } else { Ok(()) }
}

/// Every object below `table`'s directory, sorted.
///
/// # Errors
/// The store's error.
pub async fn list_files(location: &ArchiveLocation, table: &str) -> Result<Vec<String>, ArchiveError> {
    let mut out = Vec::new();
    let mut listing = location.store.list(Some(&location.path(table)));
    while let Some(meta) = listing.next().await.transpose()? {
        out.push(meta.location.to_string());
    }
    out.sort();
    Ok(out)
}
