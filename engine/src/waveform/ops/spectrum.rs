//! The amplitude spectrum of the window and its highest line.

use crate::features::{Features, Vector};
use crate::waveform::context::{Window, peak};
use crate::waveform::operator::{FeatureDef, WaveformOperator};

/// `spectrum`.
pub(crate) struct SpectrumOp;

impl WaveformOperator for SpectrumOp {
    fn name(&self) -> &'static str {
        "spectrum"
    }

    fn about(&self) -> &'static str {
        "Welch, `fft_size` points (per machine: `fft_size` in its config), `overlap`, Hann/flat-top/rectangular, amplitude-correct"
    }

    fn settings(&self) -> &'static [&'static str] {
        &["fft_size", "overlap", "spectral_window"]
    }

    fn features(&self) -> &'static [FeatureDef] {
        const FEATURES: &[FeatureDef] = &[
            FeatureDef::vector("spectrum", "input unit"),
            FeatureDef::scalar("spectrum.peak_hz", "Hz"),
            FeatureDef::scalar("spectrum.peak", "input unit"),
        ];
        FEATURES
    }

    fn compute(&self, window: &mut Window<'_>, out: &mut Features) {
        let Some(s) = window.spectrum() else { return };
        let (k, a) = peak(&s.amplitude);
        out.scalars.push(("spectrum.peak_hz", k as f64 * s.df));
        out.scalars.push(("spectrum.peak", f64::from(a)));
        out.vectors.push(("spectrum", Vector { step: s.df, values: s.amplitude.clone() }));
    }
}
