//! Archive benchmark: writing a day of a plant and querying it, against DuckDB.
//!
//! 200 machines on 2 sites at 1 Hz for 24 h (17,280,000 readings) are encoded into the
//! `readings` table exactly as the worker writes it (one file per site and hour), then the
//! same four questions are asked of `stator query`'s engine (DataFusion) and of DuckDB
//! (`benches/archive_duckdb.py`, in the readers' Python `make setup` installs), same archive,
//! same run, same thread count; both answers are checked equal. Reports rows/s encoded, bytes
//! per reading, both query times and their ratio. `cargo bench --bench archive`;
//! `STATOR_BENCH_HOURS=N` shortens the day, `STATOR_BENCH_ROUNDS=N` sets the rounds (best of),
//! `STATOR_BENCH_ARCHIVE=DIR` keeps the archive there. Under `cargo test` it runs a 10-minute
//! smoke size, the answer check included.

#[path = "report/mod.rs"]
mod report;

use std::time::Instant;

use object_store::ObjectStoreExt;
use stator_engine::archive::{
    ArchiveLocation, FileContext, Keys, Layout, Partition, Reading, Rows, Table, encode, object_path,
};
use stator_engine::query;
use stator_engine::subject::SubjectTemplate;

const T0: i64 = 1_795_305_600_000; // 2026-11-22T00:00Z
const MACHINES: usize = 200;

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let seconds: i64 = match std::env::var("STATOR_BENCH_HOURS").ok().and_then(|v| v.parse::<i64>().ok()) {
        Some(h) => h * 3600,
        None if bench => 24 * 3600,
        None => 600,
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(run(seconds));
}

async fn run(seconds: i64) {
    // STATOR_BENCH_ARCHIVE=DIR keeps the archive there (emptied first), to query or profile it later.
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = match std::env::var_os("STATOR_BENCH_ARCHIVE") {
        Some(d) => {
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).expect("STATOR_BENCH_ARCHIVE");
            std::fs::canonicalize(d).expect("STATOR_BENCH_ARCHIVE")
        }
        None => tmp.path().to_owned(),
    };
    let loc = ArchiveLocation::open(dir.to_str().expect("utf-8"), &[]).expect("archive");
    let layout =
        Layout::of(&SubjectTemplate::parse(stator_engine::config::DEFAULT_SUBJECT_TEMPLATE).expect("template"));
    let cx = FileContext { pipeline: "bench", stream: "TELEMETRY", layout: &layout };
    let (mut rows_written, mut bytes_written, mut encode_time) = (0usize, 0usize, 0f64);
    let mut seq = 0u64;
    let mut hour_start = 0;
    while hour_start < seconds {
        let hour_end = (hour_start + 3600).min(seconds);
        for site in 0..2 {
            let mut keys = Keys::default();
            let mut rows = Vec::with_capacity(MACHINES / 2 * 3600);
            for s in hour_start..hour_end {
                for m in (site..MACHINES).step_by(2) {
                    seq += 1;
                    let machine = format!("cnc-{m:03}");
                    let key = keys.intern(&machine, || {
                        ["acme", "hall-a", &format!("line-{}", m % 10), &machine, "spindle", "vibration.rms"]
                            .map(|v| Some(v.to_owned()))
                            .to_vec()
                    });
                    let value = 1.5 + (m % 7) as f64 * 0.1 + ((s * 31 + m as i64) % 97) as f64 * 0.001;
                    rows.push(Reading { key, time_ms: T0 + s * 1000, value, seq });
                }
            }
            let (first, last, t) = (rows[0].seq, seq, rows[0].time_ms);
            let start = Instant::now();
            let file = encode(&cx, Table::Readings, &keys, &mut Rows::Readings(rows)).expect("encode");
            encode_time += start.elapsed().as_secs_f64();
            rows_written += file.rows;
            bytes_written += file.bytes.len();
            let site = if site == 0 { "munich" } else { "berlin" };
            let path = object_path("readings", &Partition::of(site, t), "bench", first, last);
            loc.store.put(&loc.path(&path), file.bytes.into()).await.expect("put");
        }
        hour_start = hour_end;
    }
    let mut table = format!(
        "| readings | encode (rows/s, one core) | bytes per reading on disk |\n|---:|---:|---:|\n| {rows_written} | {:.0} | {:.2} |\n\n",
        rows_written as f64 / encode_time,
        bytes_written as f64 / rows_written as f64
    );

    let ctx = query::session(&loc).await.expect("session");
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let mut datafusion = Vec::new();
    for (name, sql) in QUERIES {
        let mut best = f64::MAX;
        let mut rows = Vec::new();
        for _ in 0..rounds() {
            let start = Instant::now();
            let batches = query::run(&ctx, sql).await.expect("query");
            best = best.min(start.elapsed().as_secs_f64());
            rows = answer(&batches);
        }
        assert!(!rows.is_empty(), "{name}: no rows");
        datafusion.push((best, rows));
    }
    let duckdb = duckdb(&dir, threads);
    table += "| query | `stator query` (DataFusion) | DuckDB | stator / DuckDB |\n|---|---:|---:|---:|\n";
    for (((name, _), (ours, rows)), (theirs, their_rows)) in QUERIES.iter().zip(&datafusion).zip(&duckdb) {
        assert_eq!(rows, their_rows, "{name}: DataFusion and DuckDB disagree");
        table += &format!("| {name} | {:.1} ms | {:.1} ms | **{:.2}** |\n", ours * 1e3, theirs * 1e3, ours / theirs);
    }
    table += &format!(
        "\nBest of {}, {threads} threads each, answers checked equal. One machine over the whole day / \
         the same machine pruned to one hour: **{:.1}x**.\n",
        rounds(),
        datafusion[2].0 / datafusion[3].0
    );
    report::publish("archive", &table);
}

