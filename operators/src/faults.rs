//! Bearing fault scoring on an envelope spectrum: peak-to-noise ratios at the defect
//! frequencies and their harmonics (and shaft sidebands for the inner race), and a verdict.

use std::fmt;

use crate::bearing::Multipliers;

/// A bearing fault kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    /// Outer race defect: impacts at BPFO.
    OuterRace,
    /// Inner race defect: impacts at BPFI, modulated by shaft rotation.
    InnerRace,
    /// Rolling element defect: impacts at 2 x BSF (both races), modulated by the cage.
    Ball,
    /// Cage defect: at FTF.
    Cage,
}

impl FaultKind {
    /// Every kind.
    pub const ALL: [FaultKind; 4] = [FaultKind::OuterRace, FaultKind::InnerRace, FaultKind::Ball, FaultKind::Cage];

    /// Name in outputs: `outer_race`, `inner_race`, `ball`, `cage`.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::OuterRace => "outer_race",
            FaultKind::InnerRace => "inner_race",
            FaultKind::Ball => "ball",
            FaultKind::Cage => "cage",
        }
    }

    /// The repetition frequency of its impacts, in Hz, at shaft frequency `shaft_hz`.
    pub fn frequency(self, m: &Multipliers, shaft_hz: f64) -> f64 {
        shaft_hz
            * match self {
                FaultKind::OuterRace => m.bpfo,
                FaultKind::InnerRace => m.bpfi,
                FaultKind::Ball => 2.0 * m.bsf,
                FaultKind::Cage => m.ftf,
            }
    }
}

impl std::str::FromStr for FaultKind {
    type Err = String;

    /// Parses a name as [`FaultKind::name`] gives it.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FaultKind::ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| format!("unknown fault kind `{s}`"))
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The verdict of a diagnosis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// No defect signature above the threshold.
    Normal,
    /// A defect of this kind.
    Fault(FaultKind),
}

impl Verdict {
    /// `normal` or the fault kind's name.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Normal => "normal",
            Verdict::Fault(k) => k.name(),
        }
    }
}

/// One spectral line looked at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Line {
    /// Harmonic order (1 = fundamental).
    pub order: u32,
    /// Where it was expected, Hz.
    pub expected_hz: f64,
    /// Where the largest peak within the tolerance was, Hz.
    pub found_hz: f64,
    /// Peak over the local noise floor (median), dB.
    pub snr_db: f64,
}

/// The evidence for one fault kind.
#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    /// Fault kind.
    pub kind: FaultKind,
    /// Fundamental frequency, Hz.
    pub frequency_hz: f64,
    /// The harmonics, fundamental first.
    pub lines: Vec<Line>,
    /// The stronger sideband around the fundamental, dB, at what modulates the impacts: the
    /// shaft speed for an inner race, the cage (FTF) for a ball; none for the others.
    pub sideband_db: Option<f64>,
    /// The score: the fundamental's SNR plus half the mean SNR of the higher harmonics
    /// (negative SNRs count as 0), dB.
    pub score_db: f64,
}

/// Scoring settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreConfig {
    /// Relative speed error tolerated when looking for a line (0.02 = 2 %).
    pub speed_tolerance: f64,
    /// Harmonics looked at, including the fundamental.
    pub harmonics: u32,
    /// A fundamental must stand this far above the noise (dB) for a fault verdict.
    pub threshold_db: f64,
    /// ...and the score (fundamental plus harmonic support) this far. Noise alone puts the
    /// largest of a dozen bins about 6 dB over the median, and now and then over 10 dB; it
    /// rarely does so at the harmonics too.
    pub min_score_db: f64,
}

impl Default for ScoreConfig {
    fn default() -> Self {
        Self { speed_tolerance: 0.02, harmonics: 3, threshold_db: 10.0, min_score_db: 15.0 }
    }
}

/// A verdict with the evidence for every fault kind.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnosis {
    /// The verdict.
    pub verdict: Verdict,
    /// Evidence per kind, in [`FaultKind::ALL`] order.
    pub evidence: Vec<Evidence>,
}

impl Diagnosis {
    /// The evidence for one kind.
    pub fn evidence(&self, kind: FaultKind) -> &Evidence {
        &self.evidence[FaultKind::ALL.iter().position(|k| *k == kind).unwrap_or(0)]
    }

    /// The evidence an explanation shows: the verdict's kind, or, when the verdict is normal,
    /// the best-scoring kind (the signature closest to a fault).
    pub fn strongest(&self) -> &Evidence {
        match self.verdict {
            Verdict::Fault(kind) => self.evidence(kind),
            Verdict::Normal => {
                self.evidence.iter().max_by(|a, b| a.score_db.total_cmp(&b.score_db)).unwrap_or(&self.evidence[0])
            }
        }
    }
}

