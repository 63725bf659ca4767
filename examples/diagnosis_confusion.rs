//! Confusion tables of the bearing diagnosis, per 2 s window, on every CWRU recording in
//! ../shared/data/cwru and on simulated machines (every fault kind and healthy, at 12, 25.6 and
//! 51.2 kHz and 900, 1797 and 3600 rpm), for each envelope band method. docs/VIBRATION.md keeps
//! the output.
//!
//! `cargo run --example diagnosis_confusion [-- DIR]` (about 30 s)

use std::collections::BTreeMap;
use std::path::PathBuf;

use stator_operators::bearing::{self, Multipliers};
use stator_operators::envelope::{EnvelopeConfig, EnvelopePlan, default_band};
use stator_operators::faults::{ScoreConfig, diagnose};
use stator_operators::kurtogram::Kurtogram;
use stator_operators::synth::{survey, synthesize};

/// A recording or a simulated machine: label, samples, rate, rpm.
struct Case {
    label: String,
    x: Vec<f32>,
    fs: f64,
    rpm: f64,
}

#[derive(Clone, Copy)]
enum Method {
    Fixed { whiten: bool },
    Kurtogram { whiten: bool },
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Fixed { whiten: false } => "fixed band (default)",
            Method::Fixed { whiten: true } => "fixed band, whitened",
            Method::Kurtogram { whiten: false } => "kurtogram band",
            Method::Kurtogram { whiten: true } => "kurtogram band, whitened",
        }
    }
}

const LABELS: [&str; 5] = ["normal", "outer_race", "inner_race", "ball", "cage"];

fn verdicts(case: &Case, m: &Multipliers, method: Method) -> Vec<&'static str> {
    let n = (2.0 * case.fs) as usize;
    let mut plan = EnvelopePlan::new(n);
    let mut kurtogram = Kurtogram::new(n);
    let mut spec = vec![0.0; plan.bins()];
    let shaft = case.rpm / 60.0;
    // The band must pass the highest envelope line read: the third harmonic of BPFI.
    let min_bandwidth = 2.0 * 3.0 * m.bpfi * shaft;
    case.x
        .chunks_exact(n)
        .map(|block| {
            let (band, whiten) = match method {
                Method::Fixed { whiten } => (default_band(case.fs), whiten),
                Method::Kurtogram { whiten } => {
                    let b = kurtogram.select(block, case.fs, min_bandwidth, 6);
                    (b.map_or(default_band(case.fs), |b| (b.lo, b.hi)), whiten)
                }
            };
            plan.envelope_spectrum(block, case.fs, &EnvelopeConfig { band, whiten }, &mut spec);
            diagnose(&spec, case.fs / n as f64, shaft, m, &ScoreConfig::default()).verdict.name()
        })
        .collect()
}

fn cwru(dir: &PathBuf) -> Vec<Case> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("CWRU directory")
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".f32").map(str::to_owned))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let meta: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{name}.json"))).expect("meta"))
                    .expect("json");
            let bytes = std::fs::read(dir.join(format!("{name}.f32"))).expect("samples");
            Case {
                label: meta["fault"].as_str().expect("label").to_owned(),
                x: bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
                fs: meta["sample_rate"].as_f64().expect("rate"),
                rpm: meta["rpm"].as_f64().expect("rpm"),
            }
        })
        .collect()
}

fn simulated(m: Multipliers) -> Vec<Case> {
    survey(m)
        .into_iter()
        .map(|spec| Case {
            label: spec.fault.map_or("normal", |(k, _)| k.name()).to_owned(),
            x: synthesize(&spec, 0, (6.0 * spec.sample_rate) as usize),
            fs: spec.sample_rate,
            rpm: spec.rpm,
        })
        .collect()
}

fn table(title: &str, cases: &[Case], m: &Multipliers, method: Method) {
    let mut counts: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for c in cases {
        let label = LABELS.iter().find(|l| **l == c.label).copied().unwrap_or("?");
        for v in verdicts(c, m, method) {
            *counts.entry((label, v)).or_default() += 1;
        }
    }
    println!("\n{title}, {}: rows are the truth, columns the verdict (2 s windows)\n", method.name());
    println!("| truth \\ verdict | normal | outer_race | inner_race | ball | cage | unknown |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for label in LABELS {
        if !counts.keys().any(|(l, _)| *l == label) {
            continue;
        }
        let cells: Vec<String> = LABELS
            .iter()
            .chain(&["unknown"])
            .map(|v| counts.get(&(label, *v)).copied().unwrap_or(0).to_string())
            .collect();
        println!("| {label} | {} |", cells.join(" | "));
    }
}

fn main() {
    let dir = std::env::args().nth(1).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("../shared/data/cwru"));
    let m = bearing::catalog("6205").expect("6205").multipliers();
    let (real, sim) = (cwru(&dir), simulated(m));
    for method in [
        Method::Fixed { whiten: false },
        Method::Fixed { whiten: true },
        Method::Kurtogram { whiten: false },
        Method::Kurtogram { whiten: true },
    ] {
        table("CWRU 12 kHz drive end, 1797 rpm", &real, &m, method);
        table("Simulated, 6205", &sim, &m, method);
    }
}
