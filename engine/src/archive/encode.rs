//! Rows to Parquet: one schema per table, rows in a fixed order, so the bytes of a file are a
//! function of the rows it holds.
//!
//! Files are zstd-compressed; string columns are dictionary-encoded; statistics are kept per
//! page (column and offset indexes), and row groups declare their sort order (key column,
//! then time), so DataFusion, DuckDB and Polars prune row groups and pages.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Float32Builder, Float64Array, ListBuilder, RecordBatch, StringArray, StringDictionaryBuilder,
    TimestampMicrosecondArray, TimestampMillisecondArray, UInt32Array, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef, TimeUnit};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::metadata::SortingColumn;
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};
use datafusion::parquet::schema::types::ColumnPath;

use super::rows::{AlertRow, FeatureRow, Keys, Rows, WindowRef};
use super::table::{Layout, Table};

/// Rows per row group.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

/// Rows per data page: small enough that a machine's rows span few pages, so a predicate on
/// `machine` or time skips most of a row group through the page index.
pub const PAGE_ROWS: usize = 8 * 1024;

fn dict() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

fn ts(unit: TimeUnit) -> DataType {
    DataType::Timestamp(unit, Some("UTC".into()))
}

fn list_f32() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Float32, true)))
}

/// Column names a subject field may not take: those of the tables and the partitions.
pub fn reserved_columns() -> Vec<String> {
    let none = Layout { columns: Vec::new(), column_of_field: Vec::new(), site_field: None, sort_column: 0 };
    let mut names: Vec<String> = Table::ALL
        .iter()
        .flat_map(|t| schema(*t, &none).fields().iter().map(|f| f.name().clone()).collect::<Vec<_>>())
        .chain(["date".to_owned(), "hour".to_owned()])
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The file schema of `table` (without the partition columns `site`, `date`, `hour`).
pub fn schema(table: Table, layout: &Layout) -> SchemaRef {
    let keys = |nullable: bool| layout.columns.iter().map(move |c| Field::new(c, dict(), nullable));
    let window = || {
        [
            Field::new("window_start", ts(TimeUnit::Millisecond), false),
            Field::new("window_end", ts(TimeUnit::Millisecond), false),
        ]
    };
    let lineage = || {
        [
            Field::new("_stream", dict(), false),
            Field::new("_first_seq", DataType::UInt64, false),
            Field::new("_seq", DataType::UInt64, false),
            Field::new("_id", DataType::Utf8, false),
        ]
    };
    let mut fields: Vec<Field> = Vec::new();
    match table {
        Table::Readings => {
            fields.extend(keys(false));
            fields.push(Field::new("time", ts(TimeUnit::Millisecond), false));
            fields.push(Field::new("value", DataType::Float64, false));
            fields.push(Field::new("_stream", dict(), false));
            fields.push(Field::new("_seq", DataType::UInt64, false));
        }
        Table::Waveforms => {
            fields.extend(keys(false));
            fields.push(Field::new("start", ts(TimeUnit::Microsecond), false));
            fields.push(Field::new("sample_rate", DataType::Float64, false));
            fields.push(Field::new("units", dict(), true));
            fields.push(Field::new("rpm", DataType::Float64, true));
            fields.push(Field::new("samples", list_f32(), false));
            fields.push(Field::new("_stream", dict(), false));
            fields.push(Field::new("_seq", DataType::UInt64, false));
        }
        Table::Features => {
            fields.push(Field::new("pipeline", dict(), false));
            fields.push(Field::new("window", dict(), false));
            fields.extend(keys(true));
            fields.extend(window());
            fields.push(Field::new("messages", DataType::UInt32, false));
            fields.push(Field::new("feature", dict(), false));
            fields.push(Field::new("value", DataType::Float64, true));
            fields.push(Field::new("text", dict(), true));
            fields.push(Field::new("step_hz", DataType::Float64, true));
            fields.push(Field::new("values", list_f32(), true));
            fields.extend(lineage());
        }
        Table::Alerts => {
            fields.push(Field::new("pipeline", dict(), false));
            fields.push(Field::new("rule", dict(), false));
            fields.push(Field::new("state", dict(), false));
            fields.push(Field::new("previous", dict(), false));
            fields.push(Field::new("severity", dict(), false));
            fields.push(Field::new("feature", dict(), false));
            fields.push(Field::new("value", DataType::Float64, false));
            fields.push(Field::new("threshold", DataType::Float64, false));
            fields.extend(keys(true));
            fields.extend(window());
            fields.push(Field::new("readings", DataType::UInt32, false));
            fields.extend(lineage());
        }
    }
    Arc::new(Schema::new(fields))
}

fn strings<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    let mut b = StringDictionaryBuilder::<Int32Type>::new();
    for v in values {
        b.append_option(v);
    }
    Arc::new(b.finish())
}

