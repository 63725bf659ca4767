//! `stator plot`: a machine's trend, spectrum and envelope spectrum from the archive.

use std::path::PathBuf;
use std::process::ExitCode;

use stator_engine::archive::ArchiveLocation;

use super::{load_all, parse_option};
use crate::plot::{PlotRequest, Severity};

/// Arguments of `stator plot`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Archive location (as for `query`).
    #[arg(long, env = "STATOR_ARCHIVE", default_value = "./archive")]
    pub archive: String,
    /// Object store option KEY=VALUE (as for `query`). Repeatable.
    #[arg(long = "option", value_parser = parse_option)]
    pub options: Vec<(String, String)>,
    /// The machine.
    #[arg(long)]
    pub machine: String,
    /// Only this site.
    #[arg(long)]
    pub site: Option<String>,
    /// The trend's feature.
    #[arg(long, default_value = "rms")]
    pub metric: String,
    /// The `[[window]]` whose feature is plotted (default: the one with the most windows).
    #[arg(long)]
    pub window: Option<String>,
    /// A pipeline file whose alert levels on the metric are drawn (besides those crossed).
    #[arg(long)]
    pub pipeline: Option<PathBuf>,
    /// Output directory.
    #[arg(long, short, default_value = "plots")]
    pub out: PathBuf,
    /// Image size, WIDTHxHEIGHT pixels.
    #[arg(long, default_value = "1200x600", value_parser = parse_size)]
    pub size: (u32, u32),
}

/// Draws the charts and names the files written; fails when none could be drawn.
///
/// # Errors
/// When the archive or the pipeline file cannot be read.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Args { archive, options, machine, site, metric, window, pipeline, out, size } = args;
    let mut levels = Vec::new();
    if let Some(file) = pipeline {
        for rule in load_all(&[file])?.remove(0).alerts.iter().filter(|r| r.metric == metric) {
            levels.extend(rule.warning.map(|v| (Severity::Warning, v)));
            levels.extend(rule.critical.map(|v| (Severity::Critical, v)));
        }
    }
    let location = ArchiveLocation::open(&archive, &options)?;
    let req = PlotRequest { machine, site, metric, window, levels, out, size };
    let plotted = crate::plot::render(&location, &req).await?;
    for f in &plotted.files {
        println!("wrote {}", f.display());
    }
    for s in &plotted.skipped {
        println!("skipped {s}");
    }
    Ok(if plotted.files.is_empty() { ExitCode::FAILURE } else { ExitCode::SUCCESS })
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
