//! Building `[source]`: stream, consumer, subjects, payload format, event time, delivery and
//! authentication.

use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream::consumer::DeliverPolicy;

use super::checker::{Checker, duration, is_name};
use super::file::SourceSection;
use super::{Auth, EventTime, Format, KeyPath, Secret, SourceSpec, WindowSpec};
use crate::subject::{self, SubjectTemplate};

pub(super) fn build_source(
    cx: &mut Checker,
    p: &KeyPath,
    s: &SourceSection,
    template: SubjectTemplate,
    windows: &[WindowSpec],
) -> Option<SourceSpec> {
    let mut ok = true;
    for (field, value) in [("stream", &s.stream), ("durable", &s.durable)] {
        if !is_name(value) {
            cx.error(&p.key(field), "use only letters, digits, `-` and `_`");
            ok = false;
        }
    }
    for (i, f) in s.filter_subjects.iter().enumerate() {
        if !subject::is_valid_filter(f) {
            cx.error(&p.key("filter_subjects").index(i), format!("`{f}` is not a valid subject filter"));
            ok = false;
        }
    }
    let format = match source_format(s) {
        Some(f) => f,
        None => {
            let other = s.format.as_deref().unwrap_or_default();
            cx.error(&p.key("format"), format!("unknown format `{other}`, expected `json` or `waveform`"));
            ok = false;
            Format::Json
        }
    };
    let event_time = match s.event_time.as_deref().unwrap_or("timestamp") {
        "publish_time" => EventTime::PublishTime,
        field if is_name(field) => EventTime::Field(field.to_owned()),
        other => {
            cx.error(&p.key("event_time"), format!("`{other}` is neither a field name nor `publish_time`"));
            ok = false;
            EventTime::PublishTime
        }
    };
    let deliver = build_deliver(cx, p, s)?;
    let longest = windows.iter().map(|w| w.size + w.allowed_lateness).max().unwrap_or_default();
    let default_wait = (longest * 2).max(Duration::from_secs(30));
    let ack_wait = duration(cx, &p.key("ack_wait"), s.ack_wait.as_deref(), default_wait);
    if s.ack_wait.is_some() && ack_wait < longest {
        cx.error(
            &p.key("ack_wait"),
            format!("ack_wait must be at least the longest window plus its lateness ({longest:?})"),
        );
        ok = false;
    }
    let max_event_time_ahead =
        duration(cx, &p.key("max_event_time_ahead"), s.max_event_time_ahead.as_deref(), Duration::from_secs(86_400));
    let auth = build_auth(cx, p, s);
    ok &= auth.is_some();
    let max_ack_pending = s.max_ack_pending.unwrap_or(100_000);
    let max_deliver = s.max_deliver.unwrap_or(5);
    let batch = s.batch.unwrap_or(500);
    for (field, bad) in [
        ("max_ack_pending", max_ack_pending < 1),
        ("max_deliver", max_deliver < 1),
        ("batch", batch == 0 || batch > 10_000),
    ] {
        if bad {
            cx.error(&p.key(field), "out of range");
            ok = false;
        }
    }
    let partitions = s.partitions.unwrap_or(1);
    ok &= check_partitions(cx, p, s, &template, windows, partitions, &deliver);
    let standby = s.standby.unwrap_or(true);
    if !standby && partitions > 1 {
        cx.error(
            &p.key("standby"),
            "partitions are shared among workers through priority groups: `standby = false` is for a pipeline of one partition",
        );
        ok = false;
    }
    ok.then(|| SourceSpec {
        url: s.url.clone().unwrap_or_else(|| "nats://127.0.0.1:4222".into()),
        stream: s.stream.clone(),
        durable: s.durable.clone(),
        create_consumer: s.create_consumer,
        standby,
        filter_subjects: s.filter_subjects.clone(),
        partitions,
        template,
        format,
        event_time,
        deliver,
        ack_wait,
        max_ack_pending,
        max_deliver,
        batch,
        max_event_time_ahead,
        auth: auth.unwrap_or_default(),
    })
}

/// The most partitions a pipeline may have.
const MAX_PARTITIONS: u32 = 256;

