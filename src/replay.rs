//! `stator replay`: a pipeline over history, with a progress bar and an ETA.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream;
use indicatif::{ProgressBar, ProgressStyle};
use stator_engine::config::Pipeline;
use stator_engine::replay::{self, Plan, Start};
use stator_engine::worker::{self, RunMode, Stats};
use tokio::sync::watch;

/// What a replay did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The plan it ran.
    pub plan: Plan,
    /// Messages in the range.
    pub total: u64,
    /// Alert transitions it published.
    pub alerts: u64,
    /// Windows it closed.
    pub windows: u64,
    /// Messages it dead-lettered.
    pub dead_letters: u64,
    /// Messages it was delivered (all of `total` unless stopped).
    pub fetched: u64,
    /// Whether `stop` ended it before the end of the range.
    pub stopped: bool,
}

/// Runs `live` over history from `start`, as [`replay::plan`] describes, until the stream
/// is drained; then removes its consumer and alert state. Stops early (and cleans up) when
/// `stop` turns true.
///
/// # Errors
/// NATS, archive and worker errors.
pub async fn run(
    live: &Pipeline,
    id: &str,
    start: Start,
    archive: Option<&str>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<Outcome> {
    let plan = replay::plan(live, id, start, archive)?;
    let client = stator_engine::source::connect(&plan.pipeline.source)
        .await
        .with_context(|| format!("connecting to {}", plan.pipeline.source.url))?;
    let js = jetstream::new(client.clone());
    let total = replay::prepare(&js, &plan).await?;
    eprintln!(
        "replaying `{}` over {total} messages of stream {} as `{}`",
        live.name, plan.pipeline.source.stream, plan.pipeline.name
    );
    eprintln!("  alerts and features to {}.>, archive to {}", plan.subject_prefix, archive_of(&plan.pipeline));
    let stats = Arc::new(Stats::default());
    let bar = progress_bar(total);
    let ticker = {
        let (bar, stats) = (bar.clone(), stats.clone());
        tokio::spawn(async move {
            loop {
                bar.set_position(Stats::get(&stats.fetched).min(total));
                bar.set_message(format!(
                    "windows {} | alerts {}",
                    Stats::get(&stats.windows_closed),
                    Stats::get(&stats.alerts_published)
                ));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let result =
        worker::run(Arc::new(plan.pipeline.clone()), client, stop.clone(), stats.clone(), RunMode::Drain).await;
    let stopped = *stop.borrow();
    ticker.abort();
    bar.set_position(Stats::get(&stats.fetched).min(total));
    bar.finish();
    let cleaned = replay::clean_up(&js, &plan).await;
    result?;
    cleaned?;
    Ok(Outcome {
        total,
        alerts: Stats::get(&stats.alerts_published),
        windows: Stats::get(&stats.windows_closed),
        dead_letters: Stats::get(&stats.dead_letters),
        fetched: Stats::get(&stats.fetched),
        stopped,
        plan,
    })
}

fn archive_of(p: &Pipeline) -> &str {
    p.archive.as_ref().map_or("(no archive)", |a| a.url.as_str())
}

/// A bar on standard error with rate and ETA (hidden when it is not a terminal).
fn progress_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    let style = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:32} {pos}/{len} messages ({per_sec}, ETA {eta}) {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

/// Prints a finished replay and how to look at it.
pub fn report(outcome: &Outcome) {
    let p = &outcome.plan.pipeline;
    let (id, how) = (&outcome.plan.id, if outcome.stopped { "stopped early" } else { "done" });
    println!(
        "replay {id} {how}: {} of {} messages, {} windows closed, {} alert transitions, {} dead letters",
        outcome.fetched.min(outcome.total),
        outcome.total,
        outcome.windows,
        outcome.alerts,
        outcome.dead_letters
    );
    println!("alerts: stream {} subjects {}.>", replay::STREAM, outcome.plan.subject_prefix);
    println!(
        "  nats stream view {} --subject '{}.>'   (kept {} days)",
        replay::STREAM,
        outcome.plan.subject_prefix,
        replay::KEEP.as_secs() / 86_400
    );
    if let Some(a) = &p.archive {
        println!("archive: {}\n  stator query --archive {} \"SELECT * FROM alerts\"", a.url, a.url);
    }
}
