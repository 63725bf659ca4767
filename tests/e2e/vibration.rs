//! Waveforms through the whole pipeline: real CWRU bearing recordings published to
//! JetStream, bad waveforms dead-lettered, and live machine config from NATS KV.

use std::collections::BTreeMap;
use std::path::Path;
use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream;
use stator_engine::waveform::decode::encode_binary;
use stator_engine::worker::{RunMode, Stats};

use crate::harness::*;

const WAVEFORM_PIPELINE: &str = r#"
[pipeline]
name = "bearings"

[source]
url = "${NATS_URL}"
stream = "TELEMETRY"
durable = "bearings"
create_consumer = true
filter_subjects = ["acme.*.*.*.*.*.vibration.raw"]
format = "waveform"
ack_wait = "1m"

[[window]]
name = "vibration_2s"
key = ["site", "machine", "sensor"]
tumbling = "2s"
allowed_lateness = "1s"
idle_timeout = "1h"
operators = ["rms", "kurtosis", "crest_factor", "velocity_rms", "iso_zone", "envelope", "bearing_faults"]
bearing = "6205"
publish = "acme.{site}.features.{machine}.{sensor}"

[[alert]]
name = "bearing-fault"
window = "vibration_2s"
metric = "bearing.fault_score_db"
warning = 15.0
critical = 30.0
clear_below = 10.0
subject = "acme.{site}.alert.bearing.{machine}"
"#;

fn cwru_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/cwru")
}

/// Publishes a recording as 0.5 s binary waveform messages; returns how many.
async fn publish_recording(js: &jetstream::Context, machine: &str, samples: &[f32], fs: f64, rpm: f64) -> usize {
    let chunk = (fs / 2.0) as usize;
    let subject = format!("acme.cwru.rig.de.{machine}.drive-end.vibration.raw");
    let mut acks = Vec::new();
    for (i, block) in samples.chunks(chunk).enumerate() {
        let start_us = T0 * 1000 + (i as f64 * chunk as f64 / fs * 1e6) as i64;
        let (headers, payload) = encode_binary(block, fs, start_us, Some(rpm));
        acks.push(js.publish_with_headers(subject.clone(), headers, payload).await.expect("publish"));
    }
    let n = acks.len();
    for a in acks {
        a.await.expect("puback");
    }
    n
}

#[tokio::test]
async fn cwru_recordings_get_their_verdicts_through_the_full_pipeline() {
    let server = TestServer::with_streams().await;
    let js = server.js().await;
    let mut labels = BTreeMap::new();
    for entry in std::fs::read_dir(cwru_dir()).expect("CWRU data in ../shared/data/cwru") {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "f32") {
            continue;
        }
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path.with_extension("json")).unwrap()).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let samples: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        let machine = name.replace('_', "-");
        let fs = meta["sample_rate"].as_f64().unwrap();
        publish_recording(&js, &machine, &samples, fs, meta["rpm"].as_f64().unwrap()).await;
        labels.insert(machine, meta["fault"].as_str().unwrap().to_owned());
    }
    assert_eq!(labels.len(), 10);
    let p = pipeline(WAVEFORM_PIPELINE, &server.url());
    RunningWorker::start(&p, &server.url(), RunMode::Drain).await.finish().await;

    // Verdicts per recording, from the published features of its complete 2 s windows.
    let mut verdicts: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut scores: BTreeMap<String, Vec<(f64, f64, f64)>> = BTreeMap::new();
    for v in features(&js).await {
        let f = &v["features"];
        if f["samples"].as_f64().unwrap() < 23_000.0 {
            continue; // the partial last window of a recording
        }
        let machine = v["key"]["machine"].as_str().unwrap().to_owned();
        verdicts.entry(machine.clone()).or_default().push(f["bearing.verdict"].as_str().unwrap().to_owned());
        let db = |k: &str| f[k].as_f64().unwrap();
        scores.entry(machine).or_default().push((db("bearing.bpfo_db"), db("bearing.bpfi_db"), db("bearing.bsf_db")));
        assert_eq!(f["iso_zone"].as_str(), Some("A"), "these faults are found by envelope, not level");
    }
    for (machine, label) in &labels {
        let v = &verdicts[machine];
        let s = &scores[machine];
        let mean = |i: usize| s.iter().map(|t| [t.0, t.1, t.2][i]).sum::<f64>() / s.len() as f64;
        println!("| {machine} | {label} | {} | {:.1} | {:.1} | {:.1} |", v.join(" "), mean(0), mean(1), mean(2));
    }
    let required = [
        ("de12k-1797-ir007", "inner_race"),
        ("de12k-1797-ir021", "inner_race"),
        ("de12k-1797-or007at6", "outer_race"),
        ("de12k-1797-or021at6", "outer_race"),
    ];
    for (machine, verdict) in required {
        assert!(verdicts[machine].iter().all(|v| v == verdict), "{machine}: {:?}", verdicts[machine]);
    }
    assert!(
        verdicts["de12k-1797-normal-from48k"].iter().all(|v| v == "normal"),
        "{:?}",
        verdicts["de12k-1797-normal-from48k"]
    );
    // The fault rule raised alerts for the faulty bearings, never the healthy one.
    let alerted: Vec<String> = alerts(&js).await.into_iter().map(|(_, _, a)| a.key["machine"].clone()).collect();
    for (machine, _) in required {
        assert!(alerted.iter().any(|m| m == machine), "{machine} not alerted: {alerted:?}");
    }
    assert!(!alerted.iter().any(|m| m.contains("normal")), "{alerted:?}");
}

