//! Physically plausible accelerometer signals for tests, the simulator and benchmarks:
//! shaft harmonics, broadband noise, a structural resonance, and bearing faults as impulse
//! trains at the defect frequency (with slip jitter) that ring the resonance. Inner-race
//! impacts are amplitude-modulated by shaft rotation (load zone), ball impacts by the cage.
//! Deterministic for a seed and the `rand` version.

use std::f64::consts::PI;

use rand::{Rng, SeedableRng, rngs::StdRng};

use crate::bearing::Multipliers;
use crate::faults::FaultKind;

/// What to synthesise.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SynthSpec {
    /// Sample rate, Hz.
    pub sample_rate: f64,
    /// Shaft speed, rpm.
    pub rpm: f64,
    /// The bearing's defect multipliers.
    pub bearing: Multipliers,
    /// A fault and its severity (impact amplitude in g; 0.5 is clear, 0.1 subtle).
    pub fault: Option<(FaultKind, f64)>,
    /// Broadband noise, g RMS.
    pub noise_g: f64,
    /// Structural resonance excited by impacts, Hz.
    pub resonance_hz: f64,
    /// Random seed.
    pub seed: u64,
}

impl SynthSpec {
    /// A healthy machine: 0.05 g noise, 3 kHz resonance.
    pub fn healthy(sample_rate: f64, rpm: f64, bearing: Multipliers, seed: u64) -> Self {
        Self { sample_rate, rpm, bearing, fault: None, noise_g: 0.05, resonance_hz: 3000.0, seed }
    }
}

/// The simulated machines of the diagnosis survey (docs/VIBRATION.md's confusion tables): a
/// healthy one and one of every fault kind (0.3 g impacts) at 12, 25.6 and 51.2 kHz and 900,
/// 1797 and 3600 rpm, each with a seed of its own.
pub fn survey(bearing: Multipliers) -> Vec<SynthSpec> {
    let mut out = Vec::new();
    for fs in [12_000.0, 25_600.0, 51_200.0] {
        for rpm in [900.0, 1797.0, 3600.0] {
            for fault in std::iter::once(None).chain(FaultKind::ALL.map(Some)) {
                let seed = 101 + out.len() as u64;
                out.push(SynthSpec { fault: fault.map(|k| (k, 0.3)), ..SynthSpec::healthy(fs, rpm, bearing, seed) });
            }
        }
    }
    out
}

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// Standard normal deviate (Box-Muller).
fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(1e-300);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * PI * u2).cos()
}

/// `n` samples of the signal starting at sample `offset` (for continuous streams, call with
/// consecutive offsets and the same spec).
pub fn synthesize(spec: &SynthSpec, offset: u64, n: usize) -> Vec<f32> {
    let fs = spec.sample_rate;
    let shaft = spec.rpm / 60.0;
    let mut rng = rng(spec.seed ^ offset.wrapping_mul(0x2545_F491_4F6C_DD1D));
    let mut x: Vec<f64> = (0..n)
        .map(|i| {
            let t = (offset + i as u64) as f64 / fs;
            0.03 * (2.0 * PI * shaft * t).sin()
                + 0.012 * (2.0 * PI * 2.0 * shaft * t + 0.7).sin()
                + 0.005 * (2.0 * PI * 3.0 * shaft * t + 1.9).sin()
                + spec.noise_g * normal(&mut rng)
        })
        .collect();
    if let Some((kind, severity)) = spec.fault {
        add_impacts(&mut x, spec, kind, severity, offset);
    }
    x.into_iter().map(|v| v as f32).collect()
}

fn add_impacts(x: &mut [f64], spec: &SynthSpec, kind: FaultKind, severity: f64, offset: u64) {
    let fs = spec.sample_rate;
    let shaft = spec.rpm / 60.0;
    let f_defect = kind.frequency(&spec.bearing, shaft);
    let period = 1.0 / f_defect;
    // Ring-down of the resonance: 5 % damping, cut at 1 % amplitude.
    let zeta = 0.05;
    let decay = zeta * 2.0 * PI * spec.resonance_hz;
    let ring = ((0.01f64.ln().abs() / decay) * fs).ceil() as usize;
    let t0 = offset as f64 / fs;
    let t1 = t0 + x.len() as f64 / fs;
    // Impacts that can still ring into this block.
    let first = ((t0 - ring as f64 / fs) / period).floor().max(0.0) as u64;
    let mut k = first;
    loop {
        // Slip jitter: +-1 % of the period, deterministic per impact.
        let mut rng = rng(spec.seed ^ k.wrapping_mul(0x9E37_79B9));
        let t_impact = k as f64 * period + 0.01 * period * (rng.random::<f64>() - 0.5) * 2.0;
        if t_impact >= t1 {
            break;
        }
        let modulation = match kind {
            FaultKind::InnerRace => 0.5 * (1.0 + (2.0 * PI * shaft * t_impact).cos()),
            FaultKind::Ball => 0.5 * (1.0 + (2.0 * PI * kind_ftf(spec) * t_impact).cos()),
            _ => 1.0,
        };
        let amp = severity * modulation * (0.8 + 0.4 * rng.random::<f64>());
        let start = ((t_impact - t0) * fs).ceil() as i64;
        for j in 0..ring as i64 {
            let idx = start + j;
            if idx < 0 {
                continue;
            }
            let Some(slot) = x.get_mut(idx as usize) else { break };
            let tau = (idx as f64 + t0 * fs) / fs - t_impact;
            *slot += amp * (-decay * tau).exp() * (2.0 * PI * spec.resonance_hz * tau).sin();
        }
        k += 1;
    }
}

fn kind_ftf(spec: &SynthSpec) -> f64 {
    spec.bearing.ftf * spec.rpm / 60.0
}
