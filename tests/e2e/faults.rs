//! Faults: a `stator run` process killed with SIGKILL at random moments, again and again,
//! while readings stream in, loses nothing and duplicates nothing: the archive holds every
//! message once, the ALERTS stream holds no repeated transition, and the window outputs are
//! those of an uninterrupted run.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rand::{Rng, SeedableRng, rngs::StdRng};
use stator_engine::archive::ArchiveLocation;
use stator_engine::worker::{RunMode, Stats};

use crate::harness::*;

fn crash_pipeline(archive: &str) -> String {
    format!(
        r#"
[pipeline]
name = "crash"

[source]
url = "${{NATS_URL}}"
stream = "TELEMETRY"
durable = "crash"
create_consumer = true
filter_subjects = ["acme.*.*.*.*.*.vibration.rms"]
ack_wait = "4s"

[[window]]
name = "rms_2s"
key = ["site", "machine"]
tumbling = "2s"
allowed_lateness = "1s"
idle_timeout = "1h"
aggregates = ["count", "rms", "max"]

[[alert]]
name = "vibration-rms"
window = "rms_2s"
metric = "rms"
warning = 2.8
critical = 4.5
clear_below = 2.5
subject = "acme.{{site}}.alert.vibration.{{machine}}"

[archive]
url = "{archive}"
roll_rows = 400
roll_age = "1s"
"#
    )
}

/// 8 machines on 2 sites, 1 Hz for 600 s; two machines cross the limits back and forth.
fn readings() -> Vec<Reading> {
    let mut rng = StdRng::seed_from_u64(21);
    let mut out = Vec::new();
    for s in 0..600 {
        for m in 0..8 {
            let site = if m % 2 == 0 { "munich" } else { "berlin" };
            let wave = (s / 20) % 3;
            let value = match (m, wave) {
                (2, 1) => 3.2,
                (2, 2) | (5, 1) => 5.0,
                _ => 1.5,
            } + rng.random_range(-0.2..0.2);
            out.push(Reading::rms(site, &format!("cnc-00{m}"), T0 + s * 1000, value));
        }
    }
    out
}

fn spawn_worker(file: &std::path::Path, url: &str, drain: bool) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stator"));
    cmd.arg("run").arg(file).env("NATS_URL", url).stdout(Stdio::null()).stderr(Stdio::null());
    if drain {
        cmd.arg("--drain");
    }
    cmd.spawn().expect("stator run")
}

/// Everything a run leaves behind that must not depend on crashes.
#[derive(Debug)]
struct Outcome {
    /// (`_seq`) of every archived reading, with repeats.
    seqs: Vec<u64>,
    /// Value of every feature row by (`_id`, feature).
    features: BTreeMap<(String, String), f64>,
    /// Alert `Nats-Msg-Id`s, with repeats.
    alert_ids: Vec<String>,
}

async fn outcome(js: &async_nats::jetstream::Context, dir: &std::path::Path) -> Outcome {
    let loc = ArchiveLocation::open(dir.to_str().expect("utf-8"), &[]).expect("archive");
    let rows = |q: &'static str| {
        let loc = loc.clone();
        async move { sql(&loc, q).await }
    };
    let seqs =
        rows("SELECT _seq FROM readings ORDER BY _seq").await.iter().map(|r| r[0].parse().expect("seq")).collect();
    let mut features = BTreeMap::new();
    for r in rows("SELECT _id, feature, value FROM features").await {
        let previous = features.insert((r[0].clone(), r[1].clone()), r[2].parse::<f64>().expect("value"));
        assert!(previous.is_none(), "feature row {r:?} twice");
    }
    let mut alert_ids: Vec<String> = alerts(js).await.into_iter().map(|(_, id, _)| id).collect();
    alert_ids.sort();
    Outcome { seqs, features, alert_ids }
}

