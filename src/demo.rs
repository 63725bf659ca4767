//! `stator demo`: a self-contained plant on a private nats-server, end to end.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream;
use stator_engine::config;
use stator_engine::worker::{self, RunMode, Stats};
use tokio::sync::watch;

use crate::nats_server::NatsServer;
use crate::simulate::PlantSpec;
use crate::{plant, simulate};

/// Demo settings.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Working directory (server store, logs).
    pub dir: PathBuf,
    /// Readings per machine (1 Hz event time).
    pub readings: usize,
}

/// What the demo produced.
#[derive(Debug, Clone)]
pub struct DemoReport {
    /// Readings published.
    pub published: u64,
    /// Alert transitions in the ALERTS stream: (subject, payload).
    pub alerts: Vec<(String, String)>,
    /// Where the archive was written.
    pub archive: PathBuf,
}

/// The queries the demo runs over its archive: (title, SQL).
pub const DEMO_QUERIES: [(&str, &str); 3] = [
    (
        "readings archived per site and hour",
        "SELECT site, date, hour, count(*) AS readings, count(DISTINCT machine) AS machines \
         FROM readings GROUP BY site, date, hour ORDER BY site, date, hour",
    ),
    (
        "highest 10 s RMS per machine per hour (top 5)",
        "SELECT site, machine, date_trunc('hour', window_start) AS hour_start, max(value) AS max_rms \
         FROM features WHERE feature = 'rms' AND window = 'rms_10s' \
         GROUP BY site, machine, date_trunc('hour', window_start) ORDER BY max_rms DESC LIMIT 5",
    ),
    (
        "alert transitions by site",
        "SELECT site, state, count(*) AS transitions, max(value) AS worst FROM alerts \
         GROUP BY site, state ORDER BY site, state",
    ),
];

/// Runs the demo and prints what happens.
///
/// # Errors
/// When the server cannot start or NATS fails.
pub async fn run(opts: &DemoOptions) -> anyhow::Result<DemoReport> {
    let nats_dir = opts.dir.join("nats");
    let archive_dir = opts.dir.join("archive");
    for dir in [&nats_dir, &archive_dir] {
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
        }
        std::fs::create_dir_all(dir)?;
    }
    let archive_dir = std::fs::canonicalize(&archive_dir)?;
    let server = NatsServer::start_in(&nats_dir, "stator-demo", "")?;
    println!("nats-server with JetStream on {} (store in {})", server.url(), server.store_dir().display());
    let client = crate::connect(&server.url()).await?;
    let js = jetstream::new(client.clone());
    plant::ensure_streams(&js).await.map_err(anyhow::Error::msg)?;
    println!("streams TELEMETRY, ALERTS and STATOR_DEADLETTER created");

    let now_ms = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let spec = PlantSpec {
        org: "acme".into(),
        sites: vec!["munich".into(), "berlin".into()],
        areas: 1,
        lines: 2,
        machines_per_line: 4,
        drift: vec!["cnc-003".into()],
        drift_to: 6.0,
        interval: Duration::from_secs(1),
        start_ms: now_ms - opts.readings as i64 * 1000,
        readings: opts.readings,
        realtime: false,
        seed: 42,
    };
    let n_machines = simulate::machines(&spec).len();
    println!(
        "simulating {n_machines} machines on 2 sites, {} s of 1 Hz readings; cnc-003 drifts to {} mm/s",
        opts.readings, spec.drift_to
    );
    let published = simulate::publish(&js, &spec, |_| {}).await.map_err(anyhow::Error::msg)?;
    println!("published {published} readings");

    let (path, text) = crate::SHIPPED_PIPELINES[0];
    let url = server.url();
    let archive_url = archive_dir.display().to_string();
    let env = |name: &str| match name {
        "NATS_URL" => Some(url.clone()),
        "STATOR_ARCHIVE" => Some(archive_url.clone()),
        _ => None,
    };
    let loaded = config::load_str(Path::new(path), text, &env)?;
    println!("running pipeline `{}` ({path}) until it has drained the stream", loaded.pipeline.name);
    let stats = Arc::new(Stats::default());
    let (_stop_tx, stop_rx) = watch::channel(false);
    let task =
        tokio::spawn(worker::run(Arc::new(loaded.pipeline), client.clone(), stop_rx, stats.clone(), RunMode::Drain));
    let progress = {
        let stats = stats.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                println!(
                    "  messages {:>6} | acked {:>6} | windows {:>5} | alerts {:>3}",
                    Stats::get(&stats.fetched),
                    Stats::get(&stats.acked),
                    Stats::get(&stats.windows_closed),
                    Stats::get(&stats.alerts_published)
                );
            }
        })
    };
    task.await??;
    progress.abort();
    println!(
        "drained: {} messages, {} acked, {} windows closed, {} alert transitions, {} dead letters",
        Stats::get(&stats.fetched),
        Stats::get(&stats.acked) + Stats::get(&stats.terminated),
        Stats::get(&stats.windows_closed),
        Stats::get(&stats.alerts_published),
        Stats::get(&stats.dead_letters)
    );

    let alerts: Vec<(String, String)> = plant::read_stream(&js, "ALERTS", None)
        .await
        .map_err(anyhow::Error::msg)?
        .into_iter()
        .map(|m| (m.subject.to_string(), String::from_utf8_lossy(&m.payload).into_owned()))
        .collect();
    println!("\n{} alert transitions in the ALERTS stream:", alerts.len());
    for (subject, payload) in &alerts {
        let v: serde_json::Value = serde_json::from_str(payload).unwrap_or_default();
        println!(
            "  {subject:<42} {:<9} value {:>6.3} threshold {:>4} window end {}",
            v["state"].as_str().unwrap_or("?"),
            v["value"].as_f64().unwrap_or(f64::NAN),
            v["threshold"],
            v["window_end"].as_str().unwrap_or("?")
        );
    }
    query_archive(&archive_url).await?;
    println!("\nTo run the same pipeline against your NATS:\n  NATS_URL=nats://your-server:4222 stator run {path}");
    println!("To query the archive:\n  stator query --archive {archive_url} \"SELECT count(*) FROM readings\"");
    drop(server);
    Ok(DemoReport { published, alerts, archive: archive_dir })
}

async fn query_archive(url: &str) -> anyhow::Result<()> {
    let location = stator_engine::archive::ArchiveLocation::open(url, &[])?;
    let ctx = stator_engine::query::session(&location).await?;
    println!("\nParquet archive in {url}; SQL over it:");
    for (title, sql) in DEMO_QUERIES {
        let batches = stator_engine::query::run(&ctx, sql).await?;
        println!("\n-- {title}\n{}", datafusion::arrow::util::pretty::pretty_format_batches(&batches)?);
    }
    Ok(())
}
