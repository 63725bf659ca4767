//! `stator replay`: a pipeline over history reproduces the live run's alerts under its own
//! subject prefix and archive prefix, and leaves no consumer or alert state behind.

use stator_engine::archive::ArchiveLocation;
use stator_engine::worker::RunMode;

use crate::harness::*;

/// Runs the `stator` binary with `NATS_URL` set; returns stdout.
async fn stator(server: &TestServer, args: &[&str]) -> String {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_stator"))
        .env("NATS_URL", server.url())
        .args(args)
        .output()
        .await
        .expect("run stator");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "stator {args:?}:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// The alerts under `prefix` in the STATOR_REPLAY stream, with the prefix taken off.
async fn replayed_alerts(js: &async_nats::jetstream::Context, prefix: &str) -> Vec<(String, Alert)> {
    stator::plant::read_stream(js, stator_engine::replay::STREAM, Some(&format!("{prefix}.>")))
        .await
        .expect("read STATOR_REPLAY")
        .into_iter()
        .filter(|m| m.subject.contains(".alert."))
        .map(|m| {
            let subject = m.subject.strip_prefix(&format!("{prefix}.")).expect("prefixed").to_owned();
            (subject, serde_json::from_slice(&m.payload).expect("alert JSON"))
        })
        .collect()
}

fn comparable(a: &Alert) -> (String, String, String, u64, String) {
    (a.rule.clone(), a.state.clone(), format!("{:.6}", a.value), a.last_seq, a.window_end.clone())
}

#[tokio::test]
async fn a_replay_from_a_sequence_or_the_last_minutes_reproduces_the_live_alerts_under_its_own_prefix() {
    let server = TestServer::with_streams().await;
    let js = server.js().await;
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let text =
        rms_pipeline("0s", 1, "1h") + &format!("\n[archive]\nurl = \"{}\"\nroll_age = \"1h\"\n", archive.display());
    // cnc-001 rises through warning to critical and back; cnc-002 stays quiet.
    let levels = [1.0, 3.0, 5.0, 5.0, 2.0, 1.0];
    let mut readings = Vec::new();
    for (w, level) in levels.iter().enumerate() {
        for i in 0..10 {
            let t = T0 + (w as i64 * 10 + i) * 1000;
            readings.push(Reading::rms("munich", "cnc-001", t, *level));
            readings.push(Reading::rms("munich", "cnc-002", t, 1.0));
        }
    }
    publish(&js, &readings).await;
    let live = RunningWorker::start(&pipeline(&text, &server.url()), &server.url(), RunMode::Drain).await;
    live.finish().await;
    let live_alerts = alerts(&js).await;
    let states: Vec<&str> = live_alerts.iter().map(|(_, _, a)| a.state.as_str()).collect();
    assert_eq!(states, ["warning", "critical", "cleared"], "the live run's transitions");

    let file = dir.path().join("line.toml");
    std::fs::write(&file, &text).unwrap();
    let file = file.to_str().unwrap();
    for (id, start) in [("from-seq", ["--from-seq", "1"]), ("last", ["--last", "15m"])] {
        let stdout = stator(&server, &[&["replay", file, "--id", id][..], &start[..]].concat()).await;
        assert!(stdout.contains(&format!("replay {id} done: {0} of {0} messages", readings.len())), "{stdout}");
        let prefix = format!("stator.replay.{id}");
        let replayed = replayed_alerts(&js, &prefix).await;
        assert_eq!(replayed.len(), live_alerts.len(), "{id}: {replayed:?}");
        for ((subject, alert), (live_subject, _, live_alert)) in replayed.iter().zip(&live_alerts) {
            assert_eq!((subject, comparable(alert)), (live_subject, comparable(live_alert)), "{id}");
        }
        let replay_archive = ArchiveLocation::open(archive.join("replay").join(id).to_str().unwrap(), &[]).unwrap();
        let n = sql(&replay_archive, "SELECT count(*) FROM readings").await;
        assert_eq!(n[0][0], readings.len().to_string(), "{id}: the replay archived every reading once");
        let stream = js.get_stream("TELEMETRY").await.unwrap();
        assert!(stream.consumer_info(format!("stator_replay_{id}")).await.is_err(), "{id}: consumer removed");
    }
    assert_eq!(alerts(&js).await.len(), live_alerts.len(), "nothing replayed reached the live ALERTS stream");
    let live_archive = ArchiveLocation::open(archive.to_str().unwrap(), &[]).unwrap();
    let n = sql(&live_archive, "SELECT count(*) FROM readings").await;
    assert_eq!(n[0][0], readings.len().to_string(), "the live tables do not read the replay prefix");
    let state = js.get_key_value("STATOR_STATE").await.unwrap();
    use futures::TryStreamExt as _;
    let keys: Vec<String> = state.keys().await.unwrap().try_collect().await.unwrap();
    assert!(keys.iter().all(|k| !k.contains("-replay-")), "replay alert state removed: {keys:?}");
    assert!(!keys.is_empty(), "the live run's state is kept");
}
