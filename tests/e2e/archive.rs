//! The Parquet archive: every message exactly once, window outputs and alerts beside them,
//! replays that add nothing, deterministic bytes, hostile tokens kept inside their partition,
//! a real S3 server, and acks held until files are committed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use stator::s3_server::S3Server;
use stator_engine::archive::ArchiveLocation;
use stator_engine::worker::{RunMode, Stats};

use crate::harness::*;

/// Two sites, three machines each, 1 Hz from 07:59:00 to 08:00:59, across an hour boundary.
/// cnc-002 in munich ramps over the limits.
fn plant() -> Vec<Reading> {
    let mut out = Vec::new();
    for s in 0..120 {
        for site in ["munich", "berlin"] {
            for m in 1..=3 {
                let ramp = if site == "munich" && m == 2 { 5.0 * s as f64 / 120.0 } else { 0.0 };
                let value = 1.0 + m as f64 * 0.1 + ramp + ((s * 7 + m) % 5) as f64 * 0.01;
                out.push(Reading::rms(site, &format!("cnc-00{m}"), T0 - 60_000 + s * 1000, value));
            }
        }
    }
    out
}

fn archived_pipeline(durable: &str, url: &str, extra: &str) -> String {
    rms_pipeline("2s", 1, "1h").replace("durable = \"test-rms\"", &format!("durable = \"{durable}\""))
        + &format!("\n[archive]\nurl = \"{url}\"\nroll_rows = 100\nroll_age = \"1h\"\n{extra}\n")
}

fn local(dir: &Path) -> ArchiveLocation {
    ArchiveLocation::open(dir.to_str().expect("utf-8 path"), &[]).expect("archive")
}

/// Every file below `dir`, relative, with its bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).expect("below").to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).expect("read"));
            }
        }
    }
    out
}

/// Max 10 s window RMS per (site, machine, hour), computed here from the published values.
fn max_window_rms(readings: &[Reading]) -> BTreeMap<(String, String, i64), f64> {
    let mut windows: BTreeMap<(String, String, i64), Vec<f64>> = BTreeMap::new();
    for r in readings {
        let t: Vec<&str> = r.subject.split('.').collect();
        windows.entry((t[1].into(), t[4].into(), r.t_ms.div_euclid(10_000))).or_default().push(r.value);
    }
    let mut out: BTreeMap<(String, String, i64), f64> = BTreeMap::new();
    for ((site, machine, w), values) in windows {
        let hour = (w * 10_000).div_euclid(3_600_000);
        let e = out.entry((site, machine, hour)).or_insert(f64::MIN);
        *e = e.max(rms(&values));
    }
    out
}

