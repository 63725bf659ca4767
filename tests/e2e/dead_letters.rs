//! Late readings and undecodable messages go to the dead-letter subject with their reason;
//! the worker keeps running and loses nothing.

use std::time::Duration;

use stator_engine::worker::{RunMode, Stats};

use crate::harness::*;

#[tokio::test]
async fn out_of_order_readings_within_lateness_count_and_a_late_one_is_dead_lettered() {
    let server = TestServer::with_streams().await;
    let js = server.js().await;
    let r = |t_s: i64, v: f64| Reading::rms("munich", "cnc-001", T0 + t_s * 1000, v);
    // Window [0,10) gets 3.0, 4.0 and (out of order, inside the 5 s lateness) 5.0 at t=9.
    // After t=16 the watermark (11 s) has passed 10 s: the reading at t=2 is late.
    let readings = [r(1, 3.0), r(12, 1.0), r(4, 4.0), r(14, 1.0), r(9, 5.0), r(16, 1.0), r(2, 100.0), r(25, 1.0)];
    let seqs = publish(&js, &readings).await;
    let p = pipeline(&rms_pipeline("5s", 1, "1h"), &server.url());
    let worker = RunningWorker::start(&p, &server.url(), RunMode::Drain).await;
    let stats = worker.stats.clone();
    worker.finish().await;

    let alerts = alerts(&js).await;
    let first = &alerts[0].2;
    assert_eq!(first.window_end, stator::rfc3339_ms(T0 + 10_000));
    assert_eq!(first.readings, 3);
    assert!((first.value - rms(&[3.0, 4.0, 5.0])).abs() < 1e-12, "{}", first.value);
    assert_eq!(first.state, "warning");

    let dead = dead_letters(&js).await;
    assert_eq!(dead.len(), 1);
    let h = &dead[0].headers;
    assert_eq!(dead[0].subject.as_str(), "stator.deadletter.test-rms");
    assert_eq!(h.get("Stator-Reason").unwrap().as_str(), "late");
    assert_eq!(h.get("Stator-Seq").unwrap().as_str(), seqs[6].to_string());
    assert_eq!(h.get("Stator-Stream").unwrap().as_str(), "TELEMETRY");
    assert_eq!(h.get("Stator-Subject").unwrap().as_str(), readings[6].subject);
    assert_eq!(dead[0].payload, readings[6].payload());
    assert_eq!(Stats::get(&stats.late), 1);
    assert_eq!(consumer_backlog(&js, "test-rms").await, (0, 0));
}