#[tokio::test]
async fn a_worker_killed_ten_times_mid_run_loses_and_repeats_nothing() {
    let input = readings();
    // The reference: one uninterrupted run over the same readings.
    let reference = {
        let server = TestServer::with_streams().await;
        let js = server.js().await;
        publish(&js, &input).await;
        let dir = tempfile::tempdir().unwrap();
        let p = pipeline(&crash_pipeline(dir.path().to_str().unwrap()), &server.url());
        RunningWorker::start(&p, &server.url(), RunMode::Drain).await.finish().await;
        outcome(&js, dir.path()).await
    };
    assert!(!reference.alert_ids.is_empty());

    let server = TestServer::with_streams().await;
    let js = server.js().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("crash.toml");
    let archive = dir.path().join("archive");
    std::fs::write(&file, crash_pipeline(archive.to_str().unwrap())).unwrap();
    // Readings stream in while the worker is killed and restarted.
    let publisher = {
        let js = js.clone();
        let input = input.clone();
        tokio::spawn(async move {
            let mut seqs = Vec::new();
            for chunk in input.chunks(200) {
                seqs.extend(publish(&js, chunk).await);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            seqs
        })
    };
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..10 {
        let mut child = spawn_worker(&file, &server.url(), false);
        // A random moment: mid-batch, mid-window, mid-commit.
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1500))).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    let published = publisher.await.unwrap();
    let mut last = spawn_worker(&file, &server.url(), true);
    let status = tokio::task::spawn_blocking(move || last.wait()).await.unwrap().unwrap();
    assert!(status.success(), "the final drain run exits 0");

    let got = outcome(&js, &archive).await;
    let mut want_seqs = published;
    want_seqs.sort_unstable();
    assert_eq!(got.seqs.len(), input.len(), "every reading archived exactly once");
    assert_eq!(got.seqs, want_seqs);
    assert_eq!(got.alert_ids, reference.alert_ids, "the same transitions, none repeated");
    // Redelivered readings may enter a window in another order: equal up to rounding.
    assert_eq!(got.features.keys().collect::<Vec<_>>(), reference.features.keys().collect::<Vec<_>>());
    for (key, want) in &reference.features {
        let v = got.features[key];
        assert!((v - want).abs() <= 1e-9 * want.abs().max(1.0), "{key:?}: {v} vs {want}");
    }
    assert_eq!(consumer_backlog(&js, "crash").await, (0, 0));
}