#[tokio::test]
async fn every_reading_is_archived_once_and_sql_over_the_archive_matches_independent_values() {
    let server = TestServer::with_streams().await;
    let js = server.js().await;
    let readings = plant();
    let seqs = publish(&js, &readings).await;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(&archived_pipeline("a", dir.path().to_str().unwrap(), ""), &server.url());
    let worker = RunningWorker::start(&p, &server.url(), RunMode::Drain).await;
    let stats = worker.stats.clone();
    worker.finish().await;
    let counts = (Stats::get(&stats.acked), Stats::get(&stats.naked), Stats::get(&stats.fetched));
    assert_eq!(counts, (readings.len() as u64, 0, readings.len() as u64), "(acked, naked, fetched)");
    assert_eq!(consumer_backlog(&js, "a").await, (0, 0), "a drained run returns with everything acked");
    let loc = local(dir.path());

    // Every message exactly once, by (_stream, _seq).
    let got = sql(
        &loc,
        "SELECT count(*), count(DISTINCT _seq), min(_seq), max(_seq), min(_stream), max(_stream) FROM readings",
    )
    .await;
    let (lo, hi) = (seqs.iter().min().unwrap(), seqs.iter().max().unwrap());
    let n = readings.len().to_string();
    assert_eq!(got, [[n.clone(), n, lo.to_string(), hi.to_string(), "TELEMETRY".into(), "TELEMETRY".into()]]);
    assert_eq!(Stats::get(&stats.archive_skipped), 0);

    // Partitions by site and hour, files of at most 100 rows, named by their sequences.
    let per_partition = sql(
        &loc,
        "SELECT site, date, hour, count(*), count(DISTINCT machine) FROM readings GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
    )
    .await;
    let want: Vec<Vec<String>> = ["berlin", "munich"]
        .iter()
        .flat_map(|s| {
            [("07", "180"), ("08", "180")]
                .map(|(h, n)| vec![s.to_string(), "2026-11-22".into(), h.into(), n.into(), "3".into()])
        })
        .collect();
    assert_eq!(per_partition, want);
    let written = files(dir.path());
    for name in written.keys().filter(|n| n.starts_with("readings/")) {
        let parts: Vec<&str> = name.split('/').collect();
        assert!(
            parts[1].starts_with("site=") && parts[2] == "date=2026-11-22" && parts[3].starts_with("hour="),
            "{name}"
        );
        assert!(parts[4].starts_with("test-rms-") && parts[4].ends_with(".parquet"), "{name}");
    }
    let per_file =
        written.iter().filter(|(n, _)| n.starts_with("readings/")).map(|(_, b)| parquet_rows(b)).collect::<Vec<_>>();
    assert!(per_file.iter().all(|n| *n <= 100), "files roll at 100 rows: {per_file:?}");
    assert_eq!(per_file.iter().sum::<usize>(), readings.len());

    // Max RMS per machine per hour, from the features table, against values computed here.
    let got = sql(
        &loc,
        "SELECT site, machine, CAST(date_part('hour', window_start) AS BIGINT), max(value) FROM features \
         WHERE feature = 'rms' GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
    )
    .await;
    let want = max_window_rms(&readings);
    assert_eq!(got.len(), want.len());
    for (row, ((site, machine, hour), value)) in got.iter().zip(&want) {
        assert_eq!((&row[0], &row[1]), (site, machine));
        assert_eq!(row[2].parse::<i64>().unwrap(), hour.rem_euclid(24));
        let v: f64 = row[3].parse().unwrap();
        assert!((v - value).abs() < 1e-9, "{site} {machine} {hour}: {v} vs {value}");
    }

    // The alerts table holds exactly the transitions in the ALERTS stream.
    let stream: BTreeSet<(String, String, String)> =
        alerts(&js).await.into_iter().map(|(_, id, a)| (id, a.state, format!("{:.6}", a.value))).collect();
    assert!(!stream.is_empty());
    let table: BTreeSet<(String, String, String)> = sql(&loc, "SELECT _id, state, value FROM alerts")
        .await
        .into_iter()
        .map(|r| (r[0].clone(), r[1].clone(), format!("{:.6}", r[2].parse::<f64>().unwrap())))
        .collect();
    assert_eq!(table, stream);
    let by_site = sql(&loc, "SELECT site, machine, count(*) FROM alerts GROUP BY 1, 2 ORDER BY 1, 2").await;
    assert_eq!(by_site, [["munich".to_string(), "cnc-002".into(), stream.len().to_string()]]);
}

fn parquet_rows(bytes: &[u8]) -> usize {
    use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
    let reader = SerializedFileReader::new(bytes::Bytes::copy_from_slice(bytes)).expect("parquet");
    reader.metadata().file_metadata().num_rows() as usize
}

/// The plant published, drained by pipeline `a` into an archive in a temp dir.
async fn drained_plant_archive() -> (TestServer, async_nats::jetstream::Context, Vec<Reading>, tempfile::TempDir) {
    let server = TestServer::with_streams().await;
    let js = server.js().await;
    let readings = plant();
    publish(&js, &readings).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let p = pipeline(&archived_pipeline("a", dir.path().to_str().expect("utf-8"), ""), &server.url());
    RunningWorker::start(&p, &server.url(), RunMode::Drain).await.finish().await;
    (server, js, readings, dir)
}

#[tokio::test]
async fn a_replay_of_messages_whose_files_are_committed_adds_nothing() {
    let (server, js, readings, dir) = drained_plant_archive().await;
    let p = pipeline(&archived_pipeline("a", dir.path().to_str().unwrap(), ""), &server.url());
    let before = files(dir.path());

    // As if every ack had been lost: the consumer delivers everything again.
    js.get_stream("TELEMETRY").await.unwrap().delete_consumer("a").await.unwrap();
    let worker = RunningWorker::start(&p, &server.url(), RunMode::Drain).await;
    let stats = worker.stats.clone();
    worker.finish().await;

    assert_eq!(files(dir.path()), before, "no file added or changed");
    assert!(Stats::get(&stats.archive_skipped) >= readings.len() as u64);
    assert_eq!(Stats::get(&stats.archive_files), 0);
    let loc = local(dir.path());
    let n = sql(&loc, "SELECT count(*), count(DISTINCT _seq) FROM readings").await;
    assert_eq!(n, [[readings.len().to_string(), readings.len().to_string()]]);
    let f = sql(&loc, "SELECT count(*), count(DISTINCT (_id, feature)) FROM features").await;
    assert_eq!(f[0][0], f[0][1], "no feature row twice");
}

