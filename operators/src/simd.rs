//! Reduction kernels over `f32` samples, with a SIMD path chosen once at run time.
//!
//! Every kernel has a scalar twin ([`Isa::Scalar`]) that the SIMD paths are tested against.
//! All accumulation is in `f64`: each `f32` sample converts exactly, squares are exact, so
//! the only difference between paths is summation order, below 1e-12 relative for windows
//! of a million samples. The binary stays portable: AVX2 or AVX-512 on x86_64 and NEON on
//! aarch64 are used only when the CPU running it has them.

use std::sync::OnceLock;

use rustfft::num_complex::Complex;

/// An instruction set a kernel can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Isa {
    /// Portable scalar code: the reference.
    Scalar,
    /// x86_64 AVX2 (8 x f32).
    Avx2,
    /// x86_64 AVX-512F (16 x f32).
    Avx512,
    /// aarch64 NEON (4 x f32).
    Neon,
}

impl Isa {
    /// The best instruction set of this CPU, detected once.
    pub fn detect() -> Isa {
        static BEST: OnceLock<Isa> = OnceLock::new();
        *BEST.get_or_init(|| Isa::all_supported().into_iter().find(|i| *i != Isa::Scalar).unwrap_or(Isa::Scalar))
    }

    /// Every instruction set this CPU can run, best first; always ends with `Scalar`.
    pub fn all_supported() -> Vec<Isa> {
        let mut out = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                out.push(Isa::Avx512);
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                out.push(Isa::Avx2);
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            if std::arch::is_aarch64_feature_detected!("neon") {
                out.push(Isa::Neon);
            }
        }
        out.push(Isa::Scalar);
        out
    }

    /// Name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Neon => "neon",
        }
    }
}

/// First-pass sums of a block of samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sums {
    /// Number of samples.
    pub n: usize,
    /// Sum of the samples.
    pub sum: f64,
    /// Sum of their squares.
    pub sum_sq: f64,
    /// Smallest sample (`+inf` when empty).
    pub min: f32,
    /// Largest sample (`-inf` when empty).
    pub max: f32,
}

/// Second-pass sums of powers of the deviation from a mean.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Central {
    /// Sum of `(x - mean)^2`.
    pub m2: f64,
    /// Sum of `(x - mean)^3`.
    pub m3: f64,
    /// Sum of `(x - mean)^4`.
    pub m4: f64,
}

/// The kernels, bound to one instruction set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kernels {
    isa: Isa,
}

impl Default for Kernels {
    fn default() -> Self {
        Self::detect()
    }
}

impl Kernels {
    /// Kernels on the best instruction set of this CPU.
    pub fn detect() -> Self {
        Self { isa: Isa::detect() }
    }

    /// Kernels on `isa`, or `None` when this CPU cannot run it.
    pub fn with_isa(isa: Isa) -> Option<Self> {
        Isa::all_supported().contains(&isa).then_some(Self { isa })
    }

    /// The instruction set in use.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Count, sum, sum of squares, min and max. Samples must be finite.
    pub fn sums(&self, x: &[f32]) -> Sums {
        match self.isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `with_isa`/`detect` only choose AVX-512 when the CPU has avx512f.
            Isa::Avx512 => unsafe { x86::sums_avx512(x) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: only chosen when the CPU has avx2.
            Isa::Avx2 => unsafe { x86::sums_avx2(x) },
            #[cfg(target_arch = "aarch64")]
            // SAFETY: only chosen when the CPU has neon.
            Isa::Neon => unsafe { arm::sums_neon(x) },
            _ => sums_scalar(x),
        }
    }

    /// Sums of the 2nd, 3rd and 4th powers of `x - mean`.
    pub fn central(&self, x: &[f32], mean: f64) -> Central {
        match self.isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: only chosen when the CPU has avx512f.
            Isa::Avx512 => unsafe { x86::central_avx512(x, mean) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: only chosen when the CPU has avx2.
            Isa::Avx2 => unsafe { x86::central_avx2(x, mean) },
            #[cfg(target_arch = "aarch64")]
            // SAFETY: only chosen when the CPU has neon.
            Isa::Neon => unsafe { arm::central_neon(x, mean) },
            _ => central_scalar(x, mean),
        }
    }
}

