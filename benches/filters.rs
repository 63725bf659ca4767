//! What nats-server charges for a consumer with several filter subjects, against one filter,
//! on a stream with thousands of subjects (one per machine and metric). No Stator code runs:
//! this measures the server the pipelines sit on.
//!
//! The stream holds 2,000 machines' spindle RMS readings at 1 Hz and a coolant temperature
//! every 10 s. Two durable pull consumers read it from the start, fetching in batches of 500
//! and acking every message: one with the single filter `acme.*.*.*.*.*.vibration.rms`, one with
//! that and `acme.*.*.*.*.*.temperature` (as the shipped `line-health` pipeline asks for).
//!
//! `cargo bench --bench filters`; `STATOR_BENCH_MACHINES=N`, `STATOR_BENCH_SECONDS=N` change the
//! size. Under `cargo test` it runs a small smoke size.

#[path = "report/plant.rs"]
mod plant;
#[path = "report/mod.rs"]
mod report;

use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use stator::nats_server::NatsServer;

const RMS: &str = "acme.*.*.*.*.*.vibration.rms";
const TEMPERATURE: &str = "acme.*.*.*.*.*.temperature";

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let env = |name: &str, default: usize| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let (machines, seconds) =
        if bench { (env("STATOR_BENCH_MACHINES", 2000), env("STATOR_BENCH_SECONDS", 30)) } else { (20, 10) };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let (rms, one, two) = rt.block_on(run(machines, seconds));
    let rate = |(n, d): (u64, Duration)| n as f64 / d.as_secs_f64();
    let t = format!(
        "| subjects in the stream | messages | one filter (rms) | two filters (rms + temperature) | one / two (per message) |\n\
         |---:|---:|---:|---:|---:|\n\
         | {} | {} rms + {} temperature | {:.0} msg/s | {:.0} msg/s | {:.1}x |\n",
        machines * 2,
        rms,
        two.0 - rms,
        rate(one),
        rate(two),
        rate(one) / rate(two)
    );
    if bench {
        report::publish("filters", &t);
    } else {
        assert_eq!(one.0, rms, "the single filter delivered the rms readings");
        println!("{t}");
    }
}

/// (rms readings, (delivered, time) with one filter, (delivered, time) with two).
async fn run(machines: usize, seconds: usize) -> (u64, (u64, Duration), (u64, Duration)) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = NatsServer::start_in(&dir.path().join("nats"), "bench", "").expect("nats-server");
    let client = stator::connect(&server.url()).await.expect("connect");
    let js = jetstream::new(client.clone());
    stator::plant::ensure_streams(&js).await.expect("streams");
    let msgs = (0..seconds).flat_map(|s| {
        (0..machines).flat_map(move |m| {
            let t_ms = 1_764_662_400_000 + s as i64 * 1000;
            let (subject, payload) = plant::rms_reading(m, 2, t_ms, 1.5);
            let rms = (subject, PublishMessage::build().payload(payload));
            let temperature = (s % 10 == 0).then(|| {
                let subject = format!("acme.site-{}.hall-a.line-{}.cnc-{m:04}.coolant.temperature", m % 2, m % 10);
                (subject, PublishMessage::build().payload(r#"{"value":41.5}"#.into()))
            });
            std::iter::once(rms).chain(temperature)
        })
    });
    plant::publish_all(&js, msgs).await;
    let rms = (machines * seconds) as u64;
    let total = rms + (machines * seconds.div_ceil(10)) as u64;
    let one = consume(&js, "one-filter", vec![RMS.into()], rms).await;
    let two = consume(&js, "two-filters", vec![RMS.into(), TEMPERATURE.into()], total).await;
    (rms, one, two)
}

/// Reads `expect` messages through a new durable consumer with `filters`, acking each.
async fn consume(js: &jetstream::Context, name: &str, filters: Vec<String>, expect: u64) -> (u64, Duration) {
    let filters: Vec<&str> = filters.iter().map(String::as_str).collect();
    (expect, plant::raw_drain(js, name, &filters, expect).await)
}
