//! Running the declared operators over a closed waveform window.
//!
//! FFT plans and buffers are built once per size and kept by the [`Analyzer`] of a window
//! spec, shared by all its keys (a worker analyses one window at a time). The intermediate
//! results several operators share (levels, the Welch spectrum, velocity, the envelope
//! spectrum) are computed at most once per window, when the first operator asks, by the
//! [`Window`] handed to each operator in turn.

use std::collections::HashMap;

use stator_operators::envelope::{EnvelopeConfig, EnvelopePlan, default_band};
use stator_operators::signal::{Levels, levels};
use stator_operators::simd::Kernels;
use stator_operators::spectrum::{SpectrumPlan, Welch};
use stator_operators::velocity::{AccelUnit, velocity_rms_mm_s};

use super::spec::WaveformSpec;
use crate::features::Features;

/// The samples one window of one key accumulated.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct WavePane {
    segments: Vec<(i64, Vec<f32>)>,
    sample_rate: f64,
    units: Option<AccelUnit>,
    rpm: Option<f64>,
}

impl WavePane {
    /// Adds the samples of `[start_us, ...)` that fall in `[lo_ms, hi_ms)`.
    pub fn add(&mut self, samples: &[f32], start_us: i64, sample_rate: f64, lo_ms: i64, hi_ms: i64) {
        let index_at = |t_ms: i64| -> usize {
            let i = ((t_ms * 1000 - start_us) as f64 * sample_rate / 1e6).ceil();
            i.clamp(0.0, samples.len() as f64) as usize
        };
        let (from, to) = (index_at(lo_ms), index_at(hi_ms));
        if from < to {
            let first_us = start_us + (from as f64 * 1e6 / sample_rate).round() as i64;
            self.segments.push((first_us, samples[from..to].to_vec()));
            self.sample_rate = sample_rate;
        }
    }

    /// Remembers the message's unit and shaft speed (the latest wins).
    pub fn note(&mut self, units: Option<AccelUnit>, rpm: Option<f64>) {
        self.units = units.or(self.units);
        self.rpm = rpm.or(self.rpm);
    }

    /// The samples in time order.
    pub fn samples(&mut self) -> Vec<f32> {
        self.segments.sort_by_key(|(t, _)| *t);
        self.segments.iter().flat_map(|(_, s)| s.iter().copied()).collect()
    }
}

/// Per-machine settings that override the window spec (from the machine config bucket).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MachineSettings {
    /// Bearing designation.
    pub bearing: Option<String>,
    /// Shaft speed, rpm.
    pub rpm: Option<f64>,
    /// Spectrum FFT size.
    pub fft_size: Option<usize>,
}

/// FFT plans by size, kept across windows.
#[derive(Default)]
struct Plans {
    welch: HashMap<usize, Welch>,
    envelope: HashMap<usize, EnvelopePlan>,
}

/// The Welch amplitude spectrum of a window.
#[derive(Debug, Clone, PartialEq)]
pub struct Spectrum {
    /// Amplitude per bin, in the input unit.
    pub amplitude: Vec<f32>,
    /// Bin spacing, Hz.
    pub df: f64,
    /// Equivalent noise bandwidth of the spectral window, in bins.
    pub enbw_bins: f64,
}

/// The squared-envelope spectrum of a window.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvelopeSpectrum {
    /// Squared-envelope spectrum per bin.
    pub spectrum: Vec<f32>,
    /// Bin spacing, Hz.
    pub df: f64,
}

/// One closed window as the operators see it: its samples and settings, and the results they
/// share, each computed once, on first use.
pub struct Window<'a> {
    /// The samples, in time order.
    pub samples: &'a [f32],
    /// Sample rate, Hz.
    pub sample_rate: f64,
    /// The window spec.
    pub spec: &'a WaveformSpec,
    /// The machine's own settings.
    pub machine: &'a MachineSettings,
    /// Acceleration unit of the samples.
    pub units: AccelUnit,
    /// Shaft speed carried by the messages, rpm.
    pub rpm: Option<f64>,
    levels: Levels,
    plans: &'a mut Plans,
    spectrum: Option<Option<Spectrum>>,
    velocity: Option<Option<f64>>,
    envelope: Option<Option<EnvelopeSpectrum>>,
}

