//! Running the declared operators over a closed waveform window.
//!
//! The [`Analyzer`] of a window spec keeps the FFT plans, shared by all its keys (a worker
//! analyses one window at a time), and hands each operator the closed window ([`Window`]).

use stator_operators::signal::levels;
use stator_operators::simd::Kernels;
use stator_operators::velocity::AccelUnit;

use super::context::{MachineSettings, Plans, Window};
use super::spec::WaveformSpec;
use super::speed::{Speed, SpeedTrack};
use crate::features::Features;

/// The samples one window of one key accumulated.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct WavePane {
    segments: Vec<(i64, Vec<f32>)>,
    sample_rate: f64,
    units: Option<AccelUnit>,
    rpm: Option<f64>,
    tachometer: Option<Speed>,
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

    /// Sets the window's speed from the tachometer subject.
    pub fn set_tachometer(&mut self, speed: Speed) {
        self.tachometer = Some(speed);
    }

    /// The samples in time order.
    pub fn samples(&mut self) -> Vec<f32> {
        self.segments.sort_by_key(|(t, _)| *t);
        self.segments.iter().flat_map(|(_, s)| s.iter().copied()).collect()
    }
}

/// Computes the features of closed waveform windows.
pub struct Analyzer {
    spec: WaveformSpec,
    kernels: Kernels,
    plans: Plans,
    speed: Option<SpeedTrack>,
}

impl std::fmt::Debug for Analyzer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Analyzer").field("spec", &self.spec).finish()
    }
}

impl Analyzer {
    /// An analyzer for one waveform window spec.
    pub fn new(spec: WaveformSpec) -> Self {
        Self { spec, kernels: Kernels::detect(), plans: Plans::default(), speed: None }
    }

    /// An analyzer whose windows take their speed from a tachometer subject (`rpm_subject`),
    /// for windows of `size` with `lateness`.
    pub fn with_speed(spec: WaveformSpec, size: std::time::Duration, lateness: std::time::Duration) -> Self {
        let speed = spec.speed.clone().map(|s| SpeedTrack::new(*s, size, lateness));
        Self { speed, ..Self::new(spec) }
    }

    /// The speed readings it holds, when its windows have a tachometer subject.
    pub fn speed(&mut self) -> Option<&mut SpeedTrack> {
        self.speed.as_mut()
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
            settings: &self.spec.settings,
            machine,
            units: pane.units.unwrap_or(self.spec.settings.units),
            rpm: pane.rpm,
            tachometer: pane.tachometer.take(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::waveform::Operator;
    use crate::waveform::context::smooth_len;
    use crate::waveform::operator::FeatureKind;
    use crate::waveform::settings::AnalysisSettings;
    use stator_operators::bearing;
    use stator_operators::faults::FaultKind;
    use stator_operators::synth::{SynthSpec, synthesize};

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
            settings: AnalysisSettings { bearing: Some("6205".into()), rpm: Some(1797.0), ..Default::default() },
            speed: None,
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
            let always: Vec<&str> = op
                .get()
                .features()
                .iter()
                .filter(|d| d.kind == FeatureKind::Scalar && (!d.sometimes || scalars.contains(&d.name)))
                .map(|d| d.name)
                .collect();
            assert_eq!(scalars, always, "{}", op.name());
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

    /// `revolutions = N`: the envelope covers N shaft revolutions (within the fast-length
    /// rounding), so its bins are about 1/N order apart; without a speed, the whole window.
    #[test]
    fn the_envelope_may_cover_a_number_of_revolutions() {
        let fs = 25_600.0;
        let m = bearing::catalog("6205").expect("6205").multipliers();
        let synth = SynthSpec { fault: Some((FaultKind::OuterRace, 0.3)), ..SynthSpec::healthy(fs, 1797.0, m, 3) };
        let x = synthesize(&synth, 0, 2 * fs as usize);
        let run = |rpm: Option<f64>| {
            let mut s = spec(vec![Operator::named("envelope").unwrap(), Operator::named("bearing_faults").unwrap()]);
            s.settings.revolutions = Some(30);
            s.settings.rpm = rpm;
            let mut pane = WavePane::default();
            pane.add(&x, 0, fs, 0, 2000);
            Analyzer::new(s).analyze(&mut pane, &MachineSettings::default())
        };
        let f = run(Some(1797.0));
        let revolutions = f.scalar("envelope.revolutions").unwrap();
        assert!((revolutions / 30.0 - 1.0).abs() < 0.03, "{revolutions}");
        let step = f.vectors.iter().find(|(n, _)| *n == "envelope").unwrap().1.step;
        assert!((step / (1797.0 / 60.0 / revolutions) - 1.0).abs() < 1e-9, "{step}");
        assert_eq!(f.text("bearing.verdict"), Some("outer_race"));
        let whole = run(None);
        assert_eq!(whole.scalar("envelope.revolutions"), None);
        assert_eq!(
            whole.vectors.iter().find(|(n, _)| *n == "envelope").unwrap().1.step,
            fs / smooth_len(2 * fs as usize) as f64
        );
    }

    /// The simulated half of docs/VIBRATION.md's confusion table, through the analyzer with the
    /// default (kurtogram) band: every kind found, at every rate and speed, and no healthy
    /// window flagged (the hard constraint).
    #[test]
    fn every_kind_is_told_apart_and_no_healthy_window_is_flagged() {
        let m = bearing::catalog("6205").expect("6205").multipliers();
        let mut wrong = Vec::new();
        for synth in stator_operators::synth::survey(m) {
            let (fs, rpm) = (synth.sample_rate, synth.rpm);
            let window = 2 * fs as usize;
            for w in 0..2u64 {
                let x = synthesize(&synth, w * window as u64, window);
                let mut s = spec(vec![Operator::named("bearing_faults").unwrap()]);
                s.settings.rpm = Some(rpm);
                let mut pane = WavePane::default();
                pane.add(&x, 0, fs, 0, 2000);
                let f = Analyzer::new(s).analyze(&mut pane, &MachineSettings::default());
                let want = synth.fault.map_or("normal", |(k, _)| k.name());
                if f.text("bearing.verdict") != Some(want) {
                    wrong.push(format!("{fs} Hz, {rpm} rpm, {want}: {:?}", f.text("bearing.verdict")));
                }
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
    }
}
