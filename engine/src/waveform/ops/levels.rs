//! Overall levels of the window's samples: one operator per statistic, all read from the
//! window's [`Levels`] (computed once, with the SIMD kernels).

use stator_operators::signal::Levels;

use crate::features::Features;
use crate::waveform::context::Window;
use crate::waveform::operator::{FeatureDef, WaveformOperator};

/// An operator that reports one field of the window's levels.
pub(crate) struct LevelOp {
    feature: &'static [FeatureDef; 1],
    about: &'static str,
    value: fn(&Levels) -> f64,
}

impl WaveformOperator for LevelOp {
    fn name(&self) -> &'static str {
        self.feature[0].name
    }

    fn about(&self) -> &'static str {
        self.about
    }

    fn features(&self) -> &'static [FeatureDef] {
        self.feature
    }

    fn compute(&self, window: &mut Window<'_>, out: &mut Features) {
        out.scalars.push((self.feature[0].name, (self.value)(window.levels())));
    }
}

pub(crate) static RMS: LevelOp = LevelOp {
    feature: &[FeatureDef::scalar("rms", "input unit")],
    about: "root mean square of the samples, mean included (SIMD kernel)",
    value: |l| l.rms,
};

pub(crate) static PEAK: LevelOp = LevelOp {
    feature: &[FeatureDef::scalar("peak", "input unit")],
    about: "largest absolute sample",
    value: |l| l.peak,
};

pub(crate) static PEAK_TO_PEAK: LevelOp = LevelOp {
    feature: &[FeatureDef::scalar("peak_to_peak", "input unit")],
    about: "largest minus smallest sample",
    value: |l| l.peak_to_peak,
};

pub(crate) static CREST_FACTOR: LevelOp = LevelOp {
    feature: &[FeatureDef::scalar("crest_factor", "1")],
    about: "peak over RMS (0 for a silent window)",
    value: |l| l.crest_factor,
};

pub(crate) static KURTOSIS: LevelOp = LevelOp {
    feature: &[FeatureDef::scalar("kurtosis", "1")],
    about: "fourth standardised moment, not excess: 3 for Gaussian noise, 1.5 for a sine; impacts raise it",
    value: |l| l.kurtosis,
};

pub(crate) static SKEWNESS: LevelOp = LevelOp {
    feature: &[FeatureDef::scalar("skewness", "1")],
    about: "third standardised moment",
    value: |l| l.skewness,
};