/// Whether `partitions` can be had: each filter (or the template's whole shape) must show
/// every field common to the windows' keys as a token of its own.
fn check_partitions(
    cx: &mut Checker,
    p: &KeyPath,
    s: &SourceSection,
    template: &SubjectTemplate,
    windows: &[WindowSpec],
    partitions: u32,
    deliver: &DeliverPolicy,
) -> bool {
    let path = p.key("partitions");
    if partitions == 0 || partitions > MAX_PARTITIONS {
        cx.error(&path, format!("out of range (1 to {MAX_PARTITIONS})"));
        return false;
    }
    if partitions == 1 {
        return true;
    }
    let by = super::common_key_fields(windows.iter().flat_map(WindowSpec::keys));
    if by.is_empty() {
        let keys: Vec<String> = windows.iter().map(|w| format!("`{}`: [{}]", w.name, w.key.join(", "))).collect();
        cx.error(
            &path,
            format!(
                "no field is in every window's key ({}), so a window would be split between partitions",
                keys.join("; ")
            ),
        );
        return false;
    }
    let mut ok = true;
    if *deliver == DeliverPolicy::LastPerSubject {
        cx.error(&p.key("deliver"), "`last_per_subject` cannot be partitioned");
        ok = false;
    }
    let filters = match &s.filter_subjects[..] {
        [] => vec![(path.clone(), template.filter())],
        some => some.iter().enumerate().map(|(i, f)| (p.key("filter_subjects").index(i), f.clone())).collect(),
    };
    for (at, f) in filters {
        if let Err(e) = template.partitioned(&f, &by, partitions) {
            cx.error(&at, format!("cannot partition by {}: {e}", by.join(", ")));
            ok = false;
        }
    }
    ok
}

fn build_auth(cx: &mut Checker, p: &KeyPath, s: &SourceSection) -> Option<Auth> {
    let mut ok = true;
    let methods = [s.user.is_some(), s.token.is_some(), s.nkey_seed_file.is_some(), s.creds_file.is_some()];
    if methods.iter().filter(|m| **m).count() > 1 {
        cx.error(p, "use one of `user`/`password`, `token`, `nkey_seed_file` or `creds_file`");
        ok = false;
    }
    if s.user.is_some() != s.password.is_some() {
        let key = if s.user.is_some() { "user" } else { "password" };
        cx.error(&p.key(key), "`user` and `password` go together");
        ok = false;
    }
    if s.tls_cert_file.is_some() != s.tls_key_file.is_some() {
        let key = if s.tls_cert_file.is_some() { "tls_cert_file" } else { "tls_key_file" };
        cx.error(&p.key(key), "`tls_cert_file` and `tls_key_file` go together");
        ok = false;
    }
    let mut file = |key: &str, value: &Option<String>| -> Option<PathBuf> {
        let path = PathBuf::from(value.as_ref()?);
        if !path.is_file() {
            cx.error(&p.key(key), format!("`{}` is not a readable file", path.display()));
            ok = false;
        }
        Some(path)
    };
    let nkey_seed_file = file("nkey_seed_file", &s.nkey_seed_file);
    let creds_file = file("creds_file", &s.creds_file);
    let tls_ca_file = file("tls_ca_file", &s.tls_ca_file);
    let cert = file("tls_cert_file", &s.tls_cert_file);
    let key = file("tls_key_file", &s.tls_key_file);
    let auth = Auth {
        user: s.user.clone().zip(s.password.clone().map(Secret)),
        token: s.token.clone().map(Secret),
        nkey_seed_file,
        creds_file,
        tls_ca_file,
        tls_client: cert.zip(key),
        tls_required: s.tls_required,
    };
    ok.then_some(auth)
}

pub(super) fn source_format(s: &SourceSection) -> Option<Format> {
    match s.format.as_deref().unwrap_or("json") {
        "json" => Some(Format::Json),
        "waveform" => Some(Format::Waveform),
        _ => None,
    }
}

fn build_deliver(cx: &mut Checker, p: &KeyPath, s: &SourceSection) -> Option<DeliverPolicy> {
    let path = p.key("deliver");
    Some(match s.deliver.as_deref().unwrap_or("all") {
        "all" => DeliverPolicy::All,
        "new" => DeliverPolicy::New,
        "last_per_subject" => DeliverPolicy::LastPerSubject,
        "start_sequence" => match s.start_sequence {
            Some(start_sequence) if start_sequence > 0 => DeliverPolicy::ByStartSequence { start_sequence },
            _ => {
                cx.error(&path, "`start_sequence` deliver needs `start_sequence = N` (N >= 1)");
                return None;
            }
        },
        "start_time" => {
            let parsed = s
                .start_time
                .as_deref()
                .map(|t| time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339));
            match parsed {
                Some(Ok(start_time)) => DeliverPolicy::ByStartTime { start_time },
                _ => {
                    cx.error(&path, "`start_time` deliver needs `start_time = \"2026-11-22T08:00:00Z\"`");
                    return None;
                }
            }
        }
        other => {
            cx.error(
                &path,
                format!("unknown deliver `{other}`, expected all, new, start_sequence, start_time or last_per_subject"),
            );
            return None;
        }
    })
}
