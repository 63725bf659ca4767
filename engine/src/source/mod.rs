//! The JetStream source: binding to the pipeline's durable pull consumer.
//!
//! An existing consumer is used as it is, after a check that it can give the pipeline what
//! it needs; it is never changed behind the operator's back. It is created only when the file
//! says `create_consumer = true`.

mod connect;

use std::time::Duration;

pub use connect::{connect, options, server_addrs};

use async_nats::jetstream::consumer::{self, AckPolicy, PullConsumer, pull};
use async_nats::jetstream::{self, ErrorCode};

use crate::config::Pipeline;

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
    /// NATS refused or did not answer; retrying may help.
    #[error("NATS error while binding the consumer: {0}")]
    Nats(String),
}

/// Binds to (or creates) the pipeline's consumer and returns it with its current info.
///
/// # Errors
/// See [`SourceError`].
pub async fn bind(js: &jetstream::Context, pipeline: &Pipeline) -> Result<(PullConsumer, consumer::Info), SourceError> {
    let spec = &pipeline.source;
    let stream = js.get_stream(&spec.stream).await.map_err(|e| match e.kind() {
        jetstream::context::GetStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND => {
            SourceError::NoStream(spec.stream.clone())
        }
        _ => SourceError::Nats(e.to_string()),
    })?;
    let info = match stream.consumer_info(&spec.durable).await {
        Ok(info) => info,
        Err(e) if !consumer_missing(e.kind()) => return Err(SourceError::Nats(e.to_string())),
        Err(_) if !spec.create_consumer => {
            return Err(SourceError::NoConsumer { stream: spec.stream.clone(), durable: spec.durable.clone() });
        }
        Err(_) => {
            let consumer: PullConsumer = stream
                .create_consumer(consumer_config(pipeline))
                .await
                .map_err(|e| SourceError::Nats(e.to_string()))?;
            tracing::info!(stream = %spec.stream, durable = %spec.durable, "created consumer");
            let info = consumer.cached_info().clone();
            return Ok((consumer, info));
        }
    };
    let problems = incompatibilities(pipeline, &info.config);
    if !problems.is_empty() {
        return Err(SourceError::Incompatible {
            stream: spec.stream.clone(),
            durable: spec.durable.clone(),
            problems: problems.join("; "),
        });
    }
    let consumer =
        stream.get_consumer::<pull::Config>(&spec.durable).await.map_err(|e| SourceError::Nats(e.to_string()))?;
    Ok((consumer, info))
}

/// Binds again after the consumer disappeared under a running worker (deleted by an
/// operator, or lost with a stream's storage). With `create_consumer = true` it is created
/// anew, starting at `resume_from` (the oldest message the worker has not finished), so
/// nothing is skipped and little is repeated; otherwise [`SourceError::NoConsumer`].
///
/// # Errors
/// See [`SourceError`].
pub async fn rebind(
    js: &jetstream::Context,
    pipeline: &Pipeline,
    resume_from: u64,
) -> Result<PullConsumer, SourceError> {
    let spec = &pipeline.source;
    let stream = js.get_stream(&spec.stream).await.map_err(|e| SourceError::Nats(e.to_string()))?;
    match stream.consumer_info(&spec.durable).await {
        Ok(_) => {
            return stream.get_consumer(&spec.durable).await.map_err(|e| SourceError::Nats(e.to_string()));
        }
        Err(e) if !consumer_missing(e.kind()) => return Err(SourceError::Nats(e.to_string())),
        Err(_) if !spec.create_consumer => {
            return Err(SourceError::NoConsumer { stream: spec.stream.clone(), durable: spec.durable.clone() });
        }
        Err(_) => {}
    }
    let config = pull::Config {
        deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: resume_from.max(1) },
        ..consumer_config(pipeline)
    };
    let consumer = stream.create_consumer(config).await.map_err(|e| SourceError::Nats(e.to_string()))?;
    tracing::warn!(stream = %spec.stream, durable = %spec.durable, resume_from, "consumer was gone; created it again");
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

/// The config of a consumer created for `pipeline`.
pub fn consumer_config(pipeline: &Pipeline) -> pull::Config {
    let spec = &pipeline.source;
    pull::Config {
        durable_name: Some(spec.durable.clone()),
        description: Some(format!("stator pipeline {}", pipeline.name)),
        deliver_policy: spec.deliver,
        ack_policy: AckPolicy::Explicit,
        ack_wait: spec.ack_wait,
        max_deliver: spec.max_deliver,
        max_ack_pending: spec.max_ack_pending,
        filter_subjects: spec.filter_subjects.clone(),
        max_batch: spec.batch as i64 * 2,
        ..Default::default()
    }
}

/// Everything about an existing consumer's config that the pipeline cannot work with.
pub fn incompatibilities(pipeline: &Pipeline, config: &consumer::Config) -> Vec<String> {
    let spec = &pipeline.source;
    let mut problems = Vec::new();
    if config.ack_policy != AckPolicy::Explicit {
        problems.push(format!("ack policy is {:?}, the pipeline needs explicit acks", config.ack_policy));
    }
    if config.deliver_subject.is_some() {
        problems.push("it is a push consumer, the pipeline needs a pull consumer".into());
    }
    if !spec.filter_subjects.is_empty() {
        let mut have: Vec<&str> = config.filter_subjects.iter().map(String::as_str).collect();
        if !config.filter_subject.is_empty() {
            have.push(&config.filter_subject);
        }
        let mut want: Vec<&str> = spec.filter_subjects.iter().map(String::as_str).collect();
        have.sort_unstable();
        want.sort_unstable();
        if have != want {
            problems.push(format!("its filter subjects are {have:?}, the pipeline file says {want:?}"));
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
