//! Band selection for envelope analysis by spectral kurtosis: a fast kurtogram (Antoni 2007) on
//! the binary levels of its tree.
//!
//! Impacts from a bearing defect ring a structural resonance: in that band the signal is
//! impulsive, its complex envelope heavy-tailed; elsewhere it is close to Gaussian noise
//! (kurtosis 0 by the measure used here) or tones (below 0). Level `l` splits `[0, fs/2]` into
//! `2^l` bands; each band's complex envelope comes from the one spectrum of the signal (its bins,
//! shifted to baseband, inverse-transformed at the band's own rate), and the band with the
//! highest kurtosis `E|c|^4 / (E|c|^2)^2 - 2` is the one to demodulate.
//!
//! Bands narrower than `min_bandwidth_hz` are not looked at: demodulating a band keeps
//! modulation frequencies up to half its width, so the band must be at least twice the highest
//! envelope line the diagnosis reads.

use std::collections::HashMap;
use std::sync::Arc;

use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};

/// The band a kurtogram chose.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Band {
    /// Low edge, Hz.
    pub lo: f64,
    /// High edge, Hz.
    pub hi: f64,
    /// Spectral kurtosis of the band's complex envelope (0 for Gaussian noise).
    pub kurtosis: f64,
    /// Level of the tree (the band is `fs / 2^(level+1)` wide).
    pub level: u32,
}

/// FFT plans for kurtograms of blocks of one length, built once.
pub struct Kurtogram {
    n: usize,
    forward: Arc<dyn Fft<f32>>,
    inverse: HashMap<usize, Arc<dyn Fft<f32>>>,
    planner: FftPlanner<f32>,
    spectrum: Vec<Complex<f32>>,
    band: Vec<Complex<f32>>,
    scratch: Vec<Complex<f32>>,
}

impl std::fmt::Debug for Kurtogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kurtogram").field("n", &self.n).finish()
    }
}

/// Spectral kurtosis of a complex envelope: `E|c|^4 / (E|c|^2)^2 - 2`.
pub fn complex_kurtosis(c: &[Complex<f32>]) -> f64 {
    let (mut m2, mut m4) = (0.0f64, 0.0f64);
    for z in c {
        let p = f64::from(z.norm_sqr());
        m2 += p;
        m4 += p * p;
    }
    let n = c.len().max(1) as f64;
    let (m2, m4) = (m2 / n, m4 / n);
    if m2 > 0.0 { m4 / (m2 * m2) - 2.0 } else { 0.0 }
}

impl Kurtogram {
    /// Plans for blocks of `n` samples.
    pub fn new(n: usize) -> Self {
        let mut planner = FftPlanner::new();
        let forward = planner.plan_fft_forward(n);
        Self {
            n,
            forward,
            inverse: HashMap::new(),
            planner,
            spectrum: Vec::new(),
            band: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// The most impulsive band of `x` (exactly `n` samples) no narrower than
    /// `min_bandwidth_hz`, down to `max_level`; `None` when no band is that wide.
    ///
    /// # Panics
    /// When `x` is not `n` samples long (a caller bug).
    pub fn select(&mut self, x: &[f32], sample_rate: f64, min_bandwidth_hz: f64, max_level: u32) -> Option<Band> {
        assert_eq!(x.len(), self.n, "block length");
        let n = self.n;
        self.spectrum.clear();
        self.spectrum.extend(x.iter().map(|s| Complex::new(*s, 0.0)));
        // One scratch buffer for every transform (rustfft's `process` would allocate one per
        // call: a window runs up to 126 band transforms).
        let need = self.forward.get_inplace_scratch_len();
        if self.scratch.len() < need {
            self.scratch.resize(need, Complex::default());
        }
        self.forward.process_with_scratch(&mut self.spectrum, &mut self.scratch[..need]);
        let df = sample_rate / n as f64;
        let mut best: Option<Band> = None;
        for level in 1..=max_level {
            let bands = 1usize << level;
            let width_hz = sample_rate / 2.0 / bands as f64;
            let m = n / 2 / bands;
            if width_hz < min_bandwidth_hz || m < 16 {
                break;
            }
            let inverse = Arc::clone(self.inverse.entry(m).or_insert_with(|| self.planner.plan_fft_inverse(m)));
            for i in 0..bands {
                let first = i * m;
                self.band.clear();
                self.band.extend_from_slice(&self.spectrum[first..first + m]);
                if first == 0 {
                    self.band[0] = Complex::default(); // no DC
                }
                let need = inverse.get_inplace_scratch_len();
                if self.scratch.len() < need {
                    self.scratch.resize(need, Complex::default());
                }
                inverse.process_with_scratch(&mut self.band, &mut self.scratch[..need]);
                let kurtosis = complex_kurtosis(&self.band);
                if best.is_none_or(|b| kurtosis > b.kurtosis) {
                    let lo = first as f64 * df;
                    best = Some(Band { lo, hi: lo + m as f64 * df, kurtosis, level });
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};
    use std::f64::consts::PI;

    fn noise(rng: &mut StdRng) -> f64 {
        let u1: f64 = rng.random::<f64>().max(1e-300);
        let u2: f64 = rng.random();
        (-2.0 * u1.ln()).sqrt() * (2.0 * PI * u2).cos()
    }

    /// Impacts every 10 ms ringing a 3.5 kHz resonance, under strong noise and a strong tone at
    /// 1.2 kHz: the band chosen holds the resonance, not the tone.
    #[test]
    fn the_most_impulsive_band_holds_the_ringing_resonance() {
        let (fs, n) = (12_000.0, 24_000);
        let mut rng = StdRng::seed_from_u64(1);
        let x: Vec<f32> = (0..n)
            .map(|i| {
                let t = i as f64 / fs;
                let since = t % 0.010;
                let ring = 2.0 * (-since * 1500.0).exp() * (2.0 * PI * 3500.0 * since).sin();
                (ring + 2.0 * (2.0 * PI * 1200.0 * t).sin() + 0.5 * noise(&mut rng)) as f32
            })
            .collect();
        let band = Kurtogram::new(n).select(&x, fs, 300.0, 6).unwrap();
        assert!(band.lo <= 3500.0 && band.hi >= 3500.0, "{band:?}");
        assert!(band.hi - band.lo >= 300.0 && band.kurtosis > 0.5, "{band:?}");
        let gaussian: Vec<f32> = (0..n).map(|_| noise(&mut rng) as f32).collect();
        let flat = Kurtogram::new(n).select(&gaussian, fs, 300.0, 6).unwrap();
        assert!(flat.kurtosis < 0.3, "noise is not impulsive: {flat:?}");
        assert_eq!(Kurtogram::new(n).select(&gaussian, fs, 7000.0, 6), None, "no band that wide");
    }
}
