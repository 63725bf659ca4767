//! The JetStream source: binding to the pipeline's durable pull consumer.
//!
//! An existing consumer is used as it is, after a check that it can give the pipeline what
//! it needs; it is never changed behind the operator's back. It is created only when the file
//! says `create_consumer = true`.

mod connect;
pub mod members;
pub mod partitions;
pub mod upstream;

use std::time::Duration;

pub use connect::{connect, options, server_addrs};
pub use upstream::{SOURCE_SILENCE, silent_sources};

use async_nats::jetstream::consumer::{self, AckPolicy, PriorityPolicy, PullConsumer, pull};
use async_nats::jetstream::{self, ErrorCode};

use crate::config::Pipeline;

/// The priority group of the consumers Stator creates. They use JetStream's pinned-client
/// policy: of all the workers pulling a consumer, the server delivers to one (the pinned
/// one); the others stand by, and one of them is pinned when the pinned one stops pulling for
/// [`PIN_TTL`]. So a second worker on a pipeline never splits its windows.
pub const PRIORITY_GROUP: &str = "stator";

/// How long a pinned worker may go without pulling before the server pins a standby
/// (`priority_timeout` of the consumers Stator creates). Workers pull at least every
/// [`PULL_EXPIRES`] plus 5 s, also while they wait for a slow sink.
pub const PIN_TTL: Duration = Duration::from_secs(15);

/// How long one pull request waits for messages: well below [`PIN_TTL`], so that an idle
/// pinned worker renews its pull (and keeps its pin) in time.
pub const PULL_EXPIRES: Duration = Duration::from_secs(5);

/// Why the pipeline could not bind to its consumer. All but [`SourceError::Nats`] are the
/// user's to fix; retrying does not help.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The stream does not exist.
    #[error("stream `{0}` does not exist")]
    NoStream(String),
    /// The consumer does not exist and the file does not allow creating it.
    #[error(
        "consumer `{durable}` does not exist on stream `{stream}`; create it, or set `create_consumer = true` in [source]"
    )]
    NoConsumer {
        /// Stream.
        stream: String,
        /// Durable name.
        durable: String,
    },
    /// The consumer exists with settings the pipeline cannot work with.
    #[error("consumer `{durable}` on stream `{stream}` is not compatible with the pipeline: {problems}")]
    Incompatible {
        /// Stream.
        stream: String,
        /// Durable name.
        durable: String,
        /// Every problem found, `; `-separated.
        problems: String,
    },
    /// The consumer has no priority group and another client is pulling from it: a second
    /// worker would split every window with the first.
    #[error(
        "consumer `{durable}` on stream `{stream}` is being pulled by another client ({waiting} pull requests waiting) and has no priority group, so two workers would split its windows; stop the other worker, or let Stator recreate the consumer with a priority group (delete it, keep `create_consumer = true`; see docs/SCALING.md)"
    )]
    Busy {
        /// Stream.
        stream: String,
        /// Durable name.
        durable: String,
        /// Pull requests the server holds from other clients.
        waiting: usize,
    },
    /// NATS refused or did not answer; retrying may help.
    #[error("NATS error while binding the consumer: {0}")]
    Nats(String),
}

/// One of the consumers a pipeline reads: its durable name and filter subjects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerSpec {
    /// Durable name.
    pub durable: String,
    /// Filter subjects (none: the whole stream).
    pub filters: Vec<String>,
}

/// A consumer bound for a run, with what the server said of it at binding.
#[derive(Debug)]
pub struct Bound {
    /// Which consumer.
    pub spec: ConsumerSpec,
    /// The handle.
    pub consumer: PullConsumer,
    /// Its info at binding.
    pub info: consumer::Info,
}

impl Bound {
    /// The priority group to pull in when the consumer pins one client ([`PRIORITY_GROUP`]
    /// for consumers Stator creates); `None` for a consumer without one.
    pub fn group(&self) -> Option<&str> {
        pinned_group(&self.info.config)
    }
}

/// The group of a consumer with the pinned-client policy.
pub fn pinned_group(config: &consumer::Config) -> Option<&str> {
    (config.priority_policy == PriorityPolicy::PinnedClient)
        .then(|| config.priority_groups.first().map(String::as_str))
        .flatten()
}

