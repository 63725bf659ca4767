//! `stator`: stream analytics for industrial telemetry on NATS JetStream.
//!
//! The command-line definition only: each subcommand's arguments and work are in
//! `src/cli/<subcommand>.rs`.

use std::path::Path;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use stator::cli;

#[derive(Parser)]
#[command(name = "stator", version = stator::VERSION, about = "Stream analytics for industrial telemetry on NATS JetStream")]
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

#[derive(Subcommand)]
enum Command {
    /// Run pipelines until SIGINT or SIGTERM.
    Run(cli::run::Args),
    /// Check pipeline files; prints every problem with file, line and column.
    Validate(cli::validate::Args),
    /// Publish simulated telemetry for a plant.
    Simulate(cli::simulate::Args),
    /// Run read-only SQL over the Parquet archive (tables: readings, waveforms, features, alerts).
    Query(cli::query::Args),
    /// Show each pipeline's consumer, lag, watermark and recent alerts: from a running worker
    /// (--worker, its --listen address) or from JetStream (pipeline files).
    Status(cli::status::Args),
    /// Draw charts from the archive as PNG and SVG: a machine's trend (RMS by default) with its
    /// alert levels and transitions, and its latest spectrum and envelope spectrum with the
    /// bearing defect frequencies marked.
    Plot(cli::plot::Args),
    /// Run a pipeline over history into a separate archive prefix and alert subject
    /// (`stator.replay.ID.…`), to try a changed rule on last week's data before it goes live.
    Replay(cli::replay::Args),
    /// Run a self-contained demo: own nats-server, simulated plant, shipped pipelines.
    Demo(cli::demo::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(cli::completions::CompletionsArgs),
    /// Write man pages for stator and each subcommand.
    Man(cli::completions::ManArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_file = match &cli.command {
        Command::Demo(args) => args.log_file(),
        _ => None,
    };
    if let Err(e) = init_logging(cli.log_format, log_file.as_deref()) {
        eprintln!("error: {e:#}");
        return ExitCode::FAILURE;
    }
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

async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run(args) => cli::run::run(args).await,
        Command::Validate(args) => Ok(cli::validate::run(&args)),
        Command::Simulate(args) => cli::simulate::run(args).await,
        Command::Query(args) => cli::query::run(args).await,
        Command::Status(args) => cli::status::run(args).await,
        Command::Plot(args) => cli::plot::run(args).await,
        Command::Replay(args) => cli::replay::run(args).await,
        Command::Demo(args) => cli::demo::run(args).await,
        Command::Completions(args) => {
            cli::completions::completions(&args, &mut <Cli as clap::CommandFactory>::command())
        }
        Command::Man(args) => cli::completions::man(&args, <Cli as clap::CommandFactory>::command()),
    }
}

/// Logs to stderr; with a `file` (the demo), everything goes there and only warnings and
/// errors to stderr, so the screen shows the demo's own progress.
fn init_logging(format: LogFormat, file: Option<&Path>) -> anyhow::Result<()> {
    use tracing_subscriber::{EnvFilter, Layer as _, layer::SubscriberExt as _, util::SubscriberInitExt as _};
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,async_nats=warn"));
    let json = matches!(format, LogFormat::Json);
    let stderr = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let Some(path) = file else {
        let stderr =
            if json { stderr.json().with_filter(filter()).boxed() } else { stderr.with_filter(filter()).boxed() };
        tracing_subscriber::registry().with(stderr).init();
        return Ok(());
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let log = std::fs::File::create(path).map_err(|e| anyhow::anyhow!("creating {}: {e}", path.display()))?;
    let to_file = tracing_subscriber::fmt::layer().with_ansi(false).with_writer(std::sync::Mutex::new(log));
    let to_file =
        if json { to_file.json().with_filter(filter()).boxed() } else { to_file.with_filter(filter()).boxed() };
    let warnings = EnvFilter::new("warn");
    let stderr = if json { stderr.json().with_filter(warnings).boxed() } else { stderr.with_filter(warnings).boxed() };
    tracing_subscriber::registry().with(vec![to_file, stderr]).init();
    Ok(())
}
