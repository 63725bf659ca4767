//! Amplitude spectra: windowing with amplitude-correct scaling, a real FFT planned once per
//! size, Welch averaging and band energies.
//!
//! Scaling: a sine of amplitude `A` whose frequency falls on a bin reads `A` in that bin
//! (`2 |X_k| / sum(w)`). With the flat-top window it reads `A` within 0.1 % wherever it falls;
//! with Hann, within -1.4 dB. Power summed over bins is divided by the window's equivalent
//! noise bandwidth (in bins), so band energies and Parseval hold for every window.

use std::f64::consts::PI;
use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};

use crate::simd::Kernels;

/// Window function applied before the FFT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WindowFn {
    /// No window.
    Rectangular,
    /// Hann: good frequency resolution, the default.
    Hann,
    /// Flat-top (ISO 18431-2 coefficients): accurate amplitudes, wide peaks.
    FlatTop,
}

impl WindowFn {
    /// The `n` coefficients (periodic form, for spectral analysis).
    pub fn coefficients(self, n: usize) -> Vec<f32> {
        let nf = n as f64;
        (0..n)
            .map(|i| {
                let x = 2.0 * PI * i as f64 / nf;
                let w = match self {
                    WindowFn::Rectangular => 1.0,
                    WindowFn::Hann => 0.5 - 0.5 * x.cos(),
                    WindowFn::FlatTop => {
                        1.0 - 1.933 * x.cos() + 1.286 * (2.0 * x).cos() - 0.388 * (3.0 * x).cos()
                            + 0.0322 * (4.0 * x).cos()
                    }
                };
                w as f32
            })
            .collect()
    }
}

/// An FFT of one size with its window, buffers and scaling, built once and reused.
pub struct SpectrumPlan {
    n: usize,
    window: Vec<f32>,
    amplitude_scale: f32,
    enbw_bins: f64,
    fft: Arc<dyn RealToComplex<f32>>,
    input: Vec<f32>,
    output: Vec<Complex<f32>>,
    scratch: Vec<Complex<f32>>,
    window_spectrum: Vec<(usize, Complex<f32>)>,
    kernels: Kernels,
}

impl std::fmt::Debug for SpectrumPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpectrumPlan").field("n", &self.n).field("enbw_bins", &self.enbw_bins).finish()
    }
}

impl SpectrumPlan {
    /// Plans an `n`-point spectrum (`n` even, at least 4) with `window`.
    ///
    /// # Panics
    /// When `n` is odd or below 4: sizes come from validated configuration.
    pub fn new(n: usize, window: WindowFn) -> Self {
        assert!(n >= 4 && n.is_multiple_of(2), "spectrum size must be even and >= 4, got {n}");
        let mut planner = RealFftPlanner::<f32>::new();
        let fft = planner.plan_fft_forward(n);
        let w = window.coefficients(n);
        let sum: f64 = w.iter().map(|v| f64::from(*v)).sum();
        let sum_sq: f64 = w.iter().map(|v| f64::from(*v).powi(2)).sum();
        Self {
            n,
            amplitude_scale: (2.0 / sum) as f32,
            enbw_bins: n as f64 * sum_sq / (sum * sum),
            input: fft.make_input_vec(),
            output: fft.make_output_vec(),
            scratch: fft.make_scratch_vec(),
            window_spectrum: window_spectrum(&w, fft.as_ref()),
            kernels: Kernels::detect(),
            window: w,
            fft,
        }
    }

    /// FFT size.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Always false: a plan has at least 4 points.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Number of output bins, `n / 2 + 1`.
    pub fn bins(&self) -> usize {
        self.n / 2 + 1
    }

    /// Equivalent noise bandwidth of the window, in bins (1 rectangular, 1.5 Hann).
    pub fn enbw_bins(&self) -> f64 {
        self.enbw_bins
    }

