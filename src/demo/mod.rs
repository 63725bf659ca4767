//! `stator demo`: a self-contained plant on a private nats-server, end to end: both shipped
//! pipelines, SQL over the archive they write, and plots.

pub mod edge;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream;
use stator_engine::config;
use stator_engine::worker::{self, RunMode, Stats};
use tokio::sync::watch;

use crate::nats_server::NatsServer;
use crate::plot::{PlotRequest, Severity};
use crate::simulate::PlantSpec;
use crate::{plant, simulate};

/// Demo settings.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Working directory (server store, logs).
    pub dir: PathBuf,
    /// Readings per machine (1 Hz event time).
    pub readings: usize,
    /// Waveform blocks (0.5 s each) per machine with an accelerometer.
    pub waveform_blocks: usize,
    /// The file the log goes to (`None`: the terminal), named on screen first.
    pub log: Option<PathBuf>,
}

/// The machine whose RMS drifts over its limit.
pub const DRIFTING: &str = "cnc-003";
/// The machine whose bearing has an outer-race defect.
pub const FAULTY: &str = "cnc-002";

/// What the demo produced.
#[derive(Debug, Clone)]
pub struct DemoReport {
    /// Readings published.
    pub published: u64,
    /// Alert transitions in the ALERTS stream: (subject, payload).
    pub alerts: Vec<(String, String)>,
    /// Where the archive was written.
    pub archive: PathBuf,
    /// Where the plots were written.
    pub plots: PathBuf,
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
    let archive_dir = fresh_dirs(&nats_dir, &opts.dir.join("archive"), opts.log.as_deref())?;
    let server = NatsServer::start_in(&nats_dir, "stator-demo", "")?;
    println!("nats-server with JetStream on {} (store in {})", server.url(), server.store_dir().display());
    let client = crate::connect(&server.url()).await?;
    let js = jetstream::new(client.clone());
    plant::ensure_streams(&js).await.map_err(anyhow::Error::msg)?;
    println!("streams TELEMETRY, ALERTS, FEATURES and STATOR_DEADLETTER and the MACHINE_CONFIG bucket created");

    let now_ms = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let spec = PlantSpec {
        org: "acme".into(),
        sites: vec!["munich".into(), "berlin".into()],
        areas: 1,
        lines: 3,
        machines_per_line: 6,
        drift: vec![DRIFTING.into()],
        drift_to: 6.0,
        interval: Duration::from_secs(1),
        start_ms: now_ms - opts.readings as i64 * 1000,
        readings: opts.readings,
        realtime: false,
        seed: 42,
    };
    // Accelerometers on the first line's machines; one bearing has an outer-race defect.
    let accelerometers =
        PlantSpec { sites: vec!["munich".into()], lines: 1, machines_per_line: 4, drift: vec![], ..spec.clone() };
    let sim = simulate::WaveformSim {
        sample_rate: 25_600.0,
        block: 12_800,
        blocks: opts.waveform_blocks,
        bearing: "6205".into(),
        rpm: 1797.0,
        faults: vec![format!("{FAULTY}:outer_race:0.5").parse().map_err(anyhow::Error::msg)?],
    };
    let kv = js.get_key_value("MACHINE_CONFIG").await.context("MACHINE_CONFIG bucket")?;
    for m in simulate::machines(&accelerometers) {
        let doc = serde_json::json!({"machine_id": m.id, "vibration": {"bearing_type": "6205", "rpm": 1797.0}});
        kv.put(&m.id, doc.to_string().into()).await.context("writing MACHINE_CONFIG")?;
    }
    println!("MACHINE_CONFIG: bearing 6205 at 1797 rpm for the 4 machines with accelerometers");
    let n_machines = simulate::machines(&spec).len();
    println!(
        "simulating {n_machines} machines on 2 sites, {} s of 1 Hz RMS readings ({DRIFTING} drifts to {} mm/s) \
         and {} s of 25.6 kHz waveforms from 4 of them ({FAULTY} has an outer-race defect)",
        opts.readings,
        spec.drift_to,
        opts.waveform_blocks / 2
    );
    let published = simulate::publish(&js, &spec, |_| {}).await.map_err(anyhow::Error::msg)?;
    let blocks = simulate::publish_waveforms(&js, &accelerometers, &sim, |_| {}).await.map_err(anyhow::Error::msg)?;
    println!("published {published} readings");
    println!("published {blocks} waveform blocks");

