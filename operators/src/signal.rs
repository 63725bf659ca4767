//! Overall levels of a block of samples: RMS, mean, peak, peak-to-peak, crest factor,
//! skewness and kurtosis, computed with the SIMD [`Kernels`].

use crate::simd::Kernels;

/// Levels of one block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Levels {
    /// Samples in the block.
    pub n: usize,
    /// Mean.
    pub mean: f64,
    /// Root mean square (including the mean).
    pub rms: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
    /// Largest absolute sample.
    pub peak: f64,
    /// `max - min`.
    pub peak_to_peak: f64,
    /// `peak / rms` (0 for a silent block).
    pub crest_factor: f64,
    /// Third standardised moment (0 for a silent block).
    pub skewness: f64,
    /// Fourth standardised moment, not excess: 3 for Gaussian noise, 1.5 for a sine; bearing
    /// impacts raise it (0 for a silent block).
    pub kurtosis: f64,
}

/// Levels of `x` (`None` when it is empty). Two passes: sums, then central moments.
pub fn levels(k: &Kernels, x: &[f32]) -> Option<Levels> {
    if x.is_empty() {
        return None;
    }
    let s = k.sums(x);
    let n = s.n as f64;
    let mean = s.sum / n;
    let c = k.central(x, mean);
    let var = c.m2 / n;
    let rms = (s.sum_sq / n).sqrt();
    let peak = f64::from(s.max.abs().max(s.min.abs()));
    let (skewness, kurtosis) =
        if var > 0.0 { ((c.m3 / n) / var.powf(1.5), (c.m4 / n) / (var * var)) } else { (0.0, 0.0) };
    Some(Levels {
        n: s.n,
        mean,
        rms,
        min: f64::from(s.min),
        max: f64::from(s.max),
        peak,
        peak_to_peak: f64::from(s.max) - f64::from(s.min),
        crest_factor: if rms > 0.0 { peak / rms } else { 0.0 },
        skewness,
        kurtosis,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    fn sine(n: usize, amp: f64, cycles: f64) -> Vec<f32> {
        (0..n).map(|i| (amp * (2.0 * PI * cycles * i as f64 / n as f64).sin()) as f32).collect()
    }

    #[test]
    fn a_sine_has_rms_a_over_root_two_crest_root_two_and_kurtosis_one_and_a_half() {
        let x = sine(48_000, 2.0, 100.0);
        let l = levels(&Kernels::detect(), &x).unwrap();
        assert!((l.rms - 2.0 / 2f64.sqrt()).abs() < 1e-6, "{}", l.rms);
        assert!((l.crest_factor - 2f64.sqrt()).abs() < 1e-5);
        assert!((l.kurtosis - 1.5).abs() < 1e-4, "{}", l.kurtosis);
        assert!(l.skewness.abs() < 1e-6 && l.mean.abs() < 1e-6);
        assert!((l.peak_to_peak - 4.0).abs() < 1e-5);
    }

    #[test]
    fn impacts_raise_kurtosis_and_crest_factor() {
        let mut x = sine(12_000, 1.0, 50.0);
        for i in (0..x.len()).step_by(1000) {
            x[i] += 8.0;
        }
        let l = levels(&Kernels::detect(), &x).unwrap();
        assert!(l.kurtosis > 10.0 && l.crest_factor > 5.0, "{l:?}");
        assert!(levels(&Kernels::detect(), &[]).is_none());
        let silent = levels(&Kernels::detect(), &[0.0; 10]).unwrap();
        assert_eq!((silent.crest_factor, silent.kurtosis), (0.0, 0.0));
    }
}
