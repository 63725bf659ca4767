//! The worker as a user runs it: the `stator` binary with the shipped `line-health` pipeline
//! (10 s windows, alerts, Parquet archive), at 200 and 2,000 machines.
//!
//! For each size, on a fresh nats-server:
//! 1. a backlog of 1 Hz readings per machine (300 s at 200 machines, 120 s at 2,000) is in the stream when the
//!    worker starts: its resident memory while it catches up is the ceiling under a backlog
//!    (bounded by `max_ack_pending`, not by the backlog);
//! 2. then 90 s of live readings at 1 Hz per machine (and a last run of 2,000 machines at 5 Hz:
//!    10,000 readings a second, issue 17's load for the alert latency), one machine in ten flapping
//!    between 1 and 5 mm/s every 30 s: the latency from a window's end (event time = wall
//!    clock) to its alert transition arriving at a subscriber, and resident memory at the end.
//!
//! `cargo bench --bench service`; `STATOR_BENCH_LIVE_S=N` shortens the live phase. Under
//! `cargo test` it runs a small smoke size. `STATOR_BENCH_PIN=1` (Linux, `taskset`) gives
//! nats-server and the bench's publisher CPU 0 and the consumer being measured (the worker, or
//! the bare consumer of the catch-up ceiling) CPU 1, so that the worker's share of a load is
//! not the server's. `STATOR_BENCH_ROWS=4` (a comma-separated list) runs only those rows of
//! the table.

#[path = "report/plant.rs"]
mod plant;
#[path = "report/mod.rs"]
mod report;

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, message::PublishMessage};
use futures::StreamExt;
use stator::nats_server::NatsServer;

const LINE_HEALTH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/line-health.toml");

struct Size {
    machines: usize,
    backlog_s: usize,
    live_s: usize,
    /// Readings per machine per second in the live phase.
    hz: u64,
}

struct Measured {
    machines: usize,
    backlog: u64,
    catch_up: Duration,
    /// The same backlog drained by a bare durable pull consumer with the pipeline's filter.
    raw: Duration,
    peak_catch_up_kb: u64,
    live_rss_kb: u64,
    peak_kb: u64,
    latencies_ms: Vec<i64>,
    live_rate: f64,
    /// The worker's own part (window close to PubAck): p50 and p99, seconds, from its
    /// `stator_alert_publish_seconds` histogram.
    publish: Option<(f64, f64)>,
    /// Busy share of one core during the live phase: worker, nats-server, bench (publisher).
    live_cpu: Option<[f64; 3]>,
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let live_s = std::env::var("STATOR_BENCH_LIVE_S").ok().and_then(|v| v.parse().ok()).unwrap_or(90);
    let sizes = if bench {
        // The third: the first's machines with three times the backlog, to show the ceiling
        // does not grow with it.
        vec![
            Size { machines: 200, backlog_s: 300, live_s, hz: 1 },
            Size { machines: 2000, backlog_s: 120, live_s, hz: 1 },
            Size { machines: 200, backlog_s: 900, live_s: 0, hz: 1 },
            // Issue 17's load for the alert latency: 10,000 readings a second.
            Size { machines: 2000, backlog_s: 10, live_s, hz: 5 },
        ]
    } else {
        vec![Size { machines: 20, backlog_s: 20, live_s: 0, hz: 1 }]
    };
    let rows: Option<Vec<usize>> =
        std::env::var("STATOR_BENCH_ROWS").ok().map(|v| v.split(',').filter_map(|r| r.trim().parse().ok()).collect());
    let sizes: Vec<Size> = sizes
        .into_iter()
        .enumerate()
        .filter(|(i, _)| rows.as_ref().is_none_or(|r| r.contains(&(i + 1))))
        .map(|(_, s)| s)
        .collect();
    // The publisher beside the server; the worker gets CPU 1.
    let pinned = report::pin_requested(|_| "0".into());
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let results: Vec<Measured> = sizes.iter().map(|s| rt.block_on(run(s, pinned))).collect();
    if !bench {
        return;
    }
    let mut t = String::from(
        "| machines | backlog (readings) | catch-up (msg/s) | raw consumer, same filter (msg/s) | catch-up / raw | peak RSS catching up | RSS live, end | peak RSS | live load (msg/s) | alerts | window end → alert p50 | p99 | window close → PubAck p50 | p99 | CPU busy live: worker / server / publisher |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for m in &results {
        let mut l = m.latencies_ms.clone();
        l.sort_unstable();
        let pct = |p: f64| {
            l.get(((l.len() as f64 - 1.0) * p).round() as usize)
                .map_or("-".into(), |v| format!("{:.2} s", *v as f64 / 1000.0))
        };
        let live = |s: String| if m.live_rate > 0.0 { s } else { "-".into() };
        let ms = |s: f64| format!("{:.1} ms", s * 1000.0);
        let (p50, p99) = m.publish.map_or(("-".into(), "-".into()), |(a, b)| (ms(a), ms(b)));
        let busy = m
            .live_cpu
            .map_or("-".into(), |[w, s, p]| format!("{:.0} % / {:.0} % / {:.0} %", w * 100.0, s * 100.0, p * 100.0));
        t += &format!(
            "| {} | {} | {:.0} | {:.0} | **{:.2}** | {} | {} | {} | {} | {} | {} | {} | {p50} | {p99} | {busy} |\n",
            m.machines,
            m.backlog,
            m.backlog as f64 / m.catch_up.as_secs_f64(),
            m.backlog as f64 / m.raw.as_secs_f64(),
            m.raw.as_secs_f64() / m.catch_up.as_secs_f64(),
            mb(m.peak_catch_up_kb),
            live(mb(m.live_rss_kb)),
            mb(m.peak_kb),
            live(format!("{:.0}", m.live_rate)),
            live(l.len().to_string()),
            pct(0.5),
            pct(0.99)
        );
    }
    if pinned {
        t += "\nnats-server and the publisher on CPU 0, the worker (and the bare consumer) on CPU 1.\n";
    }
    report::publish("service", &t);
}

