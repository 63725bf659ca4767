//! Waveform sources: decoding sample blocks and analysing windows of samples with the
//! registered operators.
//!
//! Bottom up: `settings` (what operators read), `context` (a closed window as operators see
//! it), `operator` (the trait), `ops` (the operators), `registry` (the one list of them),
//! `spec` (a window's operators and settings), `analysis` (runs a spec over a window).

pub mod analysis;
pub mod context;
pub mod decode;
pub mod operator;
mod ops;
pub mod registry;
pub mod settings;
pub mod spec;
pub mod speed;

pub use analysis::{Analyzer, WavePane};
pub use context::{MachineSettings, Window};
pub use decode::{Waveform, WaveformError};
pub use operator::{FeatureDef, FeatureKind, Operator, WaveformOperator};
pub use registry::REGISTRY;
pub use settings::AnalysisSettings;
pub use spec::WaveformSpec;