impl Window<'_> {
    /// Overall levels of the samples.
    pub fn levels(&self) -> &Levels {
        &self.levels
    }

    /// The Welch spectrum (`fft_size`, the machine's if it has one), `None` when the window
    /// holds fewer than 64 samples.
    pub fn spectrum(&mut self) -> Option<&Spectrum> {
        if self.spectrum.is_none() {
            let n = self.machine.fft_size.unwrap_or(self.spec.fft_size).min(self.samples.len() & !1);
            let computed = (n >= 64).then(|| {
                let (window, overlap) = (self.spec.spectral_window, self.spec.overlap);
                let welch =
                    self.plans.welch.entry(n).or_insert_with(|| Welch::new(SpectrumPlan::new(n, window), overlap));
                let mut amplitude = vec![0.0f32; n / 2 + 1];
                welch.run(self.samples, &mut amplitude);
                Spectrum { amplitude, df: self.sample_rate / n as f64, enbw_bins: welch.plan().enbw_bins() }
            });
            self.spectrum = Some(computed);
        }
        self.spectrum.as_ref().and_then(Option::as_ref)
    }

    /// Velocity RMS (mm/s) over the spec's velocity band, from the spectrum.
    pub fn velocity_rms_mm_s(&mut self) -> Option<f64> {
        if self.velocity.is_none() {
            let (units, (lo, hi)) = (self.units, self.spec.velocity_band);
            let v = self.spectrum().map(|s| velocity_rms_mm_s(&s.amplitude, s.df, s.enbw_bins, units, lo, hi));
            self.velocity = Some(v);
        }
        self.velocity.flatten()
    }

    /// The squared-envelope spectrum over the longest fast FFT length of the samples, `None`
    /// when that is below 64.
    pub fn envelope(&mut self) -> Option<&EnvelopeSpectrum> {
        if self.envelope.is_none() {
            let n = smooth_len(self.samples.len());
            let computed = (n >= 64).then(|| {
                let plan = self.plans.envelope.entry(n).or_insert_with(|| EnvelopePlan::new(n));
                let mut spectrum = vec![0.0f32; plan.bins()];
                let band = self.spec.envelope_band.unwrap_or_else(|| default_band(self.sample_rate));
                let config = EnvelopeConfig { band, whiten: self.spec.whiten };
                plan.envelope_spectrum(&self.samples[..n], self.sample_rate, &config, &mut spectrum);
                EnvelopeSpectrum { spectrum, df: self.sample_rate / n as f64 }
            });
            self.envelope = Some(computed);
        }
        self.envelope.as_ref().and_then(Option::as_ref)
    }
}

/// Computes the features of closed waveform windows.
pub struct Analyzer {
    spec: WaveformSpec,
    kernels: Kernels,
    plans: Plans,
}

impl std::fmt::Debug for Analyzer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Analyzer").field("spec", &self.spec).finish()
    }
}

/// The largest length `<= n` whose only prime factors are 2, 3 and 5 (fast FFT sizes).
pub fn smooth_len(n: usize) -> usize {
    let smooth = |mut m: usize| {
        for p in [2, 3, 5] {
            while m > 0 && m.is_multiple_of(p) {
                m /= p;
            }
        }
        m == 1
    };
    (1..=n).rev().find(|m| m.is_multiple_of(2) && smooth(*m)).unwrap_or(0)
}

impl Analyzer {
    /// An analyzer for one waveform window spec.
    pub fn new(spec: WaveformSpec) -> Self {
        Self { spec, kernels: Kernels::detect(), plans: Plans::default() }
    }

    /// The features of one window's samples: `samples` and `sample_rate`, then each
    /// operator's, in the spec's order.
    pub fn analyze(&mut self, pane: &mut WavePane, machine: &MachineSettings) -> Features {
        let x = pane.samples();
        let mut f = Features::default();
        f.scalars.push(("samples", x.len() as f64));
        let Some(levels) = levels(&self.kernels, &x) else { return f };
        f.scalars.push(("sample_rate", pane.sample_rate));
        let mut window = Window {
            samples: &x,
            sample_rate: pane.sample_rate,
            spec: &self.spec,
            machine,
            units: pane.units.unwrap_or(self.spec.units),
            rpm: pane.rpm,
            levels,
            plans: &mut self.plans,
            spectrum: None,
            velocity: None,
            envelope: None,
        };
        for op in &self.spec.operators {
            op.get().compute(&mut window, &mut f);
        }
        f
    }
}

