//! The archive side of a worker: rows buffered per table and partition until a file rolls.
//!
//! Message rows (`readings`, `waveforms`) hold their message until their file is committed.
//! Window rows (`features`, `alerts`) hold the messages of their window, and the alert states
//! those windows changed, until their files are committed: a crash before that redelivers the
//! window's messages, the window is computed again, and its rows and transitions come back.
//! Window rows of all partitions roll together, so their states are saved in one step.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::ArchiveSpec;
use super::partition::Partition;
use super::rows::{AlertRow, FeatureRow, Keys, Reading, Rows, WaveRow, WindowRef};
use super::table::{Layout, Table};
use crate::features::Features;

/// A file's worth of rows, to be committed.
#[derive(Debug)]
pub struct Roll {
    /// Table.
    pub table: Table,
    /// Partition.
    pub partition: Partition,
    /// Interned key columns.
    pub keys: Keys,
    /// Rows.
    pub rows: Rows,
    /// Some rows were delivered before: check the partition's files again for them.
    pub recheck: bool,
}

/// What rolling produced: files to commit, then alert states to save, then stream
/// sequences whose hold is released (one entry per hold).
#[derive(Debug, Default)]
pub struct Rolled {
    /// Files.
    pub files: Vec<Roll>,
    /// Alert states (KV key, value) held with window rows.
    pub states: Vec<(String, Bytes)>,
    /// Released holds.
    pub release: Vec<u64>,
}

#[derive(Debug)]
struct Buffer {
    keys: Keys,
    rows: Rows,
    bytes: usize,
    opened: Instant,
    recheck: bool,
    seqs: Vec<u64>,
}

impl Buffer {
    fn new(table: Table, now: Instant) -> Self {
        Self {
            keys: Keys::default(),
            rows: Rows::empty(table),
            bytes: 0,
            opened: now,
            recheck: false,
            seqs: Vec::new(),
        }
    }

    fn into_roll(self, table: Table, partition: Partition) -> (Roll, Vec<u64>) {
        (Roll { table, partition, keys: self.keys, rows: self.rows, recheck: self.recheck }, self.seqs)
    }
}

/// Window rows of every partition, rolled together with the holds and states they carry.
#[derive(Debug, Default)]
struct Windowed {
    buffers: BTreeMap<(Table, Partition), Buffer>,
    held: Vec<u64>,
    states: HashMap<String, Bytes>,
    opened: Option<Instant>,
    rows: usize,
    bytes: usize,
}

/// Buffers of one pipeline's archive.
#[derive(Debug)]
pub struct Sink {
    spec: ArchiveSpec,
    layout: Layout,
    raw_table: Option<Table>,
    raw: BTreeMap<Partition, Buffer>,
    windowed: Windowed,
    full: bool,
    /// Messages up to this stream sequence may be in files already, even when delivered for
    /// the first time (see [`Sink::recheck_upto`]).
    recheck_upto: u64,
}

impl Sink {
    /// A sink for `spec`, with key columns from `layout`; `raw_table` is the message table of
    /// the source's format.
    pub fn new(spec: ArchiveSpec, layout: Layout, raw_table: Table) -> Self {
        let raw_table = spec.writes(raw_table).then_some(raw_table);
        Self {
            spec,
            layout,
            raw_table,
            raw: BTreeMap::new(),
            windowed: Windowed::default(),
            full: false,
            recheck_upto: 0,
        }
    }

    /// Files holding messages up to `seq` may exist that this worker did not write or no
    /// longer knows it did: another worker's, before it was pinned, or its own, before it
    /// stood down. A message up to `seq` is checked against the files before it is archived
    /// again, even when the server delivers it as new (a consumer state lost in a server
    /// restart numbers deliveries from 1 again).
    pub fn recheck_upto(&mut self, seq: u64) {
        self.recheck_upto = self.recheck_upto.max(seq);
    }

    /// Forgets everything buffered, uncommitted: the worker gave up the messages behind it
    /// (another worker was pinned), and they are redelivered to that one.
    pub fn clear(&mut self) {
        self.raw.clear();
        self.windowed = Windowed::default();
        self.full = false;
    }

