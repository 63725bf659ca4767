//! Several workers on one pipeline file. Each consumer pins one worker (JetStream's
//! pinned-client priority group); the others stand by and one of them takes over when the
//! pinned one dies. No window is computed by two workers, none is lost.

use std::sync::Arc;
use std::time::Duration;

use stator_engine::worker::{RunMode, Stats};

use crate::harness::*;

const MACHINES: usize = 50;
const SECONDS: i64 = 120;

/// Machines 0..5 run hot from 40 s to 80 s (a warning raised, then cleared); the rest vary
/// a little below any limit.
fn value(m: usize, t: i64) -> f64 {
    if m < 5 && (40..80).contains(&t) {
        3.5 + 0.01 * (t % 7) as f64
    } else {
        1.0 + 0.02 * (m % 10) as f64 + 0.01 * (t % 5) as f64
    }
}

fn readings(from: i64, to: i64) -> Vec<Reading> {
    let mut out = Vec::new();
    for t in from..to {
        for m in 0..MACHINES {
            out.push(Reading::rms("munich", &format!("cnc-{m:03}"), T0 + t * 1000, value(m, t)));
        }
    }
    out
}

fn archived(dir: &std::path::Path) -> String {
    format!("\n[archive]\nurl = \"{}\"\nroll_rows = 1000\nroll_age = \"1s\"\n", dir.display())
}

fn pinned(stats: &Arc<Stats>) -> i64 {
    stats.consumers_pinned.get()
}

#[tokio::test]
async fn workers_sharing_a_pipeline_stand_by_take_over_on_a_crash_and_never_split_a_window() {
    let server = TestServer::with_streams().await;
    let js = server.js().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let text = rms_pipeline("2s", 1, "2s").replace("ack_wait = \"30s\"", "ack_wait = \"13s\"") + &archived(dir.path());
    let p = pipeline(&text, &server.url());

    // Two workers on the same file: one is pinned and does everything, the other stands by.
    let a = RunningWorker::start(&p, &server.url(), RunMode::Follow).await;
    let b = RunningWorker::start(&p, &server.url(), RunMode::Follow).await;
    let first = readings(0, SECONDS / 2);
    publish(&js, &first).await;
    let (sa, sb) = (a.stats.clone(), b.stats.clone());
    wait_until(Duration::from_secs(30), "the first half fetched by the pinned worker", || async {
        Stats::get(&sa.fetched) + Stats::get(&sb.fetched) >= first.len() as u64 && pinned(&sa) + pinned(&sb) == 1
    })
    .await;
    let (active, standby) = if pinned(&sa) == 1 { (a, b) } else { (b, a) };
    assert_eq!(Stats::get(&standby.stats.fetched), 0, "the standby got nothing");
    wait_until(Duration::from_secs(30), "windows closed and archived by the pinned worker", || async {
        Stats::get(&active.stats.archive_files) > 0 && Stats::get(&active.stats.alerts_published) > 0
    })
    .await;

    // The pinned worker dies (nothing acked, nothing NAKed); a third one joins.
    let crashed = active.stats.clone();
    active.crash().await;
    let c = RunningWorker::start(&p, &server.url(), RunMode::Follow).await;
    publish(&js, &readings(SECONDS / 2, SECONDS)).await;
    let survivors = [standby, c];
    wait_until(Duration::from_secs(90), "everything processed and acknowledged", || async {
        consumer_backlog(&js, "test-rms").await == (0, 0)
            && survivors.iter().map(|w| pinned(&w.stats)).sum::<i64>() == 1
    })
    .await;

    // One survivor took over; the other still stands by; `stator status` says which.
    let (taker, idle): (Vec<_>, Vec<_>) = survivors.iter().partition(|w| pinned(&w.stats) == 1);
    wait_until(Duration::from_secs(20), "status lists the two survivors' roles", || async {
        let status = stator::status::from_jetstream(&p).await.expect("status");
        let active = status.workers.iter().filter(|w| w.pinned == ["test-rms"]).count();
        let text = stator::status::render(&[status]);
        active == 1 && text.contains("active on test-rms") && text.contains("standing by")
    })
    .await;
    assert_eq!(Stats::get(&idle[0].stats.fetched), 0, "the other survivor stood by throughout");
    assert!(Stats::get(&taker[0].stats.redelivered) > 0, "the crashed worker's messages came back to the new one");
    for s in [&crashed, &taker[0].stats] {
        assert_eq!(Stats::get(&s.late), 0, "nothing taken for late");
        assert_eq!(Stats::get(&s.stand_downs), 0);
    }
    // Windows the crashed worker had published but not committed are computed again from the
    // redeliveries, and their alerts dropped by the stream as repeats (same Nats-Msg-Id).
    assert!(Stats::get(&taker[0].stats.alerts_duplicate) <= Stats::get(&crashed.alerts_published));

    check_outputs(&js, dir.path()).await;
    for w in survivors {
        w.stop().await;
    }
}

