//! `stator`: stream analytics for industrial telemetry on NATS JetStream.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use stator::demo::{self, DemoOptions};
use stator::plot::{PlotRequest, Severity};
use stator::simulate::{self, PlantSpec};
use stator_engine::config::{self, ConfigError};
use stator_engine::observe::{self, Metrics};
use stator_engine::replay::Start;
use stator_engine::worker::{self, RunMode};
use tokio::sync::watch;

#[derive(Parser)]
#[command(name = "stator", version, about = "Stream analytics for industrial telemetry on NATS JetStream")]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputFormat {
    /// A pretty table.
    Table,
    /// CSV with a header.
    Csv,
    /// One JSON object per line.
    Json,
    /// A Parquet file (use --output, or redirect stdout).
    Parquet,
}

#[derive(Subcommand)]
enum Command {
    /// Run pipelines until SIGINT or SIGTERM.
    Run {
        /// Pipeline files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Stop once the stream is drained (close all windows, commit, exit).
        #[arg(long)]
        drain: bool,
        /// Serve /metrics (Prometheus), /healthz, /readyz and /status on this address, e.g.
        /// 127.0.0.1:9464 (port 0 picks a free one; the log says which).
        #[arg(long, env = "STATOR_LISTEN")]
        listen: Option<std::net::SocketAddr>,
    },
    /// Check pipeline files; prints every problem with file, line and column.
    Validate {
        /// Pipeline files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Publish simulated telemetry for a plant.
    Simulate {
        /// NATS URL.
        #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
        url: String,
        /// Comma-separated site names.
        #[arg(long, default_value = "munich,berlin", value_delimiter = ',')]
        sites: Vec<String>,
        /// Areas per site.
        #[arg(long, default_value_t = 1)]
        areas: usize,
        /// Lines per area.
        #[arg(long, default_value_t = 2)]
        lines: usize,
        /// Machines per line.
        #[arg(long, default_value_t = 4)]
        machines: usize,
        /// Machines that drift towards a fault (comma-separated ids such as cnc-003).
        #[arg(long, value_delimiter = ',')]
        drift: Vec<String>,
        /// RMS the drifting machines reach at the end (mm/s).
        #[arg(long, default_value_t = 6.0)]
        drift_to: f64,
        /// Time between readings of a machine.
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        interval: Duration,
        /// Readings per machine.
        #[arg(long, default_value_t = 60)]
        readings: usize,
        /// Publish in real time instead of as fast as possible (with past timestamps).
        #[arg(long)]
        realtime: bool,
        /// Random seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Publish accelerometer waveforms instead of scalar readings.
        #[arg(long)]
        waveform: bool,
        /// Waveform sample rate, Hz.
        #[arg(long, default_value_t = 25_600.0)]
        sample_rate: f64,
        /// Waveform samples per message.
        #[arg(long, default_value_t = 12_800)]
        block: usize,
        /// Bearing designation of every machine (catalog: 6203, 6204, 6205, 6206, 6305, 6308, NU210).
        #[arg(long, default_value = "6205")]
        bearing: String,
        /// Shaft speed, rpm.
        #[arg(long, default_value_t = 1797.0)]
        rpm: f64,
        /// A bearing fault: MACHINE:KIND[:SEVERITY_G], e.g. cnc-003:outer_race:0.5 (repeatable).
        #[arg(long)]
        fault: Vec<simulate::SimFault>,
    },
    /// Run read-only SQL over the Parquet archive (tables: readings, waveforms, features, alerts).
    Query {
        /// Archive location: a directory, file://, s3://bucket/prefix, gs://..., az://...
        #[arg(long, env = "STATOR_ARCHIVE", default_value = "./archive")]
        archive: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
        /// Show the plan with partition pruning and metrics instead of the result.
        #[arg(long)]
        explain: bool,
        /// Write the result to this file instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Object store option KEY=VALUE for s3://, gs://, az:// archives (endpoint, region,
        /// allow_http...), on top of the environment. Repeatable.
        #[arg(long = "option", value_parser = parse_option)]
        options: Vec<(String, String)>,
        /// The SQL query.
        sql: String,
    },
    /// Show each pipeline's consumer, lag, watermark and recent alerts: from a running worker
    /// (--worker, its --listen address) or from JetStream (pipeline files).
    Status {
        /// A running worker's HTTP address, e.g. http://127.0.0.1:9464.
        #[arg(long, env = "STATOR_WORKER", conflicts_with = "files")]
        worker: Option<String>,
        /// Pipeline files, to ask JetStream directly.
        #[arg(required_unless_present = "worker")]
        files: Vec<PathBuf>,
    },
    /// Draw charts from the archive as PNG and SVG: a machine's trend (RMS by default) with its
    /// alert levels and transitions, and its latest spectrum and envelope spectrum with the
    /// bearing defect frequencies marked.
    Plot {
        /// Archive location (as for `query`).
        #[arg(long, env = "STATOR_ARCHIVE", default_value = "./archive")]
        archive: String,
        /// Object store option KEY=VALUE (as for `query`). Repeatable.
        #[arg(long = "option", value_parser = parse_option)]
        options: Vec<(String, String)>,
        /// The machine.
        #[arg(long)]
        machine: String,
        /// Only this site.
        #[arg(long)]
        site: Option<String>,
        /// The trend's feature.
        #[arg(long, default_value = "rms")]
        metric: String,
        /// The `[[window]]` whose feature is plotted (default: the one with the most windows).
        #[arg(long)]
        window: Option<String>,
        /// A pipeline file whose alert levels on the metric are drawn (besides those crossed).
        #[arg(long)]
        pipeline: Option<PathBuf>,
        /// Output directory.
        #[arg(long, short, default_value = "plots")]
        out: PathBuf,
        /// Image size, WIDTHxHEIGHT pixels.
        #[arg(long, default_value = "1200x600", value_parser = parse_size)]
        size: (u32, u32),
    },
    /// Run a pipeline over history into a separate archive prefix and alert subject
    /// (`stator.replay.ID.…`), to try a changed rule on last week's data before it goes live.
    #[command(group(clap::ArgGroup::new("start").required(true).args(["from_seq", "since", "last"])))]
    Replay {
        /// The pipeline file.
        file: PathBuf,
        /// Start at this stream sequence.
        #[arg(long)]
        from_seq: Option<u64>,
        /// Start at this time (RFC 3339, e.g. 2026-11-22T08:00:00Z).
        #[arg(long, value_parser = parse_time)]
        since: Option<time::OffsetDateTime>,
        /// Start this long ago, e.g. 15m, 7d.
        #[arg(long, value_parser = humantime::parse_duration)]
        last: Option<Duration>,
        /// Replay id, used in its subjects, consumer and archive prefix (default: the UTC time).
        #[arg(long)]
        id: Option<String>,
        /// Archive location for the replay (default: replay/ID below the pipeline's archive).
        #[arg(long)]
        archive: Option<String>,
    },
    /// Run a self-contained demo: own nats-server, simulated plant, shipped pipeline.
    Demo {
        /// Working directory.
        #[arg(long, default_value = "demo-out")]
        dir: PathBuf,
        /// Seconds of simulated 1 Hz readings.
        #[arg(long, default_value_t = 300)]
        readings: usize,
        /// Seconds of simulated accelerometer waveforms.
        #[arg(long, default_value_t = 20)]
        waveform_seconds: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,async_nats=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Validate { files } => Ok(validate(&files)),
        Command::Run { files, drain, listen } => {
            run(&files, if drain { RunMode::Drain } else { RunMode::Follow }, listen).await
        }
        Command::Simulate {
            url,
            sites,
            areas,
            lines,
            machines,
            drift,
            drift_to,
            interval,
            readings,
            realtime,
            seed,
            waveform,
            sample_rate,
            block,
            bearing,
            rpm,
            fault,
        } => {
            let now_ms = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
            let start_ms = if realtime { now_ms } else { now_ms - readings as i64 * interval.as_millis() as i64 };
            let spec = PlantSpec {
                org: "acme".into(),
                sites,
                areas,
                lines,
                machines_per_line: machines,
                drift,
                drift_to,
                interval,
                start_ms,
                readings,
                realtime,
                seed,
            };
            let client = stator::connect(&url).await?;
            let js = async_nats::jetstream::new(client);
            if waveform {
                let sim = simulate::WaveformSim { sample_rate, block, blocks: readings, bearing, rpm, faults: fault };
                let n = simulate::publish_waveforms(&js, &spec, &sim, |n| tracing::debug!(published = n))
                    .await
                    .map_err(anyhow::Error::msg)?;
                println!("published {n} waveform blocks");
            } else {
                let n = simulate::publish(&js, &spec, |n| tracing::debug!(published = n))
                    .await
                    .map_err(anyhow::Error::msg)?;
                println!("published {n} readings");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Query { archive, format, explain, output, options, sql } => {
            let location = stator_engine::archive::ArchiveLocation::open(&archive, &options)?;
            query(&location, format, explain, output.as_deref(), &sql).await
        }
        Command::Status { worker, files } => {
            let statuses = match worker {
                Some(base) => stator::status::from_worker(&base).await?,
                None => {
                    let mut out = Vec::new();
                    for file in &files {
                        let loaded = config::load(file)?;
                        out.push(stator::status::from_jetstream(&loaded.pipeline).await?);
                    }
                    out
                }
            };
            print!("{}", stator::status::render(&statuses));
            Ok(ExitCode::SUCCESS)
        }
        Command::Plot { archive, options, machine, site, metric, window, pipeline, out, size } => {
            let mut levels = Vec::new();
            if let Some(file) = pipeline {
                for rule in load_all(&[file])?.remove(0).alerts.iter().filter(|r| r.metric == metric) {
                    levels.extend(rule.warning.map(|v| (Severity::Warning, v)));
                    levels.extend(rule.critical.map(|v| (Severity::Critical, v)));
                }
            }
            let location = stator_engine::archive::ArchiveLocation::open(&archive, &options)?;
            let req = PlotRequest { machine, site, metric, window, levels, out, size };
            let plotted = stator::plot::render(&location, &req).await?;
            for f in &plotted.files {
                println!("wrote {}", f.display());
            }
            for s in &plotted.skipped {
                println!("skipped {s}");
            }
            Ok(if plotted.files.is_empty() { ExitCode::FAILURE } else { ExitCode::SUCCESS })
        }
        Command::Replay { file, from_seq, since, last, id, archive } => {
            let now = time::OffsetDateTime::now_utc();
            let start = match (from_seq, since, last) {
                (Some(seq), _, _) => Start::Sequence(seq),
                (_, Some(t), _) => Start::Time(t),
                (_, _, Some(span)) => Start::last(span, now),
                _ => anyhow::bail!("one of --from-seq, --since and --last is needed"),
            };
            let live = load_all(std::slice::from_ref(&file))?.remove(0);
            let id = id.unwrap_or_else(|| stator_engine::replay::default_id(now));
            let (stop_tx, stop_rx) = watch::channel(false);
            let signals = tokio::spawn(async move {
                wait_for_signal().await;
                tracing::info!("signal received; stopping the replay");
                let _ = stop_tx.send(true);
            });
            let outcome = stator::replay::run(&live, &id, start, archive.as_deref(), stop_rx).await;
            signals.abort();
            let outcome = outcome?;
            stator::replay::report(&outcome);
            // Stopped by a signal: not a finished replay (128 + SIGINT, as shells report it).
            Ok(if outcome.stopped { ExitCode::from(130) } else { ExitCode::SUCCESS })
        }
        Command::Demo { dir, readings, waveform_seconds } => {
            demo::run(&DemoOptions { dir, readings, waveform_blocks: waveform_seconds * 2 }).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn parse_size(text: &str) -> Result<(u32, u32), String> {
    let bad = || format!("`{text}` is not WIDTHxHEIGHT, e.g. 1200x600");
    let (w, h) = text.split_once('x').ok_or_else(bad)?;
    let (w, h) = (w.trim().parse::<u32>().map_err(|_| bad())?, h.trim().parse::<u32>().map_err(|_| bad())?);
    if !(100..=10_000).contains(&w) || !(100..=10_000).contains(&h) {
        return Err(format!("`{text}`: each side must be 100 to 10000 pixels"));
    }
    Ok((w, h))
}

fn parse_time(text: &str) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("`{text}` is not an RFC 3339 time: {e}"))
}

fn parse_option(text: &str) -> Result<(String, String), String> {
    let (k, v) = text.split_once('=').ok_or_else(|| format!("`{text}` is not KEY=VALUE"))?;
    Ok((k.trim().to_owned(), v.to_owned()))
}

async fn query(
    location: &stator_engine::archive::ArchiveLocation,
    format: OutputFormat,
    explain: bool,
    output: Option<&std::path::Path>,
    sql: &str,
) -> anyhow::Result<ExitCode> {
    use datafusion::arrow::{csv, json, util::pretty};
    use std::io::Write as _;
    let ctx = stator_engine::query::session(location).await?;
    let mut out: Box<dyn std::io::Write + Send> = match output {
        Some(path) => Box::new(std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?),
        None => Box::new(std::io::stdout()),
    };
    if explain {
        write!(out, "{}", stator_engine::query::explain(&ctx, sql).await?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let df = stator_engine::query::plan(&ctx, sql).await?;
    let schema = Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await?;
    match format {
        OutputFormat::Table => writeln!(out, "{}", pretty::pretty_format_batches(&batches)?)?,
        OutputFormat::Csv => {
            let mut w = csv::Writer::new(out);
            for b in &batches {
                w.write(b)?;
            }
        }
        OutputFormat::Json => {
            let mut w = json::LineDelimitedWriter::new(out);
            for b in &batches {
                w.write(b)?;
            }
            w.finish()?;
        }
        OutputFormat::Parquet => {
            let mut w = datafusion::parquet::arrow::ArrowWriter::try_new(out, schema, None)?;
            for b in &batches {
                w.write(b)?;
            }
            w.close()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn validate(files: &[PathBuf]) -> ExitCode {
    let mut failed = false;
    for file in files {
        match config::load(file) {
            Ok(loaded) => {
                for w in &loaded.warnings {
                    println!("{w}");
                }
                println!("{}: ok (pipeline `{}`)", file.display(), loaded.pipeline.name);
            }
            Err(e) => {
                failed = true;
                println!("{e}");
            }
        }
    }
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

/// Loads every file, logging warnings; fails with every error of every file.
fn load_all(files: &[PathBuf]) -> anyhow::Result<Vec<config::Pipeline>> {
    let mut pipelines = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        match config::load(file) {
            Ok(loaded) => {
                for w in &loaded.warnings {
                    tracing::warn!("{w}");
                }
                pipelines.push(loaded.pipeline);
            }
            Err(e @ ConfigError::Invalid(_)) | Err(e @ ConfigError::Read { .. }) => errors.push(e.to_string()),
        }
    }
    if !errors.is_empty() {
        anyhow::bail!("pipeline files have errors:\n{}", errors.join("\n"));
    }
    Ok(pipelines)
}

async fn run(files: &[PathBuf], mode: RunMode, listen: Option<std::net::SocketAddr>) -> anyhow::Result<ExitCode> {
    let pipelines = load_all(files)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let metrics = Arc::new(Metrics::default());
    let stats: Vec<_> = pipelines.iter().map(|p| metrics.pipeline(&p.name)).collect();
    let http = match listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("listening on {addr}"))?;
            let local = listener.local_addr()?;
            tracing::info!(address = %local, "serving /metrics, /healthz, /readyz and /status on http://{local}");
            let mut stop = stop_rx.clone();
            let shutdown = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            Some(tokio::spawn(observe::serve(listener, metrics.clone(), shutdown)))
        }
        None => None,
    };
    let mut tasks = tokio::task::JoinSet::new();
    for (pipeline, stats) in pipelines.into_iter().zip(stats) {
        let client = stator_engine::source::connect(&pipeline.source)
            .await
            .with_context(|| format!("connecting to {}", pipeline.source.url))?;
        tasks.spawn(worker::run(Arc::new(pipeline), client, stop_rx.clone(), stats, mode));
    }
    let signals = tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("signal received; stopping");
        let _ = stop_tx.send(true);
    });
    let mut failed = false;
    while let Some(result) = tasks.join_next().await {
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!("{e}");
                failed = true;
            }
            Err(e) => {
                tracing::error!("pipeline task failed: {e}");
                failed = true;
            }
        }
    }
    signals.abort();
    if let Some(http) = http {
        http.abort();
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
