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
//! Two more phases take the gap apart: (a') a raw consumer that holds each ack back as the
//! windowed pipeline does (until a window and its lateness of later readings have arrived),
//! which separates the server's cost of that ack pattern from the worker's own, and (b') the
//! pipeline with `standby = false` (no pin header on each message). Each phase's CPU time is
//! reported per message, for the bench process (the consumer, or the worker) and for
//! nats-server, with the pipelines' ack pending (sampled) and in-progress acks.
//! `STATOR_BENCH_PIN=1` gives nats-server CPU 0 and the bench process the others (Linux,
//! `taskset`), so that neither takes the other's core. (a) runs first and again last, and the
//! faster of the two is the reference.

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
    // The bench on every CPU but the server's.
    let pinned = report::pin_requested(|cores| format!("1-{}", cores - 1));
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(run(readings, pinned));
}

async fn run(readings: usize, pinned: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = NatsServer::start_in(dir.path(), "bench", "").expect("nats-server");
    let server_pid = server.pid().expect("server running");
    if pinned {
        report::pin(server_pid, "0", true);
    }
    // CPU time so far of the bench process and of the server.
    let cpu = || (report::cpu(std::process::id()), report::cpu(server_pid));
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

    // The pipeline holds a reading until its window (10 s) and the lateness (5 s) have passed:
    // 15 readings of each machine.
    let hold = machines * 15;
    let mut cpus = vec![cpu()];
    let raw = raw_consumer(&js, "bench-raw", total, 0).await;
    cpus.push(cpu());
    let held = raw_consumer(&js, "bench-raw-held", total, hold).await;
    cpus.push(cpu());
    let pipeline = pipeline_run(&client, &server.url(), total, "bench-pipeline", "").await;
    cpus.push(cpu());
    let alone = pipeline_run(&client, &server.url(), total, "bench-alone", "standby = false").await;
    cpus.push(cpu());
    let archive_dir = tempfile::tempdir().expect("tempdir");
    let archive = format!("\n[archive]\nurl = \"{}\"\n", archive_dir.path().display());
    let archived = pipeline_run(&client, &server.url(), total, "bench-archive", &archive).await;
    cpus.push(cpu());
    // (a) again, last: the first run follows the load straight away and is sometimes slowed
    // by the server still settling it; the faster of the two is the reference, so that a slow
    // reference never flatters the ratios.
    let raw_again = raw_consumer(&js, "bench-raw-again", total, 0).await;
    cpus.push(cpu());
    let archive_bytes = dir_bytes(archive_dir.path());
    let rate = |d: Duration| total as f64 / d.as_secs_f64();
    // Microseconds of CPU per message in each phase: bench process / server.
    let us = |a: Duration, b: Duration| b.saturating_sub(a).as_secs_f64() * 1e6 / total as f64;
    let mut per_msg: Vec<String> =
        cpus.windows(2).map(|w| format!("{:.2} / {:.2}", us(w[0].0, w[1].0), us(w[0].1, w[1].1))).collect();
    let raw_runs = format!("{:.0} then {:.0}", rate(raw), rate(raw_again));
    let raw = if raw_again < raw {
        // The reference's CPU column is the last phase's.
        let last = per_msg.len() - 1;
        per_msg.swap(0, last);
        raw_again
    } else {
        raw
    };
    let (raw_rate, held_rate, pipe_rate, alone_rate, arch_rate) =
        (rate(raw), rate(held), rate(pipeline.elapsed), rate(alone.elapsed), rate(archived.elapsed));
    let table = format!(
        "| readings | raw consumer (msg/s) | pipeline (msg/s) | pipeline + archive (msg/s) | (b)/(a) | (c)/(a) | archive bytes/reading |\n\
         |---:|---:|---:|---:|---:|---:|---:|\n\
         | {total} | {raw_rate:.0} | {pipe_rate:.0} | {arch_rate:.0} | **{:.2}** | **{:.2}** | {:.1} |\n\n\
         | {} | (a) raw | (a') raw, acks held back {hold} | (b) pipeline | (b') pipeline, `standby = false` | (c) pipeline + archive |\n\
         |---|---:|---:|---:|---:|---:|\n\
         | msg/s | {raw_rate:.0} | {held_rate:.0} | {pipe_rate:.0} | {alone_rate:.0} | {arch_rate:.0} |\n\
         | of (a) | 1 | {:.2} | {:.2} | **{:.2}** | {:.2} |\n\
         | of (a') | | 1 | {:.2} | {:.2} | {:.2} |\n\
         | CPU us per message, bench process / nats-server | {} | {} | {} | {} | {} |\n\
         | ack pending, mean / max (sampled every 100 ms) | | {hold} | {} | {} | {} |\n\
         | in-progress acks per message | | | {:.3} | {:.3} | {:.3} |\n\n\
         (a) is the faster of two runs of the raw consumer, first and last: {raw_runs} msg/s.\n",
        pipe_rate / raw_rate,
        arch_rate / raw_rate,
        archive_bytes as f64 / total as f64,
        if pinned { "nats-server on CPU 0, bench on the others" } else { "unpinned" },
        held_rate / raw_rate,
        pipe_rate / raw_rate,
        alone_rate / raw_rate,
        arch_rate / raw_rate,
        pipe_rate / held_rate,
        alone_rate / held_rate,
        arch_rate / held_rate,
        per_msg[0],
        per_msg[1],
        per_msg[2],
        per_msg[3],
        per_msg[4],
        pipeline.pending(),
        alone.pending(),
        archived.pending(),
        pipeline.in_progress as f64 / total as f64,
        alone.in_progress as f64 / total as f64,
        archived.in_progress as f64 / total as f64,
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

/// (a): fetch in batches of 500 and ack every message, (a') each `hold` messages later; done
/// when the ack floor is at the end.
async fn raw_consumer(js: &jetstream::Context, durable: &str, total: u64, hold: usize) -> Duration {
    let start = Instant::now();
    plant::raw_drain_holding(js, durable, total, hold).await;
    let stream = js.get_stream("TELEMETRY").await.expect("stream");
    wait_acked(&stream, durable, total).await;
    start.elapsed()
}

/// What a pipeline phase took and held.
struct Run {
    elapsed: Duration,
    /// The consumer's ack pending, sampled.
    pending: Vec<u64>,
    /// In-progress acks the worker sent (messages kept from redelivery while they wait).
    in_progress: u64,
}

impl Run {
    /// Mean / max of the sampled ack pending.
    fn pending(&self) -> String {
        let mean = self.pending.iter().sum::<u64>() as f64 / self.pending.len().max(1) as f64;
        format!("{mean:.0} / {}", self.pending.iter().max().unwrap_or(&0))
    }
}

/// (b): the pipeline drains the stream; done when the ack floor is at the end.
async fn pipeline_run(client: &async_nats::Client, url: &str, total: u64, durable: &str, extra: &str) -> Run {
    let env = |name: &str| (name == "NATS_URL").then(|| url.to_owned());
    // Each run its own pipeline name, so each has its own alert state.
    // `extra` lines for [source] go after its `create_consumer`, others (tables) at the end.
    let (source, tables) = if extra.trim_start().starts_with('[') { ("", extra) } else { (extra, "") };
    let text = plant::PIPELINE
        .replace("create_consumer = true", &format!("create_consumer = true\n{source}"))
        .replace("durable = \"bench-pipeline\"", &format!("durable = \"{durable}\""))
        .replace("name = \"bench\"", &format!("name = \"{durable}\""))
        + tables;
    let pipeline = config::load_str(Path::new("bench.toml"), &text, &env).expect("pipeline").pipeline;
    let stats = Arc::new(Stats::default());
    let (_stop, rx) = tokio::sync::watch::channel(false);
    let stream = jetstream::new(client.clone()).get_stream("TELEMETRY").await.expect("stream");
    let (done, mut finished) = tokio::sync::watch::channel(false);
    let sampler = tokio::spawn({
        let (stream, durable) = (stream.clone(), durable.to_owned());
        async move {
            let mut samples = Vec::new();
            while tokio::time::timeout(Duration::from_millis(100), finished.wait_for(|d| *d)).await.is_err() {
                if let Ok(info) = stream.consumer_info(&durable).await {
                    samples.push(info.num_ack_pending as u64);
                }
            }
            samples
        }
    });
    let start = Instant::now();
    worker::run(Arc::new(pipeline), client.clone(), rx, stats.clone(), RunMode::Drain).await.expect("pipeline run");
    wait_acked(&stream, durable, total).await;
    let elapsed = start.elapsed();
    done.send_replace(true);
    let pending = sampler.await.expect("sampler");
    eprintln!(
        "{durable}: {} fetched, {} acked, {} windows, {} alerts",
        Stats::get(&stats.fetched),
        Stats::get(&stats.acked),
        Stats::get(&stats.windows_closed),
        Stats::get(&stats.alerts_published)
    );
    assert_eq!(Stats::get(&stats.acked), total, "the pipeline acked every reading");
    Run { elapsed, pending, in_progress: Stats::get(&stats.in_progress) }
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