    let url = server.url();
    let archive_url = archive_dir.display().to_string();
    let env = |name: &str| match name {
        "NATS_URL" => Some(url.clone()),
        "STATOR_ARCHIVE" => Some(archive_url.clone()),
        _ => None,
    };
    let (_stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    let mut all_stats = Vec::new();
    for (path, text) in crate::SHIPPED_PIPELINES {
        let loaded = config::load_str(Path::new(path), text, &env)?;
        println!("running pipeline `{}` ({path}) until it has drained the stream", loaded.pipeline.name);
        let stats = Arc::new(Stats::default());
        all_stats.push(stats.clone());
        tasks.push(tokio::spawn(worker::run(
            Arc::new(loaded.pipeline),
            client.clone(),
            stop_rx.clone(),
            stats,
            RunMode::Drain,
        )));
    }
    let total =
        |f: fn(&Stats) -> &stator_engine::observe::Counter| all_stats.iter().map(|s| Stats::get(f(s))).sum::<u64>();
    let started = std::time::Instant::now();
    let progress = {
        let all = all_stats.clone();
        tokio::spawn(async move {
            let sum =
                |f: fn(&Stats) -> &stator_engine::observe::Counter| all.iter().map(|s| Stats::get(f(s))).sum::<u64>();
            loop {
                println!(
                    "  {:>4.0} s | messages {:>6} | acked {:>6} | windows {:>5} | alerts {:>3}",
                    started.elapsed().as_secs_f64(),
                    sum(|s| &s.fetched),
                    sum(|s| &s.acked),
                    sum(|s| &s.windows_closed),
                    sum(|s| &s.alerts_published)
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    for task in tasks {
        task.await??;
    }
    progress.abort();
    println!(
        "drained in {:.1} s: {} messages, {} acked, {} windows closed, {} alert transitions, {} dead letters",
        started.elapsed().as_secs_f64(),
        total(|s| &s.fetched),
        total(|s| &s.acked) + total(|s| &s.terminated),
        total(|s| &s.windows_closed),
        total(|s| &s.alerts_published),
        total(|s| &s.dead_letters)
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
            "  {subject:<42} {:<9} value {:>7.3} threshold {:>5} window end {}",
            v["state"].as_str().unwrap_or("?"),
            v["value"].as_f64().unwrap_or(f64::NAN),
            v["threshold"],
            v["window_end"].as_str().unwrap_or("?")
        );
    }
    let location = stator_engine::archive::ArchiveLocation::open(&archive_url, &[])?;
    query_archive(&location, &archive_url).await?;
    let plots = draw_plots(&location, &opts.dir.join("plots")).await?;
    let (line_health, _) = crate::SHIPPED_PIPELINES[0];
    println!("\nArchive: {archive_url}\n  stator query --archive {archive_url} \"SELECT count(*) FROM readings\"");
    println!("Plots: {}", plots.display());
    println!(
        "\nTo run the shipped pipelines against your NATS (streams and bucket as in docs/OPERATIONS.md):\n  \
         NATS_URL=nats://your-server:4222 STATOR_ARCHIVE=./archive stator run --listen 127.0.0.1:9464 pipelines/line-health.toml pipelines/bearing-health.toml\n  \
         stator validate {line_health}   # after editing a pipeline"
    );
    drop(server);
    Ok(DemoReport { published, alerts, archive: archive_dir, plots })
}

/// Empties (or creates) a demo's server and archive directories, names the log file on
/// screen; returns the archive directory's absolute path.
fn fresh_dirs(nats_dir: &Path, archive_dir: &Path, log: Option<&Path>) -> anyhow::Result<PathBuf> {
    for dir in [nats_dir, archive_dir] {
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
        }
        std::fs::create_dir_all(dir)?;
    }
    if let Some(log) = log {
        println!("log: {} (warnings are shown here too; --verbose shows everything)", log.display());
    }
    Ok(std::fs::canonicalize(archive_dir)?)
}

/// The RMS trend of the drifting machine and the spectra of the faulty one.
async fn draw_plots(location: &stator_engine::archive::ArchiveLocation, out: &Path) -> anyhow::Result<PathBuf> {
    let levels = vec![(Severity::Warning, 2.8), (Severity::Critical, 4.5)];
    let trend = PlotRequest {
        machine: DRIFTING.into(),
        site: Some("munich".into()),
        metric: "rms".into(),
        window: Some("rms_10s".into()),
        levels,
        out: out.to_owned(),
        size: (1200, 600),
    };
    let spectra =
        PlotRequest { machine: FAULTY.into(), window: Some("vibration_2s".into()), levels: vec![], ..trend.clone() };
    println!();
    for req in [trend, spectra] {
        let plotted = crate::plot::render(location, &req).await?;
        for f in plotted.files.iter().filter(|f| f.extension().is_some_and(|e| e == "png")) {
            println!("plot: {}", f.display());
        }
    }
    Ok(std::fs::canonicalize(out)?)
}

async fn query_archive(location: &stator_engine::archive::ArchiveLocation, url: &str) -> anyhow::Result<()> {
    let ctx = stator_engine::query::session(location).await?;
    println!("\nParquet archive in {url}; SQL over it:");
    for (title, sql) in DEMO_QUERIES {
        let batches = stator_engine::query::run(&ctx, sql).await?;
        println!("\n-- {title}\n{}", datafusion::arrow::util::pretty::pretty_format_batches(&batches)?);
    }
    Ok(())
}
