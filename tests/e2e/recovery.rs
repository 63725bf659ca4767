//! Restarts: of the worker (clean stop and crash) and of nats-server, mid-run. Afterwards
//! the ALERTS stream holds exactly what an uninterrupted run produces, and nothing is left
//! unacknowledged.

use std::time::Duration;

use rand::{Rng, SeedableRng, rngs::StdRng};
use stator_engine::worker::{RunMode, Stats};

use crate::harness::*;

/// 4 machines, 200 s; two of them cycle over and under the limits.
fn readings() -> Vec<Reading> {
    let mut rng = StdRng::seed_from_u64(5);
    let mut out = Vec::new();
    for s in 0..200 {
        for m in 1..=4 {
            let cycle = (s / 40) % 2 == 1;
            let value = match m {
                1 if cycle => 3.5,
                2 if cycle => 5.5,
                _ => 1.5,
            } + rng.random_range(-0.1..0.1);
            out.push(Reading::rms("munich", &format!("cnc-00{m}"), T0 + s * 1000, value));
        }
    }
    out
}

/// Alerts per key, in stream order: (Nats-Msg-Id, value). Order across keys is not defined.
type AlertsByKey = std::collections::BTreeMap<String, Vec<(String, f64)>>;

/// The alerts of an uninterrupted run.
async fn reference_alerts(readings: &[Reading], pipeline_text: &str) -> AlertsByKey {
    let server = TestServer::with_streams().await;
    let js = server.js().await;
    publish(&js, readings).await;
    let p = pipeline(pipeline_text, &server.url());
    RunningWorker::start(&p, &server.url(), RunMode::Drain).await.finish().await;
    ids_and_values(&js).await
}

async fn ids_and_values(js: &async_nats::jetstream::Context) -> AlertsByKey {
    let mut out = AlertsByKey::new();
    for (_, id, a) in alerts(js).await {
        out.entry(a.key.values().cloned().collect::<Vec<_>>().join(".")).or_default().push((id, a.value));
    }
    out
}

/// Publishes `first`, runs a worker until it has consumed it and raised an alert.
async fn first_half_running(
    server: &TestServer,
    js: &async_nats::jetstream::Context,
    p: &stator_engine::config::Pipeline,
    first: &[Reading],
) -> RunningWorker {
    publish(js, first).await;
    let worker = RunningWorker::start(p, &server.url(), RunMode::Follow).await;
    let stats = worker.stats.clone();
    wait_until(Duration::from_secs(20), "first half consumed", || async {
        Stats::get(&stats.fetched) >= first.len() as u64 && !alerts(js).await.is_empty()
    })
    .await;
    worker
}

#[tokio::test]
async fn a_worker_stopped_and_restarted_mid_run_publishes_no_duplicate_and_loses_nothing() {
    let text = rms_pipeline("2s", 1, "1h");
    let all = readings();
    let expected = reference_alerts(&all, &text).await;
    assert!(expected.values().map(Vec::len).sum::<usize>() >= 8, "the scenario raises and clears: {expected:?}");

    let server = TestServer::with_streams().await;
    let js = server.js().await;
    let p = pipeline(&text, &server.url());
    let (first, second) = all.split_at(all.len() / 2);
    let worker = first_half_running(&server, &js, &p, first).await;
    worker.stop().await;
    publish(&js, second).await;
    RunningWorker::start(&p, &server.url(), RunMode::Drain).await.finish().await;

    assert_eq!(ids_and_values(&js).await, expected);
    assert_eq!(consumer_backlog(&js, "test-rms").await, (0, 0));
}

#[tokio::test]
async fn a_crashed_worker_is_recovered_from_redeliveries_without_duplicates() {
    let text = rms_pipeline("2s", 1, "1h").replace("ack_wait = \"30s\"", "ack_wait = \"13s\"");
    let all = readings();
    let expected = reference_alerts(&all, &text).await;

    let server = TestServer::with_streams().await;
    let js = server.js().await;
    let p = pipeline(&text, &server.url());
    let (first, second) = all.split_at(all.len() / 2);
    let worker = first_half_running(&server, &js, &p, first).await;
    worker.crash().await;
    let (_, held) = consumer_backlog(&js, "test-rms").await;
    assert!(held > 0, "the crash left messages unacknowledged");
    publish(&js, second).await;
    let rerun = RunningWorker::start(&p, &server.url(), RunMode::Drain).await;
    let stats = rerun.stats.clone();
    rerun.finish().await;

    assert!(Stats::get(&stats.redelivered) >= held as u64);
    assert_eq!(Stats::get(&stats.late), 0, "redeliveries are not mistaken for late readings");
    assert_eq!(ids_and_values(&js).await, expected);
    assert_eq!(consumer_backlog(&js, "test-rms").await, (0, 0));
}

