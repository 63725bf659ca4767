//! Scale-out: the drain throughput of one pipeline file run by 1, 2 and 4 `stator run`
//! processes, same stream, same server, same run, against a bare JetStream consumer.
//!
//! Loads a stream with scalar readings (600,000 by default: 1,000 machines x 600 s at 1 Hz),
//! times a bare durable pull consumer (batches of 500, an ack per message) draining it, then,
//! for each setting (1 partition and 1 worker; 4 partitions and 1, 2, 4 workers), creates the
//! pipeline's consumers paused (and, partitioned, lets its stream copy TELEMETRY in), starts
//! the workers, waits until each runs its share, resumes the consumers and times the readings
//! from 10 % to 90 % acknowledged (the steady rate, without the start and the last windows
//! left open). It reports the
//! rates, their ratios to 1 worker and to the bare consumer, and the CPU time the workers and
//! the server spent per reading (from /proc), from which a bigger host's figures follow. Run
//! with `cargo bench --bench scale`; `STATOR_BENCH_READINGS=N` changes the size. Under
//! `cargo test` it runs a small smoke size.

#[path = "report/plant.rs"]
mod plant;
#[path = "report/mod.rs"]
mod report;

use std::path::Path;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, message::PublishMessage};
use stator::nats_server::NatsServer;
use stator_engine::config::{self, Pipeline};
use stator_engine::source::{self, ConsumerSpec, members, partitions};

/// The ingest bench's pipeline, on the readings only, with `partitions` to set.
fn pipeline_text(name: &str, partitions: u32) -> String {
    plant::PIPELINE
        .replace("name = \"bench\"", &format!("name = \"{name}\""))
        .replace("durable = \"bench-pipeline\"", &format!("durable = \"{name}\""))
        .replace(
            "create_consumer = true",
            &format!("create_consumer = true\nfilter_subjects = [\"{FILTER}\"]\npartitions = {partitions}"),
        )
}

const MACHINES: usize = 1_000;

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let readings: usize = std::env::var("STATOR_BENCH_READINGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if bench { 600_000 } else { 60_000 });
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(run(readings));
}

/// One measured setting: readings per second, CPU microseconds per reading, and the rate at
/// which the server copied the readings into the partitioned stream.
struct Row {
    partitions: u32,
    workers: usize,
    rate: f64,
    worker_us: f64,
    server_us: f64,
    copy: Option<f64>,
}

