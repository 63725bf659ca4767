//! Replays the fuzz corpus (`fuzz/corpus/<target>/`) through the fuzz targets' entry points:
//! every input found interesting by the fuzzer, and every seed, must pass their checks.

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("corpus entry").path();
        let data = std::fs::read(&path).expect("corpus file");
        if let Err(panic) = std::panic::catch_unwind(|| check(&data)) {
            std::panic::resume_unwind(Box::new(format!("{}: {panic:?}", path.display())));
        }
        n += 1;
    }
    assert!(n >= 5, "{target}: only {n} corpus inputs in {}", dir.display());
}

#[test]
fn json_reading_corpus() {
    replay("json_reading", stator_engine::fuzz::json_reading);
}

#[test]
fn waveform_corpus() {
    replay("waveform", stator_engine::fuzz::waveform);
}

#[test]
fn subject_corpus() {
    replay("subject", stator_engine::fuzz::subject);
}

#[test]
fn pipeline_file_corpus() {
    replay("pipeline_file", stator_engine::fuzz::pipeline_file);
}

#[test]
fn machine_config_corpus() {
    replay("machine_config", stator_engine::fuzz::machine_config);
}
