//! Edge to cloud (the reference articles' setting): a factory's leaf node with its own
//! JetStream and an MQTT listener, the cloud hub sourcing its streams across a WAN link that
//! is cut (or whose hub goes down) for 60 s. The shipped pipelines run at both ends:
//! `pipelines/edge-alerts.toml` at the edge, `pipelines/cloud-archive.toml` in the cloud.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use stator::wan::{EDGE_DOMAIN, WanOptions};
use stator_engine::archive::ArchiveLocation;
use stator_engine::worker::{RunMode, Stats};

use crate::harness::*;

/// The articles' streams at both ends: the edge's TELEMETRY, ALERTS and dead letters; in the
/// cloud, the same names sourcing the edge's through `$JS.edge.API`, at `replicas` copies.
/// Retries while a new cluster elects its JetStream leader.
async fn edge_and_cloud_streams(wan: &TestWan, replicas: usize) -> (jetstream::Context, jetstream::Context) {
    let edge = jetstream::new(stator::connect(&wan.leaf.url()).await.expect("edge"));
    let cloud = jetstream::new(stator::connect(&wan.hub_urls()).await.expect("cloud"));
    stator::plant::ensure_edge_streams(&edge).await.expect("edge streams");
    wait_until(Duration::from_secs(30), "the cloud streams created", || async {
        stator::plant::ensure_cloud_streams(&cloud, &[EDGE_DOMAIN], replicas).await.is_ok()
    })
    .await;
    (edge, cloud)
}

/// Machines at the edge: `cnc-001`..`cnc-009` publish through JetStream, `cnc-010` is an MQTT
/// device (QoS 1) on the leaf's MQTT listener.
const MACHINES: usize = 10;
const MQTT_MACHINE: &str = "cnc-010";
/// The hot machine: over the critical level for event seconds [60, 150), all during the outage.
const HOT: &str = "cnc-003";

fn machine(i: usize) -> String {
    format!("cnc-{:03}", i + 1)
}

fn value(machine: &str, t: i64) -> f64 {
    if machine == HOT && (60..150).contains(&t) { 6.0 } else { 1.0 + (t % 7) as f64 / 10.0 }
}

#[derive(Clone, Copy)]
enum Outage {
    /// The WAN link cut (the hub a 3-node cluster with R3 streams).
    Cut,
    /// The hub's only server down.
    HubDown,
}

/// Outage of 60 s; event time runs five times faster than the wall clock.
const OUTAGE_EVENT_SECONDS: i64 = 300;
const BEFORE: i64 = 30;
const AFTER: i64 = 30;

#[tokio::test]
async fn the_edge_alerts_through_a_wan_cut_and_the_cloud_archives_every_reading_once() {
    edge_to_cloud(Outage::Cut).await;
}

#[tokio::test]
async fn the_edge_alerts_through_a_hub_outage_and_the_cloud_archives_every_reading_once() {
    edge_to_cloud(Outage::HubDown).await;
}

