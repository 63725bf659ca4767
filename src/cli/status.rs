//! `stator status`: each pipeline's consumer, lag, watermark and recent alerts.

use std::path::PathBuf;
use std::process::ExitCode;

use stator_engine::config;

/// Arguments of `stator status`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A running worker's HTTP address, e.g. http://127.0.0.1:9464.
    #[arg(long, env = "STATOR_WORKER", conflicts_with = "files")]
    pub worker: Option<String>,
    /// Pipeline files, to ask JetStream directly.
    #[arg(required_unless_present = "worker")]
    pub files: Vec<PathBuf>,
}

/// Prints the status table.
///
/// # Errors
/// When the worker or JetStream cannot be asked, or a file has errors.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let statuses = match args.worker {
        Some(base) => crate::status::from_worker(&base).await?,
        None => {
            let mut out = Vec::new();
            for file in &args.files {
                let loaded = config::load(file)?;
                out.push(crate::status::from_jetstream(&loaded.pipeline).await?);
            }
            out
        }
    };
    print!("{}", crate::status::render(&statuses));
    Ok(ExitCode::SUCCESS)
}
