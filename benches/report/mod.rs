//! Shared by the benches: their result tables go to standard output and, under `make bench`
//! (`STATOR_BENCH_WRITE=1`), into docs/BENCHMARKS.md between the bench's markers
//! `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`, with the date and machine.

use std::path::PathBuf;
use std::time::Duration;

/// Prints `table` and, when asked, puts it into docs/BENCHMARKS.md in place of the section
/// `name`'s previous results.
pub(crate) fn publish(name: &str, table: &str) {
    println!("{table}");
    if std::env::var("STATOR_BENCH_WRITE").is_ok_and(|v| v == "1") {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/BENCHMARKS.md");
        let doc = std::fs::read_to_string(&path).expect("docs/BENCHMARKS.md");
        let (open, close) = (format!("<!-- bench:{name} -->"), format!("<!-- /bench:{name} -->"));
        let (Some(a), Some(b)) = (doc.find(&open), doc.find(&close)) else {
            panic!("docs/BENCHMARKS.md has no {open} ... {close} section");
        };
        let stamp = format!("_Last run: {}, {}._", today(), machine());
        let updated = format!("{}{open}\n{stamp}\n\n{}\n{}", &doc[..a], table.trim_end(), &doc[b..]);
        std::fs::write(&path, updated).expect("write docs/BENCHMARKS.md");
        eprintln!("updated the `{name}` section of {}", path.display());
    }
}

fn today() -> String {
    let d = time::OffsetDateTime::now_utc().date();
    format!("{d}")
}

/// CPU model and core count, from /proc/cpuinfo where there is one.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
    format!("{cores} cores, {model}")
}

/// CPU time (user and system) of process `pid` so far; zero once it is gone.
#[allow(dead_code)] // not every bench reads it
pub(crate) fn cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces): utime and
    // stime are the 12th and 13th, in clock ticks (USER_HZ, 100 on Linux).
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<u64> = after.split_whitespace().map(|f| f.parse().unwrap_or(0)).collect();
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// Whether `STATOR_BENCH_PIN=1` asks for pinning; if so, pins this process's main thread to
/// `own(cores)` (the machine needs two CPUs at least, or it panics) before a runtime starts,
/// so that the runtime's threads inherit it.
#[allow(dead_code)] // not every bench pins
pub(crate) fn pin_requested(own: impl FnOnce(usize) -> String) -> bool {
    if !std::env::var("STATOR_BENCH_PIN").is_ok_and(|v| v == "1") {
        return false;
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    assert!(cores >= 2, "STATOR_BENCH_PIN needs two CPUs");
    pin(std::process::id(), &own(cores), false);
    true
}

/// Restricts process `pid` (with `all`, each of its threads) to the CPUs in `list` (as
/// `taskset` takes them, e.g. `0` or `1-3`); threads it starts later inherit that. Panics when
/// `taskset` (util-linux) is missing or refuses: a bench asked to pin must not run unpinned.
#[allow(dead_code)] // not every bench pins
pub(crate) fn pin(pid: u32, list: &str, all: bool) {
    let mut cmd = std::process::Command::new("taskset");
    if all {
        cmd.arg("-a");
    }
    let status = cmd.args(["-p", "-c", list, &pid.to_string()]).stdout(std::process::Stdio::null()).status();
    assert!(status.is_ok_and(|s| s.success()), "taskset -p -c {list} {pid} failed");
}
