//! `stator demo --edge`: the reference articles' edge-to-cloud setting live on one machine. A
//! cloud hub and a factory's leaf node (each with its own JetStream domain) linked through a
//! proxy standing for the WAN; machines publish at the edge in real time; the shipped
//! `pipelines/edge-alerts.toml` alerts at the edge and `pipelines/cloud-archive.toml` archives
//! in the cloud. The link is cut: the edge keeps storing and alerting; when it returns the
//! backlog is forwarded in order and the cloud archive ends complete.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream;
use futures::future::try_join_all;
use stator_engine::archive::ArchiveLocation;
use stator_engine::config;
use stator_engine::observe::Counter;
use stator_engine::worker::{self, RunMode, Stats, WorkerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::plant;
use crate::simulate::{self, PlantSpec, TelemetryMessage};
use crate::wan::{EDGE_DOMAIN, Wan, WanOptions};

/// Settings of the edge demo.
#[derive(Debug, Clone)]
pub struct EdgeDemoOptions {
    /// Working directory (servers' stores and logs, the cloud archive).
    pub dir: PathBuf,
    /// Machines publishing at the edge.
    pub machines: usize,
    /// Time between two readings of one machine (event time follows the wall clock).
    pub interval: Duration,
    /// Publishing before the cut.
    pub before: Duration,
    /// How long the WAN link stays cut.
    pub cut: Duration,
    /// Publishing after the link returns.
    pub after: Duration,
    /// The file the log goes to (`None`: the terminal), named on screen first.
    pub log: Option<PathBuf>,
}

/// The machine that runs hot while the link is cut.
pub const HOT: &str = "cnc-003";

/// What the edge demo saw, side by side.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EdgeDemoReport {
    /// Readings published at the edge.
    pub published: u64,
    /// Messages in the edge's TELEMETRY stream.
    pub edge_stored: u64,
    /// Messages in the cloud's (sourced) TELEMETRY stream.
    pub cloud_stored: u64,
    /// Readings in the cloud's Parquet archive.
    pub archived: u64,
    /// Windows the two workers closed: (edge, cloud).
    pub windows: (u64, u64),
    /// Windows expected (machines × window starts among the readings).
    pub expected_windows: u64,
    /// Alert transitions in the edge's ALERTS stream, and how many were raised during the cut.
    pub edge_alerts: u64,
    /// Of them, those published while the link was cut.
    pub alerts_during_cut: u64,
    /// Alert transitions in the cloud's ALERTS stream (sourced from the edge's).
    pub cloud_alerts: u64,
    /// Dead letters and late readings, both sides.
    pub dead_letters: u64,
}

impl EdgeDemoReport {
    /// Whether the cloud ended with every reading, every window and every alert.
    pub fn complete(&self) -> bool {
        self.edge_stored == self.published
            && self.cloud_stored == self.published
            && self.archived == self.published
            && self.windows == (self.expected_windows, self.expected_windows)
            && self.cloud_alerts == self.edge_alerts
            && self.dead_letters == 0
    }
}

/// Window length of the shipped edge pipelines.
const WINDOW_MS: i64 = 10_000;