#[tokio::test]
async fn bad_waveforms_are_dead_lettered_with_their_reason() {
    let server = TestServer::with_streams().await;
    let js = server.js().await;
    let p = pipeline(WAVEFORM_PIPELINE, &server.url());
    let worker = RunningWorker::start(&p, &server.url(), RunMode::Follow).await;
    let subject = "acme.munich.hall-a.line-1.pump-3.drive-end.vibration.raw";
    let (headers, payload) = encode_binary(&[0.1; 64], 12_000.0, T0 * 1000, Some(1800.0));
    let mut no_rate = async_nats::HeaderMap::new();
    no_rate.insert("Start-Time", headers.get("Start-Time").unwrap().as_str());
    let mut absurd = headers.clone();
    absurd.insert("Sample-Rate", "5");
    let (nan_headers, nan) = encode_binary(&[0.1, f32::NAN], 12_000.0, T0 * 1000, None);
    let cases = [
        (headers.clone(), payload.slice(..7), "odd_byte_count"),
        (no_rate, payload.clone(), "missing_header"),
        (absurd, payload.clone(), "bad_sample_rate"),
        (nan_headers, nan, "non_finite_sample"),
    ];
    for (h, p, _) in &cases {
        js.publish_with_headers(subject, h.clone(), p.clone()).await.unwrap().await.unwrap();
    }
    js.publish(subject, r#"{"sample_rate": 12000, "samples": "lots"}"#.into()).await.unwrap().await.unwrap();
    wait_until(Duration::from_secs(20), "five dead letters", || async {
        stator::plant::read_stream(&js, "STATOR_DEADLETTER", None).await.unwrap().len() == 5
    })
    .await;
    worker.stop().await;
    let reasons: Vec<String> =
        dead_letters(&js).await.iter().map(|m| m.headers.get("Stator-Reason").unwrap().to_string()).collect();
    let mut expected: Vec<String> = cases.iter().map(|(_, _, r)| (*r).to_owned()).collect();
    expected.push("invalid_json".into());
    assert_eq!(reasons, expected);
}

#[tokio::test]
async fn a_kv_change_to_a_machine_threshold_changes_the_next_alert_decision_without_restart() {
    let server = TestServer::with_streams().await;
    let js = server.js().await;
    let kv = js.get_key_value("MACHINE_CONFIG").await.unwrap();
    kv.put("cnc-002", r#"{"machine_id":"cnc-002"}"#.into()).await.unwrap();
    let loaded =
        kv.put("cnc-001", r#"{"machine_id":"cnc-001","vibration":{"bearing_type":"6205"}}"#.into()).await.unwrap();
    let text = rms_pipeline("0s", 1, "1h") + "\n[machine_config]\nbucket = \"MACHINE_CONFIG\"\n";
    let p = pipeline(&text, &server.url());
    let worker = RunningWorker::start(&p, &server.url(), RunMode::Follow).await;
    let stats = worker.stats.clone();
    wait_until(Duration::from_secs(20), "the loaded config's revision", || async {
        stats.config_revision.get() == i64::try_from(loaded).unwrap()
    })
    .await;
    // Windows 0..2 at 3.0 mm/s: above warning (2.8) only. One reading in window 3 closes window 2.
    let window = |w: i64, v: f64| (0..10).map(move |i| Reading::rms("munich", "cnc-001", T0 + (w * 10 + i) * 1000, v));
    let first: Vec<Reading> = (0..3).flat_map(|w| window(w, 3.0)).chain(window(3, 3.0).take(1)).collect();
    publish(&js, &first).await;
    wait_until(Duration::from_secs(20), "three windows", || async { Stats::get(&stats.windows_closed) >= 3 }).await;
    wait_until(Duration::from_secs(20), "the warning", || async { alerts(&js).await.len() == 1 }).await;
    assert_eq!(alerts(&js).await[0].2.state, "warning");

    // The machine's limit drops to 2.0 mm/s: the next window is critical.
    let changed =
        kv.put("cnc-001", r#"{"machine_id":"cnc-001","vibration":{"alert_threshold_rms":2.0}}"#.into()).await.unwrap();
    wait_until(Duration::from_secs(20), "the config change", || async { Stats::get(&stats.config_updates) >= 1 }).await;
    assert_eq!(
        stats.config_revision.get(),
        i64::try_from(changed).unwrap(),
        "the revision in force follows the change"
    );
    let second: Vec<Reading> = window(3, 3.0).skip(1).chain(window(4, 3.0).take(1)).collect();
    publish(&js, &second).await;
    wait_until(Duration::from_secs(20), "the critical alert", || async { alerts(&js).await.len() == 2 }).await;
    let critical = &alerts(&js).await[1].2;
    assert_eq!((critical.state.as_str(), critical.threshold), ("critical", 2.0));
    assert_eq!(critical.window_end, stator::rfc3339_ms(T0 + 40_000), "the first window closed after the change");

    // An invalid document is reported and the previous settings stay in force.
    kv.put("cnc-001", "{not json".into()).await.unwrap();
    wait_until(Duration::from_secs(20), "the invalid config", || async { Stats::get(&stats.config_errors) >= 1 }).await;
    publish(&js, &window(4, 3.0).skip(1).chain(window(5, 3.0).take(1)).collect::<Vec<_>>()).await;
    wait_until(Duration::from_secs(20), "window 4", || async { Stats::get(&stats.windows_closed) >= 5 }).await;
    assert_eq!(alerts(&js).await.len(), 2, "still critical at 2.0: no new transition");
    worker.stop().await;
}

#[tokio::test]
async fn simulated_bearing_faults_are_found_by_the_shipped_bearing_pipeline() {
    use stator::simulate::{self, PlantSpec, SimFault, WaveformSim};
    let server = TestServer::with_streams().await;
    let js = server.js().await;
    let plant = PlantSpec {
        org: "acme".into(),
        sites: vec!["munich".into()],
        areas: 1,
        lines: 1,
        machines_per_line: 6,
        drift: vec![],
        drift_to: 0.0,
        interval: Duration::from_secs(1),
        start_ms: T0,
        readings: 0,
        realtime: false,
        seed: 9,
    };
    let sim = WaveformSim {
        sample_rate: 25_600.0,
        block: 12_800,
        blocks: 8,
        bearing: "6205".into(),
        rpm: 1797.0,
        faults: ["cnc-002:outer_race:0.5", "cnc-003:inner_race:0.5", "cnc-005:ball:0.5", "cnc-006:cage:0.5"]
            .map(|f| f.parse::<SimFault>().unwrap())
            .to_vec(),
    };
    simulate::publish_waveforms(&js, &plant, &sim, |_| {}).await.unwrap();
    let (path, text) = stator::SHIPPED_PIPELINES[1];
    assert!(path.ends_with("bearing-health.toml"));
    let archive = tempfile::tempdir().unwrap();
    let p = pipeline_with(text, &[("NATS_URL", &server.url()), ("STATOR_ARCHIVE", archive.path().to_str().unwrap())]);
    RunningWorker::start(&p, &server.url(), RunMode::Drain).await.finish().await;
    archived_waveforms_and_spectra_match_what_was_published(&js, archive.path()).await;
    let mut verdicts: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for v in features(&js).await {
        let machine = v["key"]["machine"].as_str().unwrap().to_owned();
        verdicts.entry(machine).or_default().push(v["features"]["bearing.verdict"].as_str().unwrap().to_owned());
        assert_eq!(v["spectra"]["spectrum"]["values"].as_array().unwrap().len(), 2049, "4096-point spectrum");
    }
    let all = |m: &str, want: &str| verdicts[m].iter().all(|v| v == want);
    assert!(all("cnc-001", "normal") && all("cnc-004", "normal"), "{verdicts:?}");
    assert!(all("cnc-002", "outer_race") && all("cnc-003", "inner_race"), "{verdicts:?}");
    assert!(all("cnc-005", "ball") && all("cnc-006", "cage"), "{verdicts:?}");
    let alerted = alerts(&js).await;
    let subjects: std::collections::BTreeSet<String> = alerted.iter().map(|(s, _, _)| s.clone()).collect();
    let machines = ["cnc-002", "cnc-003", "cnc-005", "cnc-006"];
    assert_eq!(subjects, machines.iter().map(|m| format!("acme.munich.alert.bearing.{m}")).collect());

    // Each bearing alert says what is wrong, at which frequency and speed, without the archive.
    let m = stator_operators::bearing::catalog("6205").unwrap().multipliers();
    let shaft_hz = 1797.0 / 60.0;
    let bearing: Vec<&Alert> = alerted.iter().map(|(_, _, a)| a).filter(|a| a.rule == "bearing-fault").collect();
    assert_eq!(bearing.len(), 4, "one raise per faulty machine: {alerted:?}");
    for a in bearing {
        let (kind, orders) = match a.key["machine"].as_str() {
            "cnc-002" => ("outer_race", m.bpfo),
            "cnc-003" => ("inner_race", m.bpfi),
            "cnc-005" => ("ball", 2.0 * m.bsf),
            "cnc-006" => ("cage", m.ftf),
            other => panic!("{other} alerted"),
        };
        assert_eq!(a.kind, kind, "{a:?}");
        let e = &a.evidence;
        let number = |name: &str, unit: &str| {
            assert_eq!(e[name]["unit"], unit, "{name}: {e:?}");
            e[name]["value"].as_f64().unwrap()
        };
        let text = |name: &str| e[name]["text"].as_str().unwrap();
        assert_eq!((text("bearing.verdict"), text("bearing.evidence_kind")), (kind, kind));
        assert!((number("bearing.defect_orders", "orders") / orders - 1.0).abs() < 1e-9, "{e:?}");
        assert!((number("bearing.defect_hz", "Hz") / (orders * shaft_hz) - 1.0).abs() < 1e-9, "{e:?}");
        assert_eq!((number("rpm", "rpm"), text("rpm_source")), (1797.0, "message"));
        assert!(number("bearing.fundamental_db", "dB") >= 10.0, "{e:?}");
        assert!(number("bearing.harmonics_present", "lines") >= 2.0, "{e:?}");
        let modulated = kind == "inner_race" || kind == "ball";
        assert_eq!(
            e.contains_key("bearing.sideband_db"),
            modulated,
            "shaft sidebands for an inner race, cage for a ball"
        );
        assert_eq!((text("bearing.type"), text("iso_zone")), ("6205", "A"));
        assert_eq!(number("iso_zone", "zone 1-4"), 1.0);
        assert_eq!(e["velocity_rms"]["unit"], "mm/s");
    }
}

/// The shipped bearing pipeline's archive: every block's samples as published, and the
/// envelope spectrum of the outer-race machine peaking at its BPFO.
async fn archived_waveforms_and_spectra_match_what_was_published(js: &async_nats::jetstream::Context, dir: &Path) {
    use datafusion::arrow::array::{AsArray, ListArray};
    use datafusion::arrow::datatypes::{Float32Type, Float64Type, UInt64Type};
    let loc = stator_engine::archive::ArchiveLocation::open(dir.to_str().expect("utf-8"), &[]).expect("archive");
    let ctx = stator_engine::query::session(&loc).await.expect("session");
    let sql = |q: &'static str| {
        let ctx = ctx.clone();
        async move { stator_engine::query::run(&ctx, q).await.expect("query") }
    };
    let published = stator::plant::read_stream(js, "TELEMETRY", None).await.expect("stream");
    let rows = sql("SELECT _seq, samples FROM waveforms ORDER BY _seq").await;
    let mut n = 0;
    for b in &rows {
        let seqs = b.column(0).as_primitive::<UInt64Type>();
        let samples: &ListArray = b.column(1).as_list();
        for i in 0..b.num_rows() {
            let msg = published.iter().find(|m| m.sequence == seqs.value(i)).expect("published");
            let want: Vec<f32> =
                msg.payload.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            let got = samples.value(i);
            assert_eq!(got.as_primitive::<Float32Type>().values().to_vec(), want);
            n += 1;
        }
    }
    assert_eq!(n, published.len(), "every block archived once");
    // The spectrum of one machine at one time: the envelope spectrum's peak is the BPFO.
    let peaks = sql("SELECT step_hz * (array_position(\"values\", array_max(\"values\")) - 1) AS peak_hz \
         FROM features WHERE machine = 'cnc-002' AND feature = 'envelope' ORDER BY window_start")
    .await;
    let bpfo = 3.5848 * 1797.0 / 60.0;
    let peaks: Vec<f64> =
        peaks.iter().flat_map(|b| b.column(0).as_primitive::<Float64Type>().values().to_vec()).collect();
    assert!(!peaks.is_empty());
    for p in peaks {
        assert!((p - bpfo).abs() < 2.0, "envelope peak {p} Hz, BPFO {bpfo} Hz");
    }
}
