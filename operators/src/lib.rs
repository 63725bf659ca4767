//! Pure, synchronous, deterministic signal processing for Stator.
//!
//! Nothing in this crate does I/O, spawns tasks or reads a clock: every function is a
//! function of its inputs, so the engine can replay a stream and get the same answers.

pub mod stats;

pub use stats::{Aggregate, Moments};
pub mod bearing;
pub mod envelope;
pub mod faults;
pub mod kurtogram;
pub mod signal;
pub mod simd;
pub mod spectrum;
pub mod synth;
pub mod velocity;