    /// The key columns.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The spec.
    pub fn spec(&self) -> &ArchiveSpec {
        &self.spec
    }

    /// Whether messages are archived (each holds one reference until its file commits).
    pub fn archives_messages(&self) -> bool {
        self.raw_table.is_some()
    }

    /// Whether window outputs are archived (each window's messages are held until then).
    pub fn archives_windows(&self) -> bool {
        self.spec.writes(Table::Features) || self.spec.writes(Table::Alerts)
    }

    /// Whether `table` is written.
    pub fn writes(&self, table: Table) -> bool {
        self.spec.writes(table)
    }

    fn raw_buffer(&mut self, fields: &[&str], subject: &str, t_ms: i64, now: Instant) -> (&mut Buffer, u32) {
        let table = self.raw_table.unwrap_or(Table::Readings);
        let site = self.layout.site(fields);
        let buffer = self.raw.entry(Partition::of(site, t_ms)).or_insert_with(|| Buffer::new(table, now));
        let layout = &self.layout;
        let key = buffer.keys.intern(subject, || layout.columns_of(fields));
        (buffer, key)
    }

    /// Buffers a reading; `redelivered` when JetStream delivered it before.
    pub fn add_reading(&mut self, fields: &[&str], subject: &str, t_ms: i64, value: f64, seq: u64, x: Arrival) {
        let (rows_max, bytes_max) = (self.spec.roll_rows, self.spec.roll_bytes);
        let recheck = x.redelivered || seq <= self.recheck_upto;
        let (buffer, key) = self.raw_buffer(fields, subject, t_ms, x.now);
        if let Rows::Readings(rows) = &mut buffer.rows {
            rows.push(Reading { key, time_ms: t_ms, value, seq });
            buffer.bytes += std::mem::size_of::<Reading>();
            buffer.seqs.push(seq);
            buffer.recheck |= recheck;
            let full = buffer.rows.len() >= rows_max || buffer.bytes >= bytes_max;
            self.full |= full;
        }
    }

    /// Whether a buffer filled up since the last call: roll now, so that files end at the
    /// same message whatever the batching.
    pub fn take_full(&mut self) -> bool {
        std::mem::take(&mut self.full)
    }

    /// Buffers a block of samples.
    pub fn add_wave(&mut self, fields: &[&str], subject: &str, w: &crate::waveform::Waveform, seq: u64, x: Arrival) {
        let (rows_max, bytes_max) = (self.spec.roll_rows, self.spec.roll_bytes);
        let recheck = x.redelivered || seq <= self.recheck_upto;
        let (buffer, key) = self.raw_buffer(fields, subject, w.start_us.div_euclid(1000), x.now);
        if let Rows::Waveforms(rows) = &mut buffer.rows {
            let units = w.units.map(|u| match u {
                stator_operators::velocity::AccelUnit::G => "g",
                stator_operators::velocity::AccelUnit::MetersPerSecondSquared => "m/s^2",
            });
            rows.push(WaveRow {
                key,
                start_us: w.start_us,
                sample_rate: w.sample_rate,
                units,
                rpm: w.rpm,
                samples: w.samples.clone(),
                seq,
            });
            buffer.bytes += std::mem::size_of::<WaveRow>() + 4 * w.samples.len();
            buffer.seqs.push(seq);
            buffer.recheck |= recheck;
            let full = buffer.rows.len() >= rows_max || buffer.bytes >= bytes_max;
            self.full |= full;
        }
    }

    fn window_buffer(&mut self, table: Table, key: &WindowKey<'_>, now: Instant) -> (&mut Buffer, u32) {
        let (values, site) = self.layout.split_key(key.names, key.values);
        let w = &mut self.windowed;
        w.opened.get_or_insert(now);
        w.rows += 1;
        let buffer =
            w.buffers.entry((table, Partition::of(site, key.start_ms))).or_insert_with(|| Buffer::new(table, now));
        let id = buffer.keys.intern(key.name, || values);
        (buffer, id)
    }