/// Every reading archived once; every (machine, window) once with the right RMS; each hot
/// machine's alert raised and cleared once; no dead letter.
async fn check_outputs(js: &async_nats::jetstream::Context, dir: &std::path::Path) {
    // The archive: every reading once; every (machine, window) once, with the right RMS.
    let location = stator_engine::archive::ArchiveLocation::open(dir.to_str().expect("utf-8"), &[]).expect("archive");
    let all = (MACHINES as i64 * SECONDS).to_string();
    let n = sql(&location, "SELECT count(*), count(DISTINCT _seq) FROM readings").await;
    assert_eq!(n, [[all.clone(), all]]);
    let features = sql(
        &location,
        "SELECT machine, CAST(window_start AS BIGINT) AS start_ms, value FROM features WHERE feature = 'rms' \
         ORDER BY machine, window_start",
    )
    .await;
    assert_eq!(features.len(), MACHINES * (SECONDS as usize / 10), "one RMS per machine and window");
    let mut seen = std::collections::BTreeSet::new();
    for f in &features {
        assert!(seen.insert((f[0].clone(), f[1].clone())), "window {f:?} computed twice");
        let m: usize = f[0].trim_start_matches("cnc-").parse().expect("machine");
        let t0 = (f[1].parse::<i64>().expect("window start") - T0) / 1000;
        let expected = rms(&(t0..t0 + 10).map(|t| value(m, t)).collect::<Vec<_>>());
        let got: f64 = f[2].parse().expect("rms");
        assert!((got - expected).abs() < 1e-9, "{} at {t0}: {got} vs {expected}", f[0]);
    }

    // Alerts: each hot machine raised and cleared once.
    let published = alerts(js).await;
    let mut states: Vec<(String, String)> =
        published.iter().map(|(_, _, a)| (a.key["machine"].clone(), a.state.clone())).collect();
    states.sort();
    let expected: Vec<(String, String)> = (0..5)
        .flat_map(|m| [(format!("cnc-{m:03}"), "cleared".to_owned()), (format!("cnc-{m:03}"), "warning".to_owned())])
        .collect();
    assert_eq!(states, expected);
    let dead = stator::plant::read_stream(js, "STATOR_DEADLETTER", None).await.expect("dead letters");
    assert!(dead.is_empty(), "no dead letter: {dead:?}");
}

