//! The runtime settings of a waveform window, built from a `[[window]]` by the config loader.

use stator_operators::faults::ScoreConfig;
use stator_operators::spectrum::WindowFn;
use stator_operators::velocity::{AccelUnit, Foundation, MachineGroup};

use super::operator::Operator;

/// Settings of a waveform window.
#[derive(Debug, Clone, PartialEq)]
pub struct WaveformSpec {
    /// Operators, in the file's order.
    pub operators: Vec<Operator>,
    /// Spectrum FFT size.
    pub fft_size: usize,
    /// Welch overlap.
    pub overlap: f64,
    /// Spectral window.
    pub spectral_window: WindowFn,
    /// Envelope band (None: the default for the sample rate).
    pub envelope_band: Option<(f64, f64)>,
    /// Whiten before demodulating.
    pub whiten: bool,
    /// Velocity band.
    pub velocity_band: (f64, f64),
    /// ISO machine group.
    pub machine_group: MachineGroup,
    /// ISO foundation.
    pub foundation: Foundation,
    /// Default bearing designation.
    pub bearing: Option<String>,
    /// Default shaft speed, rpm.
    pub rpm: Option<f64>,
    /// Default acceleration unit.
    pub units: AccelUnit,
    /// Fault scoring.
    pub score: ScoreConfig,
}

impl WaveformSpec {
    /// The numeric features its operators report, in operator order.
    pub fn scalar_features(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.operators.iter().flat_map(|o| o.scalar_features())
    }
}
