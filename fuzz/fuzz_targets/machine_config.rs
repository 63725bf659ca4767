//! Fuzz target: `stator_engine::fuzz::machine_config` (its corpus is replayed by the test suite).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stator_engine::fuzz::machine_config(data));