async fn edge_to_cloud(outage: Outage) {
    let mqtt_port = stator::nats_server::free_port().expect("port");
    let nodes = match outage {
        Outage::Cut => 3,
        Outage::HubDown => 1,
    };
    let mut wan = TestWan::start(&WanOptions { hub_nodes: nodes, leaf_mqtt_port: Some(mqtt_port) }).await;
    let (edge, cloud) = edge_and_cloud_streams(&wan, nodes).await;
    let archive_dir = tempfile::tempdir().expect("temp dir");
    let archive = archive_dir.path().to_str().expect("utf-8").to_owned();
    // The shipped files; a 5 s idle timeout instead of 30 s and archive files rolled every 2 s
    // instead of 5 min keep the test short.
    let shipped = |i: usize, url: &str| {
        let text = stator::EDGE_PIPELINES[i]
            .1
            .replace("idle_timeout = \"30s\"", "idle_timeout = \"5s\"")
            .replace("roll_age = \"5m\"", "roll_age = \"2s\"");
        pipeline_with(&text, &[("NATS_URL", url), ("STATOR_ARCHIVE", &archive)])
    };
    let edge_worker = RunningWorker::start(&shipped(0, &wan.leaf.url()), &wan.leaf.url(), RunMode::Follow).await;
    let cloud_worker = RunningWorker::start(&shipped(1, &wan.hub_urls()), &wan.hub_urls(), RunMode::Follow).await;
    let (edge_stats, cloud_stats) = (edge_worker.stats.clone(), cloud_worker.stats.clone());

    let mqtt = MqttDevice::connect(mqtt_port).await;
    let publish_seconds = async |from: i64, to: i64| {
        for t in from..to {
            let readings: Vec<Reading> = (0..MACHINES)
                .map(|i| Reading::rms("munich", &machine(i), T0 + t * 1000, value(&machine(i), t)))
                .collect();
            let (device, others): (Vec<_>, Vec<_>) =
                readings.into_iter().partition(|r| r.subject.contains(MQTT_MACHINE));
            publish(&edge, &others).await;
            for r in device {
                mqtt.publish(&r).await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    publish_seconds(0, BEFORE).await;
    let before = BEFORE as u64 * MACHINES as u64;
    wait_until(Duration::from_secs(30), "the first readings in the cloud", || async {
        Stats::get(&cloud_stats.fetched) >= before
    })
    .await;

    match outage {
        Outage::Cut => wan.link.cut(),
        Outage::HubDown => wan.stop_hub(),
    }
    // 60 s of wall clock: the edge stores, and alerts on the hot machine (raised and cleared).
    publish_seconds(BEFORE, BEFORE + OUTAGE_EVENT_SECONDS).await;
    let during = alerts(&edge).await;
    assert_eq!(
        during.iter().map(|(_, _, a)| a.state.as_str()).collect::<Vec<_>>(),
        ["critical", "cleared"],
        "the edge raised and cleared {HOT} during the outage: {during:?}"
    );
    assert!(Stats::get(&cloud_stats.fetched) <= before, "nothing reached the cloud meanwhile");
    match outage {
        Outage::Cut => wan.link.restore(),
        Outage::HubDown => wan.restart_hub().expect("hub restarts"),
    }
    let last = BEFORE + OUTAGE_EVENT_SECONDS + AFTER;
    publish_seconds(BEFORE + OUTAGE_EVENT_SECONDS, last).await;
    mqtt.wait_acked(last as usize).await;

    // Every window of every machine closed at both ends, each over all of its readings.
    let windows = (last / 10) as u64 * MACHINES as u64;
    for (stats, side) in [(&edge_stats, "edge"), (&cloud_stats, "cloud")] {
        wait_until(Duration::from_secs(120), &format!("{windows} windows closed at the {side}"), || async {
            Stats::get(&stats.windows_closed) >= windows
        })
        .await;
    }
    for (js, durable) in [(&edge, "edge-alerts"), (&cloud, "cloud-archive")] {
        wait_until(Duration::from_secs(30), &format!("{durable} acked everything"), || async {
            consumer_backlog(js, durable).await == (0, 0)
        })
        .await;
    }
    edge_worker.stop().await;
    cloud_worker.stop().await;
    assert_eq!(Stats::get(&cloud_stats.upstream_lost), 0, "no reading reported lost");
    for (stats, side) in [(&edge_stats, "edge"), (&cloud_stats, "cloud")] {
        assert_eq!(Stats::get(&stats.late), 0, "nothing late at the {side}");
        assert_eq!(Stats::get(&stats.dead_letters), 0, "nothing dead-lettered at the {side}");
        assert_eq!(Stats::get(&stats.windows_closed), windows, "no window twice at the {side}");
    }

    // The cloud archive: every reading once, in each machine's order.
    let location = ArchiveLocation::open(&archive, &[]).expect("archive");
    let rows = sql(&location, "SELECT machine, time, value, _seq FROM readings ORDER BY machine, _seq").await;
    assert_eq!(rows.len() as i64, last * MACHINES as i64, "every reading archived once");
    let mut by_machine: BTreeMap<String, Vec<(String, f64)>> = BTreeMap::new();
    for r in &rows {
        by_machine.entry(r[0].clone()).or_default().push((r[1].clone(), r[2].parse().expect("value")));
    }
    assert_eq!(by_machine.len(), MACHINES);
    for (m, readings) in &by_machine {
        assert_eq!(readings.len() as i64, last, "{m}: each reading once");
        let times: Vec<&String> = readings.iter().map(|(t, _)| t).collect();
        assert!(times.windows(2).all(|w| w[0] < w[1]), "{m}: stream order is event-time order");
    }

    // Every cloud window's RMS equals one computed here over all of its readings.
    let features = sql(
        &location,
        "SELECT machine, CAST(window_start AS BIGINT) AS start_ms, value FROM features \
         WHERE feature = 'rms' ORDER BY machine, window_start",
    )
    .await;
    assert_eq!(features.len() as u64, windows, "one RMS per machine and window");
    for f in &features {
        let start_ms: i64 = f[1].parse().expect("window start");
        let t0 = (start_ms - T0) / 1000;
        let expected = rms(&(t0..t0 + 10).map(|t| value(&f[0], t)).collect::<Vec<_>>());
        let got: f64 = f[2].parse().expect("rms");
        assert!((got - expected).abs() < 1e-9, "{} window at {t0}: {got} vs {expected}", f[0]);
    }
    let published = crate::harness::features(&cloud).await;
    assert_eq!(published.len() as u64, windows, "each window's features published once");

    // Alerts: raised and cleared once at the edge, and the cloud holds the same, sourced.
    let at_edge = alerts(&edge).await;
    assert_eq!(at_edge.len(), 2, "no repeated alert: {at_edge:?}");
    wait_until(Duration::from_secs(30), "the edge's alerts in the cloud", || async {
        alerts(&cloud).await.len() >= at_edge.len()
    })
    .await;
    let ids = |a: &[(String, String, Alert)]| a.iter().map(|(s, id, _)| (s.clone(), id.clone())).collect::<Vec<_>>();
    assert_eq!(ids(&alerts(&cloud).await), ids(&at_edge), "the cloud's ALERTS source the edge's");
    for js in [&edge, &cloud] {
        let dead = dead_letters(js).await;
        assert!(dead.is_empty(), "{dead:?}");
    }
}

/// An MQTT device on the leaf's listener, QoS 1; its event loop counts PUBACKs.
struct MqttDevice {
    client: AsyncClient,
    acked: Arc<AtomicUsize>,
    _events: tokio::task::JoinHandle<()>,
}

impl MqttDevice {
    async fn connect(port: u16) -> Self {
        let mut options = MqttOptions::new(format!("{MQTT_MACHINE}-gateway"), "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(5));
        let (client, mut events) = AsyncClient::new(options, 1024);
        let acked = Arc::new(AtomicUsize::new(0));
        let counter = acked.clone();
        let events = tokio::spawn(async move {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        Self { client, acked, _events: events }
    }

    /// Publishes on the MQTT topic of the reading's subject.
    async fn publish(&self, r: &Reading) {
        let topic = r.subject.replace('.', "/");
        self.client.publish(topic, QoS::AtLeastOnce, false, r.payload().to_vec()).await.expect("queued");
    }

    async fn wait_acked(&self, n: usize) {
        wait_until(Duration::from_secs(30), "every MQTT publish acknowledged", || async {
            self.acked.load(Ordering::SeqCst) >= n
        })
        .await;
    }
}

/// A cut longer than the edge stream keeps: the edge discards the oldest readings before they
/// are forwarded. The cloud worker finds the hole in the source sequences and counts it.
#[tokio::test]
async fn readings_an_edge_discarded_during_a_cut_are_reported_lost() {
    let wan = TestWan::start(&WanOptions { hub_nodes: 1, leaf_mqtt_port: None }).await;
    let (edge, _cloud) = edge_and_cloud_streams(&wan, 1).await;
    // The edge keeps its newest 40 readings only.
    edge.update_stream(jetstream::stream::Config { max_messages: 40, ..stator::plant::telemetry_stream(1) })
        .await
        .expect("edge TELEMETRY limited");
    let archive_dir = tempfile::tempdir().expect("temp dir");
    let archive = archive_dir.path().to_str().expect("utf-8").to_owned();
    let p = pipeline_with(stator::EDGE_PIPELINES[1].1, &[("NATS_URL", &wan.hub_urls()), ("STATOR_ARCHIVE", &archive)]);
    let worker = RunningWorker::start(&p, &wan.hub_urls(), RunMode::Follow).await;
    let stats = worker.stats.clone();
    let readings = |from: i64, to: i64| -> Vec<Reading> {
        (from..to).map(|t| Reading::rms("munich", "cnc-001", T0 + t * 1000, 1.0)).collect()
    };
    publish(&edge, &readings(0, 20)).await;
    wait_for_count(&stats, "the first readings in the cloud", 20, |s| &s.fetched).await;
    wan.link.cut();
    // 100 more while cut: the edge keeps edge sequences 81..=120, so 21..=80 never leave it.
    publish(&edge, &readings(20, 120)).await;
    wan.link.restore();
    wait_for_count(&stats, "what the edge still had", 60, |s| &s.fetched).await;
    wait_for_count(&stats, "the lost readings counted", 60, |s| &s.upstream_lost).await;
    let (_, metrics) = http_get(&format!("{}/metrics", worker.http)).await;
    assert_eq!(sample(&metrics, "stator_upstream_lost_messages_total{pipeline=\"cloud-archive\"}"), Some(60.0));
    worker.stop().await;
    assert_eq!(Stats::get(&stats.upstream_lost), 60, "counted once");
    assert_eq!(Stats::get(&stats.fetched), 60);
}

/// `deliver = "start_time"` and `stator replay --since/--last` in the cloud: on a sourced
/// TELEMETRY at R3 on a 3-node hub. A start time selects by when the cloud stored a message.
#[tokio::test]
async fn start_times_select_from_a_sourced_stream_on_a_cluster() {
    let wan = TestWan::start(&WanOptions { hub_nodes: 3, leaf_mqtt_port: None }).await;
    let (edge, cloud) = edge_and_cloud_streams(&wan, 3).await;
    let readings = |from: i64, to: i64| -> Vec<Reading> {
        (from..to).flat_map(|t| ["cnc-001", "cnc-002"].map(|m| Reading::rms("munich", m, T0 + t * 1000, 1.0))).collect()
    };
    let stored = async |n: u64| {
        wait_until(Duration::from_secs(30), &format!("{n} readings in the cloud"), || async {
            let mut stream = cloud.get_stream("TELEMETRY").await.expect("cloud TELEMETRY");
            stream.info().await.is_ok_and(|i| i.state.messages >= n)
        })
        .await;
    };
    publish(&edge, &readings(0, 30)).await;
    stored(60).await;
    let since = time::OffsetDateTime::now_utc();
    publish(&edge, &readings(30, 60)).await;
    stored(120).await;
    let since = since.format(&time::format_description::well_known::Rfc3339).expect("RFC 3339");

    let dir = tempfile::tempdir().expect("temp dir");
    let archive = dir.path().join("archive").to_str().expect("utf-8").to_owned();
    let text = stator::EDGE_PIPELINES[1]
        .1
        .replace("deliver = \"all\"", &format!("deliver = \"start_time\"\nstart_time = \"{since}\""));
    let p = pipeline_with(&text, &[("NATS_URL", &wan.hub_urls()), ("STATOR_ARCHIVE", &archive)]);
    let worker = RunningWorker::start(&p, &wan.hub_urls(), RunMode::Drain).await;
    let stats = worker.stats.clone();
    worker.finish().await;
    assert_eq!(Stats::get(&stats.fetched), 60, "deliver = start_time: only what the cloud stored since");

    let file = dir.path().join("cloud.toml");
    std::fs::write(&file, stator::EDGE_PIPELINES[1].1).expect("pipeline file");
    for (id, start, expected) in [("since", ["--since", since.as_str()], 60), ("last", ["--last", "1h"], 120)] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_stator"))
            .env("NATS_URL", wan.hub_urls())
            .env("STATOR_ARCHIVE", &archive)
            .args([&["replay", file.to_str().expect("utf-8"), "--id", id][..], &start[..]].concat())
            .output()
            .await
            .expect("stator replay");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains(&format!("replay {id} done: {expected} of {expected} messages")), "{stdout}");
        let replayed = ArchiveLocation::open(&format!("{archive}/replay/{id}"), &[]).expect("archive");
        let n = sql(&replayed, "SELECT count(*) FROM readings").await;
        assert_eq!(n[0][0], expected.to_string(), "{id}: every replayed reading archived once");
    }
}
