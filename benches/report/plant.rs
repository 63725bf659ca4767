//! The telemetry the end-to-end benches publish: spindle RMS readings of a simulated plant,
//! in the shape the reference articles give (`acme.{site}.{area}.{line}.{machine}.spindle.vibration.rms`).

#![allow(dead_code, reason = "each bench includes this module and uses a part of it")]

use std::future::IntoFuture;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull, message::PublishMessage};
use bytes::Bytes;
use futures::StreamExt;

/// Machine `m`'s reading at `t_ms` (Unix ms): its subject (spread over `sites` sites and ten
/// lines) and JSON payload.
pub(crate) fn rms_reading(m: usize, sites: usize, t_ms: i64, value: f64) -> (String, Bytes) {
    let ts = stator::rfc3339_ms(t_ms);
    let subject = format!("acme.site-{}.hall-a.line-{}.cnc-{m:04}.spindle.vibration.rms", m % sites, m % 10);
    let payload = format!(
        r#"{{"machine_id":"cnc-{m:04}","sensor":"spindle","value":{value:.3},"unit":"mm/s","timestamp":"{ts}","quality":"good"}}"#
    );
    (subject, Bytes::from(payload))
}

/// Publishes every message, up to 4,096 awaiting their PubAck at a time.
pub(crate) async fn publish_all(js: &jetstream::Context, msgs: impl Iterator<Item = (String, PublishMessage)>) {
    let mut pending = Vec::with_capacity(4096);
    for (subject, msg) in msgs {
        pending.push(js.send_publish(subject, msg).await.expect("publish").into_future());
        if pending.len() == 4096 {
            futures::future::try_join_all(pending.drain(..)).await.expect("pubacks");
        }
    }
    futures::future::try_join_all(pending).await.expect("pubacks");
}

/// The ceiling a pipeline is compared with: a bare durable pull consumer `durable` on
/// TELEMETRY (with `filters`; none: the whole stream), fetching batches of 500 and acking
/// every message, until it has received `total`. The time that took.
pub(crate) async fn raw_drain(js: &jetstream::Context, durable: &str, filters: &[&str], total: u64) -> Duration {
    let stream = js.get_stream("TELEMETRY").await.expect("stream");
    raw_drain_on(&stream, durable, filters, Some(total), 0).await
}

/// [`raw_drain`] of the whole stream, but each message acked only once `hold` later ones have
/// been received (the rest at the end): a consumer with a windowed pipeline's ack pattern
/// (messages held unacknowledged until their window closes) and no work of its own.
#[allow(dead_code)] // not every bench holds
pub(crate) async fn raw_drain_holding(js: &jetstream::Context, durable: &str, total: u64, hold: usize) -> Duration {
    let stream = js.get_stream("TELEMETRY").await.expect("stream");
    raw_drain_on(&stream, durable, &[], Some(total), hold).await
}

/// [`raw_drain`] on `stream`, until it has received `total`, or (`None`) as many as the new
/// consumer has pending; acks held back by `hold` messages as in [`raw_drain_holding`].
pub(crate) async fn raw_drain_on(
    stream: &jetstream::stream::Stream,
    durable: &str,
    filters: &[&str],
    total: Option<u64>,
    hold: usize,
) -> Duration {
    let mut config = pull::Config {
        durable_name: Some(durable.into()),
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        max_ack_pending: 100_000,
        ..Default::default()
    };
    match filters {
        [] => {}
        [one] => config.filter_subject = (*one).to_owned(),
        many => config.filter_subjects = many.iter().map(|f| (*f).to_owned()).collect(),
    }
    let mut consumer: jetstream::consumer::PullConsumer = stream.create_consumer(config).await.expect("consumer");
    let total = match total {
        Some(total) => total,
        None => consumer.info().await.expect("consumer info").num_pending,
    };
    let start = Instant::now();
    let mut messages = consumer.stream().max_messages_per_batch(500).messages().await.expect("messages");
    let mut held = std::collections::VecDeque::with_capacity(hold + 1);
    for _ in 0..total {
        let msg = messages.next().await.expect("message").expect("message ok");
        if hold == 0 {
            msg.ack().await.expect("ack");
            continue;
        }
        held.push_back(msg);
        if held.len() > hold
            && let Some(oldest) = held.pop_front()
        {
            oldest.ack().await.expect("ack");
        }
    }
    for msg in held {
        msg.ack().await.expect("ack");
    }
    start.elapsed()
}

/// The pipeline the throughput benches run: `line-health`'s RMS windows with more aggregates
/// and its alert rule, over the whole stream, its consumer created.
pub(crate) const PIPELINE: &str = r#"
[pipeline]
name = "bench"

[source]
url = "${NATS_URL}"
stream = "TELEMETRY"
durable = "bench-pipeline"
create_consumer = true

[[window]]
name = "rms_10s"
key = ["site", "machine", "sensor"]
tumbling = "10s"
allowed_lateness = "5s"
idle_timeout = "1h"
aggregates = ["count", "mean", "min", "max", "rms", "stddev", "peak_to_peak"]

[[alert]]
name = "vibration-rms"
window = "rms_10s"
metric = "rms"
warning = 2.8
critical = 4.5
clear_below = 2.5
for_windows = 2
subject = "acme.{site}.alert.vibration.{machine}"
"#;

/// Event time of the first reading: 2026-11-22T08:00:00Z.
pub(crate) const T0: i64 = 1_795_334_400_000;

/// `stator run` with `args`, talking to `url`, logging warnings to this process's stderr,
/// killed when dropped.
pub(crate) fn stator_run(args: &[&str], url: &str) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_stator"));
    command
        .args(["run"])
        .args(args)
        .env("NATS_URL", url)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true);
    command
}