impl Kernels {
    /// `out[i] = a[i] * b[i]` (windowing).
    ///
    /// # Panics
    /// When the lengths differ (a caller bug).
    pub fn multiply(&self, a: &[f32], b: &[f32], out: &mut [f32]) {
        assert!(a.len() == b.len() && a.len() == out.len(), "multiply: lengths differ");
        match self.isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: only chosen when the CPU has avx512f.
            Isa::Avx512 => unsafe { x86::multiply_avx512(a, b, out) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: only chosen when the CPU has avx2.
            Isa::Avx2 => unsafe { x86::multiply_avx2(a, b, out) },
            _ => multiply_scalar(a, b, out),
        }
    }

    /// `out[k] = |c[k]| * scale` (amplitude spectra).
    ///
    /// # Panics
    /// When the lengths differ (a caller bug).
    pub fn magnitudes(&self, c: &[Complex<f32>], scale: f32, out: &mut [f32]) {
        assert_eq!(c.len(), out.len(), "magnitudes: lengths differ");
        match self.isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: only chosen when the CPU has avx512f.
            Isa::Avx512 => unsafe { x86::magnitudes_avx512(c, scale, out) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: only chosen when the CPU has avx2.
            Isa::Avx2 => unsafe { x86::magnitudes_avx2(c, scale, out) },
            _ => magnitudes_scalar(c, scale, out),
        }
    }
}

/// The scalar twin of [`Kernels::multiply`]; the SIMD versions are this code compiled for
/// the wider instruction set.
#[inline(always)]
pub fn multiply_scalar(a: &[f32], b: &[f32], out: &mut [f32]) {
    for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
        *o = x * y;
    }
}

/// The scalar twin of [`Kernels::magnitudes`].
#[inline(always)]
pub fn magnitudes_scalar(c: &[Complex<f32>], scale: f32, out: &mut [f32]) {
    for (o, v) in out.iter_mut().zip(c) {
        *o = (v.re * v.re + v.im * v.im).sqrt() * scale;
    }
}

/// The scalar twin of [`Kernels::sums`].
pub fn sums_scalar(x: &[f32]) -> Sums {
    let mut s = Sums { n: x.len(), sum: 0.0, sum_sq: 0.0, min: f32::INFINITY, max: f32::NEG_INFINITY };
    for &v in x {
        let d = f64::from(v);
        s.sum += d;
        s.sum_sq += d * d;
        s.min = s.min.min(v);
        s.max = s.max.max(v);
    }
    s
}

/// The scalar twin of [`Kernels::central`].
pub fn central_scalar(x: &[f32], mean: f64) -> Central {
    let mut c = Central { m2: 0.0, m3: 0.0, m4: 0.0 };
    for &v in x {
        let d = f64::from(v) - mean;
        let d2 = d * d;
        c.m2 += d2;
        c.m3 += d2 * d;
        c.m4 += d2 * d2;
    }
    c
}

fn merge_tail(mut s: Sums, tail: &[f32]) -> Sums {
    let t = sums_scalar(tail);
    s.sum += t.sum;
    s.sum_sq += t.sum_sq;
    s.min = s.min.min(t.min);
    s.max = s.max.max(t.max);
    s
}