#[tokio::test]
async fn the_same_messages_give_byte_identical_files() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for dir in [&a, &b] {
        // A plant of its own for each run: the alert state lives in the server.
        let server = TestServer::with_streams().await;
        publish(&server.js().await, &plant()).await;
        let p = pipeline(&archived_pipeline("a", dir.path().to_str().unwrap(), ""), &server.url());
        RunningWorker::start(&p, &server.url(), RunMode::Drain).await.finish().await;
    }
    let (fa, fb) = (files(a.path()), files(b.path()));
    assert!(fa.keys().any(|n| n.starts_with("alerts/")) && fa.len() > 8, "{:?}", fa.keys());
    assert_eq!(fa.keys().collect::<Vec<_>>(), fb.keys().collect::<Vec<_>>());
    assert!(fa == fb, "file contents differ");
}

#[tokio::test]
async fn hostile_subject_tokens_stay_inside_their_own_partition() {
    let server = TestServer::with_streams().await;
    let js = server.js().await;
    let sites = ["a/b", "a%2Fb", "%2E%2E", "~"];
    let readings: Vec<Reading> =
        sites.iter().flat_map(|s| (0..20).map(move |i| Reading::rms(s, "cnc-001", T0 + i * 1000, 1.0))).collect();
    publish(&js, &readings).await;
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("archive");
    let p = pipeline(&archived_pipeline("a", dir.to_str().unwrap(), ""), &server.url());
    RunningWorker::start(&p, &server.url(), RunMode::Drain).await.finish().await;

    let outside: Vec<String> = files(root.path()).into_keys().filter(|n| !n.starts_with("archive/")).collect();
    assert!(outside.is_empty(), "{outside:?}");
    let partitions: BTreeSet<String> = files(&dir)
        .into_keys()
        .filter(|n| n.starts_with("readings/"))
        .map(|n| n.split('/').nth(1).unwrap().to_owned())
        .collect();
    let want: BTreeSet<String> =
        ["site=a%2Fb", "site=a%252Fb", "site=%252E%252E", "site=%7E"].map(String::from).into_iter().collect();
    assert_eq!(partitions, want);
    let counts = sql(&local(&dir), "SELECT site, count(*) FROM readings GROUP BY site ORDER BY site").await;
    assert_eq!(counts.len(), sites.len(), "{counts:?}");
    assert!(counts.iter().all(|r| r[1] == "20"), "{counts:?}");
}

fn s3_pipeline(durable: &str, s3: &S3Server) -> String {
    let options: String = s3.options().iter().map(|(k, v)| format!("{k} = \"{v}\"\n")).collect();
    archived_pipeline(durable, "s3://plant/stator/v1", &format!("[archive.options]\n{options}"))
        .replace("roll_age = \"1h\"", "roll_age = \"1s\"")
        .replace("idle_timeout = \"1h\"", "idle_timeout = \"2s\"")
}

/// A moto S3 server with a `plant` bucket, and a nats-server with the plant's readings.
async fn s3_and_plant() -> (S3Server, TestServer, async_nats::jetstream::Context, Vec<Reading>) {
    let s3 = S3Server::start().expect("moto S3 server");
    s3.create_bucket("plant").expect("bucket");
    let server = TestServer::with_streams().await;
    let js = server.js().await;
    let readings = plant();
    publish(&js, &readings).await;
    (s3, server, js, readings)
}

#[tokio::test]
async fn the_archive_goes_to_a_real_s3_server_and_is_queried_there() {
    let (s3, server, _js, _) = s3_and_plant().await;
    let p = pipeline(&s3_pipeline("a", &s3), &server.url());
    RunningWorker::start(&p, &server.url(), RunMode::Drain).await.finish().await;

    let loc = ArchiveLocation::open("s3://plant/stator/v1", &s3.options()).unwrap();
    let objects = stator_engine::archive::list_files(&loc, "readings").await.unwrap();
    assert!(objects.iter().all(|o| o.starts_with("stator/v1/readings/site=")), "{objects:?}");
    let got = sql(&loc, "SELECT count(*), count(DISTINCT _seq) FROM readings WHERE site = 'munich'").await;
    assert_eq!(got, [["360".to_string(), "360".to_string()]]);
    let alerts = sql(&loc, "SELECT count(*) FROM alerts").await;
    assert_ne!(alerts[0][0], "0");
}

