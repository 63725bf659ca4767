//! Running the declared operators over a closed waveform window.
//!
//! FFT plans and buffers are built once per size and kept by the [`Analyzer`] of a window
//! spec, shared by all its keys (a worker analyses one window at a time).

use std::collections::HashMap;

use stator_operators::bearing::{self, Multipliers};
use stator_operators::envelope::{EnvelopeConfig, EnvelopePlan, default_band};
use stator_operators::faults::{FaultKind, Verdict, diagnose};
use stator_operators::signal::levels;
use stator_operators::simd::Kernels;
use stator_operators::spectrum::{SpectrumPlan, Welch};
use stator_operators::velocity::{AccelUnit, iso_zone, velocity_rms_mm_s};

use crate::config::{Operator, WaveformSpec, alert_zone_number};
use crate::features::{Features, Vector};

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

/// Computes the features of closed waveform windows.
pub struct Analyzer {
    spec: WaveformSpec,
    kernels: Kernels,
    welch: HashMap<usize, Welch>,
    envelope: HashMap<usize, EnvelopePlan>,
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
        Self { spec, kernels: Kernels::detect(), welch: HashMap::new(), envelope: HashMap::new() }
    }

    /// The features of one window's samples.
    pub fn analyze(&mut self, pane: &mut WavePane, machine: &MachineSettings) -> Features {
        let x = pane.samples();
        let fs = pane.sample_rate;
        let mut f = Features::default();
        f.scalars.push(("samples", x.len() as f64));
        let Some(l) = levels(&self.kernels, &x) else { return f };
        f.scalars.push(("sample_rate", fs));
        let ops = self.spec.operators.clone();
        for op in &ops {
            match op {
                Operator::Rms => f.scalars.push(("rms", l.rms)),
                Operator::Peak => f.scalars.push(("peak", l.peak)),
                Operator::PeakToPeak => f.scalars.push(("peak_to_peak", l.peak_to_peak)),
                Operator::CrestFactor => f.scalars.push(("crest_factor", l.crest_factor)),
                Operator::Kurtosis => f.scalars.push(("kurtosis", l.kurtosis)),
                Operator::Skewness => f.scalars.push(("skewness", l.skewness)),
                _ => {}
            }
        }
        let needs_spectrum =
            ops.iter().any(|o| matches!(o, Operator::Spectrum | Operator::VelocityRms | Operator::IsoZone));
        if needs_spectrum {
            self.spectral(&x, fs, pane.units.unwrap_or(self.spec.units), machine, &ops, &mut f);
        }
        if ops.iter().any(|o| matches!(o, Operator::Envelope | Operator::BearingFaults)) {
            self.envelope(&x, fs, pane.rpm, machine, &ops, &mut f);
        }
        f
    }

    fn spectral(
        &mut self,
        x: &[f32],
        fs: f64,
        units: AccelUnit,
        machine: &MachineSettings,
        ops: &[Operator],
        f: &mut Features,
    ) {
        let n = machine.fft_size.unwrap_or(self.spec.fft_size).min(x.len() & !1);
        if n < 64 {
            return;
        }
        let (window, overlap) = (self.spec.spectral_window, self.spec.overlap);
        let welch = self.welch.entry(n).or_insert_with(|| Welch::new(SpectrumPlan::new(n, window), overlap));
        let mut amp = vec![0.0f32; n / 2 + 1];
        welch.run(x, &mut amp);
        let df = fs / n as f64;
        let enbw = welch.plan().enbw_bins();
        let (lo, hi) = self.spec.velocity_band;
        let velocity = velocity_rms_mm_s(&amp, df, enbw, units, lo, hi);
        if ops.contains(&Operator::VelocityRms) {
            f.scalars.push(("velocity_rms", velocity));
        }
        if ops.contains(&Operator::IsoZone) {
            let zone = iso_zone(velocity, self.spec.machine_group, self.spec.foundation);
            f.scalars.push(("iso_zone", alert_zone_number(zone)));
            f.texts.push(("iso_zone", zone.to_string()));
        }
        if ops.contains(&Operator::Spectrum) {
            let (k, a) = peak(&amp);
            f.scalars.push(("spectrum.peak_hz", k as f64 * df));
            f.scalars.push(("spectrum.peak", f64::from(a)));
            f.vectors.push(("spectrum", Vector { step: df, values: amp }));
        }
    }

    fn envelope(
        &mut self,
        x: &[f32],
        fs: f64,
        rpm: Option<f64>,
        machine: &MachineSettings,
        ops: &[Operator],
        f: &mut Features,
    ) {
        let n = smooth_len(x.len());
        if n < 64 {
            return;
        }
        let plan = self.envelope.entry(n).or_insert_with(|| EnvelopePlan::new(n));
        let mut env = vec![0.0f32; plan.bins()];
        let band = self.spec.envelope_band.unwrap_or_else(|| default_band(fs));
        plan.envelope_spectrum(&x[..n], fs, &EnvelopeConfig { band, whiten: self.spec.whiten }, &mut env);
        let df = fs / n as f64;
        if ops.contains(&Operator::BearingFaults) {
            self.bearing_faults(&env, df, rpm, machine, f);
        }
        if ops.contains(&Operator::Envelope) {
            let (k, _) = peak(&env[1..]);
            f.scalars.push(("envelope.peak_hz", (k + 1) as f64 * df));
            f.vectors.push(("envelope", Vector { step: df, values: env }));
        }
    }

    fn bearing_faults(&self, env: &[f32], df: f64, rpm: Option<f64>, machine: &MachineSettings, f: &mut Features) {
        let designation = machine.bearing.as_deref().or(self.spec.bearing.as_deref());
        let geometry = designation.and_then(bearing::catalog);
        let rpm = rpm.or(machine.rpm).or(self.spec.rpm);
        let (Some(g), Some(rpm)) = (geometry, rpm) else {
            f.texts.push(("bearing.verdict", "unknown".into()));
            f.texts.push(("bearing.note", "no bearing type or shaft speed for this machine".into()));
            return;
        };
        let m: Multipliers = g.multipliers();
        let d = diagnose(env, df, rpm / 60.0, &m, &self.spec.score);
        for (name, kind) in [
            ("bearing.bpfo_db", FaultKind::OuterRace),
            ("bearing.bpfi_db", FaultKind::InnerRace),
            ("bearing.bsf_db", FaultKind::Ball),
            ("bearing.ftf_db", FaultKind::Cage),
        ] {
            f.scalars.push((name, d.evidence(kind).lines[0].snr_db));
        }
        let best = d.evidence.iter().map(|e| e.score_db).fold(f64::NEG_INFINITY, f64::max);
        f.scalars.push(("bearing.score_db", best));
        let fault_score = match d.verdict {
            Verdict::Fault(kind) => d.evidence(kind).score_db,
            Verdict::Normal => 0.0,
        };
        f.scalars.push(("bearing.fault_score_db", fault_score));
        f.scalars.push(("rpm", rpm));
        f.texts.push(("bearing.verdict", d.verdict.name().to_owned()));
        f.texts.push(("bearing.type", designation.unwrap_or_default().to_owned()));
    }
}

fn peak(x: &[f32]) -> (usize, f32) {
    x.iter().enumerate().fold((0, 0.0f32), |m, (k, a)| if *a > m.1 { (k, *a) } else { m })
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
