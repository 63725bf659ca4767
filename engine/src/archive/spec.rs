//! The archive's runtime settings, built from a pipeline's `[archive]` by the config loader.

use std::time::Duration;

use super::{ArchiveLocation, LocationError, Table};

/// The validated `[archive]`.
#[derive(Debug, Clone)]
pub struct ArchiveSpec {
    /// The location URL as written (after `${VAR}` expansion).
    pub url: String,
    /// Options passed to the object store.
    pub options: Vec<(String, String)>,
    /// Tables written.
    pub tables: Vec<Table>,
    /// Roll a partition's file at this many rows.
    pub roll_rows: usize,
    /// ... or at this many buffered bytes.
    pub roll_bytes: usize,
    /// ... or when its oldest row is this old.
    pub roll_age: Duration,
}

impl ArchiveSpec {
    /// Whether `table` is written.
    pub fn writes(&self, table: Table) -> bool {
        self.tables.contains(&table)
    }

    /// Opens the location.
    ///
    /// # Errors
    /// [`LocationError`].
    pub fn open(&self) -> Result<ArchiveLocation, LocationError> {
        ArchiveLocation::open(&self.url, &self.options)
    }
}

/// Default location.
pub const DEFAULT_ARCHIVE_URL: &str = "file://./archive";
