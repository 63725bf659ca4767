//! Replays: a pipeline run over history, next to the live one and apart from it.
//!
//! [`plan`] turns a pipeline into its replay twin: its own name (so its own alert state), a
//! consumer of its own starting where the user asked, every output subject under
//! `stator.replay.{id}.` (captured by the `STATOR_REPLAY` stream, so a replayed alert never
//! reaches the live ALERTS stream or anyone paged from it) and the archive under
//! `replay/{id}/` below the live one (which the live tables never read).

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use time::OffsetDateTime;

use crate::config::Pipeline;
use crate::subject::OutputTemplate;

/// The stream that keeps replay outputs (alerts, features, dead letters).
pub const STREAM: &str = "STATOR_REPLAY";
/// Its subjects.
pub const SUBJECTS: &str = "stator.replay.>";
/// How long replay outputs are kept.
pub const KEEP: Duration = Duration::from_secs(7 * 86_400);
/// A replay consumer left behind by a replay that died is removed after this long.
pub const ABANDONED_AFTER: Duration = Duration::from_secs(3600);

/// Where in the stream a replay starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// At this stream sequence.
    Sequence(u64),
    /// At the first message stored at or after this time.
    Time(OffsetDateTime),
}

impl Start {
    /// "The last `span`", counted back from `now`.
    pub fn last(span: Duration, now: OffsetDateTime) -> Self {
        Self::Time(now - span)
    }

    fn policy(self) -> consumer::DeliverPolicy {
        match self {
            Self::Sequence(s) => consumer::DeliverPolicy::ByStartSequence { start_sequence: s.max(1) },
            Self::Time(t) => consumer::DeliverPolicy::ByStartTime { start_time: t },
        }
    }
}

/// A replay, ready to run with [`crate::worker::run`].
#[derive(Debug, Clone)]
pub struct Plan {
    /// The replay id (a subject token).
    pub id: String,
    /// The prefix of every output subject: `stator.replay.{id}`.
    pub subject_prefix: String,
    /// The pipeline as the replay runs it.
    pub pipeline: Pipeline,
}

/// Why a replay cannot be planned or started.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The id is not a single subject token of `[A-Za-z0-9_-]`.
    #[error("replay id `{0}` must be letters, digits, `-` and `_` only")]
    BadId(String),
    /// An output subject would not be valid under the replay prefix.
    #[error("output subject `{template}` under the replay prefix: {reason}")]
    Subject {
        /// The template.
        template: String,
        /// Why.
        reason: String,
    },
    /// NATS refused.
    #[error("{0}")]
    Nats(String),
}

/// The default replay id: the UTC time, `20261202T101500Z`.
pub fn default_id(now: OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    now.format(f).unwrap_or_else(|_| now.unix_timestamp().to_string())
}

/// The replay twin of `live` (see the module docs). `archive` replaces the archive location
/// (default: `replay/{id}` below the live archive).
///
/// # Errors
/// [`ReplayError::BadId`] and [`ReplayError::Subject`].
pub fn plan(live: &Pipeline, id: &str, start: Start, archive: Option<&str>) -> Result<Plan, ReplayError> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return Err(ReplayError::BadId(id.to_owned()));
    }
    let subject_prefix = format!("stator.replay.{id}");
    let prefixed = |t: &OutputTemplate| {
        OutputTemplate::parse(&format!("{subject_prefix}.{}", t.as_str()))
            .map_err(|reason| ReplayError::Subject { template: t.as_str().to_owned(), reason })
    };
    let mut p = live.clone();
    p.name = format!("{}-replay-{id}", live.name);
    p.source.durable = format!("stator_replay_{id}");
    p.source.create_consumer = true;
    p.source.deliver = start.policy();
    p.dead_letter_subject = format!("{subject_prefix}.{}", live.dead_letter_subject);
    for rule in &mut p.alerts {
        rule.subject = prefixed(&rule.subject)?;
    }
    for w in &mut p.windows {
        if let Some(t) = &w.publish {
            w.publish = Some(prefixed(t)?);
        }
    }
    if let Some(spec) = &mut p.archive {
        spec.url = match archive {
            Some(url) => url.to_owned(),
            None => format!("{}/replay/{id}", spec.url.trim_end_matches('/')),
        };
    }
    Ok(Plan { id: id.to_owned(), subject_prefix, pipeline: p })
}

