//! `stator run`: runs pipelines until SIGINT/SIGTERM, or until drained.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use stator_engine::observe::{self, Metrics};
use stator_engine::worker::{self, RunMode};
use tokio::sync::watch;

use super::{load_all, wait_for_signal};

/// Arguments of `stator run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Pipeline files.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Stop once the stream is drained (close all windows, commit, exit).
    #[arg(long)]
    pub drain: bool,
    /// Serve /metrics (Prometheus), /healthz, /readyz and /status on this address, e.g.
    /// 127.0.0.1:9464 (port 0 picks a free one; the log says which).
    #[arg(long, env = "STATOR_LISTEN")]
    pub listen: Option<std::net::SocketAddr>,
}

/// Runs every pipeline in its own task; fails when any of them fails.
///
/// # Errors
/// When a file has errors, the listen address cannot be bound or NATS cannot be reached.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mode = if args.drain { RunMode::Drain } else { RunMode::Follow };
    let pipelines = load_all(&args.files)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let metrics = Arc::new(Metrics::default());
    let stats: Vec<_> = pipelines.iter().map(|p| metrics.pipeline(&p.name)).collect();
    let http = match args.listen {
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
