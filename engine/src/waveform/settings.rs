//! The settings a waveform window's operators read (everything of the window spec but the
//! list of operators), built from a `[[window]]` by the config loader.

use stator_operators::faults::ScoreConfig;
use stator_operators::spectrum::WindowFn;
use stator_operators::velocity::{AccelUnit, Foundation, MachineGroup};

/// What the operators of a waveform window read: spectrum, envelope, velocity and ISO
/// settings, and the bearing defaults a machine's own config overrides.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalysisSettings {
    /// Spectrum FFT size.
    pub fft_size: usize,
    /// Welch overlap.
    pub overlap: f64,
    /// Spectral window.
    pub spectral_window: WindowFn,
    /// Envelope band (None: chosen per window by kurtogram when the bearing and speed are known,
    /// else the default for the sample rate).
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
    /// Envelope over this many shaft revolutions (when the speed is known).
    pub revolutions: Option<u32>,
}

impl Default for AnalysisSettings {
    /// What a `[[window]]` gets for every setting it leaves out (docs/PIPELINES.md).
    fn default() -> Self {
        Self {
            fft_size: 4096,
            overlap: 0.5,
            spectral_window: WindowFn::Hann,
            envelope_band: None,
            whiten: false,
            velocity_band: (10.0, 1000.0),
            machine_group: MachineGroup::Medium,
            foundation: Foundation::Rigid,
            bearing: None,
            rpm: None,
            units: AccelUnit::G,
            score: ScoreConfig::default(),
            revolutions: None,
        }
    }
}
