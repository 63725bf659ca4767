//! Pipeline files: every shipped one validates; broken ones give the expected errors.

use std::path::Path;
use std::process::Command;

use stator_engine::config;

#[test]
fn every_shipped_pipeline_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let loaded = config::load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
            seen += 1;
        }
    }
    assert!(seen >= 1);
    for (path, text) in stator::SHIPPED_PIPELINES.iter().chain(&stator::EDGE_PIPELINES) {
        assert_eq!(std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap(), *text);
    }
}

/// Each `tests/pipelines/broken/NAME.toml` has `NAME.expected`: the exact output of
/// `stator validate` on it. Regenerate with `STATOR_BLESS=1`.
#[test]
fn broken_pipelines_give_the_expected_errors_with_positions() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = Path::new("tests/pipelines/broken");
    let mut files: Vec<_> = std::fs::read_dir(root.join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5);
    for file in files {
        let rel = dir.join(file.file_name().unwrap());
        let out = Command::new(env!("CARGO_BIN_EXE_stator"))
            .current_dir(root)
            .env_remove("NATS_URL")
            .args(["validate"])
            .arg(&rel)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{} must fail validation", rel.display());
        let got = String::from_utf8(out.stdout).unwrap();
        let expected_path = file.with_extension("expected");
        if std::env::var_os("STATOR_BLESS").is_some() {
            std::fs::write(&expected_path, &got).unwrap();
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        assert_eq!(got, expected, "{}", rel.display());
    }
}

/// What `stator validate --needs FILE` prints.
fn needs(file: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_stator"))
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .env("NATS_URL", "nats://127.0.0.1:4222")
        .args(["validate", "--needs", file])
        .output()
        .expect("stator validate runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn validate_says_what_a_pipeline_needs_from_the_server() {
    let text = needs("pipelines/line-health.toml");
    for needed in [
        "needs: nats-server 2.11 or newer",
        "needs: stream `TELEMETRY` must exist",
        "priority group `stator` pinning one worker",
        "`STATOR_WORKERS` (workers)",
        "one is active per consumer, the others stand by",
    ] {
        assert!(text.contains(needed), "{needed:?} missing from:\n{text}");
    }
    let text = needs("pipelines/fleet-rms.toml");
    for needed in [
        "needs: stream `STATOR_TELEMETRY_fleet-rms` (created when missing): sources `TELEMETRY`",
        "-> `{{partition(8,1,4)}}.acme.{{wildcard(1)}}.",
        "work-queue retention",
        "`TELEMETRY` itself is not changed",
        "consumers `fleet-rms-p0` to `fleet-rms-p7` on it",
        "partitioned by site, machine",
        "up to 8 workers may run this file together",
    ] {
        assert!(text.contains(needed), "{needed:?} missing from:\n{text}");
    }
}
