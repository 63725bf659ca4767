//! The worker's HTTP endpoints, scraped over HTTP while tests drive traffic: Prometheus
//! metrics, health and readiness, status.

use std::time::Duration;

use stator_engine::observe::{Health, HealthStatus, PipelineStatus};
use stator_engine::worker::RunMode;

use crate::harness::*;

fn series(name: &str) -> String {
    format!("{name}{{pipeline=\"test-rms\"}}")
}

async fn scrape(worker: &RunningWorker) -> String {
    let (code, body) = http_get(&format!("{}/metrics", worker.http)).await;
    assert_eq!(code, 200);
    body
}

async fn health(worker: &RunningWorker, path: &str) -> (u16, Health) {
    let (code, body) = http_get(&format!("{}{path}", worker.http)).await;
    (code, serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}")))
}

/// Waits until the scraped value of `series` satisfies `check`.
async fn wait_for_sample(worker: &RunningWorker, series: &str, check: impl Fn(f64) -> bool) {
    wait_until(Duration::from_secs(30), series, || async { sample(&scrape(worker).await, series).is_some_and(&check) })
        .await;
}

#[tokio::test]
async fn metrics_follow_the_traffic_and_status_shows_the_alerts() {
    let server = TestServer::with_streams().await;
    let js = server.js().await;
    let p = pipeline(&rms_pipeline("2s", 1, "1h"), &server.url());
    let worker = RunningWorker::start(&p, &server.url(), RunMode::Follow).await;
    wait_for_sample(&worker, &series("stator_consumer_bound"), |v| v == 1.0).await;
    let before = scrape(&worker).await;
    assert_eq!(sample(&before, &series("stator_messages_fetched_total")), Some(0.0), "{before}");
    assert!(before.contains("# TYPE stator_alert_latency_seconds histogram"), "{before}");
    assert!(before.ends_with("# EOF\n"), "OpenMetrics exposition ends with # EOF");
    // The Grafana dashboard shipped in docs/ plots only metrics the worker exposes.
    let dashboard = include_str!("../../docs/grafana/stator-dashboard.json");
    let names =
        dashboard.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("stator_"));
    for name in names {
        let family = ["_total", "_bucket", "_count", "_sum"].iter().fold(name, |n, s| n.strip_suffix(s).unwrap_or(n));
        let declared = format!("# TYPE {family} ");
        assert!(before.lines().any(|l| l.starts_with(&declared)), "the dashboard's {name} is not exposed:\n{before}");
    }

    // Two windows of readings (the first over the warning level), one undecodable message,
    // and a reading that closes the second window.
    let r = |t_s: i64, v: f64| Reading::rms("munich", "cnc-001", T0 + t_s * 1000, v);
    let readings: Vec<Reading> = (0..10).map(|s| r(s, 3.5)).chain((10..20).map(|s| r(s, 1.0))).collect();
    publish(&js, &readings).await;
    publish_raw(&js, "acme.munich.hall-a.line-1.cnc-001.spindle.vibration.rms", b"{not json").await;
    let last = publish(&js, &[r(23, 1.0)]).await[0];

    wait_for_sample(&worker, &series("stator_messages_fetched_total"), |v| v == 22.0).await;
    wait_for_sample(&worker, &series("stator_messages_acked_total"), |v| v == 20.0).await;
    let m = scrape(&worker).await;
    let reason = |name: &str, reason: &str| format!("{name}{{pipeline=\"test-rms\",reason=\"{reason}\"}}");
    assert_eq!(sample(&m, &reason("stator_dead_letters_total", "invalid_json")), Some(1.0), "{m}");
    assert_eq!(sample(&m, &reason("stator_decode_errors_total", "invalid_json")), Some(1.0), "{m}");
    assert_eq!(sample(&m, &series("stator_messages_terminated_total")), Some(1.0));
    assert_eq!(sample(&m, &series("stator_windows_closed_total")), Some(2.0));
    assert_eq!(sample(&m, &series("stator_window_close_latency_seconds_count")), Some(2.0));
    assert_eq!(sample(&m, &series("stator_alerts_published_total")), Some(2.0), "raised, then cleared");
    assert_eq!(sample(&m, &series("stator_alert_latency_seconds_count")), Some(2.0));
    // The worker's own part of each: from the window's close to the PubAck, well under the
    // event-time latency (which includes the 2 s lateness and the wait for the next reading).
    assert_eq!(sample(&m, &series("stator_alert_publish_seconds_count")), Some(2.0));
    let own = sample(&m, &series("stator_alert_publish_seconds_sum")).unwrap();
    let whole = sample(&m, &series("stator_alert_latency_seconds_sum")).unwrap();
    assert!(own > 0.0 && own < whole, "close to PubAck {own} s of {whole} s");
    // The newest watermark is the newest reading (t = 23 s) less the 2 s lateness.
    wait_for_sample(&worker, &series("stator_watermark_lag_seconds"), |v| v > 0.0).await;
    let lag = sample(&scrape(&worker).await, &series("stator_watermark_lag_seconds")).unwrap();
    let expected = (time::OffsetDateTime::now_utc().unix_timestamp() * 1000 - (T0 + 21_000)) as f64 / 1000.0;
    assert!((lag - expected).abs() < 30.0, "watermark lag {lag} s, expected about {expected} s");
    // Consumer state is polled from JetStream: the open window's reading is unacknowledged.
    wait_for_sample(&worker, &series("stator_consumer_ack_pending_messages"), |v| v == 1.0).await;
    wait_for_sample(&worker, &series("stator_consumer_ack_floor_sequence"), |v| v == (last - 1) as f64).await;
    assert_eq!(sample(&scrape(&worker).await, &series("stator_consumer_pending_messages")), Some(0.0));

    let (code, body) = http_get(&format!("{}/status", worker.http)).await;
    assert_eq!(code, 200);
    let status: Vec<PipelineStatus> = serde_json::from_str(&body).unwrap();
    assert_eq!(status.len(), 1);
    let s = &status[0];
    assert_eq!(s.source.as_ref().map(|s| s.durable.as_str()), Some("test-rms"));
    assert_eq!((s.fetched, s.acked, s.dead_letters, s.alerts_published), (22, 20, 1, 2));
    let states: Vec<&str> = s.recent_alerts.iter().map(|a| a.alert["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["warning", "cleared"]);
    assert_eq!(s.recent_alerts[0].subject, "acme.munich.alert.vibration.cnc-001");

    // `stator status`, from the worker and from JetStream.
    // (A tokio process: the worker answering it runs on this test's thread.)
    let status = async |args: Vec<String>| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_stator"));
        let out = cmd.arg("status").args(args).env("NATS_URL", server.url()).output().await.unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
        stdout
    };
    let shown = status(vec!["--worker".into(), worker.http.clone()]).await;
    assert!(shown.contains("pipeline test-rms (stream TELEMETRY, consumer test-rms)"), "{shown}");
    assert!(shown.contains("watermark: "), "{shown}");
    assert!(shown.contains(&format!("ack floor {}", last - 1)), "{shown}");
    assert_eq!(shown.matches("acme.munich.alert.vibration.cnc-001").count(), 2, "{shown}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.toml");
    std::fs::write(&file, rms_pipeline("2s", 1, "1h")).unwrap();
    let shown = status(vec![file.display().to_string()]).await;
    assert!(shown.contains("1 delivered and not acknowledged"), "{shown}");
    assert!(!shown.contains("watermark: "), "JetStream does not know the watermark: {shown}");
    let alerts: Vec<&str> = shown.lines().filter(|l| l.contains("acme.munich.alert.vibration.cnc-001")).collect();
    assert_eq!(alerts.len(), 2, "{shown}");
    assert!(alerts[0].contains("warning") && alerts[1].contains("cleared"), "{shown}");
    worker.stop().await;
}

