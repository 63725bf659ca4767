//! Alerting on change through JetStream: a slowly developing fault is alerted by its trend and
//! by its ratio to the machine's learned baseline well before the absolute limit; the baseline
//! survives a restart (it lives in the state bucket) and is learned anew after a
//! `baseline_reset` in the machine's KV document.

use stator_engine::worker::RunMode;

use crate::harness::*;

fn trend_pipeline() -> String {
    rms_pipeline("0s", 1, "1h")
        .replace("critical = 4.5\nclear_below = 2.5\n", "clear_below = 4.0\n")
        .replace("warning = 2.8", "warning = 4.5")
        + r#"
[[alert]]
name = "rms-over-baseline"
window = "rms_10s"
metric = "rms"
compare = "ratio"
baseline_windows = 6
warning = 2.0
clear_below = 1.5
subject = "acme.{site}.alert.baseline.{machine}"

[[alert]]
name = "rms-rising"
window = "rms_10s"
metric = "rms"
compare = "rate"
trend_windows = 4
warning = 36.0
subject = "acme.{site}.alert.trend.{machine}"

[machine_config]
bucket = "MACHINE_CONFIG"
"#
}

/// cnc-001's RMS in window `k` (10 s each from T0): 1.0 for a minute, then +0.15 per window
/// (54 per hour) up to window 34; after a repair at window 40, 0.8 and then 0.9. cnc-002 stays
/// at 1.0.
fn value(k: i64) -> f64 {
    match k {
        0..=5 => 1.0,
        6..=34 => 1.0 + 0.15 * (k - 5) as f64,
        35..=39 => 5.35,
        40..=45 => 0.8,
        _ => 0.9,
    }
}

fn readings(windows: std::ops::Range<i64>) -> Vec<Reading> {
    windows
        .flat_map(|k| {
            (0..10).flat_map(move |i| {
                let t = T0 + (k * 10 + i) * 1000;
                [Reading::rms("munich", "cnc-001", t, value(k)), Reading::rms("munich", "cnc-002", t, 1.0)]
            })
        })
        .collect()
}

async fn run(server: &TestServer, windows: std::ops::Range<i64>) {
    let js = server.js().await;
    publish(&js, &readings(windows)).await;
    let p = pipeline(&trend_pipeline(), &server.url());
    RunningWorker::start(&p, &server.url(), RunMode::Drain).await.finish().await;
}

#[tokio::test]
async fn a_slow_fault_is_alerted_by_trend_and_baseline_before_the_limit_and_a_reset_relearns() {
    let server = TestServer::with_streams().await;
    let js = server.js().await;
    // Two runs of the worker: the baseline learned by the first is the second's.
    run(&server, 0..10).await;
    run(&server, 10..40).await;
    let raised = |rule: &str, all: &[(String, String, Alert)]| -> Vec<Alert> {
        all.iter().filter(|(_, _, a)| a.rule == rule && a.state != "cleared").map(|(_, _, a)| a.clone()).collect()
    };
    let all = alerts(&js).await;
    assert!(all.iter().all(|(_, _, a)| a.key["machine"] == "cnc-001"), "the steady machine is never alerted: {all:#?}");
    let end = |a: &Alert| a.window_end.clone();
    let (trend, baseline, limit) =
        (raised("rms-rising", &all), raised("rms-over-baseline", &all), raised("vibration-rms", &all));
    assert_eq!((trend.len(), baseline.len(), limit.len()), (1, 1, 1), "{all:#?}");
    // Holt's slope reaches 36/h on the fourth window of the 54/h ramp; the ratio reaches 2 at
    // 2.05 (window 12); the absolute limit 4.5 at 4.6 (window 29).
    assert_eq!(end(&trend[0]), stator::rfc3339_ms(T0 + 100_000), "{:?}", trend[0]);
    assert_eq!(end(&baseline[0]), stator::rfc3339_ms(T0 + 130_000), "{:?}", baseline[0]);
    assert_eq!(end(&limit[0]), stator::rfc3339_ms(T0 + 300_000), "{:?}", limit[0]);
    assert!(trend[0].value >= 36.0 && trend[0].change.as_ref().unwrap()["compare"] == "rate");

    // The ratio alert was raised by the second run with the first run's baseline.
    let b = baseline[0].change.clone().expect("change");
    assert!(
        (baseline[0].value - 2.05).abs() < 1e-9 && (b["feature_value"].as_f64().unwrap() - 2.05).abs() < 1e-9,
        "{b}"
    );
    assert_eq!(
        (b["compare"].as_str(), b["baseline"].as_f64(), b["baseline_windows"].as_u64()),
        (Some("ratio"), Some(1.0), Some(6))
    );
    assert_eq!(
        (b["baseline_start"].as_str().unwrap(), b["baseline_end"].as_str().unwrap()),
        (stator::rfc3339_ms(T0).as_str(), stator::rfc3339_ms(T0 + 60_000).as_str())
    );

    // The bearing is replaced at window 40: the machine's document says so, and its new normal
    // (0.8) is learned over windows 40 to 45. Compared with it, 0.9 is x1.125: the alert clears
    // at window 46, not at window 40 (as the old baseline of 1.0 would have it).
    let kv = js.get_key_value("MACHINE_CONFIG").await.unwrap();
    let reset = stator::rfc3339_ms(T0 + 400_000);
    kv.put("cnc-001", format!(r#"{{"machine_id":"cnc-001","baseline_reset":"{reset}"}}"#).into()).await.unwrap();
    run(&server, 40..50).await;
    let all = alerts(&js).await;
    let cleared: Vec<&Alert> =
        all.iter().map(|(_, _, a)| a).filter(|a| a.rule == "rms-over-baseline" && a.state == "cleared").collect();
    assert_eq!(cleared.len(), 1, "{all:#?}");
    assert_eq!(end(cleared[0]), stator::rfc3339_ms(T0 + 470_000));
    let c = cleared[0].change.clone().expect("change");
    assert_eq!((c["baseline_start"].as_str().unwrap(), c["baseline_windows"].as_u64()), (reset.as_str(), Some(6)));
    assert!((c["baseline"].as_f64().unwrap() - 0.8).abs() < 1e-9, "{c}");
    let ids: std::collections::BTreeSet<&str> = all.iter().map(|(_, id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), all.len(), "no repeated transition");
}
