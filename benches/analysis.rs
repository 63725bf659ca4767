//! Full per-machine analysis throughput: levels, Welch spectrum, velocity and ISO zone,
//! envelope spectrum and bearing scores for windows of 1 s at 25.6 kHz, through the same
//! `Analyzer` the worker runs, with the envelope band chosen by kurtogram (the default) and with
//! the fixed band, side by side. Reported as machines at 25.6 kHz per core. Then the same
//! analysis in numpy/scipy on the same samples, in the same run (`benches/analysis.py`),
//! when a Python with numpy and scipy is found (`make bench` installs them in the virtual environment .tools/bench).
//!
//! `cargo bench --bench analysis`

#[path = "report/mod.rs"]
mod report;

use std::time::{Duration, Instant};

use stator_engine::waveform::{AnalysisSettings, Operator, WaveformSpec};
use stator_engine::waveform::{Analyzer, MachineSettings, WavePane};
use stator_operators::bearing;
use stator_operators::faults::FaultKind;
use stator_operators::synth::{SynthSpec, synthesize};

const FS: f64 = 25_600.0;

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let m = bearing::catalog("6205").expect("6205").multipliers();
    let spec = SynthSpec { fault: Some((FaultKind::OuterRace, 0.3)), ..SynthSpec::healthy(FS, 1797.0, m, 1) };
    let x = synthesize(&spec, 0, FS as usize);
    let budget = if bench { Duration::from_secs(5) } else { Duration::from_millis(200) };
    // The default (the envelope band chosen per window by kurtogram), and the fixed band that
    // numpy/scipy's script also uses, in the same run.
    let mut timed = Vec::new();
    for (name, band) in
        [("stator (kurtogram band, the default)", None), ("stator (fixed band)", Some((1000.0, 10_000.0)))]
    {
        let mut analyzer = Analyzer::new(WaveformSpec {
            operators: Operator::all().collect(),
            settings: AnalysisSettings {
                bearing: Some("6205".into()),
                rpm: Some(1797.0),
                envelope_band: band,
                ..Default::default()
            },
            speed: None,
        });
        let settings = MachineSettings::default();
        let run = |analyzer: &mut Analyzer| {
            let mut pane = WavePane::default();
            pane.add(&x, 0, FS, 0, 1000);
            analyzer.analyze(&mut pane, &settings)
        };
        let verdict = run(&mut analyzer).text("bearing.verdict").map(str::to_owned);
        assert_eq!(verdict.as_deref(), Some("outer_race"), "{name}");
        let start = Instant::now();
        let mut n = 0u32;
        while start.elapsed() < budget {
            std::hint::black_box(run(&mut analyzer));
            n += 1;
        }
        let per_window = start.elapsed() / n;
        eprintln!("{name}: {per_window:?} per machine-second of 25.6 kHz data");
        timed.push((name, per_window));
    }
    let mut table = String::from("| | per machine-second | machines at 25.6 kHz per core |\n|---|---:|---:|\n");
    for (name, t) in &timed {
        table += &format!("| {name} | {:.3} ms | **{:.0}** |\n", t.as_secs_f64() * 1e3, 1.0 / t.as_secs_f64());
    }
    table += &compare_python(&x, timed[0].1, bench);
    report::publish("analysis", &table);
}

/// The numpy/scipy rows of the table (or why there are none).
fn compare_python(x: &[f32], ours: Duration, bench: bool) -> String {
    let python = [".tools/bench/bin/python3", "python3"]
        .into_iter()
        .map(|p| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(p))
        .find(|p| p.exists())
        .map_or_else(|| "python3".into(), |p| p.display().to_string());
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("x.f32");
    std::fs::write(&file, x.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).expect("write samples");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/analysis.py");
    let out = std::process::Command::new(&python).arg(script).arg(&file).arg(if bench { "5" } else { "0.2" }).output();
    match out {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout);
            let secs: f64 = text.trim().parse().unwrap_or(f64::NAN);
            format!(
                "| numpy/scipy (`benches/analysis.py`) | {:.3} ms | {:.0} |\n| ratio | | stator **{:.1}x** faster |\n",
                secs * 1e3,
                1.0 / secs,
                secs / ours.as_secs_f64()
            )
        }
        Ok(o) => format!(
            "\nnumpy/scipy comparison skipped: {}\n",
            String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or("")
        ),
        Err(e) => format!("\nnumpy/scipy comparison skipped: {e}\n"),
    }
}