    /// Buffers a closed window's features (when the table is written).
    pub fn add_features(
        &mut self,
        key: &WindowKey<'_>,
        at: WindowRef,
        window: &str,
        features: &Features,
        now: Instant,
    ) {
        if !self.writes(Table::Features) {
            return;
        }
        let size = 96
            + features.scalars.len() * 24
            + features.texts.iter().map(|(_, t)| 24 + t.len()).sum::<usize>()
            + features.vectors.iter().map(|(_, v)| 32 + 4 * v.values.len()).sum::<usize>();
        let (buffer, id) = self.window_buffer(Table::Features, key, now);
        if let Rows::Features(rows) = &mut buffer.rows {
            rows.push(FeatureRow {
                at: WindowRef { key: id, ..at },
                window: window.to_owned(),
                features: features.clone(),
            });
            buffer.bytes += size;
        }
        self.windowed.bytes += size;
    }

    /// Buffers an alert transition (when the table is written).
    pub fn add_alert(&mut self, key: &WindowKey<'_>, row: AlertRow, now: Instant) {
        if !self.writes(Table::Alerts) {
            return;
        }
        let (buffer, id) = self.window_buffer(Table::Alerts, key, now);
        if let Rows::Alerts(rows) = &mut buffer.rows {
            rows.push(AlertRow { at: WindowRef { key: id, ..row.at.clone() }, ..row });
            buffer.bytes += 160;
        }
        self.windowed.bytes += 160;
    }

    /// Holds a window's messages until the window rows roll.
    pub fn hold(&mut self, seqs: &[u64], now: Instant) {
        self.windowed.opened.get_or_insert(now);
        self.windowed.held.extend_from_slice(seqs);
    }

    /// Holds an alert state until the window rows roll (a later state of the key replaces it).
    pub fn hold_state(&mut self, key: String, value: Bytes) {
        self.windowed.states.insert(key, value);
    }

    /// Rolls what is due at `now` (everything with `force`) into `out`.
    pub fn roll(&mut self, now: Instant, force: bool, out: &mut Rolled) {
        let spec = &self.spec;
        let due = |rows: usize, bytes: usize, opened: Instant| {
            force
                || rows >= spec.roll_rows
                || bytes >= spec.roll_bytes
                || now.saturating_duration_since(opened) >= spec.roll_age
        };
        let ready: Vec<Partition> =
            self.raw.iter().filter(|(_, b)| due(b.rows.len(), b.bytes, b.opened)).map(|(p, _)| p.clone()).collect();
        for p in ready {
            if let Some(b) = self.raw.remove(&p) {
                let (roll, seqs) = b.into_roll(self.raw_table.unwrap_or(Table::Readings), p);
                out.files.push(roll);
                out.release.extend(seqs);
            }
        }
        let w = &mut self.windowed;
        if w.opened.is_some_and(|o| due(w.rows, w.bytes, o)) {
            let w = std::mem::take(&mut self.windowed);
            for ((table, p), b) in w.buffers {
                out.files.push(b.into_roll(table, p).0);
            }
            out.states.extend(w.states);
            out.release.extend(w.held);
        }
    }

    /// Rows buffered, all tables.
    pub fn buffered_rows(&self) -> usize {
        self.raw.values().map(|b| b.rows.len()).sum::<usize>() + self.windowed.rows
    }

    /// How long the oldest buffered row may wait.
    pub fn roll_age(&self) -> Duration {
        self.spec.roll_age
    }
}

/// How a message arrived.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    /// When.
    pub now: Instant,
    /// Whether JetStream delivered it before.
    pub redelivered: bool,
}

/// A window's key, as the archive needs it.
#[derive(Debug)]
pub struct WindowKey<'a> {
    /// Unique name of the key within the pipeline (window name and key values).
    pub name: &'a str,
    /// Key field names.
    pub names: &'a [String],
    /// Key values.
    pub values: &'a [String],
    /// Window start, Unix ms (chooses the partition).
    pub start_ms: i64,
}
