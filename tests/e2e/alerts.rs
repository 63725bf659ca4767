//! Alerts: the right machines, the right values, hysteresis, debounce and clearing.

use std::collections::{BTreeMap, BTreeSet};

use rand::{Rng, SeedableRng, rngs::StdRng};
use stator_engine::worker::RunMode;

use crate::harness::*;

/// 6 machines for 120 s at 1 Hz; cnc-002 ramps to 6 mm/s, cnc-005 jumps to 5 mm/s for a
/// while and drops back; the others stay healthy.
fn plant_readings() -> Vec<Reading> {
    let mut rng = StdRng::seed_from_u64(11);
    let mut out = Vec::new();
    for s in 0..120 {
        for m in 1..=6 {
            let machine = format!("cnc-00{m}");
            let base = 1.5 + rng.random_range(-0.3..0.3);
            let value = match m {
                2 => base + 4.5 * s as f64 / 120.0,
                5 if (30..70).contains(&s) => 5.0 + rng.random_range(-0.2..0.2),
                _ => base,
            };
            out.push(Reading::rms("munich", &machine, T0 + s * 1000, value));
        }
    }
    out
}

#[tokio::test]
async fn alerts_go_to_exactly_the_machines_over_threshold_with_the_true_window_rms() {
    let server = TestServer::with_streams().await;
    let js = server.js().await;
    let readings = plant_readings();
    let seqs = publish(&js, &readings).await;
    let p = pipeline(&rms_pipeline("2s", 1, "1h"), &server.url());
    RunningWorker::start(&p, &server.url(), RunMode::Drain).await.finish().await;

    let alerts = alerts(&js).await;
    let machines: BTreeSet<&str> = alerts.iter().map(|(_, _, a)| a.key["machine"].as_str()).collect();
    assert_eq!(machines, BTreeSet::from(["cnc-002", "cnc-005"]));
    for (subject, _, a) in &alerts {
        let machine = &a.key["machine"];
        assert_eq!(subject, &format!("acme.munich.alert.vibration.{machine}"));
        let start =
            time::OffsetDateTime::parse(&a.window_start, &time::format_description::well_known::Rfc3339).unwrap();
        let start_ms = (start.unix_timestamp_nanos() / 1_000_000) as i64;
        let in_window: Vec<(u64, f64)> = readings
            .iter()
            .zip(&seqs)
            .filter(|(r, _)| {
                r.subject.contains(&format!(".{machine}.")) && r.t_ms >= start_ms && r.t_ms < start_ms + 10_000
            })
            .map(|(r, s)| (*s, r.value))
            .collect();
        let values: Vec<f64> = in_window.iter().map(|(_, v)| *v).collect();
        assert_eq!(a.readings, 10);
        assert!((a.value - rms(&values)).abs() < 1e-9, "{machine} {}: {} vs {}", a.window_start, a.value, rms(&values));
        assert_eq!((a.first_seq, a.last_seq), (in_window[0].0, in_window[9].0));
    }
    let states: Vec<(&str, &str)> =
        alerts.iter().map(|(_, _, a)| (a.key["machine"].as_str(), a.state.as_str())).collect();
    let of = |m: &str| states.iter().filter(|(x, _)| *x == m).map(|(_, s)| *s).collect::<Vec<_>>();
    assert_eq!(of("cnc-002"), ["warning", "critical"]);
    assert_eq!(of("cnc-005"), ["critical", "cleared"]);
    assert_eq!(consumer_backlog(&js, "test-rms").await, (0, 0), "everything acked");
}

/// Windows of constant value `v` (10 readings each) for one machine.
fn windows_of(values: &[f64]) -> Vec<Reading> {
    values
        .iter()
        .enumerate()
        .flat_map(|(w, v)| (0..10).map(move |i| Reading::rms("berlin", "press-7", T0 + (w as i64 * 10 + i) * 1000, *v)))
        .collect()
}

