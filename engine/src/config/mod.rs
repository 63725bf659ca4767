//! Pipeline files: loading, `${VAR}` expansion, validation with positions, and the runtime
//! [`Pipeline`] they build.
//!
//! `file` is the file's structure (serde), `checker` places every finding in the file, one
//! module per section builds and validates it (`source`, `window`, `alert`, `archive`), and
//! `model` holds the validated runtime types.

mod alert;
mod archive;
mod checker;
mod diagnostic;
mod expand;
pub mod file;
mod locate;
mod model;
mod source;
mod window;

use std::path::Path;

pub use crate::archive::{ArchiveSpec, DEFAULT_ARCHIVE_URL};
pub use crate::subject::DEFAULT_SUBJECT_TEMPLATE;
pub use crate::waveform::{Operator, WaveformSpec};
pub use diagnostic::{ConfigError, Diagnostic, Severity};
pub use locate::{KeyPath, PathSeg};
pub use model::{
    AlertKind, AlertRule, Auth, BaselineSpec, Compare, EventTime, Format, Loaded, MAX_KEY_FIELDS, Pipeline, Secret,
    SourceSpec, WindowKind, WindowSpec,
};

use crate::subject::{self, SubjectTemplate};
use checker::{Checker, is_name};
use file::{PipelineFile, SourceSection};

/// Reads, expands and validates a pipeline file, with variables from the process environment.
///
/// # Errors
/// [`ConfigError::Read`] when the file cannot be read; [`ConfigError::Invalid`] with every
/// problem found, each with its line, column and key.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    load_str(path, &text, &|name| std::env::var(name).ok())
}

/// Like [`load`], from text, with variables from `env`.
///
/// # Errors
/// [`ConfigError::Invalid`] with every problem found.
pub fn load_str(path: &Path, text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Loaded, ConfigError> {
    let mut cx = Checker { file: path.to_owned(), text: String::new(), found: Vec::new() };
    let expanded = match expand::expand(text, env) {
        Ok(t) => t,
        Err(errors) => {
            for e in errors {
                cx.push_at(Severity::Error, e.line, e.column, String::new(), e.message);
            }
            return Err(ConfigError::Invalid(cx.found));
        }
    };
    cx.text = expanded;
    let parsed: PipelineFile = match cx.parse() {
        Some(p) => p,
        None => return Err(ConfigError::Invalid(cx.found)),
    };
    let pipeline = build(&mut cx, parsed);
    cx.found.sort_by_key(|d| (d.line, d.column));
    let (errors, warnings): (Vec<_>, Vec<_>) = cx.found.into_iter().partition(|d| d.severity == Severity::Error);
    match pipeline {
        Some(pipeline) if errors.is_empty() => Ok(Loaded { pipeline, warnings }),
        _ => Err(ConfigError::Invalid(errors)),
    }
}

fn build(cx: &mut Checker, file: PipelineFile) -> Option<Pipeline> {
    let root = KeyPath::default();
    let p = root.key("pipeline");
    if !is_name(&file.pipeline.name) {
        cx.error(&p.key("name"), "a pipeline name uses only letters, digits, `-` and `_`");
    }
    let name = file.pipeline.name.clone();
    let dead_letter_subject =
        file.pipeline.dead_letter_subject.clone().unwrap_or_else(|| format!("stator.deadletter.{name}"));
    if !subject::is_valid_subject(&dead_letter_subject) {
        cx.error(&p.key("dead_letter_subject"), format!("`{dead_letter_subject}` is not a valid subject"));
    }
    if let Some(m) = &file.machine_config
        && !is_name(&m.bucket)
    {
        cx.error(&root.key("machine_config").key("bucket"), "a bucket name uses only letters, digits, `-` and `_`");
    }
    let state_bucket = file.pipeline.state_bucket.clone().unwrap_or_else(|| "STATOR_STATE".into());
    if !is_name(&state_bucket) {
        cx.error(&p.key("state_bucket"), "a bucket name uses only letters, digits, `-` and `_`");
    }
    let template = build_template(cx, &file.source);
    let waveform = file.source.format.as_deref() == Some("waveform");
    let windows: Vec<Option<WindowSpec>> = file
        .windows
        .iter()
        .enumerate()
        .map(|(i, w)| window::build_window(cx, &root.key("window").index(i), w, template.as_ref(), waveform))
        .collect();
    check_unique(cx, "window", file.windows.iter().map(|w| w.name.as_str()));
    for (i, w) in windows.iter().enumerate() {
        let Some(WindowKind::Waveform(WaveformSpec { speed: Some(s), .. })) = w.as_ref().map(|w| &w.kind) else {
            continue;
        };
        let filters = &file.source.filter_subjects;
        if !filters.is_empty() && !filters.iter().any(|f| subject::overlaps(f, &s.subject)) {
            cx.error(
                &root.key("window").index(i).key("rpm_subject"),
                format!("the source does not deliver `{}`: add it to `source.filter_subjects`", s.subject),
            );
        }
    }
    if file.windows.is_empty() {
        cx.error(&root, "the pipeline has no `[[window]]`");
    }
    let alerts: Vec<AlertRule> = file
        .alerts
        .iter()
        .enumerate()
        .filter_map(|(i, a)| alert::build_alert(cx, &root.key("alert").index(i), a, &file.windows, &windows))
        .collect();
    let windows: Vec<WindowSpec> = windows.into_iter().flatten().collect();
    check_unique(cx, "alert", file.alerts.iter().map(|a| a.name.as_str()));
    let fields: Vec<String> = template.as_ref().map(|t| t.field_names().to_vec()).unwrap_or_default();
    let archive =
        file.archive.as_ref().map(|a| archive::build_archive(cx, a, source::source_format(&file.source), &fields));
    let source = source::build_source(cx, &root.key("source"), &file.source, template?, &windows)?;
    let complete = windows.len() == file.windows.len()
        && alerts.len() == file.alerts.len()
        && archive.as_ref().is_none_or(Option::is_some);
    complete.then(|| Pipeline {
        file: cx.file.clone(),
        name,
        dead_letter_subject,
        state_bucket,
        machine_config_bucket: file.machine_config.as_ref().map(|m| m.bucket.clone()),
        archive: archive.flatten(),
        source,
        windows,
        alerts,
    })
}

fn check_unique<'a>(cx: &mut Checker, section: &str, names: impl Iterator<Item = &'a str>) {
    let mut seen: Vec<&str> = Vec::new();
    for (i, n) in names.enumerate() {
        if seen.contains(&n) {
            cx.error(&KeyPath::default().key(section).index(i).key("name"), format!("`{n}` is already used"));
        }
        seen.push(n);
    }
}

fn build_template(cx: &mut Checker, s: &SourceSection) -> Option<SubjectTemplate> {
    let text = s.subject.as_deref().unwrap_or(DEFAULT_SUBJECT_TEMPLATE);
    SubjectTemplate::parse(text).map_err(|e| cx.error(&KeyPath::default().key("source").key("subject"), e)).ok()
}

#[cfg(test)]
mod tests;

/// The fields in every one of `keys` (window keys), in the first one's order: what a
/// partitioned pipeline partitions by, since a window keyed by fewer fields would be split
/// between partitions.
pub fn common_key_fields<'a>(mut keys: impl Iterator<Item = &'a [String]>) -> Vec<String> {
    let Some(first) = keys.next() else { return Vec::new() };
    let mut common = first.to_vec();
    for key in keys {
        common.retain(|f| key.contains(f));
    }
    common
}
