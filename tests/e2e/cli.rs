//! The command line itself: version, shell completions and man pages come from the one clap
//! definition.

use std::process::Command;

fn stator(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_stator")).args(args).output().expect("stator");
    assert!(out.status.success(), "stator {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn the_version_names_the_git_commit() {
    let version = stator(&["--version"]);
    let commit = version.split_once('(').and_then(|(_, c)| c.split_once(')')).map(|(c, _)| c).expect("(commit)");
    assert!(version.starts_with(&format!("stator {} (", env!("CARGO_PKG_VERSION"))), "{version}");
    let head = Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).output().ok();
    match head.filter(|o| o.status.success()) {
        // Built in this checkout: the commit is HEAD's (or HEAD moved since the build).
        Some(o) => assert!(commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit()), "{version} vs {o:?}"),
        None => assert_eq!(commit, "unknown"),
    }
}

#[test]
fn completions_cover_every_subcommand() {
    let bash = stator(&["completions", "bash"]);
    for sub in ["run", "validate", "simulate", "query", "status", "plot", "replay", "demo", "completions", "man"] {
        assert!(bash.contains(&format!("stator__subcmd__{sub}")), "bash completion lacks {sub}");
    }
    assert!(stator(&["completions", "zsh"]).starts_with("#compdef stator"));
    assert!(stator(&["completions", "fish"]).contains("complete -c stator"));
}

#[test]
fn man_pages_are_written_for_stator_and_each_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let listed = stator(&["man", "--out", dir.path().to_str().unwrap()]);
    for page in ["stator.1", "stator-run.1", "stator-query.1", "stator-replay.1"] {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.starts_with(".ie"), "{page} is roff");
        assert!(listed.contains(page), "{listed}");
    }
    let run = std::fs::read_to_string(dir.path().join("stator-run.1")).unwrap();
    assert!(run.contains("drain"), "the run page documents --drain");
}

/// `stator demo --edge`, short: hub and leaf started for it, live machines, a cut, the
/// backlog forwarded; the final table says the cloud is complete (and the exit status too).
#[test]
fn the_edge_demo_ends_with_a_complete_cloud() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = dir.path().to_str().expect("utf-8");
    let out = stator(&["demo", "--edge", "--dir", dir, "--machines", "4", "--phases", "4,8,4"]);
    assert!(out.contains("── WAN link cut for 8 s"), "{out}");
    assert!(out.contains("link CUT"), "the progress shows the cut: {out}");
    assert!(out.contains("── link restored"), "{out}");
    assert!(out.contains("nothing lost, nothing twice"), "{out}");
    let published = out.lines().find(|l| l.trim_start().starts_with("readings published")).expect("table");
    let n: u64 = published.split_whitespace().nth(2).and_then(|v| v.parse().ok()).expect("a count");
    assert!(n >= 4 * 2 * 14, "two readings a second from 4 machines for 16 s: {n}");
    let archived = out.lines().find(|l| l.trim_start().starts_with("readings in the archive")).expect("table");
    assert!(archived.ends_with(&format!(" {n}")), "{archived}");
    assert!(!out.contains(" INFO "), "logs go to the file, not the screen");
    assert!(std::fs::read_to_string(format!("{dir}/demo.log")).expect("log").contains("edge-alerts"));
}
