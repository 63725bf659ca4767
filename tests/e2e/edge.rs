//! Edge to cloud (the reference articles' setting): a factory's leaf node with its own
//! JetStream, the cloud hub sourcing its TELEMETRY stream across a WAN link that is cut.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use stator_engine::worker::{RunMode, Stats};

use crate::harness::*;

/// Edge TELEMETRY on the leaf; on the hub, cloud TELEMETRY with no subjects of its own,
/// sourcing the edge's through `$JS.edge.API`, and the cloud's FEATURES and dead letters.
pub async fn edge_and_cloud_streams(wan: &TestWan) -> (jetstream::Context, jetstream::Context) {
    let edge = jetstream::new(stator::connect(&wan.leaf.url()).await.expect("edge"));
    let cloud = jetstream::new(stator::connect(&wan.hub.url()).await.expect("cloud"));
    let subjects = |s: &[&str]| s.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    edge.create_stream(stream::Config {
        name: "TELEMETRY".into(),
        subjects: subjects(&stator::plant::TELEMETRY_SUBJECTS),
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .expect("edge TELEMETRY");
    cloud
        .create_stream(stream::Config {
            name: "TELEMETRY".into(),
            sources: Some(vec![stream::Source {
                name: "TELEMETRY".into(),
                external: Some(stream::External { api_prefix: "$JS.edge.API".into(), delivery_prefix: None }),
                ..Default::default()
            }]),
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .expect("cloud TELEMETRY");
    for (name, s) in [
        ("FEATURES", &stator::plant::FEATURE_SUBJECTS[..]),
        ("STATOR_DEADLETTER", &stator::plant::DEAD_LETTER_SUBJECTS[..]),
    ] {
        cloud
            .create_stream(stream::Config { name: name.into(), subjects: subjects(s), ..Default::default() })
            .await
            .expect("cloud stream");
    }
    (edge, cloud)
}

/// Defect: during a WAN cut the cloud's sourced stream receives nothing, every machine's key
/// went idle (wall clock), its open window was closed with part of its readings, and the
/// forwarded backlog was dead-lettered as late. Now a silent upstream holds the idle clocks:
/// after the cut every cloud window holds all of its readings, nothing is late.
#[tokio::test]
async fn a_wan_cut_keeps_the_cloud_windows_open_until_the_backlog_arrives() {
    cloud_windows_survive(Outage::Cut).await;
}

/// The cloud's server itself down for 12 s (three idle timeouts) while the edge stores.
#[tokio::test]
async fn a_hub_outage_keeps_the_cloud_windows_open_until_the_backlog_arrives() {
    cloud_windows_survive(Outage::HubDown).await;
}

enum Outage {
    Cut,
    HubDown,
}

async fn cloud_windows_survive(outage: Outage) {
    let mut wan = TestWan::start().await;
    let (edge, cloud) = edge_and_cloud_streams(&wan).await;
    let machines = ["cnc-001", "cnc-002", "cnc-003"];
    let text = rms_pipeline("2s", 1, "4s").replace(
        "aggregates = [\"count\", \"rms\"]",
        "aggregates = [\"count\", \"rms\"]\npublish = \"acme.{site}.features.rms.{machine}\"",
    );
    let p = pipeline(&text, &wan.hub.url());
    let worker = RunningWorker::start(&p, &wan.hub.url(), RunMode::Follow).await;
    let stats = worker.stats.clone();
    // Readings one event-second apart, five per wall second per machine.
    let publish_seconds = async |from: i64, to: i64| {
        for t in from..to {
            let readings: Vec<Reading> =
                machines.iter().map(|m| Reading::rms("munich", m, T0 + t * 1000, 1.0 + t as f64 / 100.0)).collect();
            publish(&edge, &readings).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    publish_seconds(0, 15).await;
    wait_for_count(&stats, "the first readings in the cloud", 45, |s| &s.fetched).await;

    match outage {
        Outage::Cut => {
            wan.link.cut();
            wait_until(Duration::from_secs(10), "the upstream seen silent", || async {
                stats.upstream_silent.get() == 1
            })
            .await;
        }
        Outage::HubDown => wan.hub.stop(),
    }
    // The edge keeps storing; the outage lasts three idle timeouts.
    publish_seconds(15, 25).await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(Stats::get(&stats.fetched), 45, "nothing reaches the cloud worker meanwhile");
    match outage {
        Outage::Cut => wan.link.restore(),
        Outage::HubDown => wan.hub.restart().expect("hub restarts"),
    }
    publish_seconds(25, 45).await;
    wait_for_count(&stats, "every reading in the cloud", 135, |s| &s.fetched).await;
    wait_until(Duration::from_secs(20), "the upstream heard again", || async { stats.upstream_silent.get() == 0 })
        .await;
    // Windows [0,10) ... [30,40) closed by the watermark, each with its 10 readings.
    wait_for_count(&stats, "four windows per machine", 12, |s| &s.windows_closed).await;
    worker.stop().await;

    assert_eq!(Stats::get(&stats.late), 0, "nothing taken for late");
    assert_eq!(Stats::get(&stats.dead_letters), 0);
    let features = stator::plant::read_stream(&cloud, "FEATURES", None).await.expect("features");
    let mut windows: Vec<(String, String, u64)> = features
        .iter()
        .map(|m| {
            let v: serde_json::Value = serde_json::from_slice(&m.payload).expect("json");
            let count = v["features"]["count"].as_f64().expect("count") as u64;
            (v["key"]["machine"].as_str().unwrap_or_default().to_owned(), v["window_end"].to_string(), count)
        })
        .collect();
    windows.sort();
    assert_eq!(windows.len(), 12, "{windows:?}");
    assert!(windows.iter().all(|(_, _, count)| *count == 10), "every window over all its readings: {windows:?}");
}