#[tokio::test]
async fn hysteresis_and_debounce_shape_the_transitions() {
    let server = TestServer::with_streams().await;
    let js = server.js().await;
    //            w0   w1   w2   w3   w4   w5   w6   w7   w8   w9   w10
    let values = [1.0, 3.0, 1.0, 3.0, 3.0, 2.6, 2.6, 5.0, 5.0, 2.0, 2.0];
    publish(&js, &windows_of(&values)).await;
    let p = pipeline(&rms_pipeline("0s", 2, "1h"), &server.url());
    RunningWorker::start(&p, &server.url(), RunMode::Drain).await.finish().await;

    let got: Vec<(String, String, f64)> =
        alerts(&js).await.into_iter().map(|(_, _, a)| (a.state, a.window_end, a.threshold)).collect();
    let end = |w: i64| stator::rfc3339_ms(T0 + (w + 1) * 10_000);
    assert_eq!(
        got,
        vec![
            // w1 alone is not enough (debounce 2); w3+w4 raise; 2.6 holds (hysteresis band);
            ("warning".to_owned(), end(4), 2.8),
            ("critical".to_owned(), end(8), 4.5),
            // below clear_below for two windows
            ("cleared".to_owned(), end(10), 2.5),
        ]
    );
}

#[tokio::test]
async fn every_alert_has_a_deterministic_message_id() {
    let server = TestServer::with_streams().await;
    let js = server.js().await;
    publish(&js, &windows_of(&[5.0, 5.0, 1.0])).await;
    let p = pipeline(&rms_pipeline("0s", 1, "1h"), &server.url());
    RunningWorker::start(&p, &server.url(), RunMode::Drain).await.finish().await;
    let ids: BTreeMap<String, String> = alerts(&js).await.into_iter().map(|(_, id, a)| (a.state, id)).collect();
    assert_eq!(ids["critical"], format!("test-rms.vibration-rms.berlin.press-7.{}.critical", T0 + 10_000));
    assert_eq!(ids["cleared"], format!("test-rms.vibration-rms.berlin.press-7.{}.cleared", T0 + 30_000));
}

/// Outputs are published without waiting for each PubAck, but a subject's messages land in
/// the order given, and a repeat (same `Nats-Msg-Id`) is reported as a duplicate.
#[tokio::test]
async fn outputs_published_together_keep_each_subjects_order_and_report_repeats() {
    use stator_engine::sink::{Outbound, Publisher};
    let server = TestServer::with_streams().await;
    let js = server.js().await;
    let out = |machine: &str, n: u32| Outbound {
        subject: format!("acme.munich.alert.vibration.{machine}"),
        msg_id: format!("{machine}-{n}"),
        headers: async_nats::HeaderMap::new(),
        payload: bytes::Bytes::from(format!("{machine}-{n}")),
        event_ms: 0,
        made: None,
    };
    let outs: Vec<Outbound> =
        (0..5).flat_map(|n| [out("cnc-001", n), out("cnc-002", n), out("cnc-001", n + 10)]).collect();
    let (_stop, stop) = tokio::sync::watch::channel(false);
    let mut publisher = Publisher::new(js.clone());
    assert_eq!(publisher.publish_all(&outs, &stop).await.expect("published"), vec![false; outs.len()]);
    let stored = stator::plant::read_stream(&js, "ALERTS", None).await.expect("ALERTS");
    for machine in ["cnc-001", "cnc-002"] {
        let got: Vec<String> = stored
            .iter()
            .filter(|m| m.subject.ends_with(machine))
            .map(|m| String::from_utf8(m.payload.to_vec()).expect("utf-8"))
            .collect();
        let want: Vec<String> =
            outs.iter().filter(|o| o.subject.ends_with(machine)).map(|o| o.msg_id.clone()).collect();
        assert_eq!(got, want, "{machine} in order");
    }
    let again = publisher.publish_all(&outs[..4], &stop).await.expect("published");
    assert_eq!(again, vec![true; 4], "repeats are reported as duplicates");
}