const ROUNDS: usize = 5;

fn rounds() -> usize {
    std::env::var("STATOR_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(ROUNDS)
}

/// The four questions, as a user would ask them of `stator query` and of DuckDB.
const QUERIES: [(&str, &str); 4] = [
    ("count per site and hour", "SELECT site, hour, count(*) FROM readings GROUP BY site, hour"),
    ("max per machine per hour (whole day)", "SELECT machine, hour, max(value) FROM readings GROUP BY machine, hour"),
    ("one machine, whole day", "SELECT max(value) FROM readings WHERE machine = 'cnc-042'"),
    (
        "one machine, one hour (pruned)",
        "SELECT max(value) FROM readings WHERE site = 'munich' AND hour = '00' AND machine = 'cnc-042'",
    ),
];

/// A query's answer as sorted rows of text and numbers, comparable across engines.
type Answer = Vec<Vec<serde_json::Value>>;

fn answer(batches: &[datafusion::arrow::record_batch::RecordBatch]) -> Answer {
    let rows = query::text_rows(batches).expect("values as text");
    sorted(rows.iter().map(|r| r.iter().map(|v| value(v)).collect()).collect())
}

/// Numbers compared to 12 significant digits (the engines sum in different orders).
fn value(text: &str) -> serde_json::Value {
    match text.parse::<f64>() {
        Ok(x) => serde_json::Value::from(format!("{x:.12e}")),
        Err(_) => serde_json::Value::from(text),
    }
}

fn sorted(mut rows: Answer) -> Answer {
    rows.sort_by_key(|r| format!("{r:?}"));
    rows
}

/// Runs the same queries through DuckDB (`benches/archive_duckdb.py` in the readers' Python
/// that `make setup` installs): best time and answer of each.
fn duckdb(root: &std::path::Path, threads: usize) -> Vec<(f64, Answer)> {
    use std::io::Write;
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let python =
        std::env::var_os("STATOR_READERS_PYTHON").unwrap_or_else(|| here.join(".tools/readers/bin/python3").into());
    let mut child = std::process::Command::new(python)
        .arg(here.join("benches/archive_duckdb.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the readers' python (run `make setup`)");
    let job = serde_json::json!({
        "root": root, "threads": threads, "rounds": rounds(),
        "queries": QUERIES.map(|(_, sql)| sql),
    });
    child.stdin.take().expect("stdin").write_all(job.to_string().as_bytes()).expect("write the job");
    let out = child.wait_with_output().expect("DuckDB");
    assert!(out.status.success(), "DuckDB failed (run `make setup`)");
    let got: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("DuckDB's JSON");
    got.iter()
        .map(|q| {
            let rows = q["rows"].as_array().expect("rows").iter().map(|r| {
                r.as_array()
                    .expect("row")
                    .iter()
                    .map(|v| match v {
                        serde_json::Value::String(s) => value(s),
                        n => value(&n.to_string()),
                    })
                    .collect()
            });
            (q["seconds"].as_f64().expect("seconds"), sorted(rows.collect()))
        })
        .collect()
}
