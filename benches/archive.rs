//! Archive benchmark: writing a day of a plant and querying it.
//!
//! 200 machines on 2 sites at 1 Hz for 24 h (17,280,000 readings) are encoded into the
//! `readings` table exactly as the worker writes it (one file per site and hour), then
//! queried with DataFusion. Reports rows/s encoded, bytes per reading, and query times,
//! including a query that partition and page pruning narrow to one machine-hour against the
//! same query over the whole day (ratio in the same run). `cargo bench --bench archive`;
//! `STATOR_BENCH_HOURS=N` shortens the day. Under `cargo test` it runs a 10-minute smoke size.

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
    let dir = tempfile::tempdir().expect("tempdir");
    let loc = ArchiveLocation::open(dir.path().to_str().expect("utf-8"), &[]).expect("archive");
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
    let queries = [
        ("count per site and hour", "SELECT site, hour, count(*) FROM readings GROUP BY site, hour"),
        (
            "max per machine per hour (whole day)",
            "SELECT machine, hour, max(value) FROM readings GROUP BY machine, hour",
        ),
        ("one machine, whole day", "SELECT max(value) FROM readings WHERE machine = 'cnc-042'"),
        (
            "one machine, one hour (pruned)",
            "SELECT max(value) FROM readings WHERE site = 'munich' AND hour = '00' AND machine = 'cnc-042'",
        ),
    ];
    table += "| query | time (best of 3) |\n|---|---:|\n";
    let mut times = Vec::new();
    for (name, sql) in queries {
        let mut best = f64::MAX;
        for _ in 0..3 {
            let start = Instant::now();
            let batches = query::run(&ctx, sql).await.expect("query");
            assert!(batches.iter().map(|b| b.num_rows()).sum::<usize>() > 0, "{name}");
            best = best.min(start.elapsed().as_secs_f64());
        }
        times.push(best);
        table += &format!("| {name} | {:.1} ms |\n", best * 1e3);
    }
    table += &format!(
        "\nOne machine over the whole day / the same machine pruned to one hour: **{:.1}x**.\n",
        times[2] / times[3]
    );
    report::publish("archive", &table);
}
