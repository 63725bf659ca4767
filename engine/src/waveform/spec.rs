//! The runtime spec of a waveform window: its operators and their settings.

use super::operator::Operator;
use super::settings::AnalysisSettings;
use super::speed::SpeedSpec;

/// Settings of a waveform window.
#[derive(Debug, Clone, PartialEq)]
pub struct WaveformSpec {
    /// Operators, in the file's order.
    pub operators: Vec<Operator>,
    /// What they read.
    pub settings: AnalysisSettings,
    /// Shaft speed from a tachometer subject (`rpm_subject`).
    pub speed: Option<Box<SpeedSpec>>,
}

impl WaveformSpec {
    /// The numeric features its operators report, in operator order.
    pub fn scalar_features(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.operators.iter().flat_map(|o| o.scalar_features())
    }
}
