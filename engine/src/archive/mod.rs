//! The Parquet archive on object storage.
//!
//! Layout: `{prefix}/{table}/site={site}/date={YYYY-MM-DD}/hour={HH}/{pipeline}-{first seq}-{last
//! seq}.parquet`, Hive-style, so DataFusion, DuckDB, Polars and pandas prune by site and time.
//! An object's name is a function of its pipeline, table, partition and the stream sequences it
//! holds, and its bytes are a function of those rows: writing the same messages again rewrites
//! the same object, byte for byte, instead of adding a duplicate. Object stores publish an
//! object only when it is complete (the local store writes a temporary file and renames it).

mod location;
mod partition;
mod readings;

pub use location::{ArchiveLocation, LocationError};
pub use partition::{Partition, sanitize};
pub use readings::{ReadingRow, readings_schema, write_readings};

/// A file ready to be committed to the archive.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchiveFile {
    /// Object path below the archive prefix.
    pub path: String,
    /// Parquet bytes.
    pub bytes: bytes::Bytes,
    /// Rows in the file.
    pub rows: usize,
}

/// The object path of a file: `{table}/{partition}/{pipeline}-{first:020}-{last:020}.parquet`.
pub fn object_path(table: &str, partition: &Partition, pipeline: &str, first_seq: u64, last_seq: u64) -> String {
    format!("{table}/{}/{}-{first_seq:020}-{last_seq:020}.parquet", partition.path(), sanitize(pipeline))
}
