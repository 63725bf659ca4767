//! The telemetry the end-to-end benches publish: spindle RMS readings of a simulated plant,
//! in the shape the reference articles give (`acme.{site}.{area}.{line}.{machine}.spindle.vibration.rms`).

use std::future::IntoFuture;

use async_nats::jetstream::{self, message::PublishMessage};
use bytes::Bytes;

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
