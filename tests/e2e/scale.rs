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
    let dead = dead_letters(js).await;
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
    ride_out_the_loss_of_the_stream_leader(1).await;
}

/// The same with 3 partitions: all three workers active, each on one.
#[tokio::test]
async fn three_partitioned_workers_on_a_cluster_ride_out_the_loss_of_the_stream_leader() {
    ride_out_the_loss_of_the_stream_leader(3).await;
}

async fn ride_out_the_loss_of_the_stream_leader(partitions: u32) {
    let mut cluster = TestCluster::start(3).await;
    let js = async_nats::jetstream::new(stator::connect(&cluster.urls()).await.expect("connect"));
    wait_until(Duration::from_secs(30), "R3 streams on the cluster", || async {
        stator::plant::ensure_cluster_streams(&js, 3).await.is_ok()
    })
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let text = rms_pipeline("2s", 1, "2s")
        .replace("ack_wait = \"30s\"", &format!("ack_wait = \"13s\"\npartitions = {partitions}"))
        + &archived(dir.path());
    let p = pipeline(&text, &cluster.urls());
    let mut workers = Vec::new();
    for _ in 0..3 {
        workers.push(RunningWorker::start(&p, &cluster.urls(), RunMode::Follow).await);
    }
    let all_pinned = |workers: &[RunningWorker]| workers.iter().map(|w| pinned(&w.stats)).sum::<i64>();
    let first = readings(0, SECONDS / 2);
    publish_through_elections(&js, &first).await;
    wait_until(Duration::from_secs(60), "the first half fetched, each consumer by one pinned worker", || async {
        let fetched = workers.iter().map(|w| Stats::get(&w.stats.fetched)).sum::<u64>() >= first.len() as u64;
        fetched && if partitions > 1 { shared(&p, 3).await } else { all_pinned(&workers) == 1 }
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
        let done = if partitions > 1 {
            partitioned_backlog(&js, partitions).await == 0
        } else {
            let stream = js.get_stream("TELEMETRY").await;
            let info = match stream {
                Ok(s) => s.consumer_info("test-rms").await.ok(),
                Err(_) => None,
            };
            info.is_some_and(|i| i.num_pending == 0 && i.num_ack_pending == 0)
        };
        done && if partitions > 1 { shared(&p, 3).await } else { all_pinned(&workers) == 1 }
    })
    .await;
    for w in &workers {
        assert_eq!(Stats::get(&w.stats.late), 0, "nothing taken for late");
        if partitions == 3 {
            assert!(Stats::get(&w.stats.fetched) > 0, "each of the three workers did a share");
        }
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
    let start = || stator_run(&file, &server.url());
    let mut children = Children(vec![start(), start()]);
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
    let killed = children.0.iter().position(|c| c.id() == pid).expect("the active worker is one of ours");
    let mut victim = children.0.remove(killed);
    victim.kill().expect("SIGKILL");
    victim.wait().expect("reaped");
    children.0.push(start());
    publish(&js, &readings(SECONDS / 2, SECONDS)).await;
    wait_until(Duration::from_secs(90), "everything processed and acknowledged", || async {
        consumer_backlog(&js, "test-rms").await == (0, 0)
    })
    .await;
    check_outputs(&js, &archive).await;
    children.stop().await;
}

const PARTITIONS: u32 = 4;

/// Whether `workers` workers are on the pipeline's roll, each running its share of the
/// partitions (they differ by at most one) and every partition run by exactly one of them,
/// as `stator status` reads their announcements. (A partition's pin comes with its first
/// delivery: a run with nothing left to deliver holds none.)
async fn shared(p: &stator_engine::config::Pipeline, workers: usize) -> bool {
    let Ok(status) = stator::status::from_jetstream(p).await else { return false };
    let n = p.source.partitions as usize;
    let mut running: Vec<&String> = status.workers.iter().flat_map(|w| &w.consumers).collect();
    running.sort();
    let all: Vec<String> = (0..n).map(|i| format!("{}-p{i}", p.source.durable)).collect();
    status.workers.len() == workers
        && running == all.iter().collect::<Vec<_>>()
        && status.workers.iter().all(|w| w.consumers.len() == n / workers || w.consumers.len() == n.div_ceil(workers))
}

/// Unprocessed messages of a partitioned pipeline: those not yet copied into its stream, still in it (work-queue retention drops what is acknowledged), and pending or
/// unacknowledged on the partitions' consumers.
async fn partitioned_backlog(js: &async_nats::jetstream::Context, partitions: u32) -> u64 {
    let Ok(mut stream) = js.get_stream("STATOR_TELEMETRY_test-rms").await else { return u64::MAX };
    let Ok(info) = stream.info().await else { return u64::MAX };
    // Every TELEMETRY message of these tests is a reading the pipeline reads: the partitioned
    // stream has copied them all when its last sequence is TELEMETRY's.
    let Ok(mut telemetry) = js.get_stream("TELEMETRY").await else { return u64::MAX };
    let Ok(origin) = telemetry.info().await else { return u64::MAX };
    let uncopied = origin.state.last_sequence.saturating_sub(info.state.last_sequence);
    let mut left = uncopied + info.state.messages + info.sources.iter().map(|s| s.lag).sum::<u64>();
    for p in 0..partitions {
        match stream.consumer_info(&format!("test-rms-p{p}")).await {
            Ok(c) => left += c.num_pending + c.num_ack_pending as u64,
            Err(_) => return u64::MAX,
        }
    }
    left
}

#[tokio::test]
async fn partitioned_workers_share_the_machines_rebalance_on_a_crash_and_a_join_and_never_split_a_window() {
    let server = TestServer::with_streams().await;
    let js = server.js().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let text = rms_pipeline("2s", 1, "2s")
        .replace("ack_wait = \"30s\"", &format!("ack_wait = \"13s\"\npartitions = {PARTITIONS}"))
        + &archived(dir.path());
    let p = pipeline(&text, &server.url());
    assert_eq!(p.source.partitions, PARTITIONS);

    // Two workers on the same file: each runs the partitions it owns, both are active.
    let a = RunningWorker::start(&p, &server.url(), RunMode::Follow).await;
    let b = RunningWorker::start(&p, &server.url(), RunMode::Follow).await;
    let first = readings(0, SECONDS / 2);
    publish(&js, &first).await;
    let (sa, sb) = (a.stats.clone(), b.stats.clone());
    wait_until(Duration::from_secs(60), "the first half processed, both workers active", || async {
        partitioned_backlog(&js, PARTITIONS).await == 0
            && pinned(&sa) > 0
            && pinned(&sb) > 0
            && pinned(&sa) + pinned(&sb) == i64::from(PARTITIONS)
    })
    .await;
    for s in [&sa, &sb] {
        assert!(Stats::get(&s.fetched) > 0, "each worker did a share");
    }
    assert_eq!(Stats::get(&sa.fetched) + Stats::get(&sb.fetched), first.len() as u64, "no reading went to two workers");

    // One worker dies (nothing acked, nothing NAKed); a third one joins; the second half comes.
    let crashed = b.stats.clone();
    b.crash().await;
    let c = RunningWorker::start(&p, &server.url(), RunMode::Follow).await;
    publish(&js, &readings(SECONDS / 2, SECONDS)).await;
    let survivors = [a, c];
    wait_until(Duration::from_secs(120), "everything processed, the partitions shared by the survivors", || async {
        partitioned_backlog(&js, PARTITIONS).await == 0 && shared(&p, 2).await
    })
    .await;
    let joined = &survivors[1].stats;
    assert!(Stats::get(&joined.fetched) > 0, "the worker that joined took a share");
    for s in [&sa, &crashed, joined] {
        assert_eq!(Stats::get(&s.late), 0, "nothing taken for late");
    }

    // `stator status` names a worker for every partition.
    let status = stator::status::from_jetstream(&p).await.expect("status");
    let text = stator::status::render(&[status]);
    for p in 0..PARTITIONS {
        assert!(text.contains(&format!("partition test-rms-p{p}: on ")), "{text}");
    }

    // The archive knows messages by their TELEMETRY sequence, as an unpartitioned run would.
    let location =
        stator_engine::archive::ArchiveLocation::open(dir.path().to_str().expect("utf-8"), &[]).expect("archive");
    let last = js.get_stream("TELEMETRY").await.expect("stream").cached_info().state.last_sequence;
    let range = sql(&location, "SELECT min(_seq), max(_seq) FROM readings").await;
    assert_eq!(range, [["1".to_owned(), last.to_string()]]);
    check_outputs(&js, dir.path()).await;
    for w in survivors {
        w.stop().await;
    }
}

/// The run, as a user does it: the same partitioned file run by three `stator run`
/// processes; one is SIGKILLed mid-run, another is started later. Every worker is active on
/// its share; the outputs are those of one uninterrupted worker.
#[tokio::test]
async fn three_partitioned_stator_run_processes_survive_a_sigkill_and_a_late_joiner() {
    const N: u32 = 6;
    let server = TestServer::with_streams().await;
    let js = server.js().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let archive = dir.path().join("archive");
    let file = dir.path().join("p.toml");
    let text = rms_pipeline("2s", 1, "2s")
        .replace("ack_wait = \"30s\"", &format!("ack_wait = \"13s\"\npartitions = {N}"))
        + &archived(&archive);
    std::fs::write(&file, &text).expect("pipeline file");
    let p = pipeline(&text, &server.url());
    let start = || stator_run(&file, &server.url());
    let mut children = Children(vec![start(), start(), start()]);
    let first = readings(0, SECONDS / 2);
    publish(&js, &first).await;
    // Each of the three runs two partitions and has done work.
    let working =
        || async { stator::status::from_jetstream(&p).await.is_ok_and(|s| s.workers.iter().all(|w| w.fetched > 0)) };
    wait_until(Duration::from_secs(60), "status: three workers, each active on two partitions", || async {
        partitioned_backlog(&js, N).await == 0 && shared(&p, 3).await && working().await
    })
    .await;

    children.0.remove(1).kill().expect("SIGKILL");
    publish(&js, &readings(SECONDS / 2, SECONDS * 3 / 4)).await;
    children.0.push(start());
    publish(&js, &readings(SECONDS * 3 / 4, SECONDS)).await;
    // The joiner took its share of the rest: every worker on the roll, the joiner included,
    // has fetched readings (their own counts, as they announce them).
    wait_until(Duration::from_secs(120), "everything processed, three workers each on two partitions", || async {
        partitioned_backlog(&js, N).await == 0 && shared(&p, 3).await && working().await
    })
    .await;
    let text = stator::status::render(&[stator::status::from_jetstream(&p).await.expect("status")]);
    assert!(text.contains("partition test-rms-p5: on "), "{text}");
    check_outputs(&js, &archive).await;
    children.stop().await;
}

/// `stator run FILE` against `url`, its output discarded.
fn stator_run(file: &std::path::Path, url: &str) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_stator"))
        .arg("run")
        .arg(file)
        .env("NATS_URL", url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("stator run")
}

/// `stator run` processes, killed when the test ends, also when it fails.
struct Children(Vec<std::process::Child>);

impl Children {
    /// Stops each with SIGTERM, as systemd would; each must exit 0 within 30 s.
    async fn stop(mut self) {
        for c in &mut self.0 {
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
}

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
