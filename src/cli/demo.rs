//! `stator demo`: the self-contained demo.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::demo::DemoOptions;

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
    crate::demo::run(&DemoOptions {
        dir: args.dir,
        readings: args.readings,
        waveform_blocks: args.waveform_seconds * 2,
        log,
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}
