//! Shared by the benches: their result tables go to standard output and, under `make bench`
//! (`STATOR_BENCH_WRITE=1`), into docs/BENCHMARKS.md between the bench's markers
//! `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`, with the date and machine.

use std::path::PathBuf;

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
