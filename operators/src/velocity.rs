//! Vibration severity: acceleration integrated in the frequency domain to velocity RMS over
//! the ISO band, and the ISO 20816-3 evaluation zone.

use std::f64::consts::PI;
use std::fmt;
use std::str::FromStr;

/// Standard gravity, m/s^2 per g.
pub const G: f64 = 9.806_65;

/// Unit of acceleration samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccelUnit {
    /// Multiples of standard gravity.
    G,
    /// Metres per second squared.
    MetersPerSecondSquared,
}

impl AccelUnit {
    /// Factor to m/s^2.
    pub fn to_si(self) -> f64 {
        match self {
            AccelUnit::G => G,
            AccelUnit::MetersPerSecondSquared => 1.0,
        }
    }
}

impl FromStr for AccelUnit {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "g" => Ok(AccelUnit::G),
            "m/s^2" | "m/s2" | "m/s²" => Ok(AccelUnit::MetersPerSecondSquared),
            other => Err(format!("unknown acceleration unit `{other}`, expected `g` or `m/s^2`")),
        }
    }
}

/// Velocity RMS in mm/s over `[lo_hz, hi_hz]` (ISO: 10 to 1000 Hz) from an acceleration
/// amplitude spectrum (`unit` per bin, bin spacing `df`, window noise bandwidth `enbw_bins`):
/// each bin is divided by `2 pi f`, then the powers are summed.
pub fn velocity_rms_mm_s(amplitude: &[f32], df: f64, enbw_bins: f64, unit: AccelUnit, lo_hz: f64, hi_hz: f64) -> f64 {
    let scale = unit.to_si() * 1000.0;
    let power: f64 = amplitude
        .iter()
        .enumerate()
        .skip(1)
        .filter_map(|(k, a)| {
            let f = k as f64 * df;
            (f >= lo_hz && f <= hi_hz).then(|| {
                let v = f64::from(*a) * scale / (2.0 * PI * f);
                v * v / 2.0
            })
        })
        .sum();
    (power / enbw_bins).sqrt()
}

/// ISO 20816-3 machine group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MachineGroup {
    /// Group 1: large machines, 300 kW to 50 MW.
    Large,
    /// Group 2: medium machines, 15 kW to 300 kW.
    Medium,
}

/// ISO 20816-3 foundation class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Foundation {
    /// Rigid.
    Rigid,
    /// Flexible.
    Flexible,
}

/// ISO 20816-3 evaluation zone, `A` (newly commissioned) to `D` (damage likely).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Zone {
    /// Newly commissioned machines.
    A,
    /// Unrestricted long-term operation.
    B,
    /// Restricted operation; plan maintenance.
    C,
    /// Vibration severe enough to cause damage.
    D,
}

impl Zone {
    /// The zone as a number for alert rules: A = 1, B = 2, C = 3, D = 4.
    pub fn number(self) -> f64 {
        match self {
            Zone::A => 1.0,
            Zone::B => 2.0,
            Zone::C => 3.0,
            Zone::D => 4.0,
        }
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Zone::A => "A",
            Zone::B => "B",
            Zone::C => "C",
            Zone::D => "D",
        })
    }
}

impl FromStr for Zone {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "A" => Ok(Zone::A),
            "B" => Ok(Zone::B),
            "C" => Ok(Zone::C),
            "D" => Ok(Zone::D),
            other => Err(format!("unknown zone `{other}`, expected A, B, C or D")),
        }
    }
}

/// Zone boundaries A/B, B/C, C/D in mm/s RMS (ISO 20816-3 Annex A, velocity, 10-1000 Hz).
pub fn zone_limits(group: MachineGroup, foundation: Foundation) -> [f64; 3] {
    match (group, foundation) {
        (MachineGroup::Large, Foundation::Rigid) => [2.3, 4.5, 7.1],
        (MachineGroup::Large, Foundation::Flexible) => [3.5, 7.1, 11.0],
        (MachineGroup::Medium, Foundation::Rigid) => [1.4, 2.8, 4.5],
        (MachineGroup::Medium, Foundation::Flexible) => [2.3, 4.5, 7.1],
    }
}

/// The zone of a velocity RMS (mm/s).
pub fn iso_zone(velocity_rms_mm_s: f64, group: MachineGroup, foundation: Foundation) -> Zone {
    let [ab, bc, cd] = zone_limits(group, foundation);
    match velocity_rms_mm_s {
        v if v < ab => Zone::A,
        v if v < bc => Zone::B,
        v if v < cd => Zone::C,
        _ => Zone::D,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spectrum::{SpectrumPlan, WindowFn};

    #[test]
    fn a_known_sinusoid_integrates_to_its_velocity() {
        // 1 g at 100 Hz: velocity amplitude = 9.80665 / (2 pi 100) m/s = 15.61 mm/s,
        // RMS 11.04 mm/s.
        let (n, fs) = (25_600, 25_600.0);
        let x: Vec<f32> = (0..n).map(|i| (2.0 * PI * 100.0 * i as f64 / fs).sin() as f32).collect();
        let mut plan = SpectrumPlan::new(n, WindowFn::Hann);
        let mut amp = vec![0.0; plan.bins()];
        plan.amplitude(&x, &mut amp);
        let v = velocity_rms_mm_s(&amp, fs / n as f64, plan.enbw_bins(), AccelUnit::G, 10.0, 1000.0);
        let want = G / (2.0 * PI * 100.0) * 1000.0 / 2f64.sqrt();
        assert!((v - want).abs() / want < 0.005, "{v} vs {want}");
        let outside = velocity_rms_mm_s(&amp, fs / n as f64, plan.enbw_bins(), AccelUnit::G, 200.0, 1000.0);
        assert!(outside < 0.01 * want, "{outside}");
    }

    #[test]
    fn zones_follow_the_iso_table() {
        let z = |v| iso_zone(v, MachineGroup::Medium, Foundation::Rigid);
        assert_eq!([z(1.0), z(2.0), z(3.0), z(5.0)], [Zone::A, Zone::B, Zone::C, Zone::D]);
        assert_eq!(iso_zone(5.0, MachineGroup::Large, Foundation::Flexible), Zone::B);
        assert!(Zone::C >= "C".parse().unwrap());
    }
}