#[tokio::test]
async fn a_nats_server_restart_mid_run_ends_with_the_same_alerts() {
    let text = rms_pipeline("2s", 1, "1h");
    let all = readings();
    let expected = reference_alerts(&all, &text).await;

    let mut server = TestServer::with_streams().await;
    let p = pipeline(&text, &server.url());
    let (first, second) = all.split_at(all.len() / 2);
    {
        let js = server.js().await;
        publish(&js, first).await;
    }
    let worker = RunningWorker::start(&p, &server.url(), RunMode::Follow).await;
    let stats = worker.stats.clone();
    wait_until(Duration::from_secs(20), "first half consumed", || async {
        Stats::get(&stats.fetched) >= first.len() as u64
    })
    .await;
    server.server.restart().expect("server restarts");
    let js = server.js().await;
    publish(&js, second).await;
    wait_until(Duration::from_secs(60), "all alerts after the restart", || async {
        alerts(&js).await.len() >= expected.values().map(Vec::len).sum::<usize>()
    })
    .await;
    worker.stop().await;
    assert_eq!(ids_and_values(&js).await, expected);
}

/// A worker started while NATS does not answer (the link to the server down) does not give
/// up: its run fails with a timeout, is counted and started again, and once the link is back
/// it binds and drains everything, with the alerts of an uninterrupted run.
#[tokio::test]
async fn a_worker_started_while_nats_does_not_answer_runs_once_it_does() {
    started_while_nats_does_not_answer(1).await;
}

/// The same for a partitioned pipeline, whose start (the partitioned stream, the roll) asks
/// NATS more.
#[tokio::test]
async fn a_partitioned_worker_started_while_nats_does_not_answer_runs_once_it_does() {
    started_while_nats_does_not_answer(2).await;
}

async fn started_while_nats_does_not_answer(partitions: u32) {
    let text = rms_pipeline("2s", 1, "1h")
        .replace("ack_wait = \"30s\"", &format!("ack_wait = \"30s\"\npartitions = {partitions}"));
    let all = readings();
    let expected = reference_alerts(&all, &text).await;

    let server = TestServer::with_streams().await;
    let js = server.js().await;
    publish(&js, &all).await;
    let port = server.url().rsplit(':').next().and_then(|p| p.parse::<u16>().ok()).expect("server port");
    let link = stator::wan::Proxy::start(([127, 0, 0, 1], port).into()).await.expect("proxy");
    let client = stator::connect(&format!("nats://{}", link.addr)).await.expect("connect through the proxy");
    link.cut();
    let p = pipeline(&text, &server.url());
    assert_eq!(p.source.partitions, partitions);
    let worker = RunningWorker::on(&p, client, RunMode::Drain).await;
    let stats = worker.stats.clone();
    wait_until(Duration::from_secs(60), "the run failed and was started again", || async {
        Stats::get(&stats.run_restarts) >= 1
    })
    .await;
    assert!(!worker.task.is_finished(), "the worker keeps going");
    assert_eq!(Stats::get(&stats.fetched), 0);
    link.restore();
    worker.finish().await;
    assert_eq!(Stats::get(&stats.fetched), all.len() as u64);
    assert_eq!(ids_and_values(&js).await, expected);
    if partitions == 1 {
        assert_eq!(consumer_backlog(&js, "test-rms").await, (0, 0));
    } else {
        // A work-queue stream: what is acknowledged is gone from it.
        let mut derived = js.get_stream("STATOR_TELEMETRY_test-rms").await.expect("partitioned stream");
        assert_eq!(derived.info().await.expect("info").state.messages, 0, "everything acknowledged");
    }
}

/// A drain is a job that ends: when NATS never answers, it gives up after six failed starts
/// in a row and says why, instead of waiting forever.
#[tokio::test]
async fn a_drain_gives_up_when_nats_never_answers() {
    let server = TestServer::with_streams().await;
    let port = server.url().rsplit(':').next().and_then(|p| p.parse::<u16>().ok()).expect("server port");
    let link = stator::wan::Proxy::start(([127, 0, 0, 1], port).into()).await.expect("proxy");
    let client = stator::connect(&format!("nats://{}", link.addr)).await.expect("connect through the proxy");
    link.cut();
    let p = pipeline(&rms_pipeline("2s", 1, "1h"), &server.url());
    let worker = RunningWorker::on(&p, client, RunMode::Drain).await;
    let result = tokio::time::timeout(Duration::from_secs(180), worker.task).await.expect("gives up in time");
    match result.expect("worker task") {
        Err(stator_engine::worker::WorkerError::Source { .. } | stator_engine::worker::WorkerError::Nats { .. }) => {}
        other => panic!("expected the NATS error, got {other:?}"),
    }
    assert_eq!(Stats::get(&worker.stats.run_restarts), 5, "started again five times, then given up");
}