/// A line this far (dB) over the local median counts as present. The largest of a dozen noise
/// bins stands about 6 dB over their median (see [`ScoreConfig::min_score_db`]), so a line
/// must clear that to be told apart from noise.
pub const LINE_PRESENT_DB: f64 = 6.0;

impl Evidence {
    /// How many of its harmonics (fundamental included) stand [`LINE_PRESENT_DB`] over the
    /// noise.
    pub fn lines_present(&self) -> usize {
        self.lines.iter().filter(|l| l.snr_db >= LINE_PRESENT_DB).count()
    }
}

/// Scores an envelope amplitude spectrum (bin spacing `df`) for every fault kind of a bearing
/// with multipliers `m` turning at `shaft_hz`, and gives a verdict: the best-scoring kind
/// whose fundamental clears `threshold_db` and whose score clears `min_score_db`, else normal.
pub fn diagnose(spectrum: &[f32], df: f64, shaft_hz: f64, m: &Multipliers, cfg: &ScoreConfig) -> Diagnosis {
    let evidence: Vec<Evidence> = FaultKind::ALL
        .iter()
        .map(|&kind| {
            let f0 = kind.frequency(m, shaft_hz);
            let lines: Vec<Line> = (1..=cfg.harmonics.max(1))
                .map(|order| line(spectrum, df, f0 * f64::from(order), cfg.speed_tolerance, order))
                .collect();
            // What modulates the impacts: an inner race turns with the shaft, a ball with the
            // cage; an outer race and the cage itself are not carried round by anything.
            let modulation = match kind {
                FaultKind::InnerRace => Some(shaft_hz),
                FaultKind::Ball => Some(FaultKind::Cage.frequency(m, shaft_hz)),
                FaultKind::OuterRace | FaultKind::Cage => None,
            };
            let sideband_db = modulation.map(|fm| {
                [f0 - fm, f0 + fm]
                    .iter()
                    .map(|f| line(spectrum, df, *f, cfg.speed_tolerance, 1).snr_db)
                    .fold(f64::NEG_INFINITY, f64::max)
            });
            let higher: Vec<f64> = lines.iter().skip(1).map(|l| l.snr_db.max(0.0)).collect();
            let support = if higher.is_empty() { 0.0 } else { higher.iter().sum::<f64>() / higher.len() as f64 };
            let score_db = lines[0].snr_db + 0.5 * support;
            Evidence { kind, frequency_hz: f0, lines, sideband_db, score_db }
        })
        .collect();
    let verdict = evidence
        .iter()
        .filter(|e| e.lines[0].snr_db >= cfg.threshold_db && e.score_db >= cfg.min_score_db)
        .max_by(|a, b| a.score_db.total_cmp(&b.score_db))
        .map_or(Verdict::Normal, |e| Verdict::Fault(e.kind));
    Diagnosis { verdict, evidence }
}

/// The largest peak within the tolerance of `f` and its height over the local median.
fn line(spectrum: &[f32], df: f64, f: f64, tolerance: f64, order: u32) -> Line {
    let last = spectrum.len().saturating_sub(1);
    let bin = |hz: f64| ((hz / df).round().max(1.0) as usize).min(last);
    let (lo, hi) = (bin(f * (1.0 - tolerance) - df), bin(f * (1.0 + tolerance) + df));
    let (peak_bin, peak) =
        (lo..=hi).map(|k| (k, spectrum[k])).fold((lo, 0.0f32), |m, (k, a)| if a > m.1 { (k, a) } else { m });
    // Noise: median of the neighbourhood outside the search window.
    let half = (20.0 * df).max(0.25 * f);
    let (nlo, nhi) = (bin(f - half), bin(f + half));
    let mut noise: Vec<f32> = (nlo..=nhi).filter(|k| *k < lo || *k > hi).map(|k| spectrum[k]).collect();
    let floor = if noise.is_empty() {
        f32::MIN_POSITIVE
    } else {
        let mid = noise.len() / 2;
        *noise.select_nth_unstable_by(mid, f32::total_cmp).1
    };
    let snr_db = 20.0 * (f64::from(peak.max(f32::MIN_POSITIVE)) / f64::from(floor.max(f32::MIN_POSITIVE))).log10();
    Line { order, expected_hz: f, found_hz: peak_bin as f64 * df, snr_db }
}
