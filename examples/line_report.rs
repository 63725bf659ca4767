//! A per-line daily health report from the archive, with Polars' lazy API.
//!
//! ```text
//! cargo run --example line_report --features polars -- ./archive
//! ```
//!
//! For every site, line and day: how many machines reported, their mean and worst 10 s RMS,
//! how many windows were over the warning level (2.8 mm/s, ISO 20816-3 zone B/C), and the
//! alert transitions raised. Reads the Hive-partitioned `features` and `alerts` tables
//! directly; Polars prunes by the partition columns and reads only the columns used.

use polars::prelude::*;

fn scan(archive: &str, table: &str) -> PolarsResult<LazyFrame> {
    let args = ScanArgsParquet {
        hive_options: HiveOptions { enabled: Some(true), ..HiveOptions::default() },
        ..ScanArgsParquet::default()
    };
    LazyFrame::scan_parquet(PlRefPath::new(format!("{archive}/{table}/**/*.parquet")), args)
}

fn main() -> PolarsResult<()> {
    let archive = std::env::args().nth(1).unwrap_or_else(|| "./archive".into());
    // Window keys need not carry the line: take each machine's line from its readings.
    let lines = scan(&archive, "readings")?
        .select([col("machine").cast(DataType::String), col("line").cast(DataType::String)])
        .unique(None, UniqueKeepStrategy::First);
    let by_machine = |lf: LazyFrame| {
        lf.drop(cols(["line"])).with_column(col("machine").cast(DataType::String)).join(
            lines.clone(),
            [col("machine")],
            [col("machine")],
            JoinArgs::new(JoinType::Inner),
        )
    };
    let windows = by_machine(scan(&archive, "features")?)
        .filter(col("feature").cast(DataType::String).eq(lit("rms")))
        .group_by([col("site"), col("line"), col("date")])
        .agg([
            col("machine").n_unique().alias("machines"),
            col("value").mean().alias("mean_rms"),
            col("value").max().alias("worst_rms"),
            col("value").gt_eq(lit(2.8)).sum().alias("windows_over_warning"),
        ]);
    let alerts = by_machine(scan(&archive, "alerts")?)
        .filter(col("state").cast(DataType::String).neq(lit("cleared")))
        .group_by([col("site"), col("line"), col("date")])
        .agg([len().alias("alerts")]);
    let report = windows
        .join(
            alerts,
            [col("site"), col("line"), col("date")],
            [col("site"), col("line"), col("date")],
            JoinArgs::new(JoinType::Left),
        )
        .with_column(col("alerts").fill_null(lit(0)))
        .sort(["site", "line", "date"], SortMultipleOptions::default())
        .collect()?;
    println!("{report}");
    Ok(())
}
