//! Vibration severity: velocity RMS from the acceleration spectrum, and its ISO 20816-3 zone.

use stator_operators::velocity::iso_zone;

use crate::features::Features;
use crate::waveform::context::Window;
use crate::waveform::operator::{FeatureDef, WaveformOperator};

/// `velocity_rms`.
pub(crate) struct VelocityRms;

impl WaveformOperator for VelocityRms {
    fn name(&self) -> &'static str {
        "velocity_rms"
    }

    fn about(&self) -> &'static str {
        "Welch spectrum of the acceleration, each bin divided by 2 pi f, summed over `velocity_band` (default 10-1000 Hz)"
    }

    fn settings(&self) -> &'static [&'static str] {
        &["velocity_band", "units", "fft_size", "overlap", "spectral_window"]
    }

    fn features(&self) -> &'static [FeatureDef] {
        const FEATURES: &[FeatureDef] = &[FeatureDef::scalar("velocity_rms", "mm/s")];
        FEATURES
    }

    fn compute(&self, window: &mut Window<'_>, out: &mut Features) {
        if let Some(v) = window.velocity_rms_mm_s() {
            out.scalars.push(("velocity_rms", v));
        }
    }
}

/// `iso_zone`.
pub(crate) struct IsoZoneOp;

impl WaveformOperator for IsoZoneOp {
    fn name(&self) -> &'static str {
        "iso_zone"
    }

    fn about(&self) -> &'static str {
        "ISO 20816-3 zone of the velocity RMS by `machine_group` and `foundation`: 1-4 for rules, letter A-D in outputs"
    }

    fn settings(&self) -> &'static [&'static str] {
        &["machine_group", "foundation", "velocity_band", "units", "fft_size", "overlap", "spectral_window"]
    }

    fn features(&self) -> &'static [FeatureDef] {
        const FEATURES: &[FeatureDef] = &[FeatureDef::scalar("iso_zone", "zone 1-4"), FeatureDef::text("iso_zone")];
        FEATURES
    }

    fn compute(&self, window: &mut Window<'_>, out: &mut Features) {
        let Some(v) = window.velocity_rms_mm_s() else { return };
        let zone = iso_zone(v, window.settings.machine_group, window.settings.foundation);
        out.scalars.push(("iso_zone", zone.number()));
        out.texts.push(("iso_zone", zone.to_string()));
    }
}