fn merge_central(mut c: Central, tail: &[f32], mean: f64) -> Central {
    let t = central_scalar(tail, mean);
    c.m2 += t.m2;
    c.m3 += t.m3;
    c.m4 += t.m4;
    c
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Central, Complex, Sums, magnitudes_scalar, merge_central, merge_tail, multiply_scalar};
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn multiply_avx2(a: &[f32], b: &[f32], out: &mut [f32]) {
        multiply_scalar(a, b, out);
    }

    /// # Safety
    /// The CPU must support AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn multiply_avx512(a: &[f32], b: &[f32], out: &mut [f32]) {
        multiply_scalar(a, b, out);
    }

    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn magnitudes_avx2(c: &[Complex<f32>], scale: f32, out: &mut [f32]) {
        magnitudes_scalar(c, scale, out);
    }

    /// # Safety
    /// The CPU must support AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn magnitudes_avx512(c: &[Complex<f32>], scale: f32, out: &mut [f32]) {
        magnitudes_scalar(c, scale, out);
    }

    #[target_feature(enable = "avx2")]
    fn hsum256(v: __m256d) -> f64 {
        let lo = _mm256_castpd256_pd128(v);
        let hi = _mm256_extractf128_pd(v, 1);
        let s = _mm_add_pd(lo, hi);
        _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)))
    }

    #[target_feature(enable = "avx2")]
    fn hmin256(v: __m256) -> f32 {
        let mut lanes = [0f32; 8];
        // SAFETY: `lanes` is 8 f32s, exactly one __m256.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), v) };
        lanes.into_iter().fold(f32::INFINITY, f32::min)
    }

    #[target_feature(enable = "avx2")]
    fn hmax256(v: __m256) -> f32 {
        let mut lanes = [0f32; 8];
        // SAFETY: as in `hmin256`.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), v) };
        lanes.into_iter().fold(f32::NEG_INFINITY, f32::max)
    }

    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn sums_avx2(x: &[f32]) -> Sums {
        let chunks = x.chunks_exact(8);
        let tail = chunks.remainder();
        let (mut s0, mut s1, mut q0, mut q1) =
            (_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd());
        let (mut mn, mut mx) = (_mm256_set1_ps(f32::INFINITY), _mm256_set1_ps(f32::NEG_INFINITY));
        for c in chunks {
            // SAFETY: `c` has exactly 8 f32s; unaligned load.
            let v = unsafe { _mm256_loadu_ps(c.as_ptr()) };
            mn = _mm256_min_ps(mn, v);
            mx = _mm256_max_ps(mx, v);
            let lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
            let hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
            s0 = _mm256_add_pd(s0, lo);
            s1 = _mm256_add_pd(s1, hi);
            q0 = _mm256_add_pd(q0, _mm256_mul_pd(lo, lo));
            q1 = _mm256_add_pd(q1, _mm256_mul_pd(hi, hi));
        }
        let s = Sums {
            n: x.len(),
            sum: hsum256(_mm256_add_pd(s0, s1)),
            sum_sq: hsum256(_mm256_add_pd(q0, q1)),
            min: hmin256(mn),
            max: hmax256(mx),
        };
        merge_tail(s, tail)
    }

    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn central_avx2(x: &[f32], mean: f64) -> Central {
        let chunks = x.chunks_exact(4);
        let tail = chunks.remainder();
        let m = _mm256_set1_pd(mean);
        let (mut a2, mut a3, mut a4) = (_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd());
        for c in chunks {
            // SAFETY: `c` has exactly 4 f32s.
            let v = unsafe { _mm_loadu_ps(c.as_ptr()) };
            let d = _mm256_sub_pd(_mm256_cvtps_pd(v), m);
            let d2 = _mm256_mul_pd(d, d);
            a2 = _mm256_add_pd(a2, d2);
            a3 = _mm256_add_pd(a3, _mm256_mul_pd(d2, d));
            a4 = _mm256_add_pd(a4, _mm256_mul_pd(d2, d2));
        }
        let c = Central { m2: hsum256(a2), m3: hsum256(a3), m4: hsum256(a4) };
        merge_central(c, tail, mean)
    }

    /// # Safety
    /// The CPU must support AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn sums_avx512(x: &[f32]) -> Sums {
        let chunks = x.chunks_exact(16);
        let tail = chunks.remainder();
        let (mut s0, mut s1, mut q0, mut q1) =
            (_mm512_setzero_pd(), _mm512_setzero_pd(), _mm512_setzero_pd(), _mm512_setzero_pd());
        let (mut mn, mut mx) = (_mm512_set1_ps(f32::INFINITY), _mm512_set1_ps(f32::NEG_INFINITY));
        for c in chunks {
            // SAFETY: `c` has exactly 16 f32s; unaligned load.
            let v = unsafe { _mm512_loadu_ps(c.as_ptr()) };
            mn = _mm512_min_ps(mn, v);
            mx = _mm512_max_ps(mx, v);
            let lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
            let hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
            s0 = _mm512_add_pd(s0, lo);
            s1 = _mm512_add_pd(s1, hi);
            q0 = _mm512_fmadd_pd(lo, lo, q0);
            q1 = _mm512_fmadd_pd(hi, hi, q1);
        }
        let s = Sums {
            n: x.len(),
            sum: _mm512_reduce_add_pd(_mm512_add_pd(s0, s1)),
            sum_sq: _mm512_reduce_add_pd(_mm512_add_pd(q0, q1)),
            min: _mm512_reduce_min_ps(mn),
            max: _mm512_reduce_max_ps(mx),
        };
        merge_tail(s, tail)
    }

    /// # Safety
    /// The CPU must support AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn central_avx512(x: &[f32], mean: f64) -> Central {
        let chunks = x.chunks_exact(8);
        let tail = chunks.remainder();
        let m = _mm512_set1_pd(mean);
        let (mut a2, mut a3, mut a4) = (_mm512_setzero_pd(), _mm512_setzero_pd(), _mm512_setzero_pd());
        for c in chunks {
            // SAFETY: `c` has exactly 8 f32s.
            let v = unsafe { _mm256_loadu_ps(c.as_ptr()) };
            let d = _mm512_sub_pd(_mm512_cvtps_pd(v), m);
            let d2 = _mm512_mul_pd(d, d);
            a2 = _mm512_add_pd(a2, d2);
            a3 = _mm512_fmadd_pd(d2, d, a3);
            a4 = _mm512_fmadd_pd(d2, d2, a4);
        }
        let c = Central { m2: _mm512_reduce_add_pd(a2), m3: _mm512_reduce_add_pd(a3), m4: _mm512_reduce_add_pd(a4) };
        merge_central(c, tail, mean)
    }
}

