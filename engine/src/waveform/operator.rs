//! Waveform operators behind one trait and one registry.
//!
//! An operator is what a `[[window]]` of a waveform source lists in `operators = [...]`. Each
//! one declares its name, the window settings it reads, the features it produces (name, unit,
//! kind) and how it computes them from a closed window ([`Window`]). Everything else reads the
//! [`REGISTRY`]: pipeline validation (known names, the features alert rules may compare), the
//! analysis loop, and the operator table of docs/VIBRATION.md, which a test checks against it.
//!
//! Adding an operator: write it in a file of `ops/` and add one line to [`REGISTRY`].

use std::fmt;

use super::analysis::Window;
use super::ops;
use crate::features::Features;

/// What kind of value a feature is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureKind {
    /// A number; alert rules may compare it.
    Scalar,
    /// A text (a verdict, a zone letter).
    Text,
    /// A spectrum-like vector.
    Vector,
}

/// One feature an operator produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeatureDef {
    /// Its name in outputs, the archive and alert rules (`bearing.bpfo_db`).
    pub name: &'static str,
    /// Its unit (`mm/s`, `dB`, `Hz`; `1` for a ratio; empty for a text).
    pub unit: &'static str,
    /// Number, text or vector.
    pub kind: FeatureKind,
}

impl FeatureDef {
    /// A numeric feature.
    pub const fn scalar(name: &'static str, unit: &'static str) -> Self {
        Self { name, unit, kind: FeatureKind::Scalar }
    }

    /// A text feature.
    pub const fn text(name: &'static str) -> Self {
        Self { name, unit: "", kind: FeatureKind::Text }
    }

    /// A vector feature whose entries are in `unit`.
    pub const fn vector(name: &'static str, unit: &'static str) -> Self {
        Self { name, unit, kind: FeatureKind::Vector }
    }
}

/// A waveform window operator. Synchronous and deterministic: the same window gives the same
/// features.
pub trait WaveformOperator: Sync {
    /// Its name in pipeline files.
    fn name(&self) -> &'static str;

    /// What it computes and how, in one or two sentences (the docs table's notes).
    fn about(&self) -> &'static str;

    /// The `[[window]]` settings it reads (besides the window's timing and key).
    fn settings(&self) -> &'static [&'static str] {
        &[]
    }

    /// Every feature it may produce.
    fn features(&self) -> &'static [FeatureDef];

    /// Adds its features for one closed window to `out`. Features that cannot be computed
    /// (too few samples, no bearing type) are left out or explained by a text feature.
    fn compute(&self, window: &mut Window<'_>, out: &mut Features);
}

/// Every operator, in the order the docs list them. One line per operator.
pub static REGISTRY: &[&dyn WaveformOperator] = &[
    &ops::levels::RMS,
    &ops::levels::PEAK,
    &ops::levels::PEAK_TO_PEAK,
    &ops::levels::CREST_FACTOR,
    &ops::levels::KURTOSIS,
    &ops::levels::SKEWNESS,
    &ops::velocity::VelocityRms,
    &ops::velocity::IsoZoneOp,
    &ops::spectrum::SpectrumOp,
    &ops::envelope::EnvelopeOp,
    &ops::bearing::BearingFaults,
];

/// A registered operator, as a window spec holds it: compared, hashed and printed by name.
#[derive(Clone, Copy)]
pub struct Operator(&'static dyn WaveformOperator);

impl Operator {
    /// The registered operator called `name`.
    pub fn named(name: &str) -> Option<Self> {
        REGISTRY.iter().find(|op| op.name() == name).map(|op| Self(*op))
    }

    /// Every registered operator.
    pub fn all() -> impl Iterator<Item = Self> {
        REGISTRY.iter().map(|op| Self(*op))
    }

    /// The names of every registered operator.
    pub fn names() -> Vec<&'static str> {
        REGISTRY.iter().map(|op| op.name()).collect()
    }

    /// The operator itself.
    pub fn get(self) -> &'static dyn WaveformOperator {
        self.0
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        self.0.name()
    }

    /// The numeric features it reports (what alert rules may compare).
    pub fn scalar_features(self) -> impl Iterator<Item = &'static str> {
        self.0.features().iter().filter(|f| f.kind == FeatureKind::Scalar).map(|f| f.name)
    }
}

impl PartialEq for Operator {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl Eq for Operator {}

impl std::hash::Hash for Operator {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name().hash(state);
    }
}

impl fmt::Debug for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Operator({})", self.name())
    }
}

/// The operator table of docs/VIBRATION.md, generated from the registry.
pub fn markdown_table() -> String {
    let mut out = String::from("| operator | features (unit) | settings | notes |\n|---|---|---|---|\n");
    for op in REGISTRY {
        let features: Vec<String> = op
            .features()
            .iter()
            .map(|f| match (f.kind, f.unit) {
                (FeatureKind::Text, _) => format!("`{}` (text)", f.name),
                (FeatureKind::Vector, u) => format!("`{}` (vector, {u})", f.name),
                (FeatureKind::Scalar, u) => format!("`{}` ({u})", f.name),
            })
            .collect();
        let settings: Vec<String> = op.settings().iter().map(|s| format!("`{s}`")).collect();
        let settings = if settings.is_empty() { "-".to_owned() } else { settings.join(", ") };
        out.push_str(&format!("| `{}` | {} | {settings} | {} |\n", op.name(), features.join(", "), op.about()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_feature_names_are_unique() {
        let names = Operator::names();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "{names:?}");
        // A feature (name and kind: `iso_zone` is a number and a letter) comes from one
        // operator only, so outputs never carry two values under one name.
        let mut features: Vec<(&str, String)> =
            REGISTRY.iter().flat_map(|op| op.features().iter().map(|f| (f.name, format!("{:?}", f.kind)))).collect();
        let n = features.len();
        features.sort_unstable();
        features.dedup();
        assert_eq!(features.len(), n);
    }

    /// The docs list exactly the registered operators: the table between the markers in
    /// docs/VIBRATION.md is the one the registry generates (`STATOR_UPDATE_DOCS=1` rewrites it).
    #[test]
    fn the_docs_table_lists_every_registered_operator() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/VIBRATION.md");
        let doc = std::fs::read_to_string(&path).expect("docs/VIBRATION.md");
        let (begin, end) = ("<!-- operators:begin -->\n", "<!-- operators:end -->");
        let start = doc.find(begin).expect("begin marker") + begin.len();
        let stop = doc.find(end).expect("end marker");
        let table = markdown_table();
        if std::env::var_os("STATOR_UPDATE_DOCS").is_some() {
            std::fs::write(&path, format!("{}{table}{}", &doc[..start], &doc[stop..])).expect("write docs");
            return;
        }
        assert_eq!(&doc[start..stop], table, "docs/VIBRATION.md is stale: run with STATOR_UPDATE_DOCS=1");
        for name in Operator::names() {
            assert!(doc[start..stop].contains(&format!("| `{name}` |")), "{name} missing from the docs");
        }
    }
}
