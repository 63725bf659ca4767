//! `stator replay`: runs a pipeline over history under its own prefix.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use stator_engine::replay::Start;
use tokio::sync::watch;

use super::{load_all, wait_for_signal};

/// Arguments of `stator replay`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("start").required(true).args(["from_seq", "since", "last"])))]
pub struct Args {
    /// The pipeline file.
    pub file: PathBuf,
    /// Start at this stream sequence.
    #[arg(long)]
    pub from_seq: Option<u64>,
    /// Start at this time (RFC 3339, e.g. 2026-11-22T08:00:00Z).
    #[arg(long, value_parser = parse_time)]
    pub since: Option<time::OffsetDateTime>,
    /// Start this long ago, e.g. 15m, 7d.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub last: Option<Duration>,
    /// Replay id, used in its subjects, consumer and archive prefix (default: the UTC time).
    #[arg(long)]
    pub id: Option<String>,
    /// Archive location for the replay (default: replay/ID below the pipeline's archive).
    #[arg(long)]
    pub archive: Option<String>,
}

/// Runs the replay and reports it; exits 130 when a signal stopped it early.
///
/// # Errors
/// When the file has errors or the replay cannot run.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let now = time::OffsetDateTime::now_utc();
    let start = match (args.from_seq, args.since, args.last) {
        (Some(seq), _, _) => Start::Sequence(seq),
        (_, Some(t), _) => Start::Time(t),
        (_, _, Some(span)) => Start::last(span, now),
        _ => anyhow::bail!("one of --from-seq, --since and --last is needed"),
    };
    let live = load_all(std::slice::from_ref(&args.file))?.remove(0);
    let id = args.id.unwrap_or_else(|| stator_engine::replay::default_id(now));
    let (stop_tx, stop_rx) = watch::channel(false);
    let signals = tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("signal received; stopping the replay");
        let _ = stop_tx.send(true);
    });
    let outcome = crate::replay::run(&live, &id, start, args.archive.as_deref(), stop_rx).await;
    signals.abort();
    let outcome = outcome?;
    crate::replay::report(&outcome);
    // Stopped by a signal: not a finished replay (128 + SIGINT, as shells report it).
    Ok(if outcome.stopped { ExitCode::from(130) } else { ExitCode::SUCCESS })
}

fn parse_time(text: &str) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("`{text}` is not an RFC 3339 time: {e}"))
}
