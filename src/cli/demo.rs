//! `stator demo`: the self-contained demo.

use std::path::PathBuf;
use std::process::ExitCode;

use std::time::Duration;

use crate::demo::DemoOptions;
use crate::demo::edge::EdgeDemoOptions;

/// Arguments of `stator demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Working directory.
    #[arg(long, default_value = "demo-out")]
    pub dir: PathBuf,
    /// Seconds of simulated 1 Hz readings.
    #[arg(long, default_value_t = 300)]
    pub readings: usize,
    /// Seconds of simulated accelerometer waveforms.
    #[arg(long, default_value_t = 20)]
    pub waveform_seconds: usize,
    /// Show the log on the terminal instead of writing it to DIR/demo.log.
    #[arg(long)]
    pub verbose: bool,
    /// The edge-to-cloud demo instead: a hub and a factory's leaf node, live machines, a WAN
    /// cut, the edge alerting on its own and the cloud archive complete after the backlog.
    #[arg(long)]
    pub edge: bool,
    /// With --edge: machines publishing at the edge.
    #[arg(long, default_value_t = 10, requires = "edge")]
    pub machines: usize,
    /// With --edge: seconds of publishing before the cut, of the cut, and after it.
    #[arg(long, value_name = "BEFORE,CUT,AFTER", default_value = "20,40,20", requires = "edge", value_parser = phases)]
    pub phases: [u64; 3],
}

fn phases(s: &str) -> Result<[u64; 3], String> {
    let parts: Vec<u64> = s
        .split(',')
        .map(|p| p.trim().parse().map_err(|_| format!("`{p}` is not a number of seconds")))
        .collect::<Result<_, _>>()?;
    parts.try_into().map_err(|_| "give three numbers of seconds: BEFORE,CUT,AFTER".to_owned())
}

impl Args {
    /// Where the demo's log goes (`None`: the terminal).
    pub fn log_file(&self) -> Option<PathBuf> {
        (!self.verbose).then(|| self.dir.join("demo.log"))
    }
}

/// Runs the demo.
///
/// # Errors
/// When the nats-server cannot be started or a step fails.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let log = args.log_file();
    if args.edge {
        let [before, cut, after] = args.phases.map(Duration::from_secs);
        let report = crate::demo::edge::run(&EdgeDemoOptions {
            dir: args.dir,
            machines: args.machines,
            interval: Duration::from_millis(500),
            before,
            cut,
            after,
            log,
        })
        .await?;
        return Ok(if report.complete() { ExitCode::SUCCESS } else { ExitCode::FAILURE });
    }
    crate::demo::run(&DemoOptions {
        dir: args.dir,
        readings: args.readings,
        waveform_blocks: args.waveform_seconds * 2,
        log,
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}