#[tokio::test]
async fn readiness_flips_to_degraded_while_nats_is_down_and_back_when_it_returns() {
    let mut server = TestServer::with_streams().await;
    let p = pipeline(&rms_pipeline("2s", 1, "1h"), &server.url());
    let worker = RunningWorker::start(&p, &server.url(), RunMode::Follow).await;
    wait_until(Duration::from_secs(20), "ready", || async { health(&worker, "/readyz").await.0 == 200 }).await;
    let (_, h) = health(&worker, "/healthz").await;
    assert_eq!((h.status, h.problems.len()), (HealthStatus::Ok, 0));

    server.server.stop();
    wait_until(Duration::from_secs(20), "degraded", || async { health(&worker, "/readyz").await.0 == 503 }).await;
    let (code, h) = health(&worker, "/healthz").await;
    assert_eq!(code, 200, "liveness holds: restarting would not bring NATS back");
    assert_eq!(h.status, HealthStatus::Degraded);
    assert_eq!(h.problems, ["pipeline `test-rms`: NATS is unreachable"]);
    assert_eq!(sample(&scrape(&worker).await, &series("stator_nats_connected")), Some(0.0));

    server.server.restart().expect("restart");
    wait_until(Duration::from_secs(30), "ready again", || async { health(&worker, "/readyz").await.0 == 200 }).await;
    worker.stop().await;
}

