//! SQL over the archive with DataFusion: every table is a Hive-partitioned listing table
//! (`site`, `date`, `hour`), so predicates on them prune files before any is opened.
//!
//! The interface only reads: DDL, DML and statements (`COPY`, `CREATE EXTERNAL TABLE`,
//! `SET`...) are refused, so a query cannot write or read outside the archive.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::execution::context::{SQLOptions, SessionContext};
use datafusion::execution::session_state::SessionStateBuilder;
use futures::StreamExt;

use crate::archive::ArchiveLocation;

mod counts;

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// DataFusion refused or failed the query (the user's SQL, most often).
    #[error("{0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    /// The archive could not be listed.
    #[error("archive: {0}")]
    Store(#[from] object_store::Error),
}

/// A session with every table of the archive that has files registered.
///
/// # Errors
/// [`QueryError`] when the archive cannot be listed or a table's schema read.
pub async fn session(location: &ArchiveLocation) -> Result<SessionContext, QueryError> {
    let config = datafusion::prelude::SessionConfig::new().with_information_schema(true);
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .with_physical_optimizer_rule(Arc::new(counts::PartitionCounts))
        .build();
    let ctx = SessionContext::new_with_state(state);
    // Local archives are read through DataFusion's own file system store at their absolute
    // path; cloud stores are registered under their bucket URL.
    if !location.store_url.starts_with("file://") {
        let store_url = url::Url::parse(&location.store_url)
            .map_err(|e| datafusion::error::DataFusionError::Plan(format!("archive URL: {e}")))?;
        ctx.register_object_store(&store_url, location.store.clone());
    }
    for table in crate::archive::Table::ALL.map(crate::archive::Table::name) {
        let prefix = location.path(table);
        let mut listing = location.store.list(Some(&prefix));
        if listing.next().await.transpose()?.is_none() {
            continue;
        }
        let table_url = ListingTableUrl::parse(format!(
            "{}/{}/",
            location.store_url.trim_end_matches('/'),
            table_prefix(location, table)
        ))?;
        let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
            .with_file_extension(".parquet")
            .with_table_partition_cols(vec![
                ("site".into(), DataType::Utf8),
                ("date".into(), DataType::Utf8),
                ("hour".into(), DataType::Utf8),
            ]);
        let config =
            ListingTableConfig::new(table_url).with_listing_options(options).infer_schema(&ctx.state()).await?;
        ctx.register_table(table, Arc::new(ListingTable::try_new(config)?))?;
    }
    Ok(ctx)
}

/// The table's path as DataFusion sees it: below the bucket for cloud stores, below the
/// archive directory for local ones.
fn table_prefix(location: &ArchiveLocation, table: &str) -> String {
    location.path(table).to_string()
}

/// Plans one read-only SQL query.
///
/// # Errors
/// [`QueryError::DataFusion`] for bad SQL or refused statements.
pub async fn plan(ctx: &SessionContext, sql: &str) -> Result<datafusion::dataframe::DataFrame, QueryError> {
    let options = SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false);
    Ok(ctx.sql_with_options(sql, options).await?)
}

