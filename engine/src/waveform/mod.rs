//! Waveform sources: decoding sample blocks and analysing windows of samples.

pub mod analysis;
pub mod decode;

pub use analysis::{Analyzer, MachineSettings, WavePane};
pub use decode::{Waveform, WaveformError};