#[tokio::test]
async fn undecodable_messages_are_dead_lettered_terminated_and_the_worker_carries_on() {
    let server = TestServer::with_streams().await;
    let js = server.js().await;
    let subject = "acme.munich.hall-a.line-1.cnc-001.spindle.vibration.rms";
    // A template with a literal token, so a subject can miss it.
    let text = rms_pipeline("0s", 1, "1h").replace(
        r#"filter_subjects = ["acme.*.*.*.*.*.vibration.rms"]"#,
        r#"filter_subjects = ["acme.*.*.*.*.*.vibration.rms", "acme.*.*.*.*.*.temperature"]
subject = "acme.{site}.{area}.{line}.{machine}.{sensor}.vibration.{metric}""#,
    );
    let p = pipeline(&text, &server.url());
    let worker = RunningWorker::start(&p, &server.url(), RunMode::Follow).await;
    let bad: [(&'static [u8], &str); 5] = [
        (b"{not json", "invalid_json"),
        (br#"{"value":"high","timestamp":"2026-11-22T08:00:00Z"}"#, "invalid_json"),
        (br#"{"timestamp":"2026-11-22T08:00:00Z"}"#, "missing_value"),
        (br#"{"value":1.0}"#, "missing_event_time"),
        (b"\xff\xfe\x00garbage", "invalid_json"),
    ];
    let mut seqs = Vec::new();
    for (payload, _) in &bad {
        seqs.push(publish_raw(&js, subject, payload).await);
    }
    let other = "acme.munich.hall-a.line-1.cnc-001.coolant.temperature";
    seqs.push(publish_raw(&js, other, br#"{"value":1,"timestamp":"2026-11-22T08:00:00Z"}"#).await);
    // Good readings after the garbage still raise their alert.
    let good: Vec<Reading> = (0..25).map(|s| Reading::rms("munich", "cnc-001", T0 + s * 1000, 5.0)).collect();
    publish(&js, &good).await;
    wait_until(Duration::from_secs(20), "the alert from good readings", || async { !alerts(&js).await.is_empty() })
        .await;
    wait_until(Duration::from_secs(20), "six dead letters", || async {
        stator::plant::read_stream(&js, "STATOR_DEADLETTER", None).await.unwrap().len() == 6
    })
    .await;
    worker.stop().await;

    let dead = dead_letters(&js).await;
    let mut reasons: Vec<(String, String)> = dead
        .iter()
        .map(|m| {
            (m.headers.get("Stator-Seq").unwrap().to_string(), m.headers.get("Stator-Reason").unwrap().to_string())
        })
        .collect();
    reasons.sort_by_key(|(seq, _)| seq.parse::<u64>().unwrap());
    let mut expected: Vec<(String, String)> =
        bad.iter().zip(&seqs).map(|((_, reason), seq)| (seq.to_string(), (*reason).to_owned())).collect();
    expected.push((seqs[5].to_string(), "subject_mismatch".to_owned()));
    assert_eq!(reasons, expected);
    // Dead letters by sequence: a pipeline whose windows split its filter subjects reads them
    // through one consumer each, in no global order.
    let of_seq = |seq: u64| {
        dead.iter().find(|m| m.headers.get("Stator-Seq").unwrap().as_str() == seq.to_string()).expect("dead letter")
    };
    let detail = of_seq(seqs[1]).headers.get("Stator-Detail").unwrap().to_string();
    assert!(detail.contains("`value` must be a number"), "{detail}");
    // Terminated, not pending: nothing is redelivered to the next run. The last, still open
    // window's readings were NAKed at stop for the next run to pick up.
    let (pending, _) = consumer_backlog(&js, "test-rms").await;
    assert_eq!(pending, 0);
    // Its window has no filter, so it reads both filter subjects through one consumer.
    let info = js.get_stream("TELEMETRY").await.unwrap().consumer_info("test-rms").await.unwrap();
    assert!(info.ack_floor.stream_sequence >= seqs[5], "dead-lettered messages are settled");
}

#[tokio::test]
async fn a_message_past_max_deliver_is_dead_lettered_with_its_reason() {
    let server = TestServer::with_streams().await;
    let js = server.js().await;
    // One reading in a window that never closes, and a worker that dies before acking it,
    // twice: JetStream gives up after the second delivery.
    let text = rms_pipeline("0s", 1, "1h")
        .replace("tumbling = \"10s\"", "tumbling = \"1s\"")
        .replace("ack_wait = \"30s\"", "ack_wait = \"2s\"\nmax_deliver = 2");
    let p = pipeline(&text, &server.url());
    let reading = Reading::rms("munich", "cnc-001", T0, 1.0);
    let seq = publish(&js, std::slice::from_ref(&reading)).await[0];
    for delivery in 1..=2 {
        let worker = RunningWorker::start(&p, &server.url(), RunMode::Follow).await;
        let stats = worker.stats.clone();
        wait_until(Duration::from_secs(30), "the delivery", || async { Stats::get(&stats.fetched) >= 1 }).await;
        worker.crash().await;
        assert_eq!(consumer_backlog(&js, "test-rms").await.1, 1, "delivery {delivery} held, not acked");
    }
    let worker = RunningWorker::start(&p, &server.url(), RunMode::Follow).await;
    wait_until(Duration::from_secs(20), "the dead letter", || {
        let js = js.clone();
        async move { stator::plant::read_stream(&js, "STATOR_DEADLETTER", None).await.is_ok_and(|d| !d.is_empty()) }
    })
    .await;
    worker.stop().await;
    let dead = dead_letters(&js).await;
    assert_eq!(dead.len(), 1);
    let h = &dead[0].headers;
    assert_eq!(h.get("Stator-Reason").unwrap().as_str(), "max_deliver");
    assert_eq!(h.get("Stator-Seq").unwrap().as_str(), seq.to_string());
    assert_eq!(dead[0].payload, reading.payload());
}

#[tokio::test]
async fn a_catalogue_of_hostile_inputs_each_gets_its_named_outcome() {
    let server = TestServer::with_streams().await;
    let js = server.js().await;
    let p = pipeline(&rms_pipeline("0s", 1, "1h"), &server.url());
    let subject = "acme.munich.hall-a.line-1.cnc-001.spindle.vibration.rms";
    // The machine's first window, so that a 1970 reading is late for it.
    publish(&js, &(0..12).map(|s| Reading::rms("munich", "cnc-001", T0 + s * 1000, 1.0)).collect::<Vec<_>>()).await;
    let big = format!(r#"{{"value":1.0,"timestamp":"2026-11-22T08:00:12Z","pad":"{}"}}"#, "x".repeat(1_000_000 - 64));
    let big: &'static [u8] = Box::leak(big.into_bytes().into_boxed_slice());
    let cases: [(&str, &'static [u8], Option<&str>); 10] = [
        ("empty", b"", Some("invalid_json")),
        ("truncated", br#"{"value": 1.0, "timest"#, Some("invalid_json")),
        ("wrong type", br#"{"value": true, "timestamp": "2026-11-22T08:00:12Z"}"#, Some("invalid_json")),
        ("out of range number", br#"{"value": 1e999, "timestamp": "2026-11-22T08:00:12Z"}"#, Some("invalid_json")),
        ("not a date", br#"{"value": 1.0, "timestamp": "yesterday"}"#, Some("bad_event_time")),
        ("years ahead", br#"{"value": 1.0, "timestamp": "2031-01-01T00:00:00Z"}"#, Some("event_time_in_future")),
        ("1970", br#"{"value": 1.0, "timestamp": "1970-01-01T00:00:00Z"}"#, Some("late")),
        ("array", br#"[1, 2, 3]"#, Some("invalid_json")),
        ("non-UTF-8", b"{\"value\": 1.0, \"timestamp\": \"\xc3\x28\"}", Some("invalid_json")),
        ("1 MB", big, None),
    ];
    let mut seqs = Vec::new();
    for (_, payload, _) in &cases {
        seqs.push(publish_raw(&js, subject, payload).await);
    }
    let worker = RunningWorker::start(&p, &server.url(), RunMode::Drain).await;
    let stats = worker.stats.clone();
    worker.finish().await;
    let dead = dead_letters(&js).await;
    let reason_of = |seq: u64| {
        dead.iter()
            .find(|m| m.headers.get("Stator-Seq").map(|v| v.to_string()) == Some(seq.to_string()))
            .map(|m| m.headers.get("Stator-Reason").unwrap().to_string())
    };
    for ((name, _, want), seq) in cases.iter().zip(&seqs) {
        assert_eq!(reason_of(*seq).as_deref(), *want, "{name}");
    }
    assert_eq!(Stats::get(&stats.dead_letters), 9);
    assert_eq!(consumer_backlog(&js, "test-rms").await, (0, 0), "every one settled; the worker carried on");
}

/// A malformed message carrying a header nats-server acts on when publishing (optimistic
/// concurrency, de-duplication) is dead-lettered with that header renamed
/// `Stator-Original-…`, so the dead letter is not refused or dropped, nothing stalls, and the
/// drain finishes with everything acknowledged.
#[tokio::test]
async fn dead_letters_keep_server_interpreted_headers_under_other_names() {
    let server = TestServer::with_streams().await;
    let js = server.js().await;
    let subject = |machine: &str| format!("acme.munich.hall-a.line-1.{machine}.spindle.vibration.rms");
    let last_seq = |js: async_nats::jetstream::Context| async move {
        js.get_stream("TELEMETRY").await.unwrap().info().await.unwrap().state.last_sequence
    };
    publish_raw(&js, &subject("cnc-001"), br#"{"value":1.0,"timestamp":"2026-11-22T08:00:00Z"}"#).await;
    // Each header with a value TELEMETRY accepts now; the dead-letter stream would refuse (or,
    // for Nats-Msg-Id, drop as a duplicate) a publish carrying it.
    let cases: Vec<(&str, String)> = vec![
        ("Nats-Expected-Last-Sequence", last_seq(js.clone()).await.to_string()),
        ("Nats-Expected-Stream", "TELEMETRY".into()),
        ("Nats-Expected-Last-Subject-Sequence", "0".into()),
        ("Nats-Msg-Id", "publisher-id-1".into()),
        ("Nats-Expected-Last-Msg-Id", "publisher-id-1".into()),
    ];
    let mut seqs = Vec::new();
    for (i, (name, value)) in cases.iter().enumerate() {
        let mut headers = async_nats::HeaderMap::new();
        if *name == "Nats-Expected-Last-Sequence" {
            headers.insert(*name, last_seq(js.clone()).await.to_string().as_str());
        } else {
            headers.insert(*name, value.as_str());
        }
        headers.insert("X-Publisher", "line-gateway");
        let machine = format!("cnc-1{i:02}");
        let ack = js.publish_with_headers(subject(&machine), headers, "{not json".into()).await.unwrap();
        seqs.push(ack.await.expect("TELEMETRY accepts the header").sequence);
    }
    let good: Vec<Reading> = (0..25).map(|s| Reading::rms("munich", "cnc-001", T0 + s * 1000, 5.0)).collect();
    publish(&js, &good).await;

    let p = pipeline(&rms_pipeline("0s", 1, "1h"), &server.url());
    let worker = RunningWorker::start(&p, &server.url(), RunMode::Drain).await;
    tokio::time::timeout(Duration::from_secs(60), worker.finish()).await.expect("the drain finishes");

    assert_eq!(alerts(&js).await.len(), 1, "the good readings still alert");
    let dead = dead_letters(&js).await;
    assert_eq!(dead.len(), cases.len());
    for ((name, value), seq) in cases.iter().zip(&seqs) {
        let m = dead
            .iter()
            .find(|m| m.headers.get("Stator-Seq").unwrap().as_str() == seq.to_string())
            .unwrap_or_else(|| panic!("dead letter of the message with {name}"));
        let original = m.headers.get(format!("Stator-Original-{name}").as_str());
        assert!(original.is_some(), "{name} kept under Stator-Original-{name}");
        // The dead letter's own Nats-Msg-Id is Stator's; no other Nats-* header is published.
        match m.headers.get(*name) {
            Some(v) if *name == "Nats-Msg-Id" => assert_ne!(v.as_str(), value, "the publisher's id is not reused"),
            other => assert!(other.is_none(), "{name} not published as such"),
        }
        assert_eq!(m.headers.get("X-Publisher").unwrap().as_str(), "line-gateway");
        assert_eq!(m.headers.get("Stator-Reason").unwrap().as_str(), "invalid_json");
    }
    assert_eq!(consumer_backlog(&js, "test-rms").await, (0, 0));
}

/// A stream that sources TELEMETRY stores each message with `Nats-Stream-Source`, which
/// nats-server refuses on publish: a pipeline reading the sourced stream dead-letters a bad
/// message with it renamed, and goes on.
#[tokio::test]
async fn a_bad_message_read_from_a_sourced_stream_is_dead_lettered() {
    let server = TestServer::with_streams().await;
    let js = server.js().await;
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "CLOUD".into(),
        sources: Some(vec![async_nats::jetstream::stream::Source { name: "TELEMETRY".into(), ..Default::default() }]),
        ..Default::default()
    })
    .await
    .unwrap();
    let subject = "acme.munich.hall-a.line-1.cnc-001.spindle.vibration.rms";
    publish_raw(&js, subject, b"{not json").await;
    let good: Vec<Reading> = (0..25).map(|s| Reading::rms("munich", "cnc-001", T0 + s * 1000, 5.0)).collect();
    publish(&js, &good).await;
    wait_until(Duration::from_secs(20), "all 26 messages sourced", || {
        let js = js.clone();
        async move { js.get_stream("CLOUD").await.unwrap().info().await.unwrap().state.messages == 26 }
    })
    .await;

    let text = rms_pipeline("0s", 1, "1h").replace("stream = \"TELEMETRY\"", "stream = \"CLOUD\"");
    let p = pipeline(&text, &server.url());
    assert_eq!(p.source.stream, "CLOUD");
    let worker = RunningWorker::start(&p, &server.url(), RunMode::Drain).await;
    tokio::time::timeout(Duration::from_secs(60), worker.finish()).await.expect("the drain finishes");

    assert_eq!(alerts(&js).await.len(), 1);
    let dead = dead_letters(&js).await;
    assert_eq!(dead.len(), 1);
    let h = &dead[0].headers;
    assert_eq!(h.get("Stator-Stream").unwrap().as_str(), "CLOUD");
    assert!(h.get("Stator-Original-Nats-Stream-Source").is_some_and(|v| v.as_str().contains("TELEMETRY")));
    assert!(h.get("Nats-Stream-Source").is_none());
    let info = js.get_stream("CLOUD").await.unwrap().consumer_info("test-rms").await.unwrap();
    assert_eq!((info.num_pending, info.num_ack_pending), (0, 0));
}