/// Creates the `STATOR_REPLAY` stream when missing and the replay's consumers, and returns
/// how many messages it has to go through.
///
/// # Errors
/// [`ReplayError::Nats`].
pub async fn prepare(js: &jetstream::Context, plan: &Plan) -> Result<u64, ReplayError> {
    let nats = |what: &str, e: &dyn std::fmt::Display| ReplayError::Nats(format!("{what}: {e}"));
    if js.get_stream(STREAM).await.is_err() {
        js.create_stream(stream::Config {
            name: STREAM.into(),
            subjects: vec![SUBJECTS.into()],
            description: Some("outputs of `stator replay` runs".into()),
            max_age: KEEP,
            duplicate_window: Duration::from_secs(3600),
            ..Default::default()
        })
        .await
        .map_err(|e| nats(&format!("creating stream {STREAM}"), &e))?;
    }
    let source = &plan.pipeline.source;
    let stream = js.get_stream(&source.stream).await.map_err(|e| nats(&format!("stream {}", source.stream), &e))?;
    let mut pending = 0;
    for c in crate::source::consumer_specs(&plan.pipeline) {
        let config = consumer::pull::Config {
            inactive_threshold: ABANDONED_AFTER,
            description: Some(format!("stator replay {} of {}", plan.id, plan.pipeline.name)),
            ..crate::source::consumer_config(&plan.pipeline, &c)
        };
        let mut consumer: consumer::PullConsumer =
            stream.create_consumer(config).await.map_err(|e| nats("creating the replay consumer", &e))?;
        pending += consumer.info().await.map_err(|e| nats("replay consumer", &e))?.num_pending;
    }
    Ok(pending)
}

/// Removes what a finished replay leaves in NATS besides its outputs: its consumers and its
/// alert state.
///
/// # Errors
/// [`ReplayError::Nats`].
pub async fn clean_up(js: &jetstream::Context, plan: &Plan) -> Result<(), ReplayError> {
    let p = &plan.pipeline;
    let stream = js.get_stream(&p.source.stream).await.map_err(|e| ReplayError::Nats(e.to_string()))?;
    for c in crate::source::consumer_specs(p) {
        stream.delete_consumer(&c.durable).await.map_err(|e| ReplayError::Nats(e.to_string()))?;
    }
    let replicas = stream.cached_info().config.num_replicas;
    let store = crate::sink::state::open(js, &p.state_bucket, replicas).await.map_err(ReplayError::Nats)?;
    crate::sink::state::forget(&store, &p.name).await.map_err(ReplayError::Nats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn live() -> Pipeline {
        let text = r#"
[pipeline]
name = "line-health"
[source]
url = "nats://127.0.0.1:4222"
stream = "TELEMETRY"
durable = "line-health"
[[window]]
name = "rms_10s"
key = ["site", "machine"]
tumbling = "10s"
aggregates = ["rms"]
publish = "acme.{site}.features.rms.{machine}"
[[alert]]
name = "rms"
window = "rms_10s"
metric = "rms"
critical = 4.5
subject = "acme.{site}.alert.vibration.{machine}"
[archive]
url = "s3://plant/stator"
"#;
        crate::config::load_str(Path::new("line-health.toml"), text, &|_| None).unwrap().pipeline
    }

    #[test]
    fn a_replay_has_its_own_name_consumer_subjects_and_archive_prefix() {
        let start = Start::Sequence(42);
        let plan = plan(&live(), "try-1", start, None).unwrap();
        let p = &plan.pipeline;
        assert_eq!((p.name.as_str(), p.source.durable.as_str()), ("line-health-replay-try-1", "stator_replay_try-1"));
        assert!(p.source.create_consumer);
        assert_eq!(p.source.deliver, consumer::DeliverPolicy::ByStartSequence { start_sequence: 42 });
        assert_eq!(p.alerts[0].subject.as_str(), "stator.replay.try-1.acme.{site}.alert.vibration.{machine}");
        assert_eq!(p.alerts[0].subject.fields(), ["site", "machine"]);
        let publish = p.windows[0].publish.as_ref().unwrap();
        assert_eq!(publish.as_str(), "stator.replay.try-1.acme.{site}.features.rms.{machine}");
        assert!(p.dead_letter_subject.starts_with("stator.replay.try-1."));
        assert_eq!(p.archive.as_ref().unwrap().url, "s3://plant/stator/replay/try-1");
        let elsewhere = super::plan(&live(), "try-1", start, Some("/tmp/elsewhere")).unwrap();
        assert_eq!(elsewhere.pipeline.archive.unwrap().url, "/tmp/elsewhere");
    }

    #[test]
    fn ids_that_are_not_one_subject_token_are_refused() {
        for id in ["", "a.b", "a b", "*", ">", "a/b"] {
            assert!(matches!(plan(&live(), id, Start::Sequence(1), None), Err(ReplayError::BadId(_))), "{id}");
        }
    }

    #[test]
    fn the_default_id_is_the_utc_time_and_last_counts_back_from_now() {
        let now = time::macros::datetime!(2026-12-02 10:15:00 UTC);
        assert_eq!(default_id(now), "20261202T101500Z");
        let start = Start::last(Duration::from_secs(900), now);
        assert_eq!(start, Start::Time(time::macros::datetime!(2026-12-02 10:00:00 UTC)));
    }
}
