//! The harness starts the topologies of the reference articles: a 3-node JetStream cluster
//! and a leaf node with store-and-forward.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use futures::StreamExt;
use stator_engine::worker::RunMode;

use crate::harness::*;

#[tokio::test]
async fn a_pipeline_runs_against_a_three_node_cluster_with_replicated_streams() {
    let cluster = TestCluster::start(3).await;
    let client = stator::connect(&cluster.urls()).await.unwrap_or_else(|e| panic!("{}: {e:?}", cluster.urls()));
    let js = jetstream::new(client);
    // The meta leader needs a moment after the routes form: retry until R3 streams exist.
    wait_until(Duration::from_secs(30), "R3 streams on the cluster", || async {
        let mut ok = true;
        for (name, subjects) in [
            ("TELEMETRY", stator::plant::TELEMETRY_SUBJECTS.to_vec()),
            ("ALERTS", stator::plant::ALERT_SUBJECTS.to_vec()),
        ] {
            let config = stream::Config {
                name: name.into(),
                subjects: subjects.iter().map(|s| (*s).to_owned()).collect(),
                num_replicas: 3,
                ..Default::default()
            };
            ok &= js.create_or_update_stream(config).await.is_ok();
        }
        ok
    })
    .await;
    publish(&js, &(0..25).map(|s| Reading::rms("munich", "cnc-001", T0 + s * 1000, 5.0)).collect::<Vec<_>>()).await;
    let p = pipeline(&rms_pipeline("2s", 1, "1h"), &cluster.urls());
    RunningWorker::start(&p, &cluster.urls(), RunMode::Drain).await.finish().await;
    let info = js.get_stream("ALERTS").await.unwrap().info().await.unwrap().clone();
    assert_eq!(info.config.num_replicas, 3);
    assert_eq!(info.state.messages, 1, "one critical transition; alerts seen: {:?}", alerts(&js).await);
}

#[tokio::test]
async fn a_leaf_node_forwards_what_edge_devices_publish_to_the_hub() {
    let topo = TestLeaf::start();
    let hub = stator::connect(&topo.hub.url()).await.unwrap();
    let edge = stator::connect(&topo.leaf.url()).await.unwrap();
    let mut sub = hub.subscribe("acme.munich.>").await.unwrap();
    hub.flush().await.unwrap();
    // The leaf connection forms asynchronously: publish until the hub sees it.
    let subject = "acme.munich.hall-a.line-1.cnc-001.spindle.vibration.rms";
    let got = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            edge.publish(subject, "{\"value\":1}".into()).await.unwrap();
            edge.flush().await.unwrap();
            if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), sub.next()).await {
                return m;
            }
        }
    })
    .await
    .expect("the hub receives the edge's reading");
    assert_eq!(got.subject.as_str(), subject);
    // The leaf has its own JetStream domain for store-and-forward.
    let edge_js = jetstream::with_domain(edge, "edge");
    edge_js
        .create_stream(stream::Config {
            name: "EDGE".into(),
            subjects: vec!["acme.munich.>".into()],
            ..Default::default()
        })
        .await
        .expect("JetStream in the leaf's domain");
}