fn mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1024.0)
}

/// (VmRSS, VmHWM) of a process, in kB.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Machine `m`'s reading on two sites, as published: (subject, message).
fn reading(m: usize, t_ms: i64, value: f64) -> (String, PublishMessage) {
    let (subject, payload) = plant::rms_reading(m, 2, t_ms, value);
    (subject, PublishMessage::build().payload(payload))
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// Milliseconds from the end of an alert's window to now, for windows that ended after
/// `after_ms`.
fn latency(msg: &async_nats::Message, after_ms: i64) -> Option<i64> {
    let received = now_ms();
    let v: serde_json::Value = serde_json::from_slice(&msg.payload).expect("alert JSON");
    let end =
        time::OffsetDateTime::parse(v["window_end"].as_str()?, &time::format_description::well_known::Rfc3339).ok()?;
    let end_ms = (end.unix_timestamp_nanos() / 1_000_000) as i64;
    (end_ms > after_ms).then_some(received - end_ms)
}

async fn run(size: &Size, pinned: bool) -> Measured {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = NatsServer::start_in(&dir.path().join("nats"), "bench", "").expect("nats-server");
    let server_pid = server.pid().expect("server running");
    if pinned {
        report::pin(server_pid, "0", true);
    }
    let client = stator::connect(&server.url()).await.expect("connect");
    let js = jetstream::new(client.clone());
    stator::plant::ensure_streams(&js).await.expect("streams");

    let start_ms = now_ms() - size.backlog_s as i64 * 1000;
    let backlog = (0..size.backlog_s).flat_map(|s| {
        (0..size.machines).map(move |m| reading(m, start_ms + s as i64 * 1000, 1.5 + (m % 7) as f64 * 0.1))
    });
    plant::publish_all(&js, backlog).await;
    let total = (size.backlog_s * size.machines) as u64;

    // Pinned, the bare consumer gets the worker's CPU while it drains.
    let me = std::process::id();
    if pinned {
        report::pin(me, "1", true);
    }
    let raw = raw_catch_up(&js, total).await;
    if pinned {
        report::pin(me, "0", true);
    }
    let mut alerts = client.subscribe("acme.*.alert.>").await.expect("subscribe");
    let listen = format!("127.0.0.1:{}", stator::nats_server::free_port().expect("port"));
    let mut child = plant::stator_run(&["--listen", &listen, LINE_HEALTH], &server.url())
        .env("STATOR_ARCHIVE", dir.path().join("archive"))
        .spawn()
        .expect("stator run");
    let pid = child.id().expect("pid");
    if pinned {
        report::pin(pid, "1", true);
    }
    let stream = js.get_stream("TELEMETRY").await.expect("stream");
    let started = Instant::now();
    loop {
        // Delivered, not acked: a reading is acked once its archive file rolls (every 5
        // minutes in the shipped pipeline), which is not what this measures. The pipeline has
        // two filter subjects, so two consumers: `line-health` (the readings) and
        // `line-health-2` (temperatures, none here).
        if let Ok(info) = stream.consumer_info("line-health").await
            && info.delivered.stream_sequence >= total
            && info.num_pending == 0
        {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(600), "catch-up took over 10 minutes");
        // Not more often: consumer info on a filtered consumer costs the server a scan.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let catch_up = started.elapsed();
    let (_, peak_catch_up_kb) = memory(pid);
    eprintln!(
        "{} machines: caught up with {total} readings in {catch_up:.1?} (a bare consumer: {raw:.1?}), peak RSS {}",
        size.machines,
        mb(peak_catch_up_kb)
    );

    // Live: every machine `hz` times a second; one in ten flaps between 1 and 5 mm/s every
    // 30 s.
    let live_start = now_ms();
    let live_clock = Instant::now();
    let cpu_before = [report::cpu(pid), report::cpu(server_pid), report::cpu(me)];
    let publisher = {
        let js = js.clone();
        let (machines, ticks, hz) = (size.machines, size.live_s as u64 * size.hz, size.hz);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1) / hz as u32);
            let mut sent = 0u64;
            for i in 0..ticks {
                tick.tick().await;
                let t = now_ms();
                let s = i / hz;
                let batch = (0..machines).map(|m| {
                    let high = m % 10 == 0 && (s / 30) % 2 == 0;
                    reading(m, t, if high { 5.0 } else { 1.5 })
                });
                plant::publish_all(&js, batch).await;
                sent += machines as u64;
            }
            sent
        })
    };
    let mut latencies_ms = Vec::new();
    let collect = async {
        while let Some(msg) = alerts.next().await {
            latencies_ms.extend(latency(&msg, live_start));
        }
    };
    let sent = tokio::select! {
        sent = publisher => sent.expect("publisher"),
        () = collect => unreachable!("the subscription ended"),
    };
    // What was sent over the time it took (the publisher falls behind its ticks if the server
    // cannot take the load), and how busy each process was meanwhile.
    let published_in = live_clock.elapsed().as_secs_f64();
    let cpu_after = [report::cpu(pid), report::cpu(server_pid), report::cpu(me)];
    let live_cpu = (size.live_s > 0)
        .then(|| std::array::from_fn(|i| cpu_after[i].saturating_sub(cpu_before[i]).as_secs_f64() / published_in));
    // Let the last windows close (10 s windows, 5 s lateness).
    let settle = Instant::now() + Duration::from_secs(if size.live_s > 0 { 20 } else { 0 });
    while let Ok(Some(msg)) =
        tokio::time::timeout(settle.saturating_duration_since(Instant::now()), alerts.next()).await
    {
        latencies_ms.extend(latency(&msg, live_start));
    }
    let live_rate = if size.live_s == 0 { 0.0 } else { sent as f64 / published_in };
    let publish = if size.live_s == 0 { None } else { publish_quantiles(&listen).await };
    let (live_rss_kb, peak_kb) = memory(pid);
    eprintln!(
        "{} machines: live {live_rate:.0} msg/s, {} alerts, RSS {} (peak {})",
        size.machines,
        latencies_ms.len(),
        mb(live_rss_kb),
        mb(peak_kb)
    );
    // A clean stop, as systemd would.
    let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait()).await.expect("stops").expect("wait");
    assert!(status.success(), "stator run exited with {status}");
    Measured {
        machines: size.machines,
        backlog: total,
        catch_up,
        raw,
        peak_catch_up_kb,
        live_rss_kb,
        peak_kb,
        latencies_ms,
        live_rate,
        publish,
        live_cpu,
    }
}