#[tokio::test]
async fn a_worker_whose_pin_moves_stands_down_and_the_new_one_computes_its_open_windows_whole() {
    let server = TestServer::with_streams().await;
    let js = server.js().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let text = rms_pipeline("2s", 1, "2s") + &archived(dir.path());
    let p = pipeline(&text, &server.url());
    let a = RunningWorker::start(&p, &server.url(), RunMode::Follow).await;
    let first = readings(0, 45);
    publish(&js, &first).await;
    let sa = a.stats.clone();
    wait_until(Duration::from_secs(30), "the first part fetched, windows open", || async {
        Stats::get(&sa.fetched) >= first.len() as u64 && Stats::get(&sa.windows_closed) > 0
    })
    .await;
    let b = RunningWorker::start(&p, &server.url(), RunMode::Follow).await;

    // An operator moves the pin (`nats consumer unpin`): the server pins a worker anew (the
    // standby, usually), and the one that was active gives up its open windows instead of
    // closing them itself.
    let stream = js.get_stream("TELEMETRY").await.expect("stream");
    stream.unpin_consumer("test-rms", stator_engine::source::PRIORITY_GROUP).await.expect("unpin");
    let sb = b.stats.clone();
    wait_until(Duration::from_secs(30), "the first worker stood down", || async { Stats::get(&sa.stand_downs) >= 1 })
        .await;
    publish(&js, &readings(45, SECONDS)).await;
    wait_until(Duration::from_secs(60), "everything processed, by one pinned worker", || async {
        consumer_backlog(&js, "test-rms").await == (0, 0) && pinned(&sa) + pinned(&sb) == 1
    })
    .await;
    assert!(Stats::get(&sa.naked) > 0, "the open windows' messages went back to the server");
    assert_eq!(Stats::get(&sa.late) + Stats::get(&sb.late), 0, "nothing taken for late");
    check_outputs(&js, dir.path()).await;
    a.stop().await;
    b.stop().await;
}

