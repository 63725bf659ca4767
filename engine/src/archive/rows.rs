//! Rows waiting in a partition's buffer, before they become a Parquet file.
//!
//! Key columns are interned per buffer (one entry per distinct subject or window key), so a
//! buffered reading costs a few dozen bytes.

use std::collections::HashMap;

use crate::features::Features;

/// Interned key column values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Keys {
    ids: HashMap<String, u32>,
    /// Column values of each key, by id.
    pub values: Vec<Vec<Option<String>>>,
}

impl Keys {
    /// The id of the key named `name` (a subject or a window key), making its column values
    /// with `make` the first time.
    pub fn intern(&mut self, name: &str, make: impl FnOnce() -> Vec<Option<String>>) -> u32 {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        let id = self.values.len() as u32;
        self.ids.insert(name.to_owned(), id);
        self.values.push(make());
        id
    }

    /// The value of column `c` of key `id`.
    pub fn get(&self, id: u32, c: usize) -> Option<&str> {
        self.values.get(id as usize).and_then(|v| v.get(c)).and_then(|v| v.as_deref())
    }
}

/// A scalar reading.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// Interned key.
    pub key: u32,
    /// Event time, Unix ms.
    pub time_ms: i64,
    /// Value.
    pub value: f64,
    /// Stream sequence.
    pub seq: u64,
}

/// A block of samples.
#[derive(Debug, Clone, PartialEq)]
pub struct WaveRow {
    /// Interned key.
    pub key: u32,
    /// Time of the first sample, Unix µs.
    pub start_us: i64,
    /// Samples per second.
    pub sample_rate: f64,
    /// Unit the message gave (`g`, `m/s^2`).
    pub units: Option<&'static str>,
    /// Shaft speed the message gave.
    pub rpm: Option<f64>,
    /// The samples.
    pub samples: Vec<f32>,
    /// Stream sequence.
    pub seq: u64,
}

/// What a window row shares: which window, when, and which messages it covered.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowRef {
    /// Interned key.
    pub key: u32,
    /// Window start, Unix ms.
    pub start_ms: i64,
    /// Window end, Unix ms.
    pub end_ms: i64,
    /// Messages in the window.
    pub messages: u32,
    /// First stream sequence in the window.
    pub first_seq: u64,
    /// Last stream sequence in the window.
    pub seq: u64,
    /// Identity: the `Nats-Msg-Id` the same output is published with.
    pub id: String,
}

/// The features of one closed window.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureRow {
    /// Window.
    pub at: WindowRef,
    /// Window name.
    pub window: String,
    /// What it computed.
    pub features: Features,
}

/// One alert transition.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRow {
    /// Window.
    pub at: WindowRef,
    /// Rule name.
    pub rule: String,
    /// `warning`, `critical`, `cleared`.
    pub state: &'static str,
    /// Level before.
    pub previous: &'static str,
    /// Level after.
    pub severity: &'static str,
    /// Feature compared (the rule's `metric`).
    pub feature: &'static str,
    /// The window's value of it.
    pub value: f64,
    /// The threshold crossed.
    pub threshold: f64,
}

/// The rows of one buffer.
#[derive(Debug, Clone, PartialEq)]
pub enum Rows {
    /// `readings`.
    Readings(Vec<Reading>),
    /// `waveforms`.
    Waveforms(Vec<WaveRow>),
    /// `features`.
    Features(Vec<FeatureRow>),
    /// `alerts`.
    Alerts(Vec<AlertRow>),
}

impl Rows {
    /// No rows of `table`.
    pub fn empty(table: super::Table) -> Self {
        match table {
            super::Table::Readings => Rows::Readings(Vec::new()),
            super::Table::Waveforms => Rows::Waveforms(Vec::new()),
            super::Table::Features => Rows::Features(Vec::new()),
            super::Table::Alerts => Rows::Alerts(Vec::new()),
        }
    }

    /// Rows buffered.
    pub fn len(&self) -> usize {
        match self {
            Rows::Readings(r) => r.len(),
            Rows::Waveforms(r) => r.len(),
            Rows::Features(r) => r.len(),
            Rows::Alerts(r) => r.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `_seq` of every row.
    pub fn seqs(&self) -> Vec<u64> {
        match self {
            Rows::Readings(r) => r.iter().map(|r| r.seq).collect(),
            Rows::Waveforms(r) => r.iter().map(|r| r.seq).collect(),
            Rows::Features(r) => r.iter().map(|r| r.at.seq).collect(),
            Rows::Alerts(r) => r.iter().map(|r| r.at.seq).collect(),
        }
    }

    /// The `_id` of every row (window rows only).
    pub fn ids(&self) -> Vec<&str> {
        match self {
            Rows::Readings(_) | Rows::Waveforms(_) => Vec::new(),
            Rows::Features(r) => r.iter().map(|r| r.at.id.as_str()).collect(),
            Rows::Alerts(r) => r.iter().map(|r| r.at.id.as_str()).collect(),
        }
    }

    /// Keeps the rows whose identity (`_seq` of a message row, `_id` of a window row) `keep`
    /// accepts.
    pub fn retain(&mut self, keep: impl Fn(u64, &str) -> bool) {
        match self {
            Rows::Readings(r) => r.retain(|r| keep(r.seq, "")),
            Rows::Waveforms(r) => r.retain(|r| keep(r.seq, "")),
            Rows::Features(r) => r.retain(|r| keep(r.at.seq, &r.at.id)),
            Rows::Alerts(r) => r.retain(|r| keep(r.at.seq, &r.at.id)),
        }
    }
}