fn lists<'a>(values: impl Iterator<Item = Option<&'a [f32]>>) -> ArrayRef {
    let mut b = ListBuilder::new(Float32Builder::new());
    for v in values {
        match v {
            Some(v) => {
                b.values().append_slice(v);
                b.append(true);
            }
            None => b.append(false),
        }
    }
    Arc::new(b.finish())
}

fn millis(values: impl Iterator<Item = i64>) -> ArrayRef {
    Arc::new(TimestampMillisecondArray::from_iter_values(values).with_timezone("UTC"))
}

fn u64s(values: impl Iterator<Item = u64>) -> ArrayRef {
    Arc::new(UInt64Array::from_iter_values(values))
}

fn f64s(values: impl Iterator<Item = Option<f64>>) -> ArrayRef {
    Arc::new(values.collect::<Float64Array>())
}

fn key_columns(layout: &Layout, keys: &Keys, ids: &[u32], out: &mut Vec<ArrayRef>) {
    for c in 0..layout.columns.len() {
        out.push(strings(ids.iter().map(|id| keys.get(*id, c))));
    }
}

/// What the file is named by and what the archive writer needs to know of it.
pub struct Encoded {
    /// Parquet bytes.
    pub bytes: bytes::Bytes,
    /// Rows written.
    pub rows: usize,
}

/// Context every file of a pipeline shares.
pub struct FileContext<'a> {
    /// Pipeline name.
    pub pipeline: &'a str,
    /// Source stream name.
    pub stream: &'a str,
    /// Key columns.
    pub layout: &'a Layout,
}

/// Sorts `rows` into their canonical order and encodes them.
///
/// # Errors
/// The Arrow or Parquet error as text: a bug, since the schema is fixed.
pub fn encode(cx: &FileContext<'_>, table: Table, keys: &Keys, rows: &mut Rows) -> Result<Encoded, String> {
    let sort = cx.layout.sort_column;
    let key_of = |id: u32| keys.get(id, sort);
    let mut columns: Vec<ArrayRef> = Vec::new();
    let n = match rows {
        Rows::Readings(r) => {
            r.sort_by(|a, b| (key_of(a.key), a.time_ms, a.seq).cmp(&(key_of(b.key), b.time_ms, b.seq)));
            r.dedup_by_key(|r| r.seq);
            key_columns(cx.layout, keys, &r.iter().map(|r| r.key).collect::<Vec<_>>(), &mut columns);
            columns.push(millis(r.iter().map(|r| r.time_ms)));
            columns.push(f64s(r.iter().map(|r| Some(r.value))));
            columns.push(strings(r.iter().map(|_| Some(cx.stream))));
            columns.push(u64s(r.iter().map(|r| r.seq)));
            r.len()
        }
        Rows::Waveforms(r) => {
            r.sort_by(|a, b| (key_of(a.key), a.start_us, a.seq).cmp(&(key_of(b.key), b.start_us, b.seq)));
            r.dedup_by_key(|r| r.seq);
            key_columns(cx.layout, keys, &r.iter().map(|r| r.key).collect::<Vec<_>>(), &mut columns);
            columns.push(Arc::new(
                TimestampMicrosecondArray::from_iter_values(r.iter().map(|r| r.start_us)).with_timezone("UTC"),
            ));
            columns.push(f64s(r.iter().map(|r| Some(r.sample_rate))));
            columns.push(strings(r.iter().map(|r| r.units)));
            columns.push(f64s(r.iter().map(|r| r.rpm)));
            columns.push(lists(r.iter().map(|r| Some(r.samples.as_slice()))));
            columns.push(strings(r.iter().map(|_| Some(cx.stream))));
            columns.push(u64s(r.iter().map(|r| r.seq)));
            r.len()
        }
        Rows::Features(r) => {
            sort_windows(r, |f| &f.at, key_of);
            features(cx, keys, r, &mut columns)
        }
        Rows::Alerts(r) => {
            sort_windows(r, |a| &a.at, key_of);
            alerts(cx, keys, r, &mut columns)
        }
    };
    let schema = schema(table, cx.layout);
    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())?;
    let time_column = schema.fields().iter().position(|f| matches!(f.data_type(), DataType::Timestamp(..)));
    let sorting: Vec<SortingColumn> = [(!cx.layout.columns.is_empty()).then_some(sort), time_column]
        .into_iter()
        .flatten()
        .map(|i| SortingColumn { column_idx: i as i32, descending: false, nulls_first: false })
        .collect();
    let bloom = Bloom { columns: &cx.layout.columns, distinct: keys.values.len().max(1) as u64 };
    let bytes = write(schema, &batch, sorting, &bloom)?;
    Ok(Encoded { bytes, rows: n })
}

