//! The `stator` subcommands, one module each: its arguments (a clap `Args`) and its `run`.
//! `src/main.rs` holds only the top-level definition and dispatches here.

pub mod completions;
pub mod demo;
pub mod plot;
pub mod query;
pub mod replay;
pub mod run;
pub mod simulate;
pub mod status;
pub mod validate;

use std::path::PathBuf;

use stator_engine::config::{self, ConfigError};

/// Loads every file, logging warnings; fails with every error of every file.
///
/// # Errors
/// When any file cannot be read or has errors; the message lists all of them.
pub fn load_all(files: &[PathBuf]) -> anyhow::Result<Vec<config::Pipeline>> {
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

/// Waits for SIGINT or SIGTERM.
pub async fn wait_for_signal() {
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

/// Parses an object store option `KEY=VALUE`.
///
/// # Errors
/// When there is no `=`.
pub fn parse_option(text: &str) -> Result<(String, String), String> {
    let (k, v) = text.split_once('=').ok_or_else(|| format!("`{text}` is not KEY=VALUE"))?;
    Ok((k.trim().to_owned(), v.to_owned()))
}
