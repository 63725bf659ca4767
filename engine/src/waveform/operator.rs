//! The waveform operator trait.
//!
//! An operator is what a `[[window]]` of a waveform source lists in `operators = [...]`. Each
//! one declares its name, the window settings it reads, the features it produces (name, unit,
//! kind) and how it computes them from a closed window ([`Window`]). The registry
//! (`super::registry::REGISTRY`) lists them all.

use std::fmt;

use super::context::Window;
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
    /// Only some windows have it (a sideband is looked for around some defect kinds only).
    pub sometimes: bool,
}

impl FeatureDef {
    /// A numeric feature.
    pub const fn scalar(name: &'static str, unit: &'static str) -> Self {
        Self { name, unit, kind: FeatureKind::Scalar, sometimes: false }
    }

    /// A numeric feature that only some windows have.
    pub const fn scalar_sometimes(name: &'static str, unit: &'static str) -> Self {
        Self { name, unit, kind: FeatureKind::Scalar, sometimes: true }
    }

    /// A text feature.
    pub const fn text(name: &'static str) -> Self {
        Self { name, unit: "", kind: FeatureKind::Text, sometimes: false }
    }

    /// A vector feature whose entries are in `unit`.
    pub const fn vector(name: &'static str, unit: &'static str) -> Self {
        Self { name, unit, kind: FeatureKind::Vector, sometimes: false }
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

/// A registered operator, as a window spec holds it: compared, hashed and printed by name.
#[derive(Clone, Copy)]
pub struct Operator(pub(super) &'static dyn WaveformOperator);

impl Operator {
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
