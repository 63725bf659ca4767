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
