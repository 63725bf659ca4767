//! The telemetry the end-to-end benches publish: spindle RMS readings of a simulated plant,
//! in the shape the reference articles give (`acme.{site}.{area}.{line}.{machine}.spindle.vibration.rms`).

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
    let consumer: jetstream::consumer::PullConsumer = stream.create_consumer(config).await.expect("consumer");
    let start = Instant::now();
    let mut messages = consumer.stream().max_messages_per_batch(500).messages().await.expect("messages");
    for _ in 0..total {
        let msg = messages.next().await.expect("message").expect("message ok");
        msg.ack().await.expect("ack");
    }
    start.elapsed()
}
