//! Scores every CWRU recording in ../shared/data/cwru with the envelope method, block by
//! block, and prints a table (kept in docs/VIBRATION.md).
//!
//! `cargo run --release --example cwru_scores [-- DIR]`

use std::path::PathBuf;

use stator_operators::bearing;
use stator_operators::envelope::{EnvelopeConfig, EnvelopePlan, default_band};
use stator_operators::faults::{FaultKind, ScoreConfig, diagnose};

fn main() {
    let dir = std::env::args().nth(1).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("../shared/data/cwru"));
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("CWRU directory")
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".f32").map(str::to_owned))
        .collect();
    names.sort();
    let m = bearing::catalog("6205").expect("6205").multipliers();
    println!("| recording | label | blocks | verdicts | BPFO dB | BPFI dB | 2xBSF dB | FTF dB |");
    println!("|---|---|---:|---|---:|---:|---:|---:|");
    for name in names {
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{name}.json"))).expect("meta"))
                .expect("json");
        let bytes = std::fs::read(dir.join(format!("{name}.f32"))).expect("samples");
        let x: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        let fs = meta["sample_rate"].as_f64().expect("rate");
        let shaft = meta["rpm"].as_f64().expect("rpm") / 60.0;
        let n = 16_384;
        let mut plan = EnvelopePlan::new(n);
        let mut spec = vec![0.0; plan.bins()];
        let config = EnvelopeConfig { band: default_band(fs), whiten: std::env::var_os("WHITEN").is_some() };
        let mut verdicts = std::collections::BTreeMap::<&str, usize>::new();
        let mut sums = [0.0f64; 4];
        let mut blocks = 0;
        for block in x.chunks_exact(n) {
            plan.envelope_spectrum(block, fs, &config, &mut spec);
            let d = diagnose(&spec, fs / n as f64, shaft, &m, &ScoreConfig::default());
            *verdicts.entry(d.verdict.name()).or_default() += 1;
            for (i, k) in FaultKind::ALL.iter().enumerate() {
                sums[i] += d.evidence(*k).lines[0].snr_db;
            }
            blocks += 1;
        }
        let v: Vec<String> = verdicts.iter().map(|(k, c)| format!("{k} {c}")).collect();
        let b = blocks as f64;
        println!(
            "| {name} | {} | {blocks} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
            meta["fault"].as_str().unwrap_or("?"),
            v.join(", "),
            sums[0] / b,
            sums[1] / b,
            sums[2] / b,
            sums[3] / b
        );
    }
}
