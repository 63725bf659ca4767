//! The `readings` table: one row per scalar reading.
//!
//! Columns (the partition columns `site`, `date`, `hour` come from the path): `area`, `line`,
//! `machine`, `sensor`, `metric` (dictionary-encoded strings), `time` (UTC timestamp, ms),
//! `value` (f64), `_stream` (dictionary string) and `_seq` (u64): the JetStream stream and
//! sequence the reading came from, so a duplicate can always be recognised. Rows are sorted by
//! machine, time and sequence; row groups carry statistics and page indexes, so machine and
//! time predicates prune row groups and pages.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Float64Array, RecordBatch, StringDictionaryBuilder, TimestampMillisecondArray, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef, TimeUnit};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::metadata::SortingColumn;
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};

/// One reading for the archive.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadingRow {
    /// Area token.
    pub area: String,
    /// Line token.
    pub line: String,
    /// Machine token.
    pub machine: String,
    /// Sensor token.
    pub sensor: String,
    /// Metric (the rest of the subject).
    pub metric: String,
    /// Event time, Unix ms.
    pub time_ms: i64,
    /// Value.
    pub value: f64,
    /// Stream sequence.
    pub seq: u64,
}

fn dict() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

/// The file schema of `readings`.
pub fn readings_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("area", dict(), false),
        Field::new("line", dict(), false),
        Field::new("machine", dict(), false),
        Field::new("sensor", dict(), false),
        Field::new("metric", dict(), false),
        Field::new("time", DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), false),
        Field::new("value", DataType::Float64, false),
        Field::new("_stream", dict(), false),
        Field::new("_seq", DataType::UInt64, false),
    ]))
}

fn strings<'a>(values: impl Iterator<Item = &'a str>) -> ArrayRef {
    let mut b = StringDictionaryBuilder::<Int32Type>::new();
    for v in values {
        b.append_value(v);
    }
    Arc::new(b.finish())
}

/// Writes rows (in any order; duplicates by sequence are dropped) as one zstd Parquet file.
/// The bytes depend only on the set of rows.
///
/// # Errors
/// The Arrow or Parquet error, as text (a bug: the schema is fixed).
pub fn write_readings(stream: &str, rows: &mut Vec<ReadingRow>) -> Result<bytes::Bytes, String> {
    rows.sort_by(|a, b| (&a.machine, a.time_ms, a.seq).cmp(&(&b.machine, b.time_ms, b.seq)));
    rows.dedup_by_key(|r| r.seq);
    let columns: Vec<ArrayRef> = vec![
        strings(rows.iter().map(|r| r.area.as_str())),
        strings(rows.iter().map(|r| r.line.as_str())),
        strings(rows.iter().map(|r| r.machine.as_str())),
        strings(rows.iter().map(|r| r.sensor.as_str())),
        strings(rows.iter().map(|r| r.metric.as_str())),
        Arc::new(TimestampMillisecondArray::from_iter_values(rows.iter().map(|r| r.time_ms)).with_timezone("UTC")),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.value))),
        strings(rows.iter().map(|_| stream)),
        Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.seq))),
    ];
    let schema = readings_schema();
    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).map_err(|e| e.to_string())?))
        .set_dictionary_enabled(true)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(128 * 1024))
        .set_created_by("stator".into())
        .set_sorting_columns(Some(vec![
            SortingColumn { column_idx: 2, descending: false, nulls_first: false },
            SortingColumn { column_idx: 5, descending: false, nulls_first: false },
        ]))
        .build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, schema, Some(props)).map_err(|e| e.to_string())?;
    writer.write(&batch).map_err(|e| e.to_string())?;
    writer.close().map_err(|e| e.to_string())?;
    Ok(bytes::Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(machine: &str, t: i64, seq: u64) -> ReadingRow {
        ReadingRow {
            area: "hall-a".into(),
            line: "line-1".into(),
            machine: machine.into(),
            sensor: "spindle".into(),
            metric: "vibration.rms".into(),
            time_ms: t,
            value: seq as f64 / 10.0,
            seq,
        }
    }

    #[test]
    fn the_same_rows_in_any_order_give_the_same_bytes() {
        let mut a = vec![row("m2", 5, 3), row("m1", 9, 2), row("m1", 1, 1)];
        let mut b = vec![row("m1", 1, 1), row("m2", 5, 3), row("m1", 9, 2), row("m1", 9, 2)];
        let x = write_readings("TELEMETRY", &mut a).unwrap();
        let y = write_readings("TELEMETRY", &mut b).unwrap();
        assert_eq!(x, y);
        assert_eq!(b.len(), 3, "duplicate sequence dropped");
        assert_eq!(&x[..4], b"PAR1");
    }
}