/// Runs the edge demo and prints what happens.
///
/// # Errors
/// When a server cannot start, a pipeline does not load or NATS fails.
pub async fn run(opts: &EdgeDemoOptions) -> anyhow::Result<EdgeDemoReport> {
    let nats_dir = opts.dir.join("edge-nats");
    let archive_dir = super::fresh_dirs(&nats_dir, &opts.dir.join("cloud-archive"), opts.log.as_deref())?;
    let wan = Wan::start(&nats_dir, &WanOptions { hub_nodes: 1, leaf_mqtt_port: None }).await?;
    let (edge_url, cloud_url) = (wan.leaf.url(), wan.hub_urls());
    println!("cloud hub (JetStream domain hub) on {cloud_url}");
    println!("factory leaf node (JetStream domain edge) on {edge_url}, linked to the hub through {}", wan.link.addr);
    let edge_client = crate::connect(&edge_url).await?;
    let cloud_client = crate::connect(&cloud_url).await?;
    let (edge, cloud) = (jetstream::new(edge_client.clone()), jetstream::new(cloud_client.clone()));
    plant::ensure_edge_streams(&edge).await.map_err(anyhow::Error::msg)?;
    plant::ensure_cloud_streams(&cloud, &[EDGE_DOMAIN], 1).await.map_err(anyhow::Error::msg)?;
    println!("edge: TELEMETRY, ALERTS, STATOR_DEADLETTER; cloud: the same, each sourcing the edge's, and FEATURES");

    let (stop, stop_rx) = watch::channel(false);
    let archive_url = archive_dir.display().to_string();
    let mut workers = Vec::new();
    for ((path, text), (url, client)) in
        crate::EDGE_PIPELINES.iter().zip([(&edge_url, &edge_client), (&cloud_url, &cloud_client)])
    {
        // A 5 s idle timeout instead of 30 s and archive files every 2 s instead of 5 min, so
        // the last windows close and the archive is complete soon after the end.
        let text = text
            .replace("idle_timeout = \"30s\"", "idle_timeout = \"5s\"")
            .replace("roll_age = \"5m\"", "roll_age = \"2s\"");
        let env = |name: &str| match name {
            "NATS_URL" => Some(url.clone()),
            "STATOR_ARCHIVE" => Some(archive_url.clone()),
            _ => None,
        };
        let loaded = config::load_str(Path::new(path), &text, &env)?;
        println!("pipeline `{}` ({path}) on {url}", loaded.pipeline.name);
        let stats = Arc::new(Stats::default());
        let task = tokio::spawn(worker::run(
            Arc::new(loaded.pipeline),
            client.clone(),
            stop_rx.clone(),
            stats.clone(),
            RunMode::Follow,
        ));
        workers.push((stats, task));
    }
    let (edge_stats, cloud_stats) = (workers[0].0.clone(), workers[1].0.clone());

    let spec = PlantSpec {
        org: "acme".into(),
        sites: vec!["munich".into()],
        areas: 1,
        lines: opts.machines.div_ceil(5).max(1),
        machines_per_line: opts.machines.min(5),
        drift: vec![],
        drift_to: 0.0,
        interval: opts.interval,
        start_ms: 0,
        readings: 0,
        realtime: true,
        seed: 7,
    };
    let mut machines = simulate::machines(&spec);
    machines.truncate(opts.machines);
    println!(
        "{} machines publish spindle RMS every {} ms at the edge; {HOT} runs hot while the link is cut",
        machines.len(),
        opts.interval.as_millis()
    );

    let started = Instant::now();
    let (cut_at, restore_at, end_at) = (opts.before, opts.before + opts.cut, opts.before + opts.cut + opts.after);
    let mut ticker = tokio::time::interval(opts.interval);
    let mut next_progress = Duration::ZERO;
    let mut published = 0u64;
    let mut windows = BTreeSet::new();
    let mut alerts_at_cut = 0;
    let mut alerts_during_cut = 0;
    let mut round = 0u64;
    loop {
        ticker.tick().await;
        let elapsed = started.elapsed();
        if elapsed >= end_at {
            break;
        }
        let cut = elapsed >= cut_at && elapsed < restore_at;
        if cut && wan.link.is_up() {
            wan.link.cut();
            alerts_at_cut = Stats::get(&edge_stats.alerts_published);
            println!("── WAN link cut for {} s: the edge stores and alerts on its own", opts.cut.as_secs());
        } else if !cut && elapsed >= restore_at && !wan.link.is_up() {
            wan.link.restore();
            alerts_during_cut = Stats::get(&edge_stats.alerts_published) - alerts_at_cut;
            println!("── link restored: the edge forwards its backlog, in order");
        }
        let t_ms = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64 / 1_000_000;
        let mut acks = Vec::with_capacity(machines.len());
        for m in &machines {
            let value = if cut && m.id == HOT { 6.0 } else { m.base_rms + (round % 5) as f64 * 0.02 };
            let msg = TelemetryMessage {
                machine_id: &m.id,
                sensor: "spindle",
                value,
                unit: "mm/s",
                timestamp: crate::rfc3339_ms(t_ms),
                quality: "good",
            };
            let subject = m.subject(&spec.org, "spindle", "vibration.rms");
            acks.push(
                simulate::send(&edge, subject, &msg, format!("{}-rms-{t_ms}", m.id))
                    .await
                    .map_err(anyhow::Error::msg)?,
            );
            windows.insert((m.id.clone(), t_ms.div_euclid(WINDOW_MS)));
        }
        published += acks.len() as u64;
        try_join_all(acks.into_iter().map(std::future::IntoFuture::into_future)).await?;
        round += 1;
        if elapsed >= next_progress {
            progress(elapsed, &wan, published, &edge_stats, &cloud_stats);
            next_progress += Duration::from_secs(1);
        }
    }
    println!("publishing stopped: waiting for the cloud to archive every reading and close every window");
    let expected_windows = windows.len() as u64;
    let caught_up = || {
        Stats::get(&cloud_stats.acked) >= published
            && Stats::get(&edge_stats.windows_closed) >= expected_windows
            && Stats::get(&cloud_stats.windows_closed) >= expected_windows
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while !caught_up() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if started.elapsed() >= next_progress {
            progress(started.elapsed(), &wan, published, &edge_stats, &cloud_stats);
            next_progress += Duration::from_secs(1);
        }
    }
    stop.send_replace(true);
    for (_, task) in workers {
        finish(task).await?;
    }

    let location = ArchiveLocation::open(&archive_url, &[])?;
    let ctx = stator_engine::query::session(&location).await?;
    let counted = stator_engine::query::run(&ctx, "SELECT count(*) FROM readings").await?;
    let archived = counted
        .first()
        .and_then(|b| b.column(0).as_any().downcast_ref::<datafusion::arrow::array::Int64Array>())
        .map_or(0, |a| a.value(0) as u64);
    let both = |f: fn(&Stats) -> &Counter| Stats::get(f(&edge_stats)) + Stats::get(f(&cloud_stats));
    let report = EdgeDemoReport {
        published,
        edge_stored: stored(&edge, "TELEMETRY").await?,
        cloud_stored: stored(&cloud, "TELEMETRY").await?,
        archived,
        windows: (Stats::get(&edge_stats.windows_closed), Stats::get(&cloud_stats.windows_closed)),
        expected_windows,
        edge_alerts: stored(&edge, "ALERTS").await?,
        alerts_during_cut,
        cloud_alerts: stored(&cloud, "ALERTS").await?,
        dead_letters: both(|s| &s.dead_letters) + both(|s| &s.late),
    };
    print_report(&report, &archive_url);
    Ok(report)
}

