//! `[archive]`: which tables a pipeline writes, where, and when its files roll.

use std::time::Duration;

use super::checker::{Checker, duration};
use super::file::ArchiveSection;
use super::{Format, KeyPath};
use crate::archive::{ArchiveLocation, ArchiveSpec, DEFAULT_ARCHIVE_URL, Table};

pub(super) fn build_archive(
    cx: &mut Checker,
    a: &ArchiveSection,
    format: Option<Format>,
    fields: &[String],
) -> Option<ArchiveSpec> {
    let p = KeyPath::default().key("archive");
    let reserved = crate::archive::reserved_columns();
    let clashes: Vec<&String> = fields.iter().filter(|f| reserved.contains(f)).collect();
    let mut ok = true;
    if !clashes.is_empty() {
        let list = clashes.iter().map(|f| format!("`{{{f}}}`")).collect::<Vec<_>>().join(", ");
        cx.error(
            &KeyPath::default().key("source").key("subject"),
            format!("subject field(s) {list} would clash with archive columns; rename them in the template"),
        );
        ok = false;
    }
    let url = a.url.clone().unwrap_or_else(|| DEFAULT_ARCHIVE_URL.into());
    let options: Vec<(String, String)> = a.options.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    // Parse the URL and options now (cloud stores are not contacted), so a typo is reported
    // with its line rather than at the first file.
    for key in a.options.keys().filter(|k| !ArchiveLocation::knows_option(&url, k)) {
        let what = if url.contains("://") && !url.starts_with("file://") {
            format!("unknown option `{key}` for this store")
        } else {
            "a local directory takes no options".to_owned()
        };
        cx.error(&p.key("options").key(key), what);
        ok = false;
    }
    if ok
        && url.contains("://")
        && !url.starts_with("file://")
        && let Err(e) = ArchiveLocation::open(&url, &options)
    {
        cx.error(&p.key("url"), e.to_string());
        ok = false;
    }
    let raw = match format {
        Some(Format::Waveform) => Table::Waveforms,
        _ => Table::Readings,
    };
    let tables = match &a.tables {
        None => vec![raw, Table::Features, Table::Alerts],
        Some(names) => {
            let mut tables = Vec::new();
            for (i, name) in names.iter().enumerate() {
                match Table::parse(name) {
                    Some(t) if t.is_raw() && t != raw => {
                        cx.error(
                            &p.key("tables").index(i),
                            format!("`{name}` needs a {} source; this one writes `{}`", t.source_format(), raw.name()),
                        );
                        ok = false;
                    }
                    Some(t) if !tables.contains(&t) => tables.push(t),
                    Some(_) => {}
                    None => {
                        cx.error(
                            &p.key("tables").index(i),
                            format!("unknown table `{name}`, expected readings, waveforms, features or alerts"),
                        );
                        ok = false;
                    }
                }
            }
            tables
        }
    };
    let roll_rows = a.roll_rows.unwrap_or(500_000);
    if roll_rows == 0 || roll_rows > 10_000_000 {
        cx.error(&p.key("roll_rows"), "out of range (1 to 10000000)");
        ok = false;
    }
    let roll_bytes = match a.roll_bytes.as_deref().map(str::parse::<bytesize::ByteSize>) {
        None => 64 << 20,
        Some(Ok(b)) if (1 << 10..=1 << 34).contains(&b.as_u64()) => b.as_u64() as usize,
        Some(Ok(_)) => {
            cx.error(&p.key("roll_bytes"), "out of range (1KiB to 16GiB)");
            ok = false;
            0
        }
        Some(Err(e)) => {
            cx.error(&p.key("roll_bytes"), format!("not a size ({e}); write e.g. `64MiB`"));
            ok = false;
            0
        }
    };
    let roll_age = duration(cx, &p.key("roll_age"), a.roll_age.as_deref(), Duration::from_secs(300));
    if roll_age.is_zero() {
        cx.error(&p.key("roll_age"), "must be more than zero");
        ok = false;
    }
    ok.then_some(ArchiveSpec { url, options, tables, roll_rows, roll_bytes, roll_age })
}