    /// Amplitude spectrum of `x` (exactly `n` samples) into `out` (`n / 2 + 1` bins). The
    /// (window-weighted) mean is removed, so bin 0 reads 0 and a DC offset does not leak into
    /// the low bins.
    ///
    /// # Panics
    /// When the lengths are wrong (a caller bug).
    pub fn amplitude(&mut self, x: &[f32], out: &mut [f32]) {
        assert_eq!(x.len(), self.n, "block length");
        assert_eq!(out.len(), self.bins(), "output bins");
        self.kernels.multiply(x, &self.window, &mut self.input);
        // Lengths match the plan by construction, so this cannot fail.
        let _ = self.fft.process_with_scratch(&mut self.input, &mut self.output, &mut self.scratch);
        // Remove the (window-weighted) mean from the few bins the window's own spectrum
        // reaches: FFT((x - m) w) = FFT(x w) - m FFT(w), with m = X[0] / W[0].
        if let Some((_, w0)) = self.window_spectrum.first() {
            let m = self.output[0].re / w0.re;
            for (k, w) in &self.window_spectrum {
                self.output[*k] -= *w * m;
            }
        }
        self.kernels.magnitudes(&self.output, self.amplitude_scale, out);
        out[0] *= 0.5;
        out[self.n / 2] *= 0.5;
    }
}

/// The leading bins of a window's own spectrum, up to the first negligible one (a
/// cosine-sum window reaches only its first few bins), for removing the mean after the FFT.
fn window_spectrum(w: &[f32], fft: &dyn RealToComplex<f32>) -> Vec<(usize, Complex<f32>)> {
    let mut input = w.to_vec();
    let mut out = fft.make_output_vec();
    // Lengths come from the same plan, so this cannot fail.
    let _ = fft.process(&mut input, &mut out);
    let dc = out[0].norm_sqr().sqrt();
    out.into_iter().enumerate().take_while(|(_, c)| c.norm_sqr().sqrt() > 1e-5 * dc).collect()
}

/// Welch's method: amplitude spectra of overlapping segments, averaged in power.
#[derive(Debug)]
pub struct Welch {
    plan: SpectrumPlan,
    step: usize,
    block: Vec<f32>,
    power: Vec<f64>,
}

impl Welch {
    /// Segments of `plan.len()` samples, overlapping by `overlap` (0 to 0.9).
    pub fn new(plan: SpectrumPlan, overlap: f64) -> Self {
        let n = plan.len();
        let step = ((n as f64 * (1.0 - overlap.clamp(0.0, 0.9))).round() as usize).max(1);
        Self { block: vec![0.0; plan.bins()], power: vec![0.0; plan.bins()], plan, step }
    }

    /// The underlying plan.
    pub fn plan(&self) -> &SpectrumPlan {
        &self.plan
    }

    /// Averaged amplitude spectrum of `x` into `out`; returns the number of segments (0 when
    /// `x` is shorter than one segment, and `out` is left as zeros).
    pub fn run(&mut self, x: &[f32], out: &mut [f32]) -> usize {
        let n = self.plan.len();
        self.power.iter_mut().for_each(|p| *p = 0.0);
        let mut segments = 0;
        let mut start = 0;
        while start + n <= x.len() {
            self.plan.amplitude(&x[start..start + n], &mut self.block);
            for (p, a) in self.power.iter_mut().zip(&self.block) {
                *p += f64::from(*a) * f64::from(*a);
            }
            segments += 1;
            start += self.step;
        }
        for (o, p) in out.iter_mut().zip(&self.power) {
            *o = if segments > 0 { (p / segments as f64).sqrt() as f32 } else { 0.0 };
        }
        segments
    }
}

