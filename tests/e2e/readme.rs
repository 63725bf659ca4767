//! The README's quick start, steps 2 to 6, run as written (the `cargo run` prefix becomes the
//! built binary, `your-server` the test's server), so the README cannot rot.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::harness::*;

/// The README's numbered step `n`, up to the next step.
fn step(readme: &str, n: u32) -> &str {
    let start = readme.find(&format!("\n{n}. ")).unwrap_or_else(|| panic!("step {n} in the README"));
    let rest = &readme[start + 1..];
    let end = rest.find(&format!("\n{}. ", n + 1)).or_else(|| rest.find("\n\n")).unwrap_or(rest.len());
    &rest[..end]
}

/// The code spans of a step that are commands.
fn commands(step: &str) -> Vec<String> {
    step.split('`').skip(1).step_by(2).filter(|c| c.contains("cargo run")).map(str::to_owned).collect()
}

/// A README command as this test runs it: the built binary, the test server.
fn as_run(command: &str, url: &str) -> String {
    let bin = env!("CARGO_BIN_EXE_stator");
    command.replace("cargo run --release --", bin).replace("cargo run --", bin).replace("nats://your-server:4222", url)
}

fn sh(command: &str, cwd: &Path) -> Output {
    let out = Command::new("sh").arg("-c").arg(command).current_dir(cwd).env("NO_COLOR", "1").output().expect("sh");
    assert!(out.status.success(), "`{command}` failed:\n{}", String::from_utf8_lossy(&out.stderr));
    out
}

#[tokio::test]
async fn the_readme_quick_start_works_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let cwd = tempfile::tempdir().unwrap();
    std::fs::create_dir(cwd.path().join("pipelines")).unwrap();
    std::fs::copy(root.join("pipelines/line-health.toml"), cwd.path().join("pipelines/line-health.toml")).unwrap();
    let server = TestServer::start("");
    let js = server.js().await;
    // The streams a user has (the reference articles'); ALERTS as step 4 says.
    stator::plant::ensure_streams(&js).await.expect("streams");
    let alert_subjects = step(&readme, 4).split('`').nth(3).expect("step 4 names the ALERTS subjects").to_owned();
    let alerts_stream = js.get_stream("ALERTS").await.unwrap().info().await.unwrap().config.subjects.clone();
    assert_eq!(alerts_stream, [alert_subjects]);

    // 2. validate
    let [validate] = &commands(step(&readme, 2))[..] else { panic!("one command in step 2") };
    let out = sh(&as_run(validate, &server.url()), cwd.path());
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (pipeline `line-health`)"));

    // 3. run, in the background
    let [run] = &commands(step(&readme, 3))[..] else { panic!("one command in step 3") };
    let mut worker = Command::new("sh")
        .arg("-c")
        .arg(format!("exec {}", as_run(run, &server.url()).replace("NATS_URL=", "env NATS_URL=")))
        .current_dir(cwd.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("step 3");

    // 5. simulate: the drifting machine is alerted
    let [simulate] = &commands(step(&readme, 5))[..] else { panic!("one command in step 5") };
    let out = sh(&as_run(simulate, &server.url()), cwd.path());
    assert!(String::from_utf8_lossy(&out.stdout).contains("published"), "{out:?}");
    wait_until(Duration::from_secs(60), "an alert for cnc-003", || async {
        alerts(&js).await.iter().any(|(subject, _, _)| subject == "acme.munich.alert.vibration.cnc-003")
    })
    .await;
    // "Stop it with Ctrl-C or SIGTERM: it finishes in-flight work and exits 0."
    let pid = worker.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    let status = tokio::task::spawn_blocking(move || worker.wait()).await.unwrap().expect("wait");
    assert!(status.success(), "step 3 exits 0 on SIGTERM: {status}");

    // 6. query the demo's archive (step 1 made it; here a short demo)
    sh(&format!("{} demo --readings 60 --waveform-seconds 8", env!("CARGO_BIN_EXE_stator")), cwd.path());
    let [query] = &commands(step(&readme, 6))[..] else { panic!("one command in step 6") };
    let out = sh(&as_run(query, &server.url()), cwd.path());
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("| cnc-003 "), "{table}");
}
