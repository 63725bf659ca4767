//! The squared-envelope spectrum of the window and its highest line.

use crate::features::{Features, Vector};
use crate::waveform::context::{Window, peak};
use crate::waveform::operator::{FeatureDef, WaveformOperator};

/// `envelope`.
pub(crate) struct EnvelopeOp;

impl WaveformOperator for EnvelopeOp {
    fn name(&self) -> &'static str {
        "envelope"
    }

    fn about(&self) -> &'static str {
        "band-pass by FFT (`envelope_band`; default `kurtogram`: per window, the band of highest spectral kurtosis on the binary levels of a fast kurtogram, no narrower than twice the highest envelope line the bearing diagnosis reads; without a bearing type and speed, 1 kHz to 40 % of the sample rate, at most 10 kHz), analytic signal (Hilbert by FFT), squared envelope, Hann spectrum; optional `whiten`; with `revolutions = N` and a known shaft speed, over the first N revolutions of the window (the largest fast FFT length not above them: bins of about 1/N order)"
    }

    fn settings(&self) -> &'static [&'static str] {
        &["envelope_band", "whiten", "revolutions"]
    }

    fn features(&self) -> &'static [FeatureDef] {
        const FEATURES: &[FeatureDef] = &[
            FeatureDef::vector("envelope", "input unit²"),
            FeatureDef::scalar("envelope.peak_hz", "Hz"),
            FeatureDef::scalar("envelope.band_lo_hz", "Hz"),
            FeatureDef::scalar("envelope.band_hi_hz", "Hz"),
            FeatureDef::scalar_sometimes("envelope.band_kurtosis", "1"),
            FeatureDef::scalar_sometimes("envelope.revolutions", "revolutions"),
        ];
        FEATURES
    }

    fn compute(&self, window: &mut Window<'_>, out: &mut Features) {
        let Some(e) = window.envelope() else { return };
        let (k, _) = peak(&e.spectrum[1..]);
        out.scalars.push(("envelope.peak_hz", (k + 1) as f64 * e.df));
        out.scalars.push(("envelope.band_lo_hz", e.band.0));
        out.scalars.push(("envelope.band_hi_hz", e.band.1));
        if let Some(k) = e.band_kurtosis {
            out.scalars.push(("envelope.band_kurtosis", k));
        }
        if let Some(r) = e.revolutions {
            out.scalars.push(("envelope.revolutions", r));
        }
        out.vectors.push(("envelope", Vector { step: e.df, values: e.spectrum.clone() }));
    }
}