#[tokio::test]
async fn thirty_seconds_without_the_object_store_lose_nothing_redeliver_nothing_and_hold_a_bounded_backlog() {
    let s3 = stator::s3_server::S3Server::start().expect("moto S3 server");
    s3.create_bucket("plant").unwrap();
    let server = TestServer::with_streams().await;
    let js = server.js().await;
    let input = readings();
    let options: String = s3.options().iter().map(|(k, v)| format!("{k} = \"{v}\"\n")).collect();
    let text = crash_pipeline("s3://plant/outage")
        .replace("ack_wait = \"4s\"", "ack_wait = \"10s\"\nmax_ack_pending = 1000")
        + &format!("\n[archive.options]\n{options}");
    let p = pipeline(&text, &server.url());
    let worker = RunningWorker::start(&p, &server.url(), RunMode::Follow).await;
    let stats = worker.stats.clone();
    let (first, rest) = input.split_at(800);
    publish(&js, first).await;
    wait_for_count(&stats, "the store in use", 1, |s| &s.archive_files).await;

    s3.pause();
    let frozen = std::time::Instant::now();
    let publisher = {
        let (js, rest) = (js.clone(), rest.to_vec());
        tokio::spawn(async move { publish(&js, &rest).await })
    };
    let mut most_held = 0;
    while frozen.elapsed() < Duration::from_secs(30) {
        let (_, held) = consumer_backlog(&js, "crash").await;
        most_held = most_held.max(held);
        assert!(held <= 1000, "the consumer never hands out more than max_ack_pending: {held}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(most_held >= 900, "the worker filled its window: {most_held}");
    let readyz = format!("{}/readyz", worker.http);
    let (code, body) = http_get(&readyz).await;
    assert_eq!(code, 503, "not ready while the store is down: {body}");
    assert!(body.contains("the archive's object store is failing"), "{body}");
    // The rest waits in the stream, not in the worker's memory.
    let fetched = Stats::get(&stats.fetched);
    assert!(fetched < input.len() as u64, "it stopped fetching: {fetched} of {}", input.len());
    s3.resume();
    let published = publisher.await.unwrap();

    let n = input.len();
    let loc = ArchiveLocation::open("s3://plant/outage", &s3.options()).unwrap();
    let counts =
        || async { sql(&loc, "SELECT count(*), count(DISTINCT _seq), max(_seq) FROM readings").await.remove(0) };
    wait_until(Duration::from_secs(60), "every reading archived", || async { counts().await[0] == n.to_string() })
        .await;
    wait_until(Duration::from_secs(20), "ready again", || async { http_get(&readyz).await.0 == 200 }).await;
    assert_eq!(Stats::get(&stats.redelivered), 0, "in-progress acks kept every held message");
    worker.stop().await;
    let last = published.iter().max().unwrap();
    assert_eq!(counts().await, [n.to_string(), n.to_string(), last.to_string()]);
}

/// Waits until all `n` readings are archived, stops the worker, and checks that each is there
/// once and that nothing was dead-lettered (taken for late).
async fn every_reading_once_and_none_dead(
    js: &async_nats::jetstream::Context,
    dir: &std::path::Path,
    worker: RunningWorker,
    n: usize,
) {
    let n = n.to_string();
    let loc = ArchiveLocation::open(dir.to_str().expect("utf-8"), &[]).expect("archive");
    let count = || async { sql(&loc, "SELECT count(DISTINCT _seq), count(*) FROM readings").await.remove(0) };
    wait_until(Duration::from_secs(60), "every reading archived", || async { count().await[0] == n }).await;
    worker.stop().await;
    assert_eq!(count().await, [n.clone(), n], "each reading once");
    let dead = dead_letters(js).await;
    assert!(dead.is_empty(), "nothing was taken for late: {}", dead.len());
}

#[tokio::test]
async fn a_consumer_deleted_under_a_running_worker_is_recreated_where_it_left_off() {
    let server = TestServer::with_streams().await;
    let js = server.js().await;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(&crash_pipeline(dir.path().to_str().unwrap()), &server.url());
    let worker = RunningWorker::start(&p, &server.url(), RunMode::Follow).await;
    let stats = worker.stats.clone();
    let input = readings();
    let (first, rest) = input.split_at(2400);
    let mut published = publish(&js, first).await;
    wait_for_count(&stats, "half acked", 2000, |s| &s.acked).await;
    js.get_stream("TELEMETRY").await.unwrap().delete_consumer("crash").await.unwrap();
    published.extend(publish(&js, rest).await);
    wait_for_count(&stats, "the consumer recreated", 1, |s| &s.consumer_rebinds).await;
    every_reading_once_and_none_dead(&js, dir.path(), worker, input.len()).await;
}

#[tokio::test]
async fn nats_server_down_for_thirty_seconds_mid_run_loses_and_repeats_nothing() {
    let mut server = TestServer::with_streams().await;
    let js = server.js().await;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(&crash_pipeline(dir.path().to_str().unwrap()), &server.url());
    let worker = RunningWorker::start(&p, &server.url(), RunMode::Follow).await;
    let stats = worker.stats.clone();
    let input = readings();
    let (first, rest) = input.split_at(2400);
    publish(&js, first).await;
    wait_for_count(&stats, "some acked", 1000, |s| &s.acked).await;
    server.server.stop(); // SIGKILL: the store is kept
    let down = std::time::Instant::now();
    wait_until(Duration::from_secs(40), "30 s of outage", || async { down.elapsed() >= Duration::from_secs(30) }).await;
    server.server.restart().expect("restart");
    let js = server.js().await;
    publish(&js, rest).await;
    every_reading_once_and_none_dead(&js, dir.path(), worker, input.len()).await;
    let ids: Vec<String> = alerts(&js).await.into_iter().map(|(_, id, _)| id).collect();
    let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "no transition twice");
}
