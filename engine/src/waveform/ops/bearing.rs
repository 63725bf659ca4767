//! Bearing defect scores and verdict from the envelope spectrum, at the defect frequencies of
//! the machine's bearing and shaft speed.

use stator_operators::bearing;
use stator_operators::faults::{FaultKind, Verdict, diagnose};

use crate::features::Features;
use crate::waveform::context::Window;
use crate::waveform::operator::{FeatureDef, WaveformOperator};

/// `bearing_faults`.
pub(crate) struct BearingFaults;

impl WaveformOperator for BearingFaults {
    fn name(&self) -> &'static str {
        "bearing_faults"
    }

    fn about(&self) -> &'static str {
        "peak-to-median ratio at each defect frequency and 2 harmonics, within 2 % (speed error); verdict: the best-scoring kind whose fundamental clears 10 dB and whose score (fundamental + half the harmonics' mean) clears 15 dB; `bsf` is at 2 x BSF"
    }

    fn settings(&self) -> &'static [&'static str] {
        &["bearing", "rpm", "fault_threshold_db", "envelope_band", "whiten"]
    }

    fn features(&self) -> &'static [FeatureDef] {
        const FEATURES: &[FeatureDef] = &[
            FeatureDef::scalar("bearing.bpfo_db", "dB"),
            FeatureDef::scalar("bearing.bpfi_db", "dB"),
            FeatureDef::scalar("bearing.bsf_db", "dB"),
            FeatureDef::scalar("bearing.ftf_db", "dB"),
            FeatureDef::scalar("bearing.score_db", "dB"),
            FeatureDef::scalar("bearing.fault_score_db", "dB"),
            FeatureDef::scalar("rpm", "rpm"),
            FeatureDef::text("bearing.verdict"),
            FeatureDef::text("bearing.type"),
            FeatureDef::text("bearing.note"),
        ];
        FEATURES
    }

    fn compute(&self, window: &mut Window<'_>, out: &mut Features) {
        let designation = window.machine.bearing.as_deref().or(window.settings.bearing.as_deref());
        let geometry = designation.and_then(bearing::catalog);
        let rpm = window.rpm.or(window.machine.rpm).or(window.settings.rpm);
        let score = window.settings.score;
        let Some(env) = window.envelope() else { return };
        let (Some(g), Some(rpm)) = (geometry, rpm) else {
            out.texts.push(("bearing.verdict", "unknown".into()));
            out.texts.push(("bearing.note", "no bearing type or shaft speed for this machine".into()));
            return;
        };
        let d = diagnose(&env.spectrum, env.df, rpm / 60.0, &g.multipliers(), &score);
        for (name, kind) in [
            ("bearing.bpfo_db", FaultKind::OuterRace),
            ("bearing.bpfi_db", FaultKind::InnerRace),
            ("bearing.bsf_db", FaultKind::Ball),
            ("bearing.ftf_db", FaultKind::Cage),
        ] {
            out.scalars.push((name, d.evidence(kind).lines[0].snr_db));
        }
        let best = d.evidence.iter().map(|e| e.score_db).fold(f64::NEG_INFINITY, f64::max);
        out.scalars.push(("bearing.score_db", best));
        let fault_score = match d.verdict {
            Verdict::Fault(kind) => d.evidence(kind).score_db,
            Verdict::Normal => 0.0,
        };
        out.scalars.push(("bearing.fault_score_db", fault_score));
        out.scalars.push(("rpm", rpm));
        out.texts.push(("bearing.verdict", d.verdict.name().to_owned()));
        out.texts.push(("bearing.type", designation.unwrap_or_default().to_owned()));
    }
}