/// Publishes `readings` one by one, retrying each (same `Nats-Msg-Id`, so a retry of one
/// that was stored is dropped as a repeat) while the cluster elects new leaders.
async fn publish_through_elections(js: &async_nats::jetstream::Context, readings: &[Reading]) {
    use async_nats::jetstream::message::PublishMessage;
    for r in readings {
        let id = format!("{}-{}", r.subject, r.t_ms);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let msg = PublishMessage::build().payload(r.payload()).message_id(id.clone());
            let ack = match js.send_publish(r.subject.clone(), msg).await {
                Ok(ack) => ack.await.map(drop).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match ack {
                Ok(()) => break,
                Err(e) => {
                    assert!(std::time::Instant::now() < deadline, "publish {id}: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}

/// The articles' cloud: a 3-node cluster with R3 streams, three workers on one pipeline
/// (connected to all nodes). The node leading TELEMETRY is killed mid-run and brought back:
/// the work goes on, and the outputs are those of one uninterrupted worker.
#[tokio::test]
async fn three_workers_on_a_cluster_ride_out_the_loss_of_the_stream_leader() {
    let mut cluster = TestCluster::start(3).await;
    let js = async_nats::jetstream::new(stator::connect(&cluster.urls()).await.expect("connect"));
    wait_until(Duration::from_secs(30), "R3 streams on the cluster", || async {
        stator::plant::ensure_cluster_streams(&js, 3).await.is_ok()
    })
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let text = rms_pipeline("2s", 1, "2s").replace("ack_wait = \"30s\"", "ack_wait = \"13s\"") + &archived(dir.path());
    let p = pipeline(&text, &cluster.urls());
    let mut workers = Vec::new();
    for _ in 0..3 {
        workers.push(RunningWorker::start(&p, &cluster.urls(), RunMode::Follow).await);
    }
    let first = readings(0, SECONDS / 2);
    publish_through_elections(&js, &first).await;
    wait_until(Duration::from_secs(60), "the first half fetched by one pinned worker", || async {
        workers.iter().map(|w| Stats::get(&w.stats.fetched)).sum::<u64>() >= first.len() as u64
            && workers.iter().map(|w| pinned(&w.stats)).sum::<i64>() == 1
    })
    .await;

    // Kill the node that leads TELEMETRY, keep publishing, bring it back.
    let mut stream = js.get_stream("TELEMETRY").await.expect("stream");
    let leader = stream.info().await.expect("info").cluster.as_ref().and_then(|c| c.leader.clone()).expect("leader");
    let node: usize = leader.trim_start_matches('n').parse().expect("the harness names nodes n0, n1, n2");
    cluster.nodes[node].stop();
    publish_through_elections(&js, &readings(SECONDS / 2, SECONDS * 3 / 4)).await;
    cluster.nodes[node].restart().expect("node restarts");
    publish_through_elections(&js, &readings(SECONDS * 3 / 4, SECONDS)).await;
    wait_until(Duration::from_secs(120), "everything processed and acknowledged", || async {
        let stream = js.get_stream("TELEMETRY").await;
        let info = match stream {
            Ok(s) => s.consumer_info("test-rms").await.ok(),
            Err(_) => None,
        };
        info.is_some_and(|i| i.num_pending == 0 && i.num_ack_pending == 0)
            && workers.iter().map(|w| pinned(&w.stats)).sum::<i64>() == 1
    })
    .await;
    for w in &workers {
        assert_eq!(Stats::get(&w.stats.late), 0, "nothing taken for late");
    }
    check_outputs(&js, dir.path()).await;
    for w in workers {
        w.stop().await;
    }
}

/// What a user does: the same pipeline file run by two `stator run` processes; `stator
/// status` shows one active and one standing by; the active process is SIGKILLed and a third
/// started; the standby takes over and the outputs are those of one uninterrupted worker.
#[tokio::test]
async fn stator_run_processes_share_a_file_and_survive_a_sigkill_of_the_active_one() {
    let server = TestServer::with_streams().await;
    let js = server.js().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let archive = dir.path().join("archive");
    let file = dir.path().join("p.toml");
    let text = rms_pipeline("2s", 1, "2s").replace("ack_wait = \"30s\"", "ack_wait = \"13s\"") + &archived(&archive);
    std::fs::write(&file, &text).expect("pipeline file");
    let p = pipeline(&text, &server.url());
    let start = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_stator"))
            .arg("run")
            .arg(&file)
            .env("NATS_URL", server.url())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("stator run")
    };
    let mut children = vec![start(), start()];
    let first = readings(0, SECONDS / 2);
    publish(&js, &first).await;

    // `stator status` names the active worker (host-pid) and the standby.
    let active = std::cell::Cell::new(None);
    wait_until(Duration::from_secs(60), "status: one worker active, one standing by", || async {
        let status = stator::status::from_jetstream(&p).await.expect("status");
        let busy: Vec<_> = status.workers.iter().filter(|w| w.pinned == ["test-rms"] && w.fetched > 0).collect();
        let idle = status.workers.iter().filter(|w| w.pinned.is_empty() && w.fetched == 0).count();
        if let ([w], 1) = (&busy[..], idle) {
            active.set(w.worker.rsplit('-').next().and_then(|pid| pid.parse::<u32>().ok()));
        }
        active.get().is_some()
    })
    .await;
    let pid = active.get().expect("active pid");
    let killed = children.iter().position(|c| c.id() == pid).expect("the active worker is one of ours");
    let mut victim = children.remove(killed);
    victim.kill().expect("SIGKILL");
    victim.wait().expect("reaped");
    children.push(start());
    publish(&js, &readings(SECONDS / 2, SECONDS)).await;
    wait_until(Duration::from_secs(90), "everything processed and acknowledged", || async {
        consumer_backlog(&js, "test-rms").await == (0, 0)
    })
    .await;
    check_outputs(&js, &archive).await;
    for mut c in children {
        let term = std::process::Command::new("kill").args(["-TERM", &c.id().to_string()]).status().expect("kill");
        assert!(term.success());
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = c.try_wait().expect("wait") {
                break status;
            }
            assert!(std::time::Instant::now() < deadline, "stator run did not stop within 30 s of SIGTERM");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(status.code(), Some(0));
    }
}
