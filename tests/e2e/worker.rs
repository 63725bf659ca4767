//! The worker's contract with its consumer and its operator: binding rules, in-progress
//! acks, and a clean exit on SIGTERM.

use std::process::Command;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{AckPolicy, PriorityPolicy, pull};
use stator_engine::worker::{RunMode, Stats, WorkerError};

use crate::harness::*;

async fn bind_error(text: &str, server: &TestServer) -> String {
    let p = pipeline(text, &server.url());
    let worker = RunningWorker::start(&p, &server.url(), RunMode::Follow).await;
    let result = tokio::time::timeout(Duration::from_secs(10), worker.task).await.expect("fails fast").expect("task");
    match result {
        Err(e @ WorkerError::Source { .. }) => e.to_string(),
        other => panic!("expected a source error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_missing_consumer_is_created_only_when_the_file_says_so() {
    let server = TestServer::with_streams().await;
    let text = rms_pipeline("2s", 1, "1h").replace("create_consumer = true", "create_consumer = false");
    let e = bind_error(&text, &server).await;
    assert!(e.contains("consumer `test-rms` does not exist on stream `TELEMETRY`"), "{e}");
    assert!(e.contains("create_consumer = true"), "{e}");
    let missing = rms_pipeline("2s", 1, "1h").replace("stream = \"TELEMETRY\"", "stream = \"NOPE\"");
    assert!(bind_error(&missing, &server).await.contains("stream `NOPE` does not exist"));
}

#[tokio::test]
async fn an_incompatible_existing_consumer_is_reported_not_changed() {
    let server = TestServer::with_streams().await;
    let js = server.js().await;
    let stream = js.get_stream("TELEMETRY").await.unwrap();
    let config = pull::Config {
        durable_name: Some("test-rms".into()),
        ack_policy: AckPolicy::All,
        ack_wait: Duration::from_secs(5),
        filter_subject: "acme.*.*.*.*.*.temperature".into(),
        ..Default::default()
    };
    stream.create_consumer(config.clone()).await.unwrap();
    let e = bind_error(&rms_pipeline("2s", 1, "1h"), &server).await;
    assert!(e.contains("ack policy is All, the pipeline needs explicit acks"), "{e}");
    assert!(e.contains("its filter subjects are [\"acme.*.*.*.*.*.temperature\"]"), "{e}");
    assert!(e.contains("ack_wait is 5s, shorter than the longest window plus its lateness (12s)"), "{e}");
    let after = stream.consumer_info("test-rms").await.unwrap().config;
    assert_eq!((after.ack_policy, after.ack_wait), (AckPolicy::All, Duration::from_secs(5)), "left as it was");
}

/// A consumer made without a priority group (by hand, or by an earlier Stator) cannot stand
/// a worker by: a second worker on it is refused while the first pulls, with the reason and
/// the fix, instead of splitting every window with it.
#[tokio::test]
async fn a_second_worker_on_a_consumer_without_a_priority_group_is_refused() {
    let server = TestServer::with_streams().await;
    let js = server.js().await;
    let stream = js.get_stream("TELEMETRY").await.unwrap();
    let config = pull::Config {
        durable_name: Some("test-rms".into()),
        ack_policy: AckPolicy::Explicit,
        ack_wait: Duration::from_secs(30),
        filter_subject: "acme.*.*.*.*.*.vibration.rms".into(),
        ..Default::default()
    };
    stream.create_consumer(config).await.unwrap();
    let p = pipeline(&rms_pipeline("2s", 1, "1h"), &server.url());
    a_second_worker_is_refused(&js, &p, &server.url()).await;
}

/// `standby = false`: the consumer is created without a priority group (no pin header on each
/// message), and runs as one made by hand without one.
#[tokio::test]
async fn a_pipeline_without_standby_creates_its_consumer_without_a_priority_group() {
    let server = TestServer::with_streams().await;
    let js = server.js().await;
    let text = rms_pipeline("2s", 1, "1h").replace("create_consumer = true", "create_consumer = true\nstandby = false");
    let p = pipeline(&text, &server.url());
    assert!(!p.source.standby);
    a_second_worker_is_refused(&js, &p, &server.url()).await;
    let mut stream = js.get_stream("TELEMETRY").await.unwrap();
    let config = stream.consumer_info("test-rms").await.unwrap().config.clone();
    assert_eq!(config.priority_policy, PriorityPolicy::None);
    assert!(config.priority_groups.is_empty());
    assert_eq!(stream.info().await.unwrap().state.messages, 1);

    let partitioned = text.replace("standby = false", "standby = false\npartitions = 2");
    let env = |name: &str| (name == "NATS_URL").then(|| server.url());
    let err = stator_engine::config::load_str(std::path::Path::new("p.toml"), &partitioned, &env).unwrap_err();
    assert!(err.to_string().contains("source.standby"), "{err}");
    assert!(err.to_string().contains("`standby = false` is for a pipeline of one partition"), "{err}");
}

/// Starts a worker on `p`, then a second: the second is refused with the reason and the fix.
async fn a_second_worker_is_refused(
    js: &async_nats::jetstream::Context,
    p: &stator_engine::config::Pipeline,
    url: &str,
) {
    let first = RunningWorker::start(p, url, RunMode::Follow).await;
    publish(js, &[Reading::rms("munich", "cnc-001", T0, 1.0)]).await;
    wait_for_count(&first.stats, "the first worker pulling", 1, |s| &s.fetched).await;

    let second = RunningWorker::start(p, url, RunMode::Follow).await;
    let result = tokio::time::timeout(Duration::from_secs(60), second.task).await.expect("refused in time");
    let e = match result.expect("task") {
        Err(e @ WorkerError::Source { .. }) => e.to_string(),
        other => panic!("expected a source error, got {other:?}"),
    };
    assert!(e.contains("is being pulled by another client"), "{e}");
    assert!(e.contains("has no priority group, so two workers would split its windows"), "{e}");
    assert_eq!(Stats::get(&second.stats.fetched), 0);
    first.stop().await;
}

/// Two filter subjects: one consumer per filter (nats-server reads a consumer with several
/// filters an order of magnitude slower at thousands of subjects), both read to the end; an
/// existing consumer with both filters is used as it is.
#[tokio::test]
async fn a_pipeline_with_two_filter_subjects_reads_one_consumer_per_filter_or_an_existing_one_with_both() {
    let server = TestServer::with_streams().await;
    let js = server.js().await;
    let two = r#"filter_subjects = ["acme.*.*.*.*.*.vibration.rms", "acme.*.*.*.*.*.temperature"]"#;
    let text = rms_pipeline("2s", 1, "1h")
        .replace(r#"filter_subjects = ["acme.*.*.*.*.*.vibration.rms"]"#, two)
        .replace("name = \"rms_10s\"\n", "name = \"rms_10s\"\nfilter = \"acme.*.*.*.*.*.vibration.rms\"\n")
        + r#"
[[window]]
name = "temperature_10s"
key = ["site", "machine"]
filter = "acme.*.*.*.*.*.temperature"
tumbling = "10s"
aggregates = ["max"]

[[alert]]
name = "hot"
window = "temperature_10s"
metric = "max"
warning = 55.0
critical = 65.0
subject = "acme.{site}.alert.temperature.{machine}"
"#;
    let mut readings: Vec<Reading> = (0..25).map(|s| Reading::rms("munich", "cnc-001", T0 + s * 1000, 5.0)).collect();
    let temperature = |s: i64, v: f64| Reading {
        subject: "acme.munich.hall-a.line-1.cnc-001.coolant.temperature".into(),
        ..Reading::rms("munich", "cnc-001", T0 + s * 1000, v)
    };
    readings.extend((0..3).map(|s| temperature(s * 20, 70.0)));
    publish(&js, &readings).await;
    let p = pipeline(&text, &server.url());
    RunningWorker::start(&p, &server.url(), RunMode::Drain).await.finish().await;

    let stream = js.get_stream("TELEMETRY").await.unwrap();
    for (durable, filter, count) in
        [("test-rms", "acme.*.*.*.*.*.vibration.rms", 25), ("test-rms-2", "acme.*.*.*.*.*.temperature", 3)]
    {
        let info = stream.consumer_info(durable).await.unwrap();
        assert_eq!(info.config.filter_subject, filter, "{durable}");
        assert!(info.config.filter_subjects.is_empty(), "{durable}");
        assert_eq!(
            (info.num_pending, info.num_ack_pending, info.delivered.consumer_sequence),
            (0, 0, count),
            "{durable}"
        );
    }
    let mut rules: Vec<String> = alerts(&js).await.into_iter().map(|(_, _, a)| a.rule).collect();
    rules.sort();
    assert_eq!(rules, ["hot", "vibration-rms"]);

    // An existing consumer with both filters (made by an operator, or by an earlier version)
    // is read as it is: no second consumer.
    let other = text.replace("\"test-rms\"", "\"both\"");
    let both = pull::Config {
        durable_name: Some("both".into()),
        ack_policy: AckPolicy::Explicit,
        ack_wait: Duration::from_secs(130),
        filter_subjects: vec!["acme.*.*.*.*.*.temperature".into(), "acme.*.*.*.*.*.vibration.rms".into()],
        ..Default::default()
    };
    stream.create_consumer(both).await.unwrap();
    RunningWorker::start(&pipeline(&other, &server.url()), &server.url(), RunMode::Drain).await.finish().await;
    let info = stream.consumer_info("both").await.unwrap();
    assert_eq!((info.num_pending, info.num_ack_pending, info.delivered.consumer_sequence), (0, 0, 28));
    assert!(stream.consumer_info("both-2").await.is_err(), "no consumer per filter next to it");
}

#[tokio::test]
async fn messages_held_past_half_the_ack_wait_get_in_progress_acks_and_are_not_redelivered() {
    let server = TestServer::with_streams().await;
    let js = server.js().await;
    let text = rms_pipeline("2s", 1, "1h").replace("ack_wait = \"30s\"", "ack_wait = \"12s\"");
    let p = pipeline(&text, &server.url());
    // An open window that nothing closes: its readings stay held.
    let held: Vec<Reading> = (0..5).map(|s| Reading::rms("munich", "cnc-001", T0 + s * 1000, 1.0)).collect();
    publish(&js, &held).await;
    let worker = RunningWorker::start(&p, &server.url(), RunMode::Follow).await;
    let stats = worker.stats.clone();
    let start = Instant::now();
    wait_until(Duration::from_secs(30), "in-progress acks", || async { Stats::get(&stats.in_progress) >= 5 }).await;
    // Past the ack wait: without in-progress acks the server would have redelivered them.
    let deadline = start + Duration::from_secs(15);
    wait_until(Duration::from_secs(30), "one ack wait", || async { Instant::now() >= deadline }).await;
    assert_eq!(Stats::get(&stats.redelivered), 0);
    let (_, pending) = consumer_backlog(&js, "test-rms").await;
    assert_eq!(pending, 5, "still held, not acked");
    worker.stop().await;
}

#[tokio::test]
async fn stator_run_exits_zero_on_sigterm_and_leaves_open_windows_for_the_next_run() {
    let server = TestServer::with_streams().await;
    let js = server.js().await;
    let (mut child, _dir) = stator_run_holding_one_reading(&server, &[]).await;
    wait_until(Duration::from_secs(20), "the reading to be held", || async {
        js.get_stream("TELEMETRY").await.unwrap().consumer_info("test-rms").await.is_ok_and(|i| i.num_ack_pending == 1)
    })
    .await;
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "stator run did not exit within 20 s of SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(0));
    let info = js.get_stream("TELEMETRY").await.unwrap().consumer_info("test-rms").await.unwrap();
    assert_eq!(info.ack_floor.stream_sequence, 0, "the open window's reading was not acked");
}

#[tokio::test]
async fn the_demo_runs_to_completion_and_reports_the_drifting_machine_and_the_bearing_fault() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_stator"))
        .args(["demo", "--readings", "60", "--waveform-seconds", "8", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("acme.munich.alert.vibration.cnc-003"), "{stdout}");
    assert!(stdout.contains("acme.munich.alert.bearing.cnc-002"), "{stdout}");
    assert!(stdout.contains("0 dead letters"), "{stdout}");
    assert!(stdout.contains("-- alert transitions by site"), "{stdout}");
    assert!(stdout.contains("| messages "), "live progress: {stdout}");
    let plots = dir.path().join("plots");
    for name in ["cnc-003-rms", "cnc-002-spectrum", "cnc-002-envelope"] {
        assert_eq!(png_size(&plots.join(format!("{name}.png"))), (1200, 600), "{name}");
        let svg = std::fs::read_to_string(plots.join(format!("{name}.svg"))).unwrap();
        assert!(svg.contains(r#"width="1200""#) && svg.contains("<polyline"), "{name}.svg has a line");
        assert!(stdout.contains(&format!("{name}.png")), "the demo says where {name} is");
    }
    let svg = std::fs::read_to_string(plots.join("cnc-002-envelope.svg")).unwrap();
    assert!(svg.contains("BPFO 107.") && svg.contains("BPFI 162."), "defect frequencies of a 6205 at 1797 rpm marked");
    let svg = std::fs::read_to_string(plots.join("cnc-003-rms.svg")).unwrap();
    assert!(svg.contains("critical 4.5") && svg.contains("alert: "), "levels and alert markers");

    // `stator plot` on its own, at another size.
    let replot = dir.path().join("replot");
    let out = Command::new(env!("CARGO_BIN_EXE_stator"))
        .args(["plot", "--machine", "cnc-002", "--window", "vibration_2s", "--size", "800x400", "--archive"])
        .arg(dir.path().join("archive"))
        .arg("--out")
        .arg(&replot)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for name in ["cnc-002-rms", "cnc-002-spectrum", "cnc-002-envelope"] {
        assert_eq!(png_size(&replot.join(format!("{name}.png"))), (800, 400), "{name}");
    }
    let archive =
        stator_engine::archive::ArchiveLocation::open(dir.path().join("archive").to_str().unwrap(), &[]).unwrap();
    let ctx = stator_engine::query::session(&archive).await.unwrap();
    let n = stator_engine::query::run(&ctx, "SELECT count(*) AS n FROM readings").await.unwrap();
    let published = stdout.lines().find_map(|l| l.strip_prefix("published ")?.strip_suffix(" readings")).unwrap();
    let n = datafusion::arrow::util::display::array_value_to_string(n[0].column(0), 0).unwrap();
    assert_eq!(n, published, "every published reading is in the demo's archive");

    // `stator query` over the same archive, in every output format.
    let query = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_stator"))
            .arg("query")
            .arg("--archive")
            .arg(dir.path().join("archive"))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let sql = "SELECT site, count(*) AS n FROM readings GROUP BY site ORDER BY site";
    let csv = query(&["--format", "csv", sql]);
    let sites: Vec<&str> = csv.lines().collect();
    assert_eq!(sites[0], "site,n");
    let total: u64 = sites[1..].iter().map(|l| l.split(',').nth(1).unwrap().parse::<u64>().unwrap()).sum();
    assert_eq!(total.to_string(), published);
    let json = query(&["--format", "json", sql]);
    let first: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(first["site"], "berlin");
    let file = dir.path().join("out.parquet");
    query(&["--format", "parquet", "--output", file.to_str().unwrap(), sql]);
    assert_eq!(&std::fs::read(&file).unwrap()[..4], b"PAR1");
    let plan = query(&["--explain", "SELECT count(*) FROM readings WHERE site = 'munich' AND value > 2"]);
    assert!(plan.contains("site=munich") && !plan.contains("site=berlin"), "partition pruning: {plan}");
}

/// Width and height from a PNG's IHDR chunk (after checking the signature).
fn png_size(path: &std::path::Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{} is a PNG", path.display());
    assert_eq!(&bytes[12..16], b"IHDR");
    assert!(bytes.len() > 10_000, "{} has content ({} bytes)", path.display(), bytes.len());
    let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
    (be(16), be(20))
}

/// A plant publishing faster than `max_ack_pending / (window + lateness)`: the open windows
/// fill the consumer's limit and the server stops delivering, so no later reading comes to
/// close them. The worker raises the limit of the consumer it created (to the server, so a
/// restart keeps it) and every window closes complete: no reading closed out as idle and then
/// dead-lettered as late.
#[tokio::test]
async fn windows_holding_more_than_max_ack_pending_get_the_limit_raised_and_lose_nothing() {
    let server = TestServer::with_streams().await;
    let js = server.js().await;
    // 10 machines x (10 s window + 5 s lateness) = 150 readings open at once, limit 40; a key
    // that receives nothing for 2 s would close as idle.
    let readings: Vec<Reading> = (0..60)
        .flat_map(|s| (0..10).map(move |m| Reading::rms("munich", &format!("cnc-{m:03}"), T0 + s * 1000, 1.0)))
        .collect();
    publish(&js, &readings).await;
    let text =
        rms_pipeline("5s", 1, "2s").replace("create_consumer = true", "create_consumer = true\nmax_ack_pending = 40");
    let p = pipeline(&text, &server.url());
    let worker = RunningWorker::start(&p, &server.url(), RunMode::Drain).await;
    let stats = worker.stats.clone();
    worker.finish().await;

    assert_eq!(Stats::get(&stats.late), 0, "no reading arrived after its window closed");
    assert_eq!(Stats::get(&stats.windows_closed), 60, "10 machines x 6 windows");
    assert_eq!(Stats::get(&stats.acked), readings.len() as u64);
    let raised = Stats::get(&stats.max_ack_pending_raised);
    assert!(raised >= 2, "40 -> 80 -> 160 at least, raised {raised} times");
    let stream = js.get_stream("TELEMETRY").await.unwrap();
    let limit = stream.consumer_info("test-rms").await.unwrap().config.max_ack_pending;
    assert_eq!(limit, 40 << raised, "doubled each time, kept by the server");
}