/// Runs one read-only SQL query.
///
/// # Errors
/// [`QueryError::DataFusion`] for bad SQL or refused statements.
pub async fn run(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>, QueryError> {
    Ok(plan(ctx, sql).await?.collect().await?)
}

/// Every value of `batches` as text, row by row (as `stator query` prints them).
///
/// # Errors
/// [`QueryError::DataFusion`] when a value cannot be displayed.
pub fn text_rows(batches: &[RecordBatch]) -> Result<Vec<Vec<String>>, QueryError> {
    let mut rows = Vec::new();
    for b in batches {
        for r in 0..b.num_rows() {
            let row = b.columns().iter().map(|c| datafusion::arrow::util::display::array_value_to_string(c, r));
            rows.push(
                row.collect::<Result<_, _>>()
                    .map_err(|e| datafusion::error::DataFusionError::ArrowError(Box::new(e), None))?,
            );
        }
    }
    Ok(rows)
}

/// Runs `sql` and returns its physical plan with the metrics of the run: files and row
/// groups scanned and pruned (`files_ranges_pruned_statistics`,
/// `row_groups_pruned_statistics`, `page_index_rows_pruned`...), rows and time per operator.
///
/// # Errors
/// [`QueryError::DataFusion`] for bad SQL or refused statements.
pub async fn explain(ctx: &SessionContext, sql: &str) -> Result<String, QueryError> {
    let batches = run(ctx, &format!("EXPLAIN ANALYZE {sql}")).await?;
    let mut out = String::new();
    for b in &batches {
        let Some(plans) = b.column_by_name("plan") else { continue };
        for i in 0..b.num_rows() {
            let line = datafusion::arrow::util::display::array_value_to_string(plans, i)
                .map_err(|e| datafusion::error::DataFusionError::ArrowError(Box::new(e), None))?;
            out.push_str(&line);
            out.push('\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::{FileContext, Keys, Layout, Partition, Reading, Rows, Table, encode, object_path};
    use crate::subject::SubjectTemplate;
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use object_store::ObjectStoreExt;

    async fn archive_with_two_partitions() -> (tempfile::TempDir, ArchiveLocation) {
        let dir = tempfile::tempdir().unwrap();
        let loc = ArchiveLocation::open(dir.path().to_str().unwrap(), &[]).unwrap();
        let layout = Layout::of(&SubjectTemplate::parse(crate::subject::DEFAULT_SUBJECT_TEMPLATE).unwrap());
        let cx = FileContext { pipeline: "p", stream: "TELEMETRY", layout: &layout };
        let t0 = 1_795_334_400_000; // 2026-11-22T08:00Z
        for (site, hour, base) in [("munich", 0, 1.0), ("berlin", 1, 10.0)] {
            let mut keys = Keys::default();
            let rows: Vec<Reading> = (0..6)
                .map(|i| {
                    let machine = format!("cnc-00{}", i % 2 + 1);
                    let key = keys.intern(&machine, || {
                        ["acme", "hall-a", "line-1", &machine, "spindle", "vibration.rms"]
                            .map(|v| Some(v.to_owned()))
                            .to_vec()
                    });
                    Reading {
                        key,
                        time_ms: t0 + hour * 3_600_000 + i * 1000,
                        value: base + i as f64,
                        seq: (hour * 100 + i) as u64 + 1,
                    }
                })
                .collect();
            let (t, first) = (rows[0].time_ms, rows[0].seq);
            let file = encode(&cx, Table::Readings, &keys, &mut Rows::Readings(rows)).unwrap();
            let path = object_path("readings", &Partition::of(site, t), "p", first, 99);
            loc.store.put(&loc.path(&path), file.bytes.into()).await.unwrap();
        }
        (dir, loc)
    }

    #[tokio::test]
    async fn sql_reads_the_partitioned_archive() {
        let (_dir, loc) = archive_with_two_partitions().await;
        let ctx = session(&loc).await.unwrap();
        let sql = "SELECT site, machine, max(value) AS peak, count(*) AS n FROM readings \
                   WHERE date = '2026-11-22' GROUP BY site, machine ORDER BY site, machine";
        let out = pretty_format_batches(&run(&ctx, sql).await.unwrap()).unwrap().to_string();
        let want = "\
+--------+---------+------+---+
| site   | machine | peak | n |
+--------+---------+------+---+
| berlin | cnc-001 | 14.0 | 3 |
| berlin | cnc-002 | 15.0 | 3 |
| munich | cnc-001 | 5.0  | 3 |
| munich | cnc-002 | 6.0  | 3 |
+--------+---------+------+---+";
        assert_eq!(out, want);
    }

    /// The numbers of metric `name=N` or `name=N total → M matched` in an explained plan.
    fn metric(plan: &str, name: &str) -> Vec<u64> {
        let at = plan.find(&format!("{name}=")).unwrap_or_else(|| panic!("no {name} in\n{plan}"));
        let text = &plan[at + name.len() + 1..];
        let text = &text[..text.find([',', ']']).unwrap_or(text.len())];
        text.split(' ').filter_map(|t| t.parse::<u64>().ok()).collect()
    }

    #[tokio::test]
    async fn partition_and_page_pruning_skip_what_a_query_cannot_match() {
        let dir = tempfile::tempdir().unwrap();
        let loc = ArchiveLocation::open(dir.path().to_str().unwrap(), &[]).unwrap();
        let layout = Layout::of(&SubjectTemplate::parse(crate::subject::DEFAULT_SUBJECT_TEMPLATE).unwrap());
        let cx = FileContext { pipeline: "p", stream: "TELEMETRY", layout: &layout };
        let t0 = 1_795_334_400_000;
        let mut seq = 0;
        for site in ["munich", "berlin"] {
            for hour in 0..2 {
                let mut keys = Keys::default();
                let mut rows = Vec::new();
                for m in 0..40 {
                    let machine = format!("m-{m:02}");
                    let key = keys.intern(&machine, || {
                        ["acme", "a", "l", &machine, "s", "vibration.rms"].map(|v| Some(v.to_owned())).to_vec()
                    });
                    for i in 0..1000 {
                        seq += 1;
                        let value = f64::from(m) + f64::from(i) / 1000.0;
                        rows.push(Reading { key, time_ms: t0 + hour * 3_600_000 + i64::from(i) * 1000, value, seq });
                    }
                }
                let t = rows[0].time_ms;
                let file = encode(&cx, Table::Readings, &keys, &mut Rows::Readings(rows)).unwrap();
                let path = object_path("readings", &Partition::of(site, t), "p", seq - 39_999, seq);
                loc.store.put(&loc.path(&path), file.bytes.into()).await.unwrap();
            }
        }
        let ctx = session(&loc).await.unwrap();
        let sql = "SELECT max(value) AS v FROM readings WHERE site = 'munich' AND hour = '09' AND machine = 'm-07'";
        let out = pretty_format_batches(&run(&ctx, sql).await.unwrap()).unwrap().to_string();
        assert!(out.contains("| 7.999 |"), "{out}");
        let plan = explain(&ctx, sql).await.unwrap();
        assert_eq!(metric(&plan, "files_processed"), [1], "3 of 4 partitions pruned by site and hour:\n{plan}");
        let pages = metric(&plan, "page_index_pages_pruned");
        assert!(pages[0] >= 5 && pages[1] <= 2, "pages of other machines skipped: {pages:?}\n{plan}");
    }

    /// Rows of a query's answer, sorted, each as its values joined by spaces.
    async fn answer(ctx: &SessionContext, sql: &str) -> Vec<String> {
        let mut out: Vec<String> =
            text_rows(&run(ctx, sql).await.unwrap()).unwrap().iter().map(|r| r.join(" ")).collect();
        out.sort();
        out
    }

    #[tokio::test]
    async fn counts_per_partition_come_from_the_file_footers_and_equal_a_scan() {
        let (_dir, loc) = archive_with_two_partitions().await;
        // A second file in munich's partition: its count adds to the first's.
        let layout = Layout::of(&SubjectTemplate::parse(crate::subject::DEFAULT_SUBJECT_TEMPLATE).unwrap());
        let cx = FileContext { pipeline: "p", stream: "TELEMETRY", layout: &layout };
        let mut keys = Keys::default();
        let key = keys.intern("cnc-009", || {
            ["acme", "hall-a", "line-1", "cnc-009", "spindle", "vibration.rms"].map(|v| Some(v.to_owned())).to_vec()
        });
        let rows: Vec<Reading> = (0..5)
            .map(|i| Reading { key, time_ms: 1_795_334_400_000 + i * 10, value: 0.5, seq: 500 + i as u64 })
            .collect();
        let file = encode(&cx, Table::Readings, &keys, &mut Rows::Readings(rows)).unwrap();
        let path = object_path("readings", &Partition::of("munich", 1_795_334_400_000), "p", 500, 504);
        loc.store.put(&loc.path(&path), file.bytes.into()).await.unwrap();
        let ctx = session(&loc).await.unwrap();

        for (counted, scanned) in [
            (
                "SELECT site, hour, count(*) FROM readings GROUP BY site, hour",
                "SELECT site, hour, count(_seq) FROM readings GROUP BY site, hour",
            ),
            (
                "SELECT hour, count(1) AS n FROM readings GROUP BY hour",
                "SELECT hour, count(value) AS n FROM readings GROUP BY hour",
            ),
            (
                "SELECT date, count(*) FROM readings WHERE site = 'munich' GROUP BY date",
                "SELECT date, count(_seq) FROM readings WHERE site = 'munich' GROUP BY date",
            ),
        ] {
            let plan = explain(&ctx, counted).await.unwrap();
            assert!(!plan.contains("file_type=parquet"), "{counted} reads no file:\n{plan}");
            let plan = explain(&ctx, scanned).await.unwrap();
            assert!(plan.contains("file_type=parquet"), "{scanned} scans:\n{plan}");
            assert_eq!(answer(&ctx, counted).await, answer(&ctx, scanned).await, "{counted}");
        }
        assert_eq!(answer(&ctx, "SELECT site, count(*) FROM readings GROUP BY site").await, ["berlin 6", "munich 11"]);
        // A filter on the rows, or a key that is a column of the files: the rows are read.
        for sql in [
            "SELECT site, count(*) FROM readings WHERE value > 3 GROUP BY site",
            "SELECT machine, count(*) FROM readings GROUP BY machine",
        ] {
            let plan = explain(&ctx, sql).await.unwrap();
            assert!(plan.contains("file_type=parquet"), "{sql} scans:\n{plan}");
        }
        assert_eq!(
            answer(&ctx, "SELECT site, count(*) FROM readings WHERE value > 3 GROUP BY site").await,
            ["berlin 6", "munich 3"]
        );
    }

    #[tokio::test]
    async fn the_sql_interface_cannot_write_or_reach_outside_the_archive() {
        let (_dir, loc) = archive_with_two_partitions().await;
        let ctx = session(&loc).await.unwrap();
        for sql in [
            "COPY (SELECT 1) TO '/tmp/stator-escape.csv'",
            "CREATE EXTERNAL TABLE etc STORED AS CSV LOCATION '/etc/passwd'",
            "INSERT INTO readings SELECT * FROM readings",
            "SET datafusion.execution.batch_size = 1",
        ] {
            assert!(run(&ctx, sql).await.is_err(), "{sql} must be refused");
        }
        assert!(!std::path::Path::new("/tmp/stator-escape.csv").exists());
    }
}
