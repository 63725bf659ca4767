//! The waveform operators, one file per family; [`super::operator::REGISTRY`] lists them.

pub(super) mod bearing;
pub(super) mod envelope;
pub(super) mod levels;
pub(super) mod spectrum;
pub(super) mod velocity;