fn progress(elapsed: Duration, wan: &Wan, published: u64, edge: &Stats, cloud: &Stats) {
    println!(
        "  {:>4.0} s | link {:<4} | published {:>6} | edge: read {:>6} windows {:>4} alerts {:>2} | cloud: read {:>6} windows {:>4}{}",
        elapsed.as_secs_f64(),
        if wan.link.is_up() { "up" } else { "CUT" },
        published,
        Stats::get(&edge.fetched),
        Stats::get(&edge.windows_closed),
        Stats::get(&edge.alerts_published),
        Stats::get(&cloud.fetched),
        Stats::get(&cloud.windows_closed),
        if cloud.upstream_silent.get() == 1 { " | upstream silent: windows held open" } else { "" }
    );
}

async fn finish(task: JoinHandle<Result<(), WorkerError>>) -> anyhow::Result<()> {
    tokio::time::timeout(Duration::from_secs(30), task).await.context("a worker did not stop")???;
    Ok(())
}

async fn stored(js: &jetstream::Context, stream: &str) -> anyhow::Result<u64> {
    let mut stream = js.get_stream(stream).await.with_context(|| format!("stream {stream}"))?;
    Ok(stream.info().await?.state.messages)
}

fn print_report(r: &EdgeDemoReport, archive: &str) {
    let row = |what: &str, edge: String, cloud: String| println!("  {what:<28} {edge:>10} {cloud:>10}");
    println!();
    row("", "edge".into(), "cloud".into());
    row("readings published", r.published.to_string(), "-".into());
    row("readings in TELEMETRY", r.edge_stored.to_string(), r.cloud_stored.to_string());
    row("readings in the archive", "-".into(), r.archived.to_string());
    row("windows closed (expected)", format!("{} ({})", r.windows.0, r.expected_windows), r.windows.1.to_string());
    row("alert transitions", r.edge_alerts.to_string(), r.cloud_alerts.to_string());
    row("  of which during the cut", r.alerts_during_cut.to_string(), "-".into());
    row("dead letters and late", "-".into(), r.dead_letters.to_string());
    println!();
    if r.complete() {
        println!("The cloud holds every reading, window and alert the edge had: nothing lost, nothing twice.");
    } else {
        println!("The cloud is NOT complete: see the rows above and the log.");
    }
    println!(
        "Archive: {archive}\n  stator query --archive {archive} \"SELECT machine, count(*) FROM readings GROUP BY machine\"\n\
         Deployment of the same on real servers: docs/DEPLOYMENT.md"
    );
}
