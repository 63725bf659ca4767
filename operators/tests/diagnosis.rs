//! Synthetic faults of every kind are found with the right verdict, and healthy signals are
//! not flagged, across sample rates and speeds.

use stator_operators::bearing;
use stator_operators::envelope::{EnvelopeConfig, EnvelopePlan, default_band};
use stator_operators::faults::{FaultKind, ScoreConfig, Verdict, diagnose};
use stator_operators::synth::{SynthSpec, synthesize};

/// Verdict for about `seconds` of signal, one envelope block of a power-of-two length.
fn verdict(spec: &SynthSpec, seconds: f64) -> (Verdict, f64) {
    let n = ((spec.sample_rate * seconds) as usize).next_power_of_two();
    let x = synthesize(spec, 0, n);
    let mut plan = EnvelopePlan::new(n);
    let mut out = vec![0.0; plan.bins()];
    let config = EnvelopeConfig { band: default_band(spec.sample_rate), whiten: false };
    plan.envelope_spectrum(&x, spec.sample_rate, &config, &mut out);
    let m = spec.bearing;
    let d = diagnose(&out, spec.sample_rate / n as f64, spec.rpm / 60.0, &m, &ScoreConfig::default());
    let best = d.evidence.iter().map(|e| e.lines[0].snr_db).fold(f64::NEG_INFINITY, f64::max);
    (d.verdict, best)
}

#[test]
fn every_fault_kind_is_detected_across_rates_and_speeds() {
    for designation in ["6205", "6308"] {
        let m = bearing::catalog(designation).unwrap().multipliers();
        for fs in [12_000.0, 25_600.0, 51_200.0] {
            for rpm in [900.0, 1797.0, 3600.0] {
                for kind in FaultKind::ALL {
                    // Cage faults are slow: give them 4 s for resolution.
                    let seconds = if kind == FaultKind::Cage { 4.0 } else { 1.0 };
                    let spec = SynthSpec { fault: Some((kind, 0.5)), ..SynthSpec::healthy(fs, rpm, m, 7) };
                    let (v, _) = verdict(&spec, seconds);
                    assert_eq!(v, Verdict::Fault(kind), "{designation} {kind} at {fs} Hz, {rpm} rpm");
                }
            }
        }
    }
}

#[test]
fn healthy_machines_are_not_flagged() {
    let m = bearing::catalog("6205").unwrap().multipliers();
    for fs in [12_000.0, 25_600.0, 51_200.0] {
        for rpm in [900.0, 1797.0, 3600.0] {
            for seed in 0..3 {
                let (v, best) = verdict(&SynthSpec::healthy(fs, rpm, m, seed), 1.0);
                assert_eq!(v, Verdict::Normal, "{fs} Hz {rpm} rpm seed {seed}: best line {best:.1} dB");
            }
        }
    }
}

#[test]
fn a_synthetic_outer_race_fault_lights_up_bpfo_and_its_harmonics_only() {
    let m = bearing::catalog("6205").unwrap().multipliers();
    let spec = SynthSpec { fault: Some((FaultKind::OuterRace, 0.5)), ..SynthSpec::healthy(25_600.0, 1797.0, m, 1) };
    let n = 32_768;
    let x = synthesize(&spec, 0, n);
    let mut plan = EnvelopePlan::new(n);
    let mut out = vec![0.0; plan.bins()];
    let config = EnvelopeConfig { band: default_band(25_600.0), whiten: false };
    plan.envelope_spectrum(&x, spec.sample_rate, &config, &mut out);
    let d = diagnose(&out, 25_600.0 / n as f64, 1797.0 / 60.0, &m, &ScoreConfig::default());
    let or = d.evidence(FaultKind::OuterRace);
    assert!(or.lines.iter().all(|l| l.snr_db > 15.0), "{or:?}");
    assert!((or.lines[0].found_hz - 107.4).abs() < 1.0, "{or:?}");
    assert!(d.evidence(FaultKind::InnerRace).lines[0].snr_db < 10.0);
}

#[test]
fn synthesis_is_continuous_across_blocks() {
    let m = bearing::catalog("6205").unwrap().multipliers();
    let spec = SynthSpec {
        fault: Some((FaultKind::InnerRace, 0.5)),
        noise_g: 0.0,
        ..SynthSpec::healthy(12_000.0, 1797.0, m, 3)
    };
    let whole = synthesize(&spec, 0, 4000);
    let parts: Vec<f32> = [synthesize(&spec, 0, 1500), synthesize(&spec, 1500, 2500)].concat();
    for (a, b) in whole.iter().zip(&parts) {
        assert!((a - b).abs() < 1e-6);
    }
}