fn sort_windows<'k, T>(rows: &mut Vec<T>, at: impl Fn(&T) -> &WindowRef, key_of: impl Fn(u32) -> Option<&'k str>) {
    rows.sort_by(|a, b| {
        let (a, b) = (at(a), at(b));
        (key_of(a.key), a.start_ms, &a.id).cmp(&(key_of(b.key), b.start_ms, &b.id))
    });
    rows.dedup_by(|a, b| at(a).id == at(b).id);
}

fn window_columns(cx: &FileContext<'_>, keys: &Keys, at: &[&WindowRef], columns: &mut Vec<ArrayRef>) {
    key_columns(cx.layout, keys, &at.iter().map(|w| w.key).collect::<Vec<_>>(), columns);
    columns.push(millis(at.iter().map(|w| w.start_ms)));
    columns.push(millis(at.iter().map(|w| w.end_ms)));
}

fn lineage_columns(cx: &FileContext<'_>, at: &[&WindowRef], columns: &mut Vec<ArrayRef>) {
    columns.push(strings(at.iter().map(|_| Some(cx.stream))));
    columns.push(u64s(at.iter().map(|w| w.first_seq)));
    columns.push(u64s(at.iter().map(|w| w.seq)));
    columns.push(Arc::new(StringArray::from_iter_values(at.iter().map(|w| w.id.as_str()))));
}

/// One Parquet row per feature of each window: scalars in `value`, texts in `text`, vectors
/// (spectra) in `values` with their bin spacing in `step_hz`.
fn features(cx: &FileContext<'_>, keys: &Keys, rows: &[FeatureRow], columns: &mut Vec<ArrayRef>) -> usize {
    struct Flat<'a> {
        row: &'a FeatureRow,
        name: &'a str,
        value: Option<f64>,
        text: Option<&'a str>,
        vector: Option<&'a crate::features::Vector>,
    }
    let mut flat = Vec::new();
    for row in rows {
        let f = &row.features;
        let base = |name| Flat { row, name, value: None, text: None, vector: None };
        flat.extend(f.scalars.iter().map(|(n, v)| Flat { value: Some(*v), ..base(n) }));
        flat.extend(f.texts.iter().map(|(n, t)| Flat { text: Some(t.as_str()), ..base(n) }));
        flat.extend(f.vectors.iter().map(|(n, v)| Flat { vector: Some(v), ..base(n) }));
    }
    let at: Vec<&WindowRef> = flat.iter().map(|f| &f.row.at).collect();
    columns.push(strings(flat.iter().map(|_| Some(cx.pipeline))));
    columns.push(strings(flat.iter().map(|f| Some(f.row.window.as_str()))));
    window_columns(cx, keys, &at, columns);
    columns.push(Arc::new(UInt32Array::from_iter_values(at.iter().map(|w| w.messages))));
    columns.push(strings(flat.iter().map(|f| Some(f.name))));
    columns.push(f64s(flat.iter().map(|f| f.value)));
    columns.push(strings(flat.iter().map(|f| f.text)));
    columns.push(f64s(flat.iter().map(|f| f.vector.map(|v| v.step))));
    columns.push(lists(flat.iter().map(|f| f.vector.map(|v| v.values.as_slice()))));
    lineage_columns(cx, &at, columns);
    flat.len()
}

fn alerts(cx: &FileContext<'_>, keys: &Keys, rows: &[AlertRow], columns: &mut Vec<ArrayRef>) -> usize {
    let at: Vec<&WindowRef> = rows.iter().map(|a| &a.at).collect();
    columns.push(strings(rows.iter().map(|_| Some(cx.pipeline))));
    columns.push(strings(rows.iter().map(|a| Some(a.rule.as_str()))));
    columns.push(strings(rows.iter().map(|a| Some(a.state))));
    columns.push(strings(rows.iter().map(|a| Some(a.previous))));
    columns.push(strings(rows.iter().map(|a| Some(a.severity))));
    columns.push(strings(rows.iter().map(|a| Some(a.feature))));
    columns.push(f64s(rows.iter().map(|a| Some(a.value))));
    columns.push(f64s(rows.iter().map(|a| Some(a.threshold))));
    window_columns(cx, keys, &at, columns);
    columns.push(Arc::new(UInt32Array::from_iter_values(at.iter().map(|w| w.messages))));
    lineage_columns(cx, &at, columns);
    rows.len()
}

