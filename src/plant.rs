//! The JetStream layout of the reference articles: the TELEMETRY and ALERTS streams and the
//! dead-letter stream, created the way `stator demo` and the tests use them.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

/// Subjects of the TELEMETRY stream (reference article "NATS-based Edge-to-Cloud Pipeline").
pub const TELEMETRY_SUBJECTS: [&str; 2] = ["acme.*.*.*.*.*.vibration.>", "acme.*.*.*.*.*.temperature"];
/// Subjects of the ALERTS stream: narrower than `acme.*.alert.>`, which TELEMETRY overlaps.
pub const ALERT_SUBJECTS: [&str; 1] = ["acme.*.alert.*.*"];
/// Subjects of the FEATURES stream: window features published by pipelines.
pub const FEATURE_SUBJECTS: [&str; 1] = ["acme.*.features.*.*"];
/// Subjects of the dead-letter stream.
pub const DEAD_LETTER_SUBJECTS: [&str; 1] = ["stator.deadletter.>"];

/// Creates (or updates) TELEMETRY, ALERTS, STATOR_DEADLETTER and FEATURES on one server, and
/// the MACHINE_CONFIG bucket.
///
/// ALERTS keeps a 24 h duplicate window, so a worker that replays a day of windows after an
/// outage publishes no transition twice.
///
/// # Errors
/// The NATS error as text.
pub async fn ensure_streams(js: &jetstream::Context) -> Result<(), String> {
    let streams = [
        ("TELEMETRY", &TELEMETRY_SUBJECTS[..], Duration::from_secs(120), Duration::from_secs(7 * 86_400)),
        ("ALERTS", &ALERT_SUBJECTS[..], Duration::from_secs(86_400), Duration::from_secs(90 * 86_400)),
        ("STATOR_DEADLETTER", &DEAD_LETTER_SUBJECTS[..], Duration::from_secs(86_400), Duration::from_secs(30 * 86_400)),
        ("FEATURES", &FEATURE_SUBJECTS[..], Duration::from_secs(86_400), Duration::from_secs(7 * 86_400)),
    ];
    for (name, subjects, duplicate_window, max_age) in streams {
        js.create_or_update_stream(stream::Config {
            name: name.to_owned(),
            subjects: subjects.iter().map(|s| (*s).to_owned()).collect(),
            storage: stream::StorageType::File,
            duplicate_window,
            max_age,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("stream {name}: {e}"))?;
    }
    if js.get_key_value("MACHINE_CONFIG").await.is_err() {
        js.create_key_value(jetstream::kv::Config {
            bucket: "MACHINE_CONFIG".into(),
            description: "per-machine settings (reference article: KV Store: Machine Configuration)".into(),
            history: 5,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("bucket MACHINE_CONFIG: {e}"))?;
    }
    Ok(())
}

/// Every message currently in `stream` (optionally only those on `filter`), in order.
///
/// # Errors
/// The NATS error as text.
pub async fn read_stream(
    js: &jetstream::Context,
    stream: &str,
    filter: Option<&str>,
) -> Result<Vec<jetstream::message::StreamMessage>, String> {
    let stream = js.get_stream(stream).await.map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let last = stream.cached_info().state.last_sequence;
    for seq in 1..=last {
        match stream.get_raw_message(seq).await {
            Ok(m) => {
                if filter.is_none_or(|f| stator_engine::subject::matches(f, m.subject.as_str())) {
                    out.push(m);
                }
            }
            Err(e) if e.kind() == jetstream::stream::RawMessageErrorKind::NoMessageFound => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(out)
}