#[tokio::test]
async fn messages_stay_unacknowledged_until_their_file_is_committed() {
    let (s3, server, js, readings) = s3_and_plant().await;
    s3.pause();
    let p = pipeline(&s3_pipeline("a", &s3), &server.url());
    let worker = RunningWorker::start(&p, &server.url(), RunMode::Follow).await;
    let stats = worker.stats.clone();
    let n = readings.len() as u64;
    wait_until(Duration::from_secs(30), "every window closed", || {
        let stats = stats.clone();
        async move { Stats::get(&stats.fetched) == n && Stats::get(&stats.windows_closed) >= 72 }
    })
    .await;
    // Files have rolled (age 1 s) but cannot be written: nothing may be acknowledged.
    wait_for_count(&stats, "files rolled", 4, |s| &s.archive_rolls).await;
    assert_eq!(Stats::get(&stats.acked), 0);
    assert_eq!(consumer_backlog(&js, "a").await, (0, readings.len()));

    s3.resume();
    wait_until(Duration::from_secs(60), "all acked after the store is back", || {
        let js = js.clone();
        async move { consumer_backlog(&js, "a").await == (0, 0) }
    })
    .await;
    worker.stop().await;
    let loc = ArchiveLocation::open("s3://plant/stator/v1", &s3.options()).unwrap();
    let got = sql(&loc, "SELECT count(*), count(DISTINCT _seq) FROM readings").await;
    assert_eq!(got, [[readings.len().to_string(), readings.len().to_string()]]);
}

#[tokio::test]
async fn duckdb_pandas_and_polars_read_every_table_as_we_do() {
    let server = TestServer::with_streams().await;
    let js = server.js().await;
    publish(&js, &plant()).await;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(&archived_pipeline("a", dir.path().to_str().unwrap(), ""), &server.url());
    RunningWorker::start(&p, &server.url(), RunMode::Drain).await.finish().await;

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python =
        std::env::var_os("STATOR_READERS_PYTHON").unwrap_or_else(|| root.join(".tools/readers/bin/python3").into());
    let out = std::process::Command::new(python)
        .arg(root.join("tests/tools/read_archive.py"))
        .arg(dir.path())
        .output()
        .expect("the readers' python (run `make setup`)");
    assert!(out.status.success(), "readers failed (run `make setup`):\n{}", String::from_utf8_lossy(&out.stderr));
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    let loc = local(dir.path());
    let mut want = serde_json::Map::new();
    for table in ["readings", "features", "alerts"] {
        let n = sql(&loc, &format!("SELECT count(*) FROM {table}")).await[0][0].parse::<u64>().unwrap();
        want.insert(table.into(), n.into());
    }
    let by_site = sql(&loc, "SELECT site, count(*), sum(value) FROM readings GROUP BY site ORDER BY site").await;
    let by_site: Vec<serde_json::Value> = by_site
        .iter()
        .map(|r| {
            let sum = (r[2].parse::<f64>().unwrap() * 1e6).round() / 1e6;
            serde_json::json!([r[0], r[1].parse::<u64>().unwrap(), sum])
        })
        .collect();
    want.insert("by_site".into(), by_site.into());
    for tool in ["duckdb", "pandas", "polars"] {
        assert_eq!(got[tool], serde_json::Value::Object(want.clone()), "{tool}");
    }
}

/// The "state at an instant" query of docs/ARCHIVE.md, run as written (with its instant moved
/// into the test plant's hour): the newest reading of every machine at or before it.
#[tokio::test]
async fn the_documented_state_at_an_instant_query_gives_each_machines_last_reading() {
    let (_server, _js, readings, dir) = drained_plant_archive().await;

    let doc = include_str!("../../docs/ARCHIVE.md");
    let start = doc.find("-- the state of every machine at an instant").expect("the query in the docs");
    let query = &doc[start..];
    let query = &query[query.find("SELECT").expect("SELECT")..=query.find(';').expect(";")];
    let instant_ms = T0 - 30_500;
    let instant = stator::rfc3339_ms(instant_ms);
    let sql_text = query.replace("2026-11-22T08:00:00Z", &instant).replace(';', "");
    let got = sql(&local(dir.path()), &sql_text).await;

    let mut want: Vec<(Vec<String>, f64)> = Vec::new();
    for site in ["berlin", "munich"] {
        for m in 1..=3 {
            let machine = format!("cnc-00{m}");
            let last = readings
                .iter()
                .filter(|r| r.subject.contains(&format!(".{site}.")) && r.subject.contains(&machine))
                .filter(|r| r.t_ms <= instant_ms)
                .max_by_key(|r| r.t_ms)
                .expect("a reading before the instant");
            want.push((vec![site.to_owned(), machine, last.t_ms.to_string()], last.value));
        }
    }
    let got: Vec<(Vec<String>, f64)> = got
        .into_iter()
        .map(|row| {
            let t = time::OffsetDateTime::parse(&row[4], &time::format_description::well_known::Rfc3339)
                .map(|t| (t.unix_timestamp_nanos() / 1_000_000).to_string())
                .unwrap_or_else(|_| row[4].clone());
            (vec![row[0].clone(), row[1].clone(), t], row[5].parse().expect("value"))
        })
        .collect();
    assert_eq!(got.len(), want.len(), "{got:?}");
    for ((g, gv), (w, wv)) in got.iter().zip(&want) {
        assert_eq!(g, w);
        assert!((gv - wv).abs() < 1e-9, "{g:?}: {gv} vs {wv}");
    }
}
