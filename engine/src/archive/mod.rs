//! The Parquet archive on object storage.
//!
//! Layout: `{prefix}/{table}/site={site}/date={YYYY-MM-DD}/hour={HH}/{pipeline}-{first seq}-{last
//! seq}.parquet`, Hive-style, so DataFusion, DuckDB, Polars and pandas prune by site and time.
//! An object's name is a function of its pipeline, table, partition and the stream sequences it
//! holds, and its bytes are a function of those rows: writing the same messages again rewrites
//! the same object, byte for byte, instead of adding a duplicate. Object stores publish an
//! object only when it is complete (the local store writes a temporary file and renames it).

mod buffer;
mod encode;
mod location;
mod partition;
mod rows;
mod spec;
mod table;
mod writer;

pub use buffer::{Arrival, Roll, Rolled, Sink, WindowKey};
pub use encode::{Encoded, FileContext, PAGE_ROWS, ROW_GROUP_ROWS, encode, reserved_columns, schema};
pub use location::{ArchiveLocation, LocationError};
pub use partition::{Partition, sanitize};
pub use rows::{AlertRow, FeatureRow, Keys, Reading, Rows, WaveRow, WindowRef};
pub use spec::{ArchiveSpec, DEFAULT_ARCHIVE_URL};
pub use table::{Layout, NO_SITE, Table};
pub use writer::{ArchiveError, Committed, Writer, list_files};

/// The object path of a file: `{table}/{partition}/{pipeline}-{first:020}-{last:020}.parquet`.
pub fn object_path(table: &str, partition: &Partition, pipeline: &str, first_seq: u64, last_seq: u64) -> String {
    format!("{table}/{}/{}-{first_seq:020}-{last_seq:020}.parquet", partition.path(), sanitize(pipeline))
}