async fn run(readings: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = NatsServer::start_in(dir.path(), "scale", "").expect("nats-server");
    let server_pid = server.pid().expect("the nats-server process");
    let client = stator::connect(&server.url()).await.expect("connect");
    let js = jetstream::new(client.clone());
    stator::plant::ensure_streams(&js).await.expect("streams");
    let per_machine = (readings / MACHINES).max(1);
    let total = (MACHINES * per_machine) as u64;
    let load = Instant::now();
    let msgs = (0..per_machine).flat_map(|s| {
        (0..MACHINES).map(move |m| {
            let value = 1.5 + (m % 7) as f64 * 0.1;
            let (subject, payload) = plant::rms_reading(m, 4, plant::T0 + s as i64 * 1000, value);
            (subject, PublishMessage::build().payload(payload).message_id(format!("{m}-{s}")))
        })
    });
    plant::publish_all(&js, msgs).await;
    eprintln!("loaded {total} readings in {:.1?}", load.elapsed());

    // The ceilings: bare consumers of the whole stream, with the pipeline's filter, and on a
    // stream partitioned as the pipeline's (one per partition, all at once).
    let whole = bare(server_pid, total, plant::raw_drain(&js, "scale-raw", &[], total)).await;
    let filtered = bare(server_pid, total, plant::raw_drain(&js, "scale-raw-filtered", &[FILTER], total)).await;
    let text = pipeline_text("scale-bare", 4);
    let env = |v: &str| (v == "NATS_URL").then(|| server.url());
    let raw_pipeline = config::load_str(Path::new("raw.toml"), &text, &env).expect("pipeline").pipeline;
    let (derived, specs, _) = consumers_of(&js, &raw_pipeline, total).await;
    let drains = specs.iter().map(|c| {
        let filters = [c.filters[0].as_str()];
        let (derived, durable) = (&derived, format!("raw-{}", c.durable));
        async move { plant::raw_drain_on(derived, &durable, &filters, None, 0).await }
    });
    let partitioned = bare(server_pid, total, futures::future::join_all(drains)).await;
    let mut rows = Vec::new();
    for (partitions, workers) in [(1, 1), (4, 1), (4, 2), (4, 4)] {
        rows.push(measure(&js, &server.url(), server_pid, total, partitions, workers).await);
    }

    let one = rows.iter().find(|r| r.partitions == 4 && r.workers == 1).map_or(1.0, |r| r.rate);
    let mut table = String::from(
        "| setting | msg/s | / 1 worker (4 partitions) | / bare consumers, same stream and filters | worker CPU µs/msg | server CPU µs/msg | copy into the partitioned stream (msg/s) |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
    );
    for (name, r) in [
        ("bare consumer, whole stream", &whole),
        ("bare consumer, the pipeline's filter", &filtered),
        ("4 bare consumers, the partitioned stream", &partitioned),
    ] {
        table += &format!("| {name} | {:.0} | | 1.00 | | {:.1} | |\n", r.rate, r.server_us);
    }
    for r in &rows {
        let ceiling = if r.partitions == 1 { &filtered } else { &partitioned };
        table += &format!(
            "| {} partition{}, {} worker{} | {:.0} | {:.2} | **{:.2}** | {:.1} | {:.1} | {} |\n",
            r.partitions,
            if r.partitions == 1 { "" } else { "s" },
            r.workers,
            if r.workers == 1 { "" } else { "s" },
            r.rate,
            r.rate / one,
            r.rate / ceiling.rate,
            r.worker_us,
            r.server_us,
            r.copy.map_or(String::new(), |c| format!("{c:.0}")),
        );
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    table += &format!(
        "\n{total} readings, {MACHINES} machines; {cores} cores shared by the server, the workers and this bench.\n"
    );
    report::publish("scale", &table);
}

/// The subjects the pipeline reads.
const FILTER: &str = "acme.*.*.*.*.*.vibration.rms";

/// A bare drain of `total` readings: its rate and the server's CPU per reading.
async fn bare<T>(server_pid: u32, total: u64, drain: impl std::future::Future<Output = T>) -> Row {
    let (cpu0, started) = (report::cpu(server_pid), Instant::now());
    drain.await;
    let (elapsed, server) = (started.elapsed(), report::cpu(server_pid).saturating_sub(cpu0));
    Row {
        partitions: 0,
        workers: 0,
        rate: total as f64 / elapsed.as_secs_f64(),
        worker_us: 0.0,
        server_us: server.as_secs_f64() * 1e6 / total as f64,
        copy: None,
    }
}

async fn measure(
    js: &jetstream::Context,
    url: &str,
    server_pid: u32,
    total: u64,
    partitions: u32,
    workers: usize,
) -> Row {
    let name = format!("scale-p{partitions}-w{workers}");
    let text = pipeline_text(&name, partitions);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("scale.toml");
    std::fs::write(&file, &text).expect("pipeline file");
    let env = |v: &str| (v == "NATS_URL").then(|| url.to_owned());
    let pipeline = config::load_str(&file, &text, &env).expect("pipeline").pipeline;

    // The consumers exist before the workers, paused: the clock starts with every worker in
    // place and the partitioned stream filled.
    let (stream, specs, copy) = consumers_of(js, &pipeline, total).await;
    for c in &specs {
        let mut config = source::consumer_config(&pipeline, c);
        config.pause_until = Some(time::OffsetDateTime::now_utc() + Duration::from_secs(3600));
        stream.create_consumer(config).await.expect("consumer");
    }
    let mut children = Vec::new();
    for _ in 0..workers {
        let child = plant::stator_run(&[file.to_str().expect("utf-8")], url).spawn().expect("stator run");
        children.push(child);
    }
    let pids: Vec<u32> = children.iter().map(|c| c.id().expect("pid")).collect();
    wait_for_shares(js, &pipeline, &specs, workers).await;

    let started = Instant::now();
    for c in &specs {
        stream.resume_consumer(&c.durable).await.expect("resume");
    }
    // The clock runs from 10 % to 90 % of the readings acknowledged (all but the last windows
    // are, in the end): the start (pulls renewed after the pause) and the end (the last
    // windows waiting to close) are not the steady rate.
    // The last 20 s of each machine are in windows that close only after the end (10 s windows,
    // 5 s lateness): left out.
    let ackable = total.saturating_sub(MACHINES as u64 * 20);
    let (from, to) = (ackable / 10, ackable * 9 / 10);
    let mut mark: Option<(Instant, Duration, Duration)> = None;
    let (elapsed, worker_cpu, server_cpu) = loop {
        let (mut pending, mut unacked) = (0, 0);
        for c in &specs {
            let info = stream.consumer_info(&c.durable).await.expect("consumer info");
            pending += info.num_pending;
            unacked += info.num_ack_pending as u64;
        }
        let acked = total - pending - unacked;
        let now = (Instant::now(), pids.iter().map(|p| report::cpu(*p)).sum::<Duration>(), report::cpu(server_pid));
        match mark {
            None if acked >= from => mark = Some(now),
            Some((t, w, s)) if acked >= to => {
                break (now.0 - t, now.1.saturating_sub(w), now.2.saturating_sub(s));
            }
            _ => {}
        }
        assert!(started.elapsed() < Duration::from_secs(900), "{name}: not drained after 15 minutes");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let timed = (to - from) as f64;
    eprintln!("{name}: {} readings in {elapsed:.2?}; workers {worker_cpu:.2?} CPU, server {server_cpu:.2?}", to - from);
    for pid in &pids {
        let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    }
    for mut child in children {
        let _ = tokio::time::timeout(Duration::from_secs(60), child.wait()).await;
    }
    Row {
        partitions,
        workers,
        rate: timed / elapsed.as_secs_f64(),
        worker_us: worker_cpu.as_secs_f64() * 1e6 / timed,
        server_us: server_cpu.as_secs_f64() * 1e6 / timed,
        copy: copy.map(|d| total as f64 / d.as_secs_f64()),
    }
}

/// The stream the pipeline's consumers are on, and those consumers: TELEMETRY's, or the
/// partitioned stream (created here as a worker would, and waited for until it has copied
/// every reading: how long that took) and one consumer per partition.
async fn consumers_of(
    js: &jetstream::Context,
    pipeline: &Pipeline,
    total: u64,
) -> (jetstream::stream::Stream, Vec<ConsumerSpec>, Option<Duration>) {
    let mut origin = js.get_stream("TELEMETRY").await.expect("stream");
    if pipeline.source.partitions == 1 {
        return (origin, source::consumer_specs(pipeline), None);
    }
    let mut derived = partitions::ensure(js, pipeline, &mut origin).await.expect("partitioned stream");
    let copying = Instant::now();
    while derived.info().await.expect("info").state.messages < total {
        assert!(copying.elapsed() < Duration::from_secs(600), "the partitioned stream is not filled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let copied = copying.elapsed();
    eprintln!("{}: copied {total} readings in {copied:.1?}", pipeline.name);
    let specs = (0..pipeline.source.partitions)
        .map(|p| ConsumerSpec { durable: partitions::durable(pipeline, p), filters: vec![partitions::filter(p)] })
        .collect();
    (derived, specs, Some(copied))
}

/// A worker and the consumers it runs.
type Share = (String, Vec<String>);

/// Waits until `workers` workers are on the pipeline's roll and, partitioned, each partition is
/// run by exactly one of them (as they announce it), the same for a whole announcement period:
/// a partition moving once the clock runs would cost the new owner a held watermark.
async fn wait_for_shares(js: &jetstream::Context, pipeline: &Pipeline, specs: &[ConsumerSpec], workers: usize) {
    let started = Instant::now();
    let mut settled: Option<(Vec<Share>, Instant)> = None;
    loop {
        if let Ok(store) = js.get_key_value(members::BUCKET).await
            && let Ok(roll) = members::list(&store, &pipeline.name).await
        {
            let mut running: Vec<&String> = roll.iter().flat_map(|m| &m.consumers).collect();
            running.sort();
            let want: Vec<&String> = specs.iter().map(|c| &c.durable).collect();
            let shared = roll.len() == workers && (pipeline.source.partitions == 1 || running == want);
            let shares: Vec<Share> = roll.into_iter().map(|m| (m.worker, m.consumers)).collect();
            match &settled {
                Some((same, since)) if shared && *same == shares => {
                    if since.elapsed() > members::ANNOUNCE_EVERY * 2 {
                        return;
                    }
                }
                _ => settled = shared.then(|| (shares, Instant::now())),
            }
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{}: workers did not take their shares", pipeline.name);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
