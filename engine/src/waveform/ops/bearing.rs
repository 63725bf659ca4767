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
        "peak-to-median ratio at each defect frequency and 2 harmonics, within 2 % (speed error); verdict: the best-scoring kind whose fundamental clears 10 dB and whose score (fundamental + half the harmonics' mean) clears 15 dB; `bsf` is at 2 x BSF; the `defect`/`fundamental`/`harmonic`/`sideband` features explain the verdict's kind (`evidence_kind`; the best-scoring one when normal); `rpm_source` says where the speed came from (`tachometer`, `message`, `machine_config`, `pipeline`)"
    }

    fn settings(&self) -> &'static [&'static str] {
        &["bearing", "rpm", "rpm_subject", "rpm_max_age", "rpm_key", "fault_threshold_db", "envelope_band", "whiten"]
    }

    fn features(&self) -> &'static [FeatureDef] {
        const FEATURES: &[FeatureDef] = &[
            FeatureDef::scalar("bearing.bpfo_db", "dB"),
            FeatureDef::scalar("bearing.bpfi_db", "dB"),
            FeatureDef::scalar("bearing.bsf_db", "dB"),
            FeatureDef::scalar("bearing.ftf_db", "dB"),
            FeatureDef::scalar("bearing.score_db", "dB"),
            FeatureDef::scalar("bearing.fault_score_db", "dB"),
            FeatureDef::scalar("bearing.defect_hz", "Hz"),
            FeatureDef::scalar("bearing.defect_orders", "orders"),
            FeatureDef::scalar("bearing.fundamental_db", "dB"),
            FeatureDef::scalar("bearing.harmonic2_db", "dB"),
            FeatureDef::scalar("bearing.harmonic3_db", "dB"),
            FeatureDef::scalar("bearing.harmonics_present", "lines"),
            FeatureDef::scalar_sometimes("bearing.sideband_db", "dB"),
            FeatureDef::scalar("rpm", "rpm"),
            FeatureDef::text("rpm_source"),
            FeatureDef::text("bearing.verdict"),
            FeatureDef::text("bearing.evidence_kind"),
            FeatureDef::text("bearing.type"),
            FeatureDef::text("bearing.note"),
        ];
        FEATURES
    }

    fn compute(&self, window: &mut Window<'_>, out: &mut Features) {
        let designation = window.machine.bearing.as_deref().or(window.settings.bearing.as_deref());
        let geometry = designation.and_then(bearing::catalog);
        let speed = window.shaft_speed();
        let score = window.settings.score;
        let Some(env) = window.envelope() else { return };
        let note = match (designation, geometry, &speed) {
            (None, _, _) => Some("no bearing type for this machine".to_owned()),
            (Some(d), None, _) => Some(format!("bearing `{d}` is not in the catalog")),
            (Some(_), Some(_), Err(why)) => Some(why.clone()),
            (Some(_), Some(_), Ok(_)) => None,
        };
        let (Some(g), Ok((rpm, rpm_source)), None) = (geometry, &speed, &note) else {
            out.texts.push(("bearing.verdict", "unknown".into()));
            out.texts.push(("bearing.note", note.unwrap_or_default()));
            out.texts.push(("rpm_source", speed.as_ref().map_or("unknown", |(_, source)| source).into()));
            return;
        };
        let (rpm, rpm_source) = (*rpm, *rpm_source);
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
        // The evidence behind the verdict (or, when normal, the closest signature).
        let e = d.strongest();
        let shaft_hz = rpm / 60.0;
        out.scalars.push(("bearing.defect_hz", e.frequency_hz));
        out.scalars.push(("bearing.defect_orders", e.frequency_hz / shaft_hz));
        for (name, line) in
            ["bearing.fundamental_db", "bearing.harmonic2_db", "bearing.harmonic3_db"].iter().zip(&e.lines)
        {
            out.scalars.push((name, line.snr_db));
        }
        out.scalars.push(("bearing.harmonics_present", e.lines_present() as f64));
        if let Some(sb) = e.sideband_db {
            out.scalars.push(("bearing.sideband_db", sb));
        }
        out.scalars.push(("rpm", rpm));
        out.texts.push(("rpm_source", rpm_source.into()));
        out.texts.push(("bearing.verdict", d.verdict.name().to_owned()));
        out.texts.push(("bearing.evidence_kind", e.kind.name().to_owned()));
        out.texts.push(("bearing.type", designation.unwrap_or_default().to_owned()));
    }
}
