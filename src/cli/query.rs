//! `stator query`: read-only SQL over the archive, as a table, CSV, JSON lines or Parquet.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::ValueEnum;
use stator_engine::archive::ArchiveLocation;

use super::parse_option;

/// How `stator query` prints its result.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OutputFormat {
    /// A pretty table.
    Table,
    /// CSV with a header.
    Csv,
    /// One JSON object per line.
    Json,
    /// A Parquet file (use --output, or redirect stdout).
    Parquet,
}

/// Arguments of `stator query`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Archive location: a directory, file://, s3://bucket/prefix, gs://..., az://...
    #[arg(long, env = "STATOR_ARCHIVE", default_value = "./archive")]
    pub archive: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
    /// Show the plan with partition pruning and metrics instead of the result.
    #[arg(long)]
    pub explain: bool,
    /// Write the result to this file instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Object store option KEY=VALUE for s3://, gs://, az:// archives (endpoint, region,
    /// allow_http...), on top of the environment. Repeatable.
    #[arg(long = "option", value_parser = parse_option)]
    pub options: Vec<(String, String)>,
    /// The SQL query.
    pub sql: String,
}

/// Runs the query and writes its result.
///
/// # Errors
/// When the archive cannot be opened, the SQL is refused, or the output cannot be written.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    use datafusion::arrow::{csv, json, util::pretty};
    use std::io::Write as _;
    let location = ArchiveLocation::open(&args.archive, &args.options)?;
    let ctx = stator_engine::query::session(&location).await?;
    let mut out: Box<dyn std::io::Write + Send> = match &args.output {
        Some(path) => Box::new(std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?),
        None => Box::new(std::io::stdout()),
    };
    if args.explain {
        write!(out, "{}", stator_engine::query::explain(&ctx, &args.sql).await?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let df = stator_engine::query::plan(&ctx, &args.sql).await?;
    let schema = Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await?;
    match args.format {
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