/// The consumers Stator creates for `pipeline`: one per filter subject when the file gives
/// several (`{durable}` for the first, `{durable}-2`, `{durable}-3`, ... for the others),
/// otherwise one. nats-server serves a consumer with several filter subjects an order of
/// magnitude slower per message than one with a single filter once the stream holds
/// thousands of subjects (docs/BENCHMARKS.md, "one filter subject against two").
///
/// Split consumers deliver at their own pace, so one window must not take readings from two
/// of them: a key's watermark moved by the faster one would make the slower one's readings
/// late. The pipeline keeps one consumer with every filter when a window's `filter` (or its
/// absence) overlaps more than one of them.
pub fn consumer_specs(pipeline: &Pipeline) -> Vec<ConsumerSpec> {
    let spec = &pipeline.source;
    let filters = &spec.filter_subjects;
    let shared = pipeline.windows.iter().any(|w| {
        let within = |f: &String| w.filter.as_deref().is_none_or(|wf| crate::subject::overlaps(wf, f));
        filters.iter().filter(|f| within(f)).count() > 1
    });
    if filters.len() <= 1 || shared {
        return vec![ConsumerSpec { durable: spec.durable.clone(), filters: spec.filter_subjects.clone() }];
    }
    spec.filter_subjects
        .iter()
        .enumerate()
        .map(|(i, f)| ConsumerSpec {
            durable: if i == 0 { spec.durable.clone() } else { format!("{}-{}", spec.durable, i + 1) },
            filters: vec![f.clone()],
        })
        .collect()
}

/// What `pipeline` needs from the server, a line each, for `stator validate`.
pub fn requirements(pipeline: &Pipeline) -> Vec<String> {
    let spec = &pipeline.source;
    let mut out =
        vec![format!("nats-server 2.11 or newer with JetStream at {} (pinned-client priority groups)", spec.url)];
    out.push(format!("stream `{}` must exist", spec.stream));
    if spec.partitions > 1 {
        partition_requirements(pipeline, &mut out);
    } else {
        for c in consumer_specs(pipeline) {
            let filters = if c.filters.is_empty() { "the whole stream".to_owned() } else { c.filters.join(", ") };
            let how = if spec.create_consumer && !spec.standby {
                format!(
                    "created when missing: pull, explicit acks, ack_wait {:?}, no priority group (`standby = false`: one worker, a second one is refused); an existing one is used as it is",
                    spec.ack_wait
                )
            } else if spec.create_consumer {
                format!(
                    "created when missing: pull, explicit acks, ack_wait {:?}, priority group `{PRIORITY_GROUP}` pinning one worker (priority_timeout {PIN_TTL:?}); an existing one is used as it is",
                    spec.ack_wait
                )
            } else {
                "must exist (pull, explicit acks; with a pinned-client priority group for standby workers, see docs/SCALING.md)".to_owned()
            };
            out.push(format!("consumer `{}` on {filters}: {how}", c.durable));
        }
    }
    out.push(format!(
        "KV buckets `{}` (alert state) and `{}` (workers), created when missing",
        pipeline.state_bucket,
        members::BUCKET
    ));
    if let Some(bucket) = &pipeline.machine_config_bucket {
        out.push(format!("KV bucket `{bucket}` (machine config) must exist"));
    }
    out.push(format!(
        "publishes dead letters to `{}`: a stream must capture it, or they are lost",
        pipeline.dead_letter_subject
    ));
    out.push(if spec.partitions > 1 {
        format!(
            "up to {} workers may run this file together, each active on its share of the partitions (docs/SCALING.md)",
            spec.partitions
        )
    } else {
        "several workers may run this file: one is active per consumer, the others stand by (docs/SCALING.md)"
            .to_owned()
    });
    out
}