/// The ceiling for the catch-up: a bare durable pull consumer with the pipeline's readings
/// filter (`acme.*.*.*.*.*.vibration.rms`), batches of 500, an ack per message, until it has
/// received the whole backlog. Removed afterwards.
async fn raw_catch_up(js: &jetstream::Context, total: u64) -> Duration {
    let elapsed = plant::raw_drain(js, "bench-raw", &["acme.*.*.*.*.*.vibration.rms"], total).await;
    let stream = js.get_stream("TELEMETRY").await.expect("stream");
    stream.delete_consumer("bench-raw").await.expect("delete the raw consumer");
    elapsed
}

/// p50 and p99 of the worker's `stator_alert_publish_seconds` histogram, read from its
/// `/metrics` at `listen`, interpolated within buckets as Prometheus' `histogram_quantile`.
async fn publish_quantiles(listen: &str) -> Option<(f64, f64)> {
    let text = reqwest::get(format!("http://{listen}/metrics")).await.ok()?.text().await.ok()?;
    let mut buckets: Vec<(f64, f64)> = text
        .lines()
        .filter(|l| l.starts_with("stator_alert_publish_seconds_bucket{"))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let bound = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            let count: f64 = l.rsplit(' ').next()?.parse().ok()?;
            Some((bound, count))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    if total == 0.0 {
        return None;
    }
    let quantile = |q: f64| {
        let target = q * total;
        let (mut lower, mut below) = (0.0, 0.0);
        for &(bound, count) in &buckets {
            if count >= target {
                if bound.is_infinite() {
                    return lower;
                }
                return lower + (bound - lower) * (target - below) / (count - below).max(f64::MIN_POSITIVE);
            }
            (lower, below) = (bound, count);
        }
        lower
    };
    Some((quantile(0.5), quantile(0.99)))
}
