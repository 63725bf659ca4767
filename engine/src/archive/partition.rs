//! Hive-style partitions by site and event time, with values that cannot escape their prefix.

/// Escapes a partition value to `[A-Za-z0-9_-]` plus `%XX` for every other byte (as Hive does),
/// so no value can contain `/`, be `..`, or collide with another value.
pub fn sanitize(value: &str) -> String {
    if value.is_empty() {
        return "%00".into();
    }
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One partition of a table: a site and an hour of event time.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Partition {
    /// Site, as in the subject (unescaped).
    pub site: String,
    /// Start of the hour, Unix ms.
    pub hour_ms: i64,
}

impl Partition {
    /// The partition of an event at `t_ms` on `site`.
    pub fn of(site: &str, t_ms: i64) -> Self {
        Self { site: site.to_owned(), hour_ms: t_ms.div_euclid(3_600_000) * 3_600_000 }
    }

    /// `site=munich/date=2026-11-22/hour=08`.
    pub fn path(&self) -> String {
        let t =
            time::OffsetDateTime::from_unix_timestamp(self.hour_ms / 1000).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        format!(
            "site={}/date={:04}-{:02}-{:02}/hour={:02}",
            sanitize(&self.site),
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_tokens_cannot_leave_their_prefix_or_collide() {
        for (raw, want) in [("munich", "munich"), ("..", "%2E%2E"), ("a/b", "a%2Fb"), ("a%2Fb", "a%252Fb"), ("", "%00")]
        {
            let s = sanitize(raw);
            assert_eq!(s, want);
            assert!(!s.contains('/') && s != ".." && s != ".");
        }
        assert_ne!(sanitize("a/b"), sanitize("a%2Fb"));
    }

    #[test]
    fn partitions_are_hive_paths_by_site_date_and_hour() {
        let p = Partition::of("munich", 1_795_334_400_000 + 59 * 60_000);
        assert_eq!(p.path(), "site=munich/date=2026-11-22/hour=08");
        assert_eq!(Partition::of("x", -1).hour_ms, -3_600_000);
    }
}
