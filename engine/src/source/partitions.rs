//! Partitioned pipelines (`[source] partitions = N`): several workers active at once, each
//! machine's windows on exactly one of them.
//!
//! JetStream partitions by subject: a stream Stator derives from the pipeline's stream sources
//! it through a subject transform that puts each message under its partition,
//! `{{partition(N, wildcards of the key fields)}}.<original subject>` (a hash of the tokens, so
//! a machine always lands in the same partition), with work-queue retention. The pipeline's
//! stream is not changed. Each partition has its own durable consumer (`{durable}-p{i}`, filter
//! `{i}.>`) with the pinned-client priority group, so only one worker at a time ever gets a
//! partition's messages. Which worker pulls which partition is decided by every worker alike,
//! by rendezvous hashing over the workers on the pipeline's roll ([`super::members`]): a
//! worker joining or leaving moves only the partitions it gains or had.

use async_nats::jetstream::{self, stream};

use super::SourceError;
use crate::config::Pipeline;
use crate::subject::SubjectTemplate;

/// The name of the stream derived for `pipeline`'s partitions.
pub fn stream_name(pipeline: &Pipeline) -> String {
    format!("STATOR_{}_{}", pipeline.source.stream, pipeline.source.durable)
}

/// The durable consumer of partition `p`.
pub fn durable(pipeline: &Pipeline, p: u32) -> String {
    format!("{}-p{p}", pipeline.source.durable)
}

/// The filter of partition `p`'s consumer on the derived stream.
pub fn filter(p: u32) -> String {
    format!("{p}.>")
}

/// The original subject of a message of the derived stream: without its partition token.
pub fn original_subject(subject: &str) -> &str {
    subject.split_once('.').map_or(subject, |(_, rest)| rest)
}

/// The subject transform that puts the messages matching `filter` under their partition, by
/// the values of the key fields `by` (see [`SubjectTemplate::partitioned`]).
pub fn transform(
    filter: &str,
    template: &SubjectTemplate,
    by: &[String],
    n: u32,
) -> Result<stream::SubjectTransform, String> {
    let destination = template.partitioned(filter, by, n)?;
    Ok(stream::SubjectTransform { source: filter.to_owned(), destination })
}

/// The filters the derived stream sources: the pipeline's, or the template's whole shape.
pub fn source_filters(pipeline: &Pipeline) -> Vec<String> {
    match &pipeline.source.filter_subjects[..] {
        [] => vec![pipeline.source.template.filter()],
        some => some.to_vec(),
    }
}

/// The key fields `pipeline` partitions by: those in every window's key (a window keyed by
/// fewer fields would be split between partitions).
pub fn key_fields(pipeline: &Pipeline) -> Vec<String> {
    crate::config::common_key_fields(pipeline.windows.iter().flat_map(crate::config::WindowSpec::keys))
}

/// The derived stream's config for `pipeline`, sourcing `origin` (whose storage, replicas
/// and age limit it takes; not its byte limit, which JetStream reserves up front) from
/// `start` on.
pub fn stream_config(pipeline: &Pipeline, origin: &stream::Config, start: Start) -> Result<stream::Config, String> {
    let n = pipeline.source.partitions;
    let by = key_fields(pipeline);
    let transforms = source_filters(pipeline)
        .iter()
        .map(|f| transform(f, &pipeline.source.template, &by, n))
        .collect::<Result<Vec<_>, _>>()?;
    let (start_sequence, start_time) = match start {
        Start::All => (None, None),
        Start::Sequence(s) => (Some(s), None),
        Start::Time(t) => (None, Some(t)),
    };
    Ok(stream::Config {
        name: stream_name(pipeline),
        description: Some(format!(
            "Stator: stream `{}` by partition ({n}) for pipeline `{}`; created and used by its workers",
            origin.name, pipeline.name
        )),
        retention: stream::RetentionPolicy::WorkQueue,
        storage: origin.storage,
        num_replicas: origin.num_replicas,
        // Not its max_bytes: a stream's byte limit is reserved in the account up front, and
        // this one holds only what the workers have not processed yet.
        max_age: origin.max_age,
        discard: stream::DiscardPolicy::Old,
        sources: Some(vec![stream::Source {
            name: origin.name.clone(),
            subject_transforms: transforms,
            start_sequence,
            start_time,
            ..Default::default()
        }]),
        ..Default::default()
    })
}