/// Mean-square value of the signal in `[lo_hz, hi_hz]` from an amplitude spectrum with bin
/// spacing `df` made with a window of `enbw_bins`. For a sine of amplitude `A` in the band it
/// is `A^2 / 2`; for the whole band it equals the signal's variance (Parseval).
pub fn band_mean_square(amplitude: &[f32], df: f64, enbw_bins: f64, lo_hz: f64, hi_hz: f64) -> f64 {
    let last = amplitude.len().saturating_sub(1);
    amplitude
        .iter()
        .enumerate()
        .filter(|(k, _)| {
            let f = *k as f64 * df;
            f >= lo_hz && f <= hi_hz
        })
        .map(|(k, a)| {
            let p = f64::from(*a).powi(2);
            // DC and Nyquist are real components of amplitude `a` (mean square a^2); the
            // others are sines (mean square A^2 / 2).
            if k == 0 || k == last { p } else { p / 2.0 }
        })
        .sum::<f64>()
        / enbw_bins
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(n: usize, fs: f64, f: f64, amp: f64) -> Vec<f32> {
        (0..n).map(|i| (amp * (2.0 * PI * f * i as f64 / fs).sin()) as f32).collect()
    }

    #[test]
    fn a_tone_on_a_bin_reads_its_amplitude_at_that_bin() {
        let (n, fs) = (1024, 25_600.0);
        let df = fs / n as f64;
        for window in [WindowFn::Rectangular, WindowFn::Hann, WindowFn::FlatTop] {
            let mut plan = SpectrumPlan::new(n, window);
            let mut out = vec![0.0; plan.bins()];
            plan.amplitude(&tone(n, fs, 40.0 * df, 3.0), &mut out);
            let (k, a) = out.iter().enumerate().fold((0, 0.0f32), |m, (k, a)| if *a > m.1 { (k, *a) } else { m });
            assert_eq!(k, 40, "{window:?}");
            assert!((a - 3.0).abs() < 1e-3, "{window:?}: {a}");
        }
    }

    #[test]
    fn flat_top_reads_amplitude_between_bins() {
        let (n, fs) = (2048, 12_000.0);
        let df = fs / n as f64;
        let mut plan = SpectrumPlan::new(n, WindowFn::FlatTop);
        let mut out = vec![0.0; plan.bins()];
        plan.amplitude(&tone(n, fs, 100.5 * df, 1.0), &mut out);
        let peak = out.iter().copied().fold(0.0f32, f32::max);
        assert!((peak - 1.0).abs() < 0.01, "{peak}");
    }

    #[test]
    fn parseval_holds_for_noise_with_every_window() {
        use rand::{Rng, SeedableRng, rngs::StdRng};
        let mut rng = StdRng::seed_from_u64(3);
        let n = 4096;
        let x: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let mean = x.iter().map(|v| f64::from(*v)).sum::<f64>() / n as f64;
        let var = x.iter().map(|v| (f64::from(*v) - mean).powi(2)).sum::<f64>() / n as f64;
        let mut rect = SpectrumPlan::new(n, WindowFn::Rectangular);
        let mut out = vec![0.0; rect.bins()];
        rect.amplitude(&x, &mut out);
        let ms = band_mean_square(&out, 1.0, rect.enbw_bins(), 0.0, n as f64);
        assert!((ms - var).abs() / var < 1e-4, "rectangular: {ms} vs {var}");
        // Windowed spectra estimate the same power; Welch averages out the variance.
        let mut welch = Welch::new(SpectrumPlan::new(256, WindowFn::Hann), 0.5);
        let mut out = vec![0.0; 129];
        assert_eq!(welch.run(&x, &mut out), 31);
        let ms = band_mean_square(&out, 1.0, welch.plan().enbw_bins(), 0.0, 1e9);
        assert!((ms - var).abs() / var < 0.1, "welch hann: {ms} vs {var}");
    }

    #[test]
    fn band_energy_of_a_tone_is_half_its_amplitude_squared() {
        let (n, fs) = (8192, 25_600.0);
        let mut plan = SpectrumPlan::new(n, WindowFn::Hann);
        let mut out = vec![0.0; plan.bins()];
        let x: Vec<f32> = tone(n, fs, 120.0, 2.0).iter().zip(tone(n, fs, 3000.0, 0.5)).map(|(a, b)| a + b).collect();
        plan.amplitude(&x, &mut out);
        let df = fs / n as f64;
        let low = band_mean_square(&out, df, plan.enbw_bins(), 10.0, 1000.0);
        assert!((low - 2.0).abs() < 0.02, "{low}");
        let high = band_mean_square(&out, df, plan.enbw_bins(), 2000.0, 4000.0);
        assert!((high - 0.125).abs() < 0.002, "{high}");
    }
}