/// Bloom filters on the key columns, sized for the file's distinct keys: a row group's
/// min/max of `machine` spans most machines of the file, so without them `machine = 'x'`
/// still reads a page of every row group of a site where `x` never published.
struct Bloom<'a> {
    columns: &'a [String],
    distinct: u64,
}

fn write(
    schema: SchemaRef,
    batch: &RecordBatch,
    sorting: Vec<SortingColumn>,
    bloom: &Bloom<'_>,
) -> Result<bytes::Bytes, String> {
    let mut props = WriterProperties::builder();
    for column in bloom.columns {
        let path = ColumnPath::from(column.as_str());
        props = props
            .set_column_bloom_filter_enabled(path.clone(), true)
            .set_column_bloom_filter_max_ndv(path.clone(), bloom.distinct)
            .set_column_bloom_filter_fpp(path, 0.01);
    }
    let props = props
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).map_err(|e| e.to_string())?))
        .set_dictionary_enabled(true)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_data_page_row_count_limit(PAGE_ROWS)
        .set_created_by("stator".into())
        .set_sorting_columns(Some(sorting))
        .build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, schema, Some(props)).map_err(|e| e.to_string())?;
    writer.write(batch).map_err(|e| e.to_string())?;
    writer.close().map_err(|e| e.to_string())?;
    Ok(bytes::Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::rows::Reading;
    use crate::subject::SubjectTemplate;

    fn layout() -> Layout {
        Layout::of(&SubjectTemplate::parse(crate::subject::DEFAULT_SUBJECT_TEMPLATE).unwrap())
    }

    fn keyed(keys: &mut Keys, machine: &str) -> u32 {
        keys.intern(machine, || {
            ["acme", "hall-a", "line-1", machine, "spindle", "vibration.rms"].map(|v| Some(v.to_owned())).to_vec()
        })
    }

    #[test]
    fn the_same_rows_in_any_order_give_the_same_bytes() {
        let layout = layout();
        let cx = FileContext { pipeline: "p", stream: "TELEMETRY", layout: &layout };
        let encode_in = |order: &[(&str, i64, u64)]| {
            let mut keys = Keys::default();
            let rows = order
                .iter()
                .map(|(m, t, seq)| Reading {
                    key: keyed(&mut keys, m),
                    time_ms: *t,
                    value: *seq as f64 / 10.0,
                    seq: *seq,
                })
                .collect();
            encode(&cx, Table::Readings, &keys, &mut Rows::Readings(rows)).unwrap()
        };
        let a = encode_in(&[("m2", 5, 3), ("m1", 9, 2), ("m1", 1, 1)]);
        let b = encode_in(&[("m1", 1, 1), ("m2", 5, 3), ("m1", 9, 2), ("m1", 9, 2)]);
        assert_eq!(a.bytes, b.bytes);
        assert_eq!((a.rows, b.rows), (3, 3), "the duplicate sequence is dropped");
        assert_eq!(&a.bytes[..4], b"PAR1");
    }

    #[test]
    fn key_columns_carry_bloom_filters_that_rule_out_absent_machines() {
        use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
        use datafusion::parquet::file::serialized_reader::ReadOptionsBuilder;
        let layout = layout();
        let cx = FileContext { pipeline: "p", stream: "TELEMETRY", layout: &layout };
        let mut keys = Keys::default();
        let rows = (0..100u64)
            .map(|i| Reading {
                key: keyed(&mut keys, &format!("m{}", i % 10)),
                time_ms: i as i64,
                value: 1.0,
                seq: i + 1,
            })
            .collect();
        let file = encode(&cx, Table::Readings, &keys, &mut Rows::Readings(rows)).unwrap();
        let options = ReadOptionsBuilder::new().with_reader_properties(
            datafusion::parquet::file::properties::ReaderProperties::builder().set_read_bloom_filter(true).build(),
        );
        let reader = SerializedFileReader::new_with_options(file.bytes, options.build()).unwrap();
        let group = reader.get_row_group(0).unwrap();
        let machine =
            reader.metadata().file_metadata().schema_descr().columns().iter().position(|c| c.name() == "machine");
        let filter = group.get_column_bloom_filter(machine.unwrap()).expect("a bloom filter on machine");
        assert!((0..10).all(|m| filter.check(&format!("m{m}").as_str())));
        assert!(!filter.check(&"cnc-042"), "a machine that never published is ruled out");
        let value = reader.metadata().file_metadata().schema_descr().columns().iter().position(|c| c.name() == "value");
        assert!(group.get_column_bloom_filter(value.unwrap()).is_none(), "only key columns have one");
    }
}