/// The bin with the highest value, and that value.
pub(crate) fn peak(x: &[f32]) -> (usize, f32) {
    x.iter().enumerate().fold((0, 0.0f32), |m, (k, a)| if *a > m.1 { (k, *a) } else { m })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::waveform::Operator;
    use crate::waveform::operator::FeatureKind;
    use stator_operators::bearing;
    use stator_operators::faults::{FaultKind, ScoreConfig};
    use stator_operators::spectrum::WindowFn;
    use stator_operators::synth::{SynthSpec, synthesize};
    use stator_operators::velocity::{Foundation, MachineGroup};

    #[test]
    fn smooth_lengths_have_small_factors() {
        assert_eq!(smooth_len(24_000), 24_000);
        assert_eq!(smooth_len(23_999), 23_328);
        assert_eq!(smooth_len(121_265), 120_000);
    }

    #[test]
    fn a_pane_keeps_only_its_samples_in_time_order() {
        let mut p = WavePane::default();
        // 1 kHz: 1000 samples per second. The window is [1000 ms, 2000 ms).
        let later: Vec<f32> = (0..600).map(|i| i as f32).collect();
        p.add(&later, 1_500_000, 1000.0, 1000, 2000);
        let earlier: Vec<f32> = (0..600).map(|i| -(i as f32)).collect();
        p.add(&earlier, 900_000, 1000.0, 1000, 2000);
        let x = p.samples();
        assert_eq!(x.len(), 500 + 500);
        assert_eq!((x[0], x[499], x[500], x[999]), (-100.0, -599.0, 0.0, 499.0));
    }

    fn spec(operators: Vec<Operator>) -> WaveformSpec {
        WaveformSpec {
            operators,
            fft_size: 4096,
            overlap: 0.5,
            spectral_window: WindowFn::Hann,
            envelope_band: None,
            whiten: false,
            velocity_band: (10.0, 1000.0),
            machine_group: MachineGroup::Medium,
            foundation: Foundation::Rigid,
            bearing: Some("6205".into()),
            rpm: Some(1797.0),
            units: AccelUnit::G,
            score: ScoreConfig::default(),
        }
    }

    /// Every registered operator, alone in a window, produces exactly the scalar features it
    /// declares (its texts and vectors are among the declared ones): the registry is the one
    /// place an operator is described.
    #[test]
    fn each_registered_operator_produces_what_it_declares() {
        let fs = 25_600.0;
        let m = bearing::catalog("6205").expect("6205").multipliers();
        let synth = SynthSpec { fault: Some((FaultKind::OuterRace, 0.3)), ..SynthSpec::healthy(fs, 1797.0, m, 1) };
        let x = synthesize(&synth, 0, fs as usize);
        for op in Operator::all() {
            let mut analyzer = Analyzer::new(spec(vec![op]));
            let mut pane = WavePane::default();
            pane.add(&x, 0, fs, 0, 1000);
            let f = analyzer.analyze(&mut pane, &MachineSettings::default());
            let declared =
                |kind| -> Vec<&str> { op.get().features().iter().filter(|d| d.kind == kind).map(|d| d.name).collect() };
            let scalars: Vec<&str> = f.scalars.iter().map(|(n, _)| *n).skip(2).collect();
            assert_eq!(scalars, declared(FeatureKind::Scalar), "{}", op.name());
            for (name, _) in &f.texts {
                assert!(declared(FeatureKind::Text).contains(name), "{}: undeclared text {name}", op.name());
            }
            let vectors: Vec<&str> = f.vectors.iter().map(|(n, _)| *n).collect();
            assert_eq!(vectors, declared(FeatureKind::Vector), "{}", op.name());
        }
    }

    /// Operators in any order report the same values: shared results do not depend on which
    /// operator asked first.
    #[test]
    fn operator_order_does_not_change_values() {
        let fs = 25_600.0;
        let m = bearing::catalog("6205").expect("6205").multipliers();
        let synth = SynthSpec { fault: Some((FaultKind::OuterRace, 0.3)), ..SynthSpec::healthy(fs, 1797.0, m, 7) };
        let x = synthesize(&synth, 0, fs as usize);
        let run = |ops: Vec<Operator>| {
            let mut pane = WavePane::default();
            pane.add(&x, 0, fs, 0, 1000);
            let mut f = Analyzer::new(spec(ops)).analyze(&mut pane, &MachineSettings::default());
            f.scalars.sort_by(|a, b| a.0.cmp(b.0));
            f.texts.sort();
            f
        };
        let forward: Vec<Operator> = Operator::all().collect();
        let backward: Vec<Operator> = Operator::all().collect::<Vec<_>>().into_iter().rev().collect();
        let (a, b) = (run(forward), run(backward));
        assert_eq!(a.scalars, b.scalars);
        assert_eq!(a.texts, b.texts);
        assert_eq!(a.text("bearing.verdict"), Some("outer_race"));
    }
}