/// The lines of [`requirements`] for a partitioned pipeline's stream and consumers.
fn partition_requirements(pipeline: &Pipeline, out: &mut Vec<String>) {
    let spec = &pipeline.source;
    let by = partitions::key_fields(pipeline);
    let how = if spec.create_consumer {
        "created when missing"
    } else {
        "must exist: set `create_consumer = true` to let Stator create it"
    };
    let transforms: Vec<String> = partitions::source_filters(pipeline)
        .iter()
        .map(|f| format!("`{f}` -> `{}`", spec.template.partitioned(f, &by, spec.partitions).unwrap_or_default()))
        .collect();
    out.push(format!(
        "stream `{}` ({how}): sources `{}` through the subject transform {}, with work-queue retention and the source's storage, replicas and max_age (no byte limit); `{}` itself is not changed",
        partitions::stream_name(pipeline),
        spec.stream,
        transforms.join(", "),
        spec.stream
    ));
    out.push(format!(
        "consumers `{}` to `{}` on it, one per partition (filter `<partition>.>`), created when missing: pull, explicit acks, ack_wait {:?}, priority group `{PRIORITY_GROUP}` pinning one worker (priority_timeout {PIN_TTL:?})",
        partitions::durable(pipeline, 0),
        partitions::durable(pipeline, spec.partitions - 1),
        spec.ack_wait
    ));
    out.push(format!(
        "partitioned by {}: all the readings of one {} go to one partition",
        by.join(", "),
        by.join(" and ")
    ));
}

/// Binds to (or creates) the pipeline's consumers and returns them with their current info:
/// those of [`consumer_specs`], or, when a consumer named `durable` already has all of the
/// file's filter subjects (made by an operator or an earlier version), that one alone, as it
/// is.
///
/// # Errors
/// See [`SourceError`].
pub async fn bind(js: &jetstream::Context, pipeline: &Pipeline) -> Result<Vec<Bound>, SourceError> {
    let stream = stream(js, &pipeline.source.stream).await?;
    let mut bound = Vec::new();
    for c in specs_in_use(&stream, pipeline).await? {
        bound.push(bind_one(&stream, pipeline, c).await?);
    }
    Ok(bound)
}

/// Stream `name`.
///
/// # Errors
/// [`SourceError::NoStream`] when it does not exist, [`SourceError::Nats`] when the server
/// does not answer.
pub async fn stream(js: &jetstream::Context, name: &str) -> Result<jetstream::stream::Stream, SourceError> {
    js.get_stream(name).await.map_err(|e| {
        if stream_missing(e.kind()) { SourceError::NoStream(name.to_owned()) } else { SourceError::Nats(e.to_string()) }
    })
}

