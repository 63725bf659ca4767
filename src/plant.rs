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
    ensure_edge_streams(js).await?;
    create(js, "FEATURES", &FEATURE_SUBJECTS, Duration::from_secs(86_400), Duration::from_secs(7 * 86_400)).await
}

/// The edge side of the articles' topology, on a factory's leaf node: TELEMETRY, ALERTS and
/// STATOR_DEADLETTER as in [`ensure_streams`], and the MACHINE_CONFIG bucket; no FEATURES
/// stream, which would capture the cloud's features across the leaf link.
///
/// # Errors
/// The NATS error as text.
pub async fn ensure_edge_streams(js: &jetstream::Context) -> Result<(), String> {
    js.create_or_update_stream(telemetry_stream(1)).await.map_err(|e| format!("stream TELEMETRY: {e}"))?;
    create(js, "ALERTS", &ALERT_SUBJECTS, Duration::from_secs(86_400), Duration::from_secs(90 * 86_400)).await?;
    let month = Duration::from_secs(30 * 86_400);
    create(js, "STATOR_DEADLETTER", &DEAD_LETTER_SUBJECTS, Duration::from_secs(86_400), month).await?;
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

/// The streams of [`ensure_streams`] on a JetStream cluster, each at `replicas` copies (the
/// articles' cloud cluster: 3).
///
/// # Errors
/// The NATS error as text.
pub async fn ensure_cluster_streams(js: &jetstream::Context, replicas: usize) -> Result<(), String> {
    js.create_or_update_stream(telemetry_stream(replicas)).await.map_err(|e| format!("stream TELEMETRY: {e}"))?;
    let (day, month) = (Duration::from_secs(86_400), Duration::from_secs(30 * 86_400));
    for (name, subjects, max_age) in [
        ("ALERTS", &ALERT_SUBJECTS[..], 3 * month),
        ("STATOR_DEADLETTER", &DEAD_LETTER_SUBJECTS[..], month),
        ("FEATURES", &FEATURE_SUBJECTS[..], 7 * day),
    ] {
        create_at(js, name, subjects, day, max_age, replicas).await?;
    }
    Ok(())
}

async fn create(
    js: &jetstream::Context,
    name: &str,
    subjects: &[&str],
    duplicate_window: Duration,
    max_age: Duration,
) -> Result<(), String> {
    create_at(js, name, subjects, duplicate_window, max_age, 1).await
}

async fn create_at(
    js: &jetstream::Context,
    name: &str,
    subjects: &[&str],
    duplicate_window: Duration,
    max_age: Duration,
    replicas: usize,
) -> Result<(), String> {
    js.create_or_update_stream(stream::Config {
        name: name.to_owned(),
        subjects: subjects.iter().map(|s| (*s).to_owned()).collect(),
        storage: stream::StorageType::File,
        duplicate_window,
        max_age,
        num_replicas: replicas,
        ..Default::default()
    })
    .await
    .map(drop)
    .map_err(|e| format!("stream {name}: {e}"))
}

/// The TELEMETRY stream of the reference article ("NATS-based Edge-to-Cloud Pipeline"): its
/// subjects, 7 days or 10 GiB whichever comes first (oldest discarded), file storage, a 2 min
/// duplicate window, S2 compression, and `replicas` copies (3 in the cloud cluster).
pub fn telemetry_stream(replicas: usize) -> stream::Config {
    stream::Config {
        name: "TELEMETRY".into(),
        subjects: TELEMETRY_SUBJECTS.iter().map(|s| (*s).to_owned()).collect(),
        retention: stream::RetentionPolicy::Limits,
        max_bytes: 10 * 1024 * 1024 * 1024,
        max_age: Duration::from_secs(7 * 86_400),
        storage: stream::StorageType::File,
        num_replicas: replicas,
        discard: stream::DiscardPolicy::Old,
        duplicate_window: Duration::from_secs(120),
        compression: Some(stream::Compression::S2),
        ..Default::default()
    }
}

/// Subjects of the cloud's own dead-letter stream: apart from the edge's
/// ([`DEAD_LETTER_SUBJECTS`]), since subjects cross a leaf link wherever a stream on the other
/// side listens. Cloud pipelines set `dead_letter_subject = "stator.cloud.deadletter.<name>"`.
pub const CLOUD_DEAD_LETTER_SUBJECTS: [&str; 1] = ["stator.cloud.deadletter.>"];

/// The cloud side of the articles' topology, on the hub: TELEMETRY, ALERTS and
/// STATOR_DEADLETTER with no subjects of their own, each **sourcing** the stream of the same
/// name in every edge domain (`$JS.<domain>.API`), so a factory's data is stored at the edge
/// through a WAN cut and forwarded in order when the link returns; FEATURES and the cloud's
/// dead letters ([`CLOUD_DEAD_LETTER_SUBJECTS`]) for the cloud's own pipelines. All at
/// `replicas` copies; TELEMETRY as [`telemetry_stream`].
///
/// # Errors
/// The NATS error as text.
pub async fn ensure_cloud_streams(
    js: &jetstream::Context,
    edge_domains: &[&str],
    replicas: usize,
) -> Result<(), String> {
    let sources = |name: &str| {
        let sources = edge_domains
            .iter()
            .map(|domain| stream::Source {
                name: name.to_owned(),
                external: Some(stream::External { api_prefix: format!("$JS.{domain}.API"), delivery_prefix: None }),
                ..Default::default()
            })
            .collect();
        Some(sources)
    };
    let telemetry =
        stream::Config { subjects: Vec::new(), sources: sources("TELEMETRY"), ..telemetry_stream(replicas) };
    let alerts = stream::Config {
        name: "ALERTS".into(),
        sources: sources("ALERTS"),
        duplicate_window: Duration::from_secs(86_400),
        max_age: Duration::from_secs(90 * 86_400),
        ..Default::default()
    };
    let dead_letters = stream::Config {
        name: "STATOR_DEADLETTER".into(),
        subjects: CLOUD_DEAD_LETTER_SUBJECTS.iter().map(|s| (*s).to_owned()).collect(),
        sources: sources("STATOR_DEADLETTER"),
        max_age: Duration::from_secs(30 * 86_400),
        ..Default::default()
    };
    let features = stream::Config {
        name: "FEATURES".into(),
        subjects: FEATURE_SUBJECTS.iter().map(|s| (*s).to_owned()).collect(),
        duplicate_window: Duration::from_secs(86_400),
        max_age: Duration::from_secs(7 * 86_400),
        ..Default::default()
    };
    for config in [telemetry, alerts, dead_letters, features] {
        let name = config.name.clone();
        let config = stream::Config { storage: stream::StorageType::File, num_replicas: replicas, ..config };
        js.create_or_update_stream(config).await.map_err(|e| format!("stream {name}: {e}"))?;
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