/// Where the derived stream starts copying the pipeline's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// From its first message.
    All,
    /// From this sequence.
    Sequence(u64),
    /// From this time.
    Time(time::OffsetDateTime),
}

/// Binds to the derived stream of `pipeline` (sourcing `origin`), creating it when missing
/// (with `create_consumer = true`). A new one starts where the pipeline's unpartitioned
/// consumer got to when there is one (a pipeline switched to partitions goes on from there),
/// otherwise as the file's `deliver` says. An existing one must have been made for as many
/// partitions, from the same stream and filters.
///
/// # Errors
/// [`SourceError::NoConsumer`] when it is missing and may not be created,
/// [`SourceError::Incompatible`] when it was made differently, [`SourceError::Nats`].
pub async fn ensure(
    js: &jetstream::Context,
    pipeline: &Pipeline,
    origin: &mut stream::Stream,
) -> Result<stream::Stream, SourceError> {
    let name = stream_name(pipeline);
    let origin_config = origin.info().await.map_err(|e| SourceError::Nats(e.to_string()))?.config.clone();
    let want = stream_config(pipeline, &origin_config, Start::All)
        .map_err(|e| incompatible(pipeline, &name, format!("cannot partition: {e}")))?;
    match js.get_stream(&name).await {
        Ok(mut existing) => {
            let have = existing.info().await.map_err(|e| SourceError::Nats(e.to_string()))?.config.clone();
            let transforms = |c: &stream::Config| {
                c.sources.as_ref().and_then(|s| s.first()).map(|s| (s.name.clone(), s.subject_transforms.clone()))
            };
            if transforms(&have) != transforms(&want) {
                return Err(incompatible(
                    pipeline,
                    &name,
                    format!(
                        "stream `{name}` was derived for other partitions or filters ({:?}, the file needs {:?}); stop every worker of the pipeline, delete it and its consumers, and start them again (docs/SCALING.md, Changing the partitions)",
                        transforms(&have),
                        transforms(&want)
                    ),
                ));
            }
            Ok(existing)
        }
        Err(e) if !super::stream_missing(e.kind()) => Err(SourceError::Nats(e.to_string())),
        Err(_) if !pipeline.source.create_consumer => Err(SourceError::NoConsumer {
            stream: name,
            durable: format!("{} (the partitioned stream)", pipeline.source.durable),
        }),
        Err(_) => {
            let start = start_of(pipeline, origin).await?;
            let config = stream_config(pipeline, &origin_config, start).map_err(SourceError::Nats)?;
            match js.create_stream(config).await {
                Ok(s) => {
                    tracing::info!(pipeline = %pipeline.name, stream = %name, partitions = pipeline.source.partitions, ?start, "created the partitioned stream");
                    Ok(s)
                }
                // Another worker created it at the same moment, or the server refuses it.
                Err(create) => js
                    .get_stream(&name)
                    .await
                    .map_err(|_| SourceError::Nats(format!("creating stream `{name}`: {create}"))),
            }
        }
    }
}

fn incompatible(pipeline: &Pipeline, stream: &str, problems: String) -> SourceError {
    SourceError::Incompatible { stream: stream.to_owned(), durable: pipeline.source.durable.clone(), problems }
}

/// Where a new derived stream starts: after what the pipeline's unpartitioned consumer
/// acknowledged, when it has one; otherwise the file's `deliver`.
async fn start_of(pipeline: &Pipeline, origin: &stream::Stream) -> Result<Start, SourceError> {
    use jetstream::consumer::DeliverPolicy as D;
    if let Ok(info) = origin.consumer_info(&pipeline.source.durable).await {
        return Ok(Start::Sequence(info.ack_floor.stream_sequence + 1));
    }
    Ok(match pipeline.source.deliver {
        D::ByStartSequence { start_sequence } => Start::Sequence(start_sequence),
        D::ByStartTime { start_time } => Start::Time(start_time),
        D::New => Start::Time(time::OffsetDateTime::now_utc()),
        _ => Start::All,
    })
}

