//! Shaft speed from a tachometer subject (`rpm_subject`): each waveform window takes its
//! machine's speed by event time, follows a speed change between windows, uses a recent reading
//! within `rpm_max_age` when the tachometer pauses, and says `unknown` with the reason after
//! that; a reading out of range is dead-lettered; every reading is acknowledged in the end. The
//! envelope covers `revolutions` shaft turns whatever the speed.

use std::collections::BTreeMap;

use stator_engine::waveform::decode::encode_binary;
use stator_engine::worker::RunMode;
use stator_operators::faults::FaultKind;
use stator_operators::synth::{SynthSpec, synthesize};

use crate::harness::*;

const SPEED_PIPELINE: &str = r#"
[pipeline]
name = "speed"

[source]
url = "${NATS_URL}"
stream = "TELEMETRY"
durable = "speed"
create_consumer = true
filter_subjects = ["acme.*.*.*.*.*.vibration.raw", "acme.*.*.*.*.*.speed.rpm"]
format = "waveform"
ack_wait = "1m"

[[window]]
name = "bearing_2s"
key = ["site", "machine", "sensor"]
tumbling = "2s"
allowed_lateness = "1s"
idle_timeout = "1h"
operators = ["envelope", "bearing_faults"]
revolutions = 40      # the envelope over 40 shaft revolutions: 1.34 s at 1797 rpm, 2 s at 1200
bearing = "6205"
rpm = 3000.0          # a wrong default: the tachometer must win
rpm_subject = "acme.*.*.*.*.*.speed.rpm"
rpm_max_age = "3s"
publish = "acme.{site}.features.{machine}.{sensor}"
"#;

#[tokio::test]
async fn windows_take_the_tachometer_speed_of_their_time_and_say_when_it_is_stale() {
    let server = TestServer::with_streams().await;
    let js = server.js().await;
    // The plant's stream captures speed readings too.
    let mut config = js.get_stream("TELEMETRY").await.unwrap().cached_info().config.clone();
    config.subjects.push("acme.*.*.*.*.*.speed.>".into());
    js.update_stream(&config).await.unwrap();
    let fs = 25_600.0;
    let m = stator_operators::bearing::catalog("6205").unwrap().multipliers();
    let spec = |rpm: f64| SynthSpec { fault: Some((FaultKind::OuterRace, 0.3)), ..SynthSpec::healthy(fs, rpm, m, 5) };
    // 4 s at 1797 rpm, then 8 s at 1200 rpm, in 0.5 s blocks without a speed header.
    let second = fs as usize;
    let mut samples = synthesize(&spec(1797.0), 0, 4 * second);
    samples.extend(synthesize(&spec(1200.0), 4 * second as u64, 8 * second));
    // In time order: each 0.5 s block, then the tachometer's reading of that half second (one a
    // second, at x.5 s, for 6 s, then silent), and once a reading out of range.
    let block = second / 2;
    let tach = "acme.munich.hall-a.line-1.cnc-001.shaft.speed.rpm";
    let mut acks = Vec::new();
    for (i, b) in samples.chunks(block).enumerate() {
        let (headers, payload) = encode_binary(b, fs, T0 * 1000 + i as i64 * 500_000, None);
        let subject = "acme.munich.hall-a.line-1.cnc-001.drive-end.vibration.raw";
        acks.push(js.publish_with_headers(subject, headers, payload).await.unwrap());
        let t_ms = i as i64 * 500;
        let reading = match i {
            1 | 3 | 5 | 7 | 9 | 11 => Some(if t_ms < 4000 { 1797.0 } else { 1200.0 }),
            4 => Some(-5.0),
            _ => None,
        };
        if let Some(rpm) = reading {
            let t = stator::rfc3339_ms(T0 + t_ms);
            acks.push(js.publish(tach, format!(r#"{{"value": {rpm}, "timestamp": "{t}"}}"#).into()).await.unwrap());
        }
    }
    for a in acks {
        a.await.unwrap();
    }
    let p = pipeline(SPEED_PIPELINE, &server.url());
    RunningWorker::start(&p, &server.url(), RunMode::Drain).await.finish().await;

    let mut windows: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for v in features(&js).await {
        windows.insert(v["window_start"].as_str().unwrap().to_owned(), v["features"].clone());
    }
    let at = |k: i64| &windows[&stator::rfc3339_ms(T0 + k * 2000)];
    for (k, rpm) in [(0, 1797.0), (1, 1797.0), (2, 1200.0), (3, 1200.0), (4, 1200.0)] {
        let f = at(k);
        assert_eq!((f["rpm"].as_f64(), f["rpm_source"].as_str()), (Some(rpm), Some("tachometer")), "window {k}: {f}");
        assert_eq!(f["bearing.verdict"], "outer_race", "window {k}: the defect frequency follows the speed: {f}");
        assert!((f["bearing.defect_hz"].as_f64().unwrap() - m.bpfo * rpm / 60.0).abs() < 1e-9, "window {k}: {f}");
        let revolutions = f["envelope.revolutions"].as_f64().unwrap();
        assert!((revolutions / 40.0 - 1.0).abs() < 0.03, "window {k}: {revolutions} revolutions");
    }
    // Window 5 starts at 10 s; the last reading (5.5 s) is older than rpm_max_age (3 s).
    let stale = at(5);
    assert_eq!((stale["bearing.verdict"].as_str(), stale["rpm_source"].as_str()), (Some("unknown"), Some("unknown")));
    let note = stale["bearing.note"].as_str().unwrap();
    assert!(
        note.contains("no speed reading on `acme.*.*.*.*.*.speed.rpm`") && note.contains("rpm_max_age 3s"),
        "{note}"
    );

    let dead = dead_letters(&js).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].headers.get("Stator-Reason").unwrap().as_str(), "bad_rpm");
    assert_eq!(consumer_backlog(&js, "speed").await, (0, 0), "every reading and block acknowledged");
}