#[cfg(target_arch = "aarch64")]
mod arm {
    use super::{Central, Sums, merge_central, merge_tail};
    use std::arch::aarch64::*;

    /// # Safety
    /// The CPU must support NEON.
    #[target_feature(enable = "neon")]
    pub(super) unsafe fn sums_neon(x: &[f32]) -> Sums {
        let chunks = x.chunks_exact(4);
        let tail = chunks.remainder();
        let (mut s0, mut s1, mut q0, mut q1) = (vdupq_n_f64(0.0), vdupq_n_f64(0.0), vdupq_n_f64(0.0), vdupq_n_f64(0.0));
        let (mut mn, mut mx) = (vdupq_n_f32(f32::INFINITY), vdupq_n_f32(f32::NEG_INFINITY));
        for c in chunks {
            // SAFETY: `c` has exactly 4 f32s.
            let v = unsafe { vld1q_f32(c.as_ptr()) };
            mn = vminq_f32(mn, v);
            mx = vmaxq_f32(mx, v);
            let lo = vcvt_f64_f32(vget_low_f32(v));
            let hi = vcvt_high_f64_f32(v);
            s0 = vaddq_f64(s0, lo);
            s1 = vaddq_f64(s1, hi);
            q0 = vfmaq_f64(q0, lo, lo);
            q1 = vfmaq_f64(q1, hi, hi);
        }
        let s = Sums {
            n: x.len(),
            sum: vaddvq_f64(vaddq_f64(s0, s1)),
            sum_sq: vaddvq_f64(vaddq_f64(q0, q1)),
            min: vminvq_f32(mn),
            max: vmaxvq_f32(mx),
        };
        merge_tail(s, tail)
    }

