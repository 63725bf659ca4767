//! MQTT devices: a QoS 1 client publishes through nats-server's own MQTT listener; the topic
//! `acme/munich/.../rms` is the subject `acme.munich....rms`, stored by TELEMETRY and read by
//! a pipeline like any other reading.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use stator_engine::worker::{RunMode, Stats};

use crate::harness::*;

#[tokio::test]
async fn qos1_mqtt_readings_reach_the_pipeline_and_alert() {
    let mqtt_port = stator::nats_server::free_port().expect("port");
    let server = TestServer::start(&format!("mqtt {{ listen: \"127.0.0.1:{mqtt_port}\" }}"));
    let js = server.js().await;
    stator::plant::ensure_streams(&js).await.expect("streams");

    let mut options = MqttOptions::new("cnc-001-gateway", "127.0.0.1", mqtt_port);
    options.set_keep_alive(Duration::from_secs(5));
    let (client, mut events) = AsyncClient::new(options, 64);
    let topic = "acme/munich/hall-a/line-1/cnc-001/spindle/vibration/rms";
    let readings: Vec<Reading> = (0..25).map(|s| Reading::rms("munich", "cnc-001", T0 + s * 1000, 5.0)).collect();
    for r in &readings {
        client.publish(topic, QoS::AtLeastOnce, false, r.payload().to_vec()).await.expect("queued");
    }
    // QoS 1: each publish is acknowledged once nats-server has stored it in the stream.
    let acked = tokio::time::timeout(Duration::from_secs(20), async {
        let mut acked = 0;
        while acked < readings.len() {
            if let Event::Incoming(Packet::PubAck(_)) = events.poll().await.expect("mqtt connection") {
                acked += 1;
            }
        }
        acked
    })
    .await
    .expect("every publish acknowledged");
    assert_eq!(acked, 25);
    // The PUBACK may come before the stream has stored the message: wait for all of them.
    wait_until(Duration::from_secs(20), "25 readings in TELEMETRY", || async {
        stator::plant::read_stream(&js, "TELEMETRY", None).await.is_ok_and(|m| m.len() >= 25)
    })
    .await;
    let stored = stator::plant::read_stream(&js, "TELEMETRY", None).await.expect("TELEMETRY");
    assert_eq!(stored.len(), 25, "each reading once");
    assert_eq!(stored[0].subject.as_str(), readings[0].subject, "the topic's / are the subject's .");
    // nats-server marks an MQTT publish with its QoS.
    assert_eq!(stored[0].headers.get("Nmqtt-Pub").map(|v| v.as_str()), Some("1"));

    let p = pipeline(&rms_pipeline("2s", 1, "1h"), &server.url());
    let worker = RunningWorker::start(&p, &server.url(), RunMode::Drain).await;
    let stats = worker.stats.clone();
    worker.finish().await;
    assert_eq!(Stats::get(&stats.dead_letters), 0, "MQTT headers do not get in the way");
    let alerts = alerts(&js).await;
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].0, "acme.munich.alert.vibration.cnc-001");
    assert_eq!(consumer_backlog(&js, "test-rms").await, (0, 0));
}
