//! Envelope analysis for bearings: band-pass around a structural resonance, analytic signal
//! by FFT (Hilbert transform), squared envelope, and its amplitude spectrum.
//!
//! Bearing defects excite resonances with short impacts repeating at the defect frequency.
//! The band-pass keeps the resonance, the envelope demodulates it, and the envelope spectrum
//! shows the repetition rate and its harmonics.

use std::sync::Arc;

use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};

use crate::spectrum::{SpectrumPlan, WindowFn};

/// The default demodulation band for a sample rate: 1 kHz up to 40 % of the sample rate,
/// at most 10 kHz. It holds the structural resonances that bearing impacts typically
/// excite, above the shaft harmonics.
pub fn default_band(sample_rate: f64) -> (f64, f64) {
    (1000.0_f64.min(sample_rate * 0.1), (sample_rate * 0.4).min(10_000.0))
}

/// Settings of an envelope spectrum.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EnvelopeConfig {
    /// Band-pass, Hz.
    pub band: (f64, f64),
    /// Whiten the band (unit magnitude, phase kept) before demodulating, so one strong
    /// resonance or tone does not mask the impacts.
    pub whiten: bool,
}

/// FFT plans and buffers for envelope spectra of one block length, built once.
pub struct EnvelopePlan {
    n: usize,
    forward: Arc<dyn Fft<f32>>,
    inverse: Arc<dyn Fft<f32>>,
    buf: Vec<Complex<f32>>,
    scratch: Vec<Complex<f32>>,
    envelope: Vec<f32>,
    spectrum: SpectrumPlan,
}

impl std::fmt::Debug for EnvelopePlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvelopePlan").field("n", &self.n).finish()
    }
}

impl EnvelopePlan {
    /// Plans for blocks of `n` samples (even, >= 4).
    pub fn new(n: usize) -> Self {
        let mut planner = FftPlanner::<f32>::new();
        let forward = planner.plan_fft_forward(n);
        let inverse = planner.plan_fft_inverse(n);
        let scratch_len = forward.get_inplace_scratch_len().max(inverse.get_inplace_scratch_len());
        Self {
            n,
            forward,
            inverse,
            buf: vec![Complex::default(); n],
            scratch: vec![Complex::default(); scratch_len],
            envelope: vec![0.0; n],
            spectrum: SpectrumPlan::new(n, WindowFn::Hann),
        }
    }

    /// Block length.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Always false.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Bins of the envelope spectrum, `n / 2 + 1`, spaced `sample_rate / n`.
    pub fn bins(&self) -> usize {
        self.n / 2 + 1
    }

    /// The squared-envelope amplitude spectrum of `x` (exactly `n` samples) into `out`.
    ///
    /// # Panics
    /// When the lengths are wrong (a caller bug).
    pub fn envelope_spectrum(&mut self, x: &[f32], sample_rate: f64, config: &EnvelopeConfig, out: &mut [f32]) {
        assert_eq!(x.len(), self.n, "block length");
        let n = self.n;
        for (b, &s) in self.buf.iter_mut().zip(x) {
            *b = Complex::new(s, 0.0);
        }
        self.forward.process_with_scratch(&mut self.buf, &mut self.scratch);
        // Analytic signal of the band: keep positive frequencies in the band, doubled.
        let df = sample_rate / n as f64;
        let (lo, hi) = config.band;
        for (k, b) in self.buf.iter_mut().enumerate() {
            let f = k as f64 * df;
            let keep = k > 0 && k < n / 2 && f >= lo && f <= hi;
            *b = if !keep {
                Complex::default()
            } else if config.whiten {
                let m = b.norm();
                if m > 0.0 { *b * (2.0 / m) } else { Complex::default() }
            } else {
                *b * 2.0
            };
        }
        self.inverse.process_with_scratch(&mut self.buf, &mut self.scratch);
        let scale = 1.0 / (n as f32 * n as f32);
        for (e, b) in self.envelope.iter_mut().zip(&self.buf) {
            *e = b.norm_sqr() * scale;
        }
        self.spectrum.amplitude(&self.envelope, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    #[test]
    fn an_amplitude_modulated_carrier_shows_its_modulation_frequency() {
        // 3 kHz carrier, 100 % modulated at 87 Hz, plus a strong 50 Hz tone outside the band.
        let (fs, n) = (12_000.0, 12_000);
        let x: Vec<f32> = (0..n)
            .map(|i| {
                let t = i as f64 / fs;
                let m = 1.0 + (2.0 * PI * 87.0 * t).cos();
                (m * (2.0 * PI * 3000.0 * t).sin() + 5.0 * (2.0 * PI * 50.0 * t).sin()) as f32
            })
            .collect();
        let mut plan = EnvelopePlan::new(n);
        let mut out = vec![0.0; plan.bins()];
        let config = EnvelopeConfig { band: default_band(fs), whiten: false };
        plan.envelope_spectrum(&x, fs, &config, &mut out);
        let peak = out.iter().enumerate().skip(2).fold((0, 0.0f32), |m, (k, a)| if *a > m.1 { (k, *a) } else { m });
        assert_eq!(peak.0, 87, "strongest envelope line at 87 Hz");
        assert!(out[50] < 0.05 * peak.1, "the 50 Hz tone outside the band is gone");
    }

    #[test]
    fn default_bands_fit_the_sample_rate() {
        assert_eq!(default_band(12_000.0), (1000.0, 4800.0));
        assert_eq!(default_band(51_200.0), (1000.0, 10_000.0));
    }
}
