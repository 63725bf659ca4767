//! Waveform sources: decoding sample blocks and analysing windows of samples with the
//! registered operators.

pub mod analysis;
pub mod decode;
pub mod operator;
mod ops;
pub mod spec;

pub use analysis::{Analyzer, MachineSettings, WavePane, Window};
pub use decode::{Waveform, WaveformError};
pub use operator::{FeatureDef, FeatureKind, Operator, REGISTRY, WaveformOperator};
pub use spec::WaveformSpec;