    /// # Safety
    /// The CPU must support NEON.
    #[target_feature(enable = "neon")]
    pub(super) unsafe fn central_neon(x: &[f32], mean: f64) -> Central {
        let chunks = x.chunks_exact(2);
        let tail = chunks.remainder();
        let m = vdupq_n_f64(mean);
        let (mut a2, mut a3, mut a4) = (vdupq_n_f64(0.0), vdupq_n_f64(0.0), vdupq_n_f64(0.0));
        for c in chunks {
            // SAFETY: `c` has exactly 2 f32s.
            let v = unsafe { vld1_f32(c.as_ptr()) };
            let d = vsubq_f64(vcvt_f64_f32(v), m);
            let d2 = vmulq_f64(d, d);
            a2 = vaddq_f64(a2, d2);
            a3 = vfmaq_f64(a3, d2, d);
            a4 = vfmaq_f64(a4, d2, d2);
        }
        let c = Central { m2: vaddvq_f64(a2), m3: vaddvq_f64(a3), m4: vaddvq_f64(a4) };
        merge_central(c, tail, mean)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    /// Relative tolerance between any SIMD path and its scalar twin.
    const TOL: f64 = 1e-12;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= TOL * a.abs().max(b.abs()).max(1.0)
    }

    #[test]
    fn every_simd_path_agrees_with_the_scalar_twin_on_awkward_lengths() {
        let mut rng = StdRng::seed_from_u64(1234);
        let isas = Isa::all_supported();
        assert!(isas.contains(&Isa::Scalar));
        for len in [0usize, 1, 3, 7, 8, 9, 15, 16, 17, 31, 33, 1000, 1023, 4097, 100_003] {
            let x: Vec<f32> = (0..len).map(|_| rng.random_range(-5.0f32..5.0) + 0.25).collect();
            let want = sums_scalar(&x);
            let mean = if len > 0 { want.sum / len as f64 } else { 0.0 };
            let want_c = central_scalar(&x, mean);
            for isa in &isas {
                let k = Kernels::with_isa(*isa).unwrap();
                let got = k.sums(&x);
                assert_eq!((got.n, got.min, got.max), (want.n, want.min, want.max), "{isa:?} len {len}");
                assert!(
                    close(got.sum, want.sum) && close(got.sum_sq, want.sum_sq),
                    "{isa:?} len {len}: {got:?} vs {want:?}"
                );
                let c = k.central(&x, mean);
                assert!(
                    close(c.m2, want_c.m2) && close(c.m3, want_c.m3) && close(c.m4, want_c.m4),
                    "{isa:?} len {len}"
                );
            }
        }
    }

    #[test]
    fn windowing_and_magnitudes_agree_with_the_scalar_twin() {
        let mut rng = StdRng::seed_from_u64(9);
        for len in [1usize, 7, 16, 33, 513, 4097] {
            let a: Vec<f32> = (0..len).map(|_| rng.random_range(-3.0f32..3.0)).collect();
            let b: Vec<f32> = (0..len).map(|_| rng.random_range(0.0f32..1.0)).collect();
            let c: Vec<Complex<f32>> = a.iter().zip(&b).map(|(x, y)| Complex::new(*x, *y)).collect();
            let (mut want_m, mut want_g) = (vec![0.0; len], vec![0.0; len]);
            multiply_scalar(&a, &b, &mut want_m);
            magnitudes_scalar(&c, 0.5, &mut want_g);
            for isa in Isa::all_supported() {
                let k = Kernels::with_isa(isa).unwrap();
                let (mut m, mut g) = (vec![0.0; len], vec![0.0; len]);
                k.multiply(&a, &b, &mut m);
                k.magnitudes(&c, 0.5, &mut g);
                assert_eq!(m, want_m, "{isa:?} {len}");
                for (x, y) in g.iter().zip(&want_g) {
                    assert!((x - y).abs() <= 1e-6 * y.abs().max(1.0), "{isa:?} {len}");
                }
            }
        }
    }

    #[test]
    fn detection_picks_a_supported_set() {
        assert!(Isa::all_supported().contains(&Isa::detect()));
        assert_eq!(Kernels::detect().isa(), Isa::detect());
    }
}