/// The owner of each of `n` partitions among `workers`, by rendezvous hashing with bounded
/// load: partition by partition, the worker with the highest score for it that owns fewer
/// than its share (`n / workers`, some of them one more). Every worker computes the same from the same
/// roll; shares differ by at most one; a worker joining or leaving moves few partitions
/// besides those it takes or had.
pub fn owners(workers: &[String], pipeline: &str, n: u32) -> Vec<String> {
    let mut workers: Vec<&String> = workers.iter().collect();
    workers.sort();
    workers.dedup();
    if workers.is_empty() {
        return Vec::new();
    }
    // Each worker takes `floor` partitions, `extra` of them one more.
    let (floor, extra) = (n as usize / workers.len(), n as usize % workers.len());
    let mut load = vec![0usize; workers.len()];
    let mut above = 0;
    (0..n)
        .map(|p| {
            let room = |i: &usize| load[*i] < floor || (load[*i] == floor && above < extra);
            let best = (0..workers.len()).filter(room).max_by_key(|i| score(workers[*i], pipeline, p)).unwrap_or(0);
            if load[best] == floor {
                above += 1;
            }
            load[best] += 1;
            workers[best].clone()
        })
        .collect()
}

fn score(worker: &str, pipeline: &str, p: u32) -> u64 {
    let digest = ring::digest::digest(&ring::digest::SHA256, format!("{pipeline}\n{p}\n{worker}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest.as_ref()[..8]);
    u64::from_be_bytes(bytes)
}

/// The partitions of `pipeline` (of `n`) that `me` owns among `workers`.
pub fn owned(workers: &[String], me: &str, pipeline: &str, n: u32) -> Vec<u32> {
    owners(workers, pipeline, n).iter().enumerate().filter(|(_, w)| *w == me).map(|(p, _)| p as u32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> SubjectTemplate {
        SubjectTemplate::parse("{org}.{site}.{area}.{line}.{machine}.{sensor}.{metric}").expect("valid")
    }

    #[test]
    fn the_transform_hashes_the_key_tokens_and_keeps_the_subject() {
        let by = vec!["site".to_owned(), "machine".to_owned()];
        let t = transform("acme.*.*.*.*.*.vibration.rms", &template(), &by, 4).expect("partitionable");
        assert_eq!(t.source, "acme.*.*.*.*.*.vibration.rms");
        assert_eq!(
            t.destination,
            "{{partition(4,1,4)}}.acme.{{wildcard(1)}}.{{wildcard(2)}}.{{wildcard(3)}}.{{wildcard(4)}}.{{wildcard(5)}}.vibration.rms"
        );
        let munich = transform("acme.munich.*.*.*.>", &template(), &by, 4).expect("site fixed");
        assert!(munich.destination.starts_with("{{partition(4,3)}}.acme.munich."), "{}", munich.destination);
        assert!(munich.destination.ends_with(".>"));
        let err = transform("acme.munich.>", &template(), &by, 4).unwrap_err();
        assert!(err.contains("puts `machine` under its `>`"), "{err}");
        let err = transform("acme.*.*.*.*.*.>", &template(), &["metric".to_owned()], 4).unwrap_err();
        assert!(err.contains("last field"), "{err}");
        assert_eq!(template().filter(), "*.*.*.*.*.*.>");
        assert_eq!(original_subject("3.acme.munich.a.l.m.s.rms"), "acme.munich.a.l.m.s.rms");
    }

    #[test]
    fn partitions_are_shared_evenly_and_few_move_when_a_worker_leaves_or_joins() {
        let workers: Vec<String> = (0..3).map(|i| format!("host-{i}")).collect();
        let before = owners(&workers, "vib", 64);
        for w in &workers {
            let share = before.iter().filter(|o| *o == w).count();
            assert!((21..=22).contains(&share), "{w} owns {share} of 64");
            assert_eq!(owned(&workers, w, "vib", 64).len(), share);
        }
        let mut shuffled = workers.clone();
        shuffled.reverse();
        assert_eq!(owners(&shuffled, "vib", 64), before, "the order of the roll does not matter");
        let after = owners(&workers[..2], "vib", 64);
        let kept = (0..64).filter(|p| before[*p] != "host-2" && after[*p] == before[*p]).count();
        let had = before.iter().filter(|o| *o != "host-2").count();
        assert!(kept * 4 >= had * 3, "{kept} of {had} partitions stayed with their worker");
        for (n, w) in [(4, 2), (4, 3), (1, 2)] {
            let roll: Vec<String> = (0..w).map(|i| format!("w{i}")).collect();
            let shares: Vec<usize> = roll.iter().map(|me| owned(&roll, me, "p", n).len()).collect();
            assert_eq!(shares.iter().sum::<usize>(), n as usize);
            assert!(shares.iter().max().unwrap_or(&0) - shares.iter().min().unwrap_or(&0) <= 1, "{shares:?}");
        }
    }
}
