//! One closed window as the operators see it ([`Window`]): its samples and settings, and the
//! results several operators share (levels, the Welch spectrum, velocity, the envelope
//! spectrum), each computed at most once per window, when the first operator asks. FFT plans
//! are built once per size and kept across windows ([`Plans`]).

use std::collections::HashMap;

use stator_operators::bearing;
use stator_operators::envelope::{EnvelopeConfig, EnvelopePlan, default_band};
use stator_operators::faults::FaultKind;
use stator_operators::kurtogram::Kurtogram;
use stator_operators::signal::Levels;
use stator_operators::spectrum::{SpectrumPlan, Welch};
use stator_operators::velocity::{AccelUnit, velocity_rms_mm_s};

use super::settings::AnalysisSettings;

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
pub struct Plans {
    welch: HashMap<usize, Welch>,
    envelope: HashMap<usize, EnvelopePlan>,
    kurtogram: HashMap<usize, Kurtogram>,
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
    /// Shaft revolutions analysed, with `revolutions`.
    pub revolutions: Option<f64>,
    /// The band demodulated, Hz.
    pub band: (f64, f64),
    /// Its spectral kurtosis, when a kurtogram chose it.
    pub band_kurtosis: Option<f64>,
}

/// Kurtogram levels looked at: bands down to `fs / 128`.
const KURTOGRAM_LEVELS: u32 = 6;

/// Envelope FFT plans kept per window spec.
const MAX_ENVELOPE_PLANS: usize = 8;

/// One closed window as the operators see it: its samples and settings, and the results they
/// share, each computed once, on first use.
pub struct Window<'a> {
    /// The samples, in time order.
    pub samples: &'a [f32],
    /// Sample rate, Hz.
    pub sample_rate: f64,
    /// The window's settings.
    pub settings: &'a AnalysisSettings,
    /// The machine's own settings.
    pub machine: &'a MachineSettings,
    /// Acceleration unit of the samples.
    pub units: AccelUnit,
    /// Shaft speed carried by the messages, rpm.
    pub rpm: Option<f64>,
    /// Shaft speed from the tachometer subject, or why there is none (`rpm_subject` windows).
    pub tachometer: Option<super::speed::Speed>,
    pub(crate) levels: Levels,
    pub(crate) plans: &'a mut Plans,
    pub(crate) spectrum: Option<Option<Spectrum>>,
    pub(crate) velocity: Option<Option<f64>>,
    pub(crate) envelope: Option<Option<EnvelopeSpectrum>>,
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
            let n = self.machine.fft_size.unwrap_or(self.settings.fft_size).min(self.samples.len() & !1);
            let computed = (n >= 64).then(|| {
                let (window, overlap) = (self.settings.spectral_window, self.settings.overlap);
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
            let (units, (lo, hi)) = (self.units, self.settings.velocity_band);
            let v = self.spectrum().map(|s| velocity_rms_mm_s(&s.amplitude, s.df, s.enbw_bins, units, lo, hi));
            self.velocity = Some(v);
        }
        self.velocity.flatten()
    }

    /// The shaft speed (rpm) and where it came from: the tachometer subject when the window has
    /// one (a stale one is no speed: the reason), else the message, the machine config, the
    /// pipeline.
    pub fn shaft_speed(&self) -> Result<(f64, &'static str), String> {
        match &self.tachometer {
            Some(Ok(rpm)) => Ok((*rpm, "tachometer")),
            Some(Err(why)) => Err(why.clone()),
            None => [(self.rpm, "message"), (self.machine.rpm, "machine_config"), (self.settings.rpm, "pipeline")]
                .into_iter()
                .find_map(|(rpm, source)| rpm.map(|r| (r, source)))
                .ok_or_else(|| "no shaft speed for this machine".to_owned()),
        }
    }

    /// The narrowest band a kurtogram may choose: twice the highest envelope line the bearing
    /// diagnosis reads (the last harmonic of the fastest defect frequency), since demodulating a
    /// band keeps modulation up to half its width. `None` without a bearing type and a speed.
    fn kurtogram_min_band(&self) -> Option<f64> {
        let designation = self.machine.bearing.as_deref().or(self.settings.bearing.as_deref())?;
        let m = bearing::catalog(designation)?.multipliers();
        let (rpm, _) = self.shaft_speed().ok()?;
        let fastest = FaultKind::ALL.iter().map(|k| k.frequency(&m, rpm / 60.0)).fold(0.0, f64::max);
        Some(2.0 * f64::from(self.settings.score.harmonics) * fastest)
    }

    /// The squared-envelope spectrum over the longest fast FFT length of the samples (with
    /// `revolutions` and a known speed, of at most that many shaft revolutions), `None` when that
    /// is below 64.
    pub fn envelope(&mut self) -> Option<&EnvelopeSpectrum> {
        if self.envelope.is_none() {
            let revolutions = self.settings.revolutions.zip(self.shaft_speed().ok());
            let wanted = revolutions.map_or(self.samples.len(), |(n, (rpm, _))| {
                (f64::from(n) * self.sample_rate * 60.0 / rpm).round() as usize
            });
            let n = smooth_len(wanted.min(self.samples.len()));
            let computed = (n >= 64).then(|| {
                // Plans by length; a varying speed varies the length, so only a few are kept.
                if self.plans.envelope.len() >= MAX_ENVELOPE_PLANS && !self.plans.envelope.contains_key(&n) {
                    self.plans.envelope.clear();
                }
                let x = &self.samples[..n];
                let (band, band_kurtosis) = match (self.settings.envelope_band, self.kurtogram_min_band()) {
                    (Some(band), _) => (band, None),
                    (None, Some(min_bandwidth)) => {
                        if self.plans.kurtogram.len() >= MAX_ENVELOPE_PLANS && !self.plans.kurtogram.contains_key(&n) {
                            self.plans.kurtogram.clear();
                        }
                        let k = self.plans.kurtogram.entry(n).or_insert_with(|| Kurtogram::new(n));
                        match k.select(x, self.sample_rate, min_bandwidth, KURTOGRAM_LEVELS) {
                            Some(b) => ((b.lo, b.hi), Some(b.kurtosis)),
                            None => (default_band(self.sample_rate), None),
                        }
                    }
                    (None, None) => (default_band(self.sample_rate), None),
                };
                let plan = self.plans.envelope.entry(n).or_insert_with(|| EnvelopePlan::new(n));
                let mut spectrum = vec![0.0f32; plan.bins()];
                let config = EnvelopeConfig { band, whiten: self.settings.whiten };
                plan.envelope_spectrum(x, self.sample_rate, &config, &mut spectrum);
                let revolutions = revolutions.map(|(_, (rpm, _))| n as f64 / self.sample_rate * rpm / 60.0);
                EnvelopeSpectrum { spectrum, df: self.sample_rate / n as f64, revolutions, band, band_kurtosis }
            });
            self.envelope = Some(computed);
        }
        self.envelope.as_ref().and_then(Option::as_ref)
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

/// The bin with the highest value, and that value.
pub(crate) fn peak(x: &[f32]) -> (usize, f32) {
    x.iter().enumerate().fold((0, 0.0f32), |m, (k, a)| if *a > m.1 { (k, *a) } else { m })
}