#[tokio::test]
async fn stator_run_serves_its_endpoints_on_the_listen_address() {
    let server = TestServer::with_streams().await;
    let (mut child, _dir) = stator_run_holding_one_reading(&server, &["--listen", "127.0.0.1:0"]).await;
    // The log names the address the worker bound.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(at) = line.split("http://").nth(1) {
                let _ = tx.send(at.split_whitespace().next().unwrap_or_default().to_owned());
            }
        }
    });
    let address = rx.recv_timeout(Duration::from_secs(20)).expect("the listen address in the log");
    let base = format!("http://{address}");
    wait_until(Duration::from_secs(20), "the reading fetched", || async {
        let (_, m) = http_get(&format!("{base}/metrics")).await;
        sample(&m, &series("stator_messages_fetched_total")) == Some(1.0)
    })
    .await;
    assert_eq!(http_get(&format!("{base}/readyz")).await.0, 200);
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Makes the dead-letter stream refuse messages larger than `max` bytes (-1: no limit).
async fn dead_letter_limit(js: &async_nats::jetstream::Context, max: i32) {
    let mut stream = js.get_stream("STATOR_DEADLETTER").await.expect("dead-letter stream");
    let mut config = stream.info().await.expect("stream info").config.clone();
    config.max_message_size = max;
    js.update_stream(config).await.expect("update STATOR_DEADLETTER");
}

/// An output the server refuses for good is kept and retried, but not silently: `/readyz`
/// says which and why, `stator_outputs_refused_total` counts the refusals, and it goes through
/// once the stream is fixed. A drain it keeps from finishing exits non-zero and says why.
#[tokio::test]
async fn a_refused_output_is_reported_and_a_drain_it_blocks_fails() {
    let server = TestServer::with_streams().await;
    let js = server.js().await;
    dead_letter_limit(&js, 16).await;
    let subject = "acme.munich.hall-a.line-1.cnc-001.spindle.vibration.rms";
    publish_raw(&js, subject, b"{not json").await;
    let p = pipeline(&rms_pipeline("2s", 1, "1h"), &server.url());
    let worker = RunningWorker::start(&p, &server.url(), RunMode::Follow).await;
    wait_until(Duration::from_secs(20), "the refusal in /readyz", || async {
        let (code, h) = health(&worker, "/readyz").await;
        code == 503 && h.problems.iter().any(|p| p.contains("refuses an output"))
    })
    .await;
    let (_, h) = health(&worker, "/readyz").await;
    let problem = h.problems.iter().find(|p| p.contains("refuses an output")).expect("the refusal in /readyz");
    assert!(problem.contains("stator.deadletter.test-rms"), "{problem}");
    assert!(problem.to_lowercase().contains("maximum"), "the server's reason: {problem}");
    wait_for_sample(&worker, &series("stator_outputs_refused_total"), |v| v >= 1.0).await;

    dead_letter_limit(&js, -1).await;
    wait_until(Duration::from_secs(30), "ready again", || async { health(&worker, "/readyz").await.0 == 200 }).await;
    worker.stop().await;
    assert_eq!(stator::plant::read_stream(&js, "STATOR_DEADLETTER", None).await.unwrap().len(), 1);

    // A drain blocked by a refusal exits 1 and says why, instead of reporting success.
    dead_letter_limit(&js, 16).await;
    publish_raw(&js, subject, b"{still not json").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.toml");
    std::fs::write(&file, rms_pipeline("2s", 1, "1h")).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_stator"))
        .args(["run", "--drain"])
        .arg(&file)
        .env("NATS_URL", server.url())
        .env("NO_COLOR", "1")
        .output()
        .await
        .expect("stator run --drain");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("the drain did not finish: the server refuses an output"), "{stderr}");
}
