//! The [`Checker`] that collects diagnostics with their positions, and the small checks every
//! section shares.

use std::path::PathBuf;
use std::time::Duration;

use toml::de::DeTable;

use super::file::PipelineFile;
use super::locate::{self, KeyPath, PathSeg};
use super::{Diagnostic, Severity};

/// Collects diagnostics and places them in the file.
pub(super) struct Checker {
    pub(super) file: PathBuf,
    pub(super) text: String,
    pub(super) found: Vec<Diagnostic>,
}

impl Checker {
    pub(super) fn push_at(&mut self, severity: Severity, line: usize, column: usize, key: String, message: String) {
        self.found.push(Diagnostic { severity, file: self.file.clone(), line, column, key, message });
    }

    fn push_span(&mut self, severity: Severity, offset: usize, key: String, message: String) {
        let (line, column) = locate::line_col(&self.text, offset);
        self.push_at(severity, line, column, key, message);
    }

    fn report(&mut self, severity: Severity, path: &KeyPath, message: impl Into<String>) {
        let offset =
            DeTable::parse(&self.text).ok().and_then(|d| locate::span_of(d.get_ref(), path)).map_or(0, |s| s.start);
        self.push_span(severity, offset, path.to_string(), message.into());
    }

    pub(super) fn error(&mut self, path: &KeyPath, message: impl Into<String>) {
        self.report(Severity::Error, path, message);
    }

    pub(super) fn warn(&mut self, path: &KeyPath, message: impl Into<String>) {
        self.report(Severity::Warning, path, message);
    }

    /// Parses the TOML and the file structure, reporting every unknown key.
    pub(super) fn parse(&mut self) -> Option<PipelineFile> {
        let text = self.text.clone();
        if let Err(e) = DeTable::parse(&text) {
            {
                let offset = e.span().map_or(0, |s| s.start);
                self.push_span(Severity::Error, offset, String::new(), e.message().trim().to_owned());
                return None;
            }
        }
        let mut unknown = Vec::new();
        let deserializer = toml::Deserializer::parse(&text).ok()?;
        let result: Result<PipelineFile, _> =
            serde_ignored::deserialize(deserializer, |path| unknown.push(ignored_path(&path)));
        for path in unknown {
            self.error(&path, "unknown key");
        }
        match result {
            Ok(file) => Some(file),
            Err(e) => {
                let offset = e.span().map_or(0, |s| s.start);
                let key = key_at(&text, offset);
                self.push_span(Severity::Error, offset, key, e.message().trim().to_owned());
                None
            }
        }
    }
}

fn ignored_path(path: &serde_ignored::Path<'_>) -> KeyPath {
    fn walk(path: &serde_ignored::Path<'_>, out: &mut Vec<PathSeg>) {
        use serde_ignored::Path as P;
        match path {
            P::Root => {}
            P::Seq { parent, index } => {
                walk(parent, out);
                out.push(PathSeg::Index(*index));
            }
            P::Map { parent, key } => {
                walk(parent, out);
                out.push(PathSeg::Key(key.clone()));
            }
            P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => walk(parent, out),
        }
    }
    let mut segs = Vec::new();
    walk(path, &mut segs);
    KeyPath(segs)
}

/// The key written at the start of the line holding `offset`, for errors serde reports by span.
fn key_at(text: &str, offset: usize) -> String {
    let start = text[..offset.min(text.len())].rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next().unwrap_or("");
    line.split_once('=').map(|(k, _)| k.trim().to_owned()).unwrap_or_default()
}

pub(super) fn is_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

pub(super) fn duration(cx: &mut Checker, path: &KeyPath, text: Option<&str>, default: Duration) -> Duration {
    let Some(text) = text else { return default };
    match humantime::parse_duration(text) {
        Ok(d) => d,
        Err(e) => {
            cx.error(path, format!("`{text}` is not a duration ({e}); write e.g. `10s`, `5m`, `1h30m`"));
            default
        }
    }
}
