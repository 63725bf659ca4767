//! Streaming summary statistics of scalar readings.
//!
//! [`Moments`] folds readings one at a time in O(1) memory. The mean and variance use
//! Welford's update, so long windows of large, nearly equal values keep full precision;
//! the RMS uses an `f64` sum of squares, exact to ~1e-15 relative for any window that
//! fits in memory.

use std::fmt;
use std::str::FromStr;

/// Running count, extrema and moments of a sequence of readings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Moments {
    count: u64,
    mean: f64,
    m2: f64,
    sum: f64,
    sum_sq: f64,
    min: f64,
    max: f64,
}

impl Default for Moments {
    fn default() -> Self {
        Self::new()
    }
}

impl Moments {
    /// An empty accumulator.
    pub const fn new() -> Self {
        Self { count: 0, mean: 0.0, m2: 0.0, sum: 0.0, sum_sq: 0.0, min: f64::INFINITY, max: f64::NEG_INFINITY }
    }

    /// Folds one reading in. Non-finite values must be rejected by the caller.
    pub fn push(&mut self, x: f64) {
        debug_assert!(x.is_finite(), "non-finite reading reached Moments::push");
        self.count += 1;
        let delta = x - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (x - self.mean);
        self.sum += x;
        self.sum_sq += x * x;
        self.min = self.min.min(x);
        self.max = self.max.max(x);
    }

    /// Number of readings folded in.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The value of one aggregate, or `None` when the window is empty.
    pub fn get(&self, aggregate: Aggregate) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let n = self.count as f64;
        Some(match aggregate {
            Aggregate::Count => n,
            Aggregate::Sum => self.sum,
            Aggregate::Mean => self.mean,
            Aggregate::Min => self.min,
            Aggregate::Max => self.max,
            Aggregate::Rms => (self.sum_sq / n).sqrt(),
            // Population standard deviation: the window is the whole population.
            Aggregate::Stddev => (self.m2 / n).max(0.0).sqrt(),
            Aggregate::PeakToPeak => self.max - self.min,
        })
    }
}

/// An aggregate a window can compute over its readings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Aggregate {
    /// Number of readings.
    Count,
    /// Sum of the readings.
    Sum,
    /// Arithmetic mean.
    Mean,
    /// Smallest reading.
    Min,
    /// Largest reading.
    Max,
    /// Root mean square, `sqrt(sum(x^2) / n)`.
    Rms,
    /// Population standard deviation.
    Stddev,
    /// `max - min`.
    PeakToPeak,
}

impl Aggregate {
    /// Every aggregate, in the order they are documented.
    pub const ALL: [Aggregate; 8] = [
        Aggregate::Count,
        Aggregate::Sum,
        Aggregate::Mean,
        Aggregate::Min,
        Aggregate::Max,
        Aggregate::Rms,
        Aggregate::Stddev,
        Aggregate::PeakToPeak,
    ];

    /// The name used in pipeline files and in output records.
    pub fn name(self) -> &'static str {
        match self {
            Aggregate::Count => "count",
            Aggregate::Sum => "sum",
            Aggregate::Mean => "mean",
            Aggregate::Min => "min",
            Aggregate::Max => "max",
            Aggregate::Rms => "rms",
            Aggregate::Stddev => "stddev",
            Aggregate::PeakToPeak => "peak_to_peak",
        }
    }
}

impl fmt::Display for Aggregate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Error for an aggregate name that is not known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownAggregate(pub String);

impl fmt::Display for UnknownAggregate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let known: Vec<&str> = Aggregate::ALL.iter().map(|a| a.name()).collect();
        write!(f, "unknown aggregate `{}`, expected one of {}", self.0, known.join(", "))
    }
}

impl std::error::Error for UnknownAggregate {}

impl FromStr for Aggregate {
    type Err = UnknownAggregate;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Aggregate::ALL.into_iter().find(|a| a.name() == s).ok_or_else(|| UnknownAggregate(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    fn naive(xs: &[f64], a: Aggregate) -> f64 {
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        match a {
            Aggregate::Count => n,
            Aggregate::Sum => xs.iter().sum(),
            Aggregate::Mean => mean,
            Aggregate::Min => xs.iter().copied().fold(f64::INFINITY, f64::min),
            Aggregate::Max => xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            Aggregate::Rms => (xs.iter().map(|x| x * x).sum::<f64>() / n).sqrt(),
            Aggregate::Stddev => (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt(),
            Aggregate::PeakToPeak => naive(xs, Aggregate::Max) - naive(xs, Aggregate::Min),
        }
    }

    #[test]
    fn agrees_with_two_pass_formulas_on_random_data() {
        let mut rng = StdRng::seed_from_u64(7);
        for len in [1usize, 2, 3, 17, 1000] {
            let xs: Vec<f64> = (0..len).map(|_| rng.random_range(-50.0..50.0)).collect();
            let mut m = Moments::new();
            xs.iter().for_each(|&x| m.push(x));
            for a in Aggregate::ALL {
                let (got, want) = (m.get(a).unwrap(), naive(&xs, a));
                assert!((got - want).abs() <= 1e-9 * want.abs().max(1.0), "{a} len {len}: {got} vs {want}");
            }
        }
    }

    #[test]
    fn rms_of_a_sine_is_amplitude_over_root_two() {
        let mut m = Moments::new();
        let n = 10_000;
        for i in 0..n {
            m.push(3.0 * (2.0 * std::f64::consts::PI * 7.0 * i as f64 / n as f64).sin());
        }
        let rms = m.get(Aggregate::Rms).unwrap();
        assert!((rms - 3.0 / 2f64.sqrt()).abs() < 1e-9, "{rms}");
    }

    #[test]
    fn variance_keeps_precision_on_a_large_offset() {
        let mut m = Moments::new();
        for i in 0..100_000 {
            m.push(1e9 + if i % 2 == 0 { 1.0 } else { -1.0 });
        }
        assert!((m.get(Aggregate::Stddev).unwrap() - 1.0).abs() < 1e-6);
    }

    #[test]
    fn empty_window_has_no_values_and_names_round_trip() {
        assert_eq!(Moments::new().get(Aggregate::Mean), None);
        for a in Aggregate::ALL {
            assert_eq!(a.name().parse::<Aggregate>(), Ok(a));
        }
        assert!("median".parse::<Aggregate>().unwrap_err().to_string().contains("rms"));
    }
}
