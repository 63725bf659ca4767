//! End-to-end ingest benchmark: the pipeline against a bare JetStream consumer, same run.
//!
//! Loads a stream with scalar readings (1,000,000 by default: 1,000 machines x 1,000 s at
//! 1 Hz), then times, on the same server and data:
//!   (a) a plain durable pull consumer that fetches in batches and acks every message;
//!   (b) the `line-health`-style pipeline draining the stream with windows and alerts;
//!   (c) the same pipeline also archiving readings, features and alerts as Parquet (local
//!       directory), acking each message only once its file is committed;
//! and reports (b)/(a) and (c)/(a) in messages per second, and the archive's bytes per reading. Run with `cargo bench --bench ingest`;
//! `STATOR_BENCH_READINGS=N` changes the size. Under `cargo test` it runs a small smoke size.

#[path = "report/plant.rs"]
mod plant;
#[path = "report/mod.rs"]
mod report;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, message::PublishMessage};
use stator::nats_server::NatsServer;
use stator_engine::config;
use stator_engine::worker::{self, RunMode, Stats};

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let readings: usize = std::env::var("STATOR_BENCH_READINGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if bench { 1_000_000 } else { 5_000 });
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(run(readings));
}

async fn run(readings: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = NatsServer::start_in(dir.path(), "bench", "").expect("nats-server");
    let client = stator::connect(&server.url()).await.expect("connect");
    let js = jetstream::new(client.clone());
    stator::plant::ensure_streams(&js).await.expect("streams");

    let machines = 1_000.min(readings.max(1));
    let per_machine = readings / machines;
    let total = (machines * per_machine) as u64;
    let load = Instant::now();
    load_stream(&js, machines, per_machine).await;
    let wire_bytes = js.get_stream("TELEMETRY").await.expect("stream").info().await.expect("info").state.bytes;
    eprintln!("loaded {total} readings ({wire_bytes} bytes stored) in {:.1?}", load.elapsed());

    let raw = raw_consumer(&js, total).await;
    let pipeline = pipeline_run(&client, &server.url(), total, "bench-pipeline", "").await;
    let archive_dir = tempfile::tempdir().expect("tempdir");
    let archive = format!("\n[archive]\nurl = \"{}\"\n", archive_dir.path().display());
    let archived = pipeline_run(&client, &server.url(), total, "bench-archive", &archive).await;
    let archive_bytes = dir_bytes(archive_dir.path());
    let rate = |d: Duration| total as f64 / d.as_secs_f64();
    let (raw_rate, pipe_rate, arch_rate) = (rate(raw), rate(pipeline), rate(archived));
    let table = format!(
        "| readings | raw consumer (msg/s) | pipeline (msg/s) | pipeline + archive (msg/s) | (b)/(a) | (c)/(a) | archive bytes/reading |\n\
         |---:|---:|---:|---:|---:|---:|---:|\n\
         | {total} | {raw_rate:.0} | {pipe_rate:.0} | {arch_rate:.0} | **{:.2}** | **{:.2}** | {:.1} |\n",
        pipe_rate / raw_rate,
        arch_rate / raw_rate,
        archive_bytes as f64 / total as f64
    );
    report::publish("ingest", &table);
}

/// Bytes of every file below `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() { dir_bytes(&p) } else { e.metadata().map_or(0, |m| m.len()) }
                })
                .sum()
        })
        .unwrap_or(0)
}

async fn load_stream(js: &jetstream::Context, machines: usize, per_machine: usize) {
    let msgs = (0..per_machine).flat_map(|s| {
        (0..machines).map(move |m| {
            let drift = m % 50 == 0;
            let value = if drift { 1.5 + 4.0 * s as f64 / per_machine as f64 } else { 1.5 + (m % 7) as f64 * 0.1 };
            let (subject, payload) = plant::rms_reading(m, 4, plant::T0 + s as i64 * 1000, value);
            (subject, PublishMessage::build().payload(payload).message_id(format!("{m}-{s}")))
        })
    });
    plant::publish_all(js, msgs).await;
}

/// (a): fetch in batches of 500 and ack every message; done when the ack floor is at the end.
async fn raw_consumer(js: &jetstream::Context, total: u64) -> Duration {
    let start = Instant::now();
    plant::raw_drain(js, "bench-raw", &[], total).await;
    let stream = js.get_stream("TELEMETRY").await.expect("stream");
    wait_acked(&stream, "bench-raw", total).await;
    start.elapsed()
}

/// (b): the pipeline drains the stream; done when the ack floor is at the end.
async fn pipeline_run(client: &async_nats::Client, url: &str, total: u64, durable: &str, extra: &str) -> Duration {
    let env = |name: &str| (name == "NATS_URL").then(|| url.to_owned());
    // Each run its own pipeline name, so each has its own alert state.
    let text = plant::PIPELINE
        .replace("durable = \"bench-pipeline\"", &format!("durable = \"{durable}\""))
        .replace("name = \"bench\"", &format!("name = \"{durable}\""))
        + extra;
    let pipeline = config::load_str(Path::new("bench.toml"), &text, &env).expect("pipeline").pipeline;
    let stats = Arc::new(Stats::default());
    let (_stop, rx) = tokio::sync::watch::channel(false);
    let start = Instant::now();
    worker::run(Arc::new(pipeline), client.clone(), rx, stats.clone(), RunMode::Drain).await.expect("pipeline run");
    let stream = jetstream::new(client.clone()).get_stream("TELEMETRY").await.expect("stream");
    wait_acked(&stream, durable, total).await;
    let elapsed = start.elapsed();
    eprintln!(
        "{durable}: {} fetched, {} acked, {} windows, {} alerts",
        Stats::get(&stats.fetched),
        Stats::get(&stats.acked),
        Stats::get(&stats.windows_closed),
        Stats::get(&stats.alerts_published)
    );
    assert_eq!(Stats::get(&stats.acked), total, "the pipeline acked every reading");
    elapsed
}

async fn wait_acked(stream: &jetstream::stream::Stream, durable: &str, total: u64) {
    loop {
        let info = stream.consumer_info(durable).await.expect("consumer info");
        if info.ack_floor.stream_sequence >= total {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