/// Whether getting a stream failed because it does not exist.
fn stream_missing(kind: jetstream::context::GetStreamErrorKind) -> bool {
    matches!(kind, jetstream::context::GetStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

/// A pipeline's consumers together, as the server counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lag {
    /// Messages not yet delivered.
    pub pending: u64,
    /// Delivered, not yet acknowledged.
    pub ack_pending: usize,
    /// Newest stream sequence delivered.
    pub delivered: u64,
    /// Stream sequence below which everything is acknowledged (the lowest of the consumers').
    pub ack_floor: u64,
}

impl Lag {
    /// Nothing counted yet.
    pub fn new() -> Self {
        Lag { pending: 0, ack_pending: 0, delivered: 0, ack_floor: u64::MAX }
    }

    /// Adds one consumer's counts.
    pub fn add(&mut self, info: &consumer::Info) {
        self.pending += info.num_pending;
        self.ack_pending += info.num_ack_pending;
        self.delivered = self.delivered.max(info.delivered.stream_sequence);
        self.ack_floor = self.ack_floor.min(info.ack_floor.stream_sequence);
    }
}

impl Default for Lag {
    fn default() -> Self {
        Self::new()
    }
}

/// The consumers a pipeline reads on `stream` as things stand: see [`bind`].
///
/// # Errors
/// [`SourceError::Nats`] when the server does not answer.
pub async fn specs_in_use(
    stream: &jetstream::stream::Stream,
    pipeline: &Pipeline,
) -> Result<Vec<ConsumerSpec>, SourceError> {
    let spec = &pipeline.source;
    let split = consumer_specs(pipeline);
    if split.len() > 1 {
        match stream.consumer_info(&spec.durable).await {
            Ok(info) if filters_of(&info.config) == sorted(&spec.filter_subjects) => {
                tracing::info!(
                    stream = %spec.stream,
                    durable = %spec.durable,
                    "the consumer has all the filter subjects; nats-server reads such a consumer slowly once the stream holds thousands of subjects (docs/OPERATIONS.md, Sizing)"
                );
                return Ok(vec![ConsumerSpec { durable: spec.durable.clone(), filters: spec.filter_subjects.clone() }]);
            }
            Err(e) if !consumer_missing(e.kind()) => return Err(SourceError::Nats(e.to_string())),
            _ => {}
        }
    }
    Ok(split)
}

async fn bind_one(
    stream: &jetstream::stream::Stream,
    pipeline: &Pipeline,
    c: ConsumerSpec,
) -> Result<Bound, SourceError> {
    let spec = &pipeline.source;
    let info = match stream.consumer_info(&c.durable).await {
        Ok(info) => info,
        Err(e) if !consumer_missing(e.kind()) => return Err(SourceError::Nats(e.to_string())),
        Err(_) if !spec.create_consumer => {
            return Err(SourceError::NoConsumer { stream: spec.stream.clone(), durable: c.durable });
        }
        Err(_) => {
            let consumer: PullConsumer = stream
                .create_consumer(consumer_config(pipeline, &c))
                .await
                .map_err(|e| SourceError::Nats(e.to_string()))?;
            tracing::info!(stream = %spec.stream, durable = %c.durable, filters = ?c.filters, "created consumer");
            let info = consumer.cached_info().clone();
            return Ok(Bound { spec: c, consumer, info });
        }
    };
    let problems = incompatibilities(pipeline, &c, &info.config);
    if !problems.is_empty() {
        return Err(SourceError::Incompatible {
            stream: spec.stream.clone(),
            durable: c.durable,
            problems: problems.join("; "),
        });
    }
    let mut consumer: PullConsumer =
        stream.get_consumer::<pull::Config>(&c.durable).await.map_err(|e| SourceError::Nats(e.to_string()))?;
    if pinned_group(&info.config).is_none() {
        alone_on(&mut consumer, &spec.stream, &c.durable).await?;
    }
    Ok(Bound { spec: c, consumer, info })
}

/// Longest that pull requests of a worker that died may stay with the server: the pull expiry
/// of earlier Stator versions (30 s) and a margin.
const STALE_PULLS: Duration = Duration::from_secs(35);

/// Checks that no other client pulls from a consumer without a priority group, waiting up to
/// [`STALE_PULLS`] for requests of a worker that died to expire (a restart right after a crash).
/// A live worker renews its requests, so they do not go away.
async fn alone_on(consumer: &mut PullConsumer, stream: &str, durable: &str) -> Result<(), SourceError> {
    let deadline = tokio::time::Instant::now() + STALE_PULLS;
    loop {
        let waiting = consumer.info().await.map_err(|e| SourceError::Nats(e.to_string()))?.num_waiting;
        if waiting == 0 {
            tracing::warn!(
                stream,
                durable,
                "the consumer has no priority group: a second worker on this pipeline is refused only while this one is pulling; recreate the consumer with `create_consumer = true` to run standbys (docs/SCALING.md)"
            );
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(SourceError::Busy { stream: stream.to_owned(), durable: durable.to_owned(), waiting });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Binds again after consumer `c` disappeared under a running worker (deleted by an
/// operator, or lost with a stream's storage). With `create_consumer = true` it is created
/// anew, starting at `resume_from` (the oldest message the worker has not finished), so
/// nothing is skipped and little is repeated; otherwise [`SourceError::NoConsumer`].
///
/// # Errors
/// See [`SourceError`].
pub async fn rebind(
    js: &jetstream::Context,
    pipeline: &Pipeline,
    c: &ConsumerSpec,
    resume_from: u64,
) -> Result<PullConsumer, SourceError> {
    let spec = &pipeline.source;
    let stream = js.get_stream(&spec.stream).await.map_err(|e| SourceError::Nats(e.to_string()))?;
    match stream.consumer_info(&c.durable).await {
        Ok(_) => {
            return stream.get_consumer(&c.durable).await.map_err(|e| SourceError::Nats(e.to_string()));
        }
        Err(e) if !consumer_missing(e.kind()) => return Err(SourceError::Nats(e.to_string())),
        Err(_) if !spec.create_consumer => {
            return Err(SourceError::NoConsumer { stream: spec.stream.clone(), durable: c.durable.clone() });
        }
        Err(_) => {}
    }
    let config = pull::Config {
        deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: resume_from.max(1) },
        ..consumer_config(pipeline, c)
    };
    let consumer = stream.create_consumer(config).await.map_err(|e| SourceError::Nats(e.to_string()))?;
    tracing::warn!(stream = %spec.stream, durable = %c.durable, resume_from, "consumer was gone; created it again");
    Ok(consumer)
}

fn consumer_missing(kind: jetstream::context::ConsumerInfoErrorKind) -> bool {
    use jetstream::context::ConsumerInfoErrorKind as K;
    match kind {
        K::NotFound => true,
        K::JetStream(j) => j.error_code() == ErrorCode::CONSUMER_NOT_FOUND,
        _ => false,
    }
}

/// The config of consumer `c` created for `pipeline`.
pub fn consumer_config(pipeline: &Pipeline, c: &ConsumerSpec) -> pull::Config {
    let spec = &pipeline.source;
    let mut config = pull::Config {
        durable_name: Some(c.durable.clone()),
        description: Some(format!("stator pipeline {}", pipeline.name)),
        deliver_policy: spec.deliver,
        ack_policy: AckPolicy::Explicit,
        ack_wait: spec.ack_wait,
        max_deliver: spec.max_deliver,
        max_ack_pending: spec.max_ack_pending,
        max_batch: spec.batch as i64 * 2,
        ..Default::default()
    };
    if spec.standby {
        config.priority_policy = PriorityPolicy::PinnedClient;
        config.priority_groups = vec![PRIORITY_GROUP.to_owned()];
        config.priority_timeout = PIN_TTL;
    }
    // One filter goes in `filter_subject`: nats-server versions without the fix of
    // nats-io/nats-server#7852 take a one-element `filter_subjects` down their slower
    // several-filters path.
    match &c.filters[..] {
        [one] => config.filter_subject = one.clone(),
        many => config.filter_subjects = many.to_vec(),
    }
    config
}

fn sorted(filters: &[String]) -> Vec<&str> {
    let mut v: Vec<&str> = filters.iter().map(String::as_str).collect();
    v.sort_unstable();
    v
}

fn filters_of(config: &consumer::Config) -> Vec<&str> {
    let mut have: Vec<&str> = config.filter_subjects.iter().map(String::as_str).collect();
    if !config.filter_subject.is_empty() {
        have.push(&config.filter_subject);
    }
    have.sort_unstable();
    have
}

/// Everything about existing consumer `c`'s config that the pipeline cannot work with.
pub fn incompatibilities(pipeline: &Pipeline, c: &ConsumerSpec, config: &consumer::Config) -> Vec<String> {
    let mut problems = Vec::new();
    if config.ack_policy != AckPolicy::Explicit {
        problems.push(format!("ack policy is {:?}, the pipeline needs explicit acks", config.ack_policy));
    }
    if config.deliver_subject.is_some() {
        problems.push("it is a push consumer, the pipeline needs a pull consumer".into());
    }
    match config.priority_policy {
        PriorityPolicy::None => {}
        PriorityPolicy::PinnedClient => {
            if config.priority_groups.len() != 1 {
                problems.push(format!(
                    "it pins a client in {} priority groups, the pipeline pulls in exactly one",
                    config.priority_groups.len()
                ));
            }
            if config.priority_timeout < PULL_EXPIRES * 3 {
                problems.push(format!(
                    "its priority_timeout is {:?}: a pinned worker renews its pull every {PULL_EXPIRES:?} or so, so it needs at least {:?} to keep its pin",
                    config.priority_timeout,
                    PULL_EXPIRES * 3
                ));
            }
        }
        ref other => problems.push(format!(
            "its priority policy is {other:?}: the pipeline needs the pinned_client policy (one active worker, the others standing by) or none"
        )),
    }
    if !c.filters.is_empty() {
        let (have, want) = (filters_of(config), sorted(&c.filters));
        if have != want {
            problems.push(format!("its filter subjects are {have:?}, the pipeline needs {want:?} on it"));
        }
    }
    let longest = pipeline.windows.iter().map(|w| w.size + w.allowed_lateness).max().unwrap_or(Duration::ZERO);
    if config.ack_wait < longest {
        problems.push(format!(
            "ack_wait is {:?}, shorter than the longest window plus its lateness ({longest:?})",
            config.ack_wait
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn specs(window_filters: &[Option<&str>]) -> Vec<(String, Vec<String>)> {
        let mut text = String::from(
            r#"
[pipeline]
name = "p"
[source]
url = "nats://127.0.0.1:4222"
stream = "TELEMETRY"
durable = "p"
filter_subjects = ["acme.*.*.*.*.*.vibration.rms", "acme.*.*.*.*.*.temperature"]
"#,
        );
        for (i, f) in window_filters.iter().enumerate() {
            text += &format!(
                "[[window]]\nname = \"w{i}\"\nkey = [\"machine\"]\ntumbling = \"10s\"\naggregates = [\"max\"]\n"
            );
            if let Some(f) = f {
                text += &format!("filter = \"{f}\"\n");
            }
        }
        let p = crate::config::load_str(Path::new("p.toml"), &text, &|_| None).expect("valid").pipeline;
        consumer_specs(&p).into_iter().map(|c| (c.durable, c.filters)).collect()
    }

    #[test]
    fn created_consumers_pin_one_worker_and_existing_ones_are_checked_for_it() {
        let text = "[pipeline]\nname = \"p\"\n[source]\nurl = \"nats://127.0.0.1:4222\"\nstream = \"S\"\ndurable = \"p\"\n\
                    [[window]]\nname = \"w\"\nkey = [\"machine\"]\ntumbling = \"10s\"\naggregates = [\"max\"]\n";
        let p = crate::config::load_str(Path::new("p.toml"), text, &|_| None).expect("valid").pipeline;
        let c = consumer_specs(&p).remove(0);
        let config = consumer_config(&p, &c);
        assert_eq!(config.priority_policy, PriorityPolicy::PinnedClient);
        assert_eq!(config.priority_groups, [PRIORITY_GROUP]);
        assert!(config.priority_timeout >= PULL_EXPIRES * 3);
        let created = consumer::IntoConsumerConfig::into_consumer_config(config);
        assert_eq!(pinned_group(&created), Some(PRIORITY_GROUP));
        assert!(incompatibilities(&p, &c, &created).is_empty());

        let plain =
            consumer::Config { priority_policy: PriorityPolicy::None, priority_groups: vec![], ..created.clone() };
        assert_eq!(pinned_group(&plain), None);
        assert!(incompatibilities(&p, &c, &plain).is_empty(), "used as it is, one worker at a time");
        let short = consumer::Config { priority_timeout: Duration::from_secs(5), ..created.clone() };
        assert!(incompatibilities(&p, &c, &short)[0].contains("needs at least 15s to keep its pin"));
        let overflow = consumer::Config { priority_policy: PriorityPolicy::Overflow, ..created };
        assert!(incompatibilities(&p, &c, &overflow)[0].contains("needs the pinned_client policy"));
    }

    #[test]
    fn several_filters_split_unless_a_window_reads_more_than_one_of_them() {
        let (rms, temp) = ("acme.*.*.*.*.*.vibration.rms", "acme.*.*.*.*.*.temperature");
        let split = vec![("p".to_owned(), vec![rms.to_owned()]), ("p-2".to_owned(), vec![temp.to_owned()])];
        assert_eq!(specs(&[Some(rms), Some(temp)]), split);
        assert_eq!(specs(&[Some("acme.munich.>"), Some(temp)]).len(), 1, "acme.munich.> reads both");
        let one = specs(&[Some(rms), None]);
        assert_eq!(one, vec![("p".to_owned(), vec![rms.to_owned(), temp.to_owned()])], "no filter reads both");
    }
}
