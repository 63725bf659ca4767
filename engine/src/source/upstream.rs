//! A stream's upstream: the streams it sources (a factory's edge stream seen from the cloud).
//! Whether they are heard from, and whether a silence cost messages: when a WAN cut outlasts
//! the edge stream's limits, the edge discards the oldest readings before they are forwarded,
//! and nats-server resumes the source at the first one it still has. Nothing in the cloud
//! stream says so except the source sequences it copied in, which [`GapWatch`] follows.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::{self, stream::RawMessageErrorKind};

/// How long a stream's source (or mirror) may go unheard before its stream counts as cut off
/// from upstream. nats-server hears from a healthy source about every second, data or not
/// (its `active` stays under 1 s); during a WAN cut `active` grows with the cut.
pub const SOURCE_SILENCE: Duration = Duration::from_secs(3);

/// The sources (and mirror) of a stream that are cut off or behind: not heard from for longer
/// than [`SOURCE_SILENCE`], or heard from but with messages still to forward (`lag`, as after
/// a cut or a hub restart, while the backlog comes in). With how long since last heard; empty
/// when the stream has none or all are current.
pub fn silent_sources(info: &jetstream::stream::Info) -> Vec<(String, Option<Duration>)> {
    info.sources
        .iter()
        .chain(info.mirror.as_ref())
        .filter(|s| s.active.is_none_or(|a| a > SOURCE_SILENCE) || s.lag > 0)
        .map(|s| (s.name.clone(), s.active))
        .collect()
}

/// The header nats-server stamps on each message a stream copies in from a source:
/// `<source index name> <sequence in the source stream> ...`.
pub const STREAM_SOURCE_HEADER: &str = "Nats-Stream-Source";

/// Where a sourced message came from: (the source's index name, its sequence there).
pub fn origin(headers: Option<&async_nats::HeaderMap>) -> Option<(String, u64)> {
    let value = headers?.get(STREAM_SOURCE_HEADER)?.as_str();
    let mut tokens = value.split(' ');
    let source = tokens.next().filter(|s| !s.is_empty())?;
    let seq = tokens.next()?.parse().ok()?;
    Some((source.to_owned(), seq))
}

/// The sequence in its source stream of a message a stream copied in (the number in
/// [`STREAM_SOURCE_HEADER`]), without allocating: this runs for every message of a partition.
pub fn origin_seq(headers: Option<&async_nats::HeaderMap>) -> Option<u64> {
    let value = headers?.get(STREAM_SOURCE_HEADER)?.as_str();
    value.split(' ').nth(1)?.parse().ok()
}

/// Messages of a source that never reached the stream: sequences `from..=to` of `source`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// The source's index name (stream name, and a hash of its domain's API prefix).
    pub source: String,
    /// First lost sequence in the source stream.
    pub from: u64,
    /// Last lost sequence in the source stream.
    pub to: u64,
}

impl Gap {
    /// Messages lost.
    pub fn len(&self) -> u64 {
        self.to - self.from + 1
    }

    /// Never true: a gap holds at least one message.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Messages looked at per step in each direction, so a busy stream with many sources never
/// turns the watch into a second consumer.
const SCAN: u64 = 1_000;

/// Follows, step by step (the worker's monitor takes one a second), the source sequences a
/// stream copies in: for each source, the first message copied in after a step must follow the
/// last one copied in before it. Messages arrive from a source in order, so a jump is messages
/// the source no longer had when it resumed (after a WAN cut, a hub outage or a lagging
/// source). Only the messages around each step's boundary are read (direct gets, at most
/// [`SCAN`] each way): a jump in the middle of a step's messages of a stream with many busy
/// sources can go unseen, a jump at a resume cannot, since nothing of that source arrives
/// during the silence before it.
#[derive(Debug, Default)]
pub struct GapWatch {
    /// The stream's last sequence at the previous step.
    seen_to: u64,
    /// Per source, the newest sequence copied in as of `seen_to`.
    last: HashMap<String, u64>,
}

impl GapWatch {
    /// The newest sequence of `source` (its index name) the stream has copied in, as of the
    /// last step.
    pub fn newest(&self, source: &str) -> Option<u64> {
        self.last.get(source).copied()
    }

    /// Looks at what the stream (now up to `last_seq`, copying in from `sources` sources)
    /// received since the previous step; returns the gaps found. When the server does not
    /// answer a read, nothing is concluded and the next step looks again.
    pub async fn step(&mut self, stream: &jetstream::stream::Stream, last_seq: u64, sources: usize) -> Vec<Gap> {
        if last_seq < self.seen_to {
            *self = Self::default(); // the stream was purged or recreated: start over
        }
        if last_seq == self.seen_to || sources == 0 {
            return Vec::new();
        }
        let mut gaps = Vec::new();
        let mut waiting: HashMap<&String, u64> = self.last.iter().map(|(s, seq)| (s, *seq)).collect();
        let stop = last_seq.min(self.seen_to + SCAN);
        let mut seq = self.seen_to + 1;
        while seq <= stop && !waiting.is_empty() {
            match raw_origin(stream, seq).await {
                None => return Vec::new(),
                Some(Some((source, origin))) => {
                    if let Some(last) = waiting.remove(&source)
                        && origin > last + 1
                    {
                        gaps.push(Gap { source, from: last + 1, to: origin - 1 });
                    }
                }
                Some(None) => {}
            }
            seq += 1;
        }
        let mut newest = HashMap::new();
        let floor = last_seq.saturating_sub(SCAN).max(self.seen_to);
        let mut seq = last_seq;
        while seq > floor && newest.len() < sources {
            match raw_origin(stream, seq).await {
                None => return Vec::new(),
                Some(Some((source, origin))) => {
                    newest.entry(source).or_insert(origin);
                }
                Some(None) => {}
            }
            seq -= 1;
        }
        self.last.extend(newest);
        self.seen_to = last_seq;
        gaps
    }
}

/// The sources of a stream that hold messages it has not copied in yet: each source stream's
/// last sequence (asked of its own JetStream, through its domain's API for an external one)
/// against the newest the stream holds from it ([`GapWatch::newest`]). This is what tells a
/// backlog that is still coming (after a cut, or while a restarted hub recreates its source
/// consumers) from a link that is up and quiet. Sources with a filter or transforms, and those
/// that do not answer, are left to `active` and `lag` ([`silent_sources`]). With how many
/// messages each is behind.
pub async fn sources_behind(
    client: &async_nats::Client,
    sources: &[jetstream::stream::Source],
    watch: &GapWatch,
) -> Vec<(String, u64)> {
    let mut behind = Vec::new();
    for source in sources {
        if source.filter_subject.as_deref().is_some_and(|f| f != ">") || !source.subject_transforms.is_empty() {
            continue;
        }
        let api = match (&source.external, &source.domain) {
            (Some(external), _) => Some(external.api_prefix.clone()),
            (None, Some(domain)) => Some(format!("$JS.{domain}.API")),
            (None, None) => None,
        };
        let index_name =
            api.as_deref().map_or_else(|| source.name.clone(), |a| format!("{}:{}", source.name, api_hash(a)));
        let subject = format!("{}.STREAM.INFO.{}", api.as_deref().unwrap_or("$JS.API"), source.name);
        let Ok(Ok(reply)) = tokio::time::timeout(Duration::from_secs(1), client.request(subject, "".into())).await
        else {
            continue;
        };
        let Some(last) = serde_json::from_slice::<serde_json::Value>(&reply.payload)
            .ok()
            .and_then(|v| v.get("state")?.get("last_seq")?.as_u64())
        else {
            continue;
        };
        let copied = watch.newest(&index_name).unwrap_or(0);
        if last > copied {
            behind.push((index_name, last - copied));
        }
    }
    behind
}

/// nats-server's name hash of an external source's API prefix, as in its index name
/// `<stream>:<hash>`: the first 8 bytes of SHA-256, each as a base-62 digit.
fn api_hash(api_prefix: &str) -> String {
    const DIGITS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let digest = ring::digest::digest(&ring::digest::SHA256, api_prefix.as_bytes());
    digest.as_ref()[..8].iter().map(|b| DIGITS[usize::from(*b) % DIGITS.len()] as char).collect()
}

/// The origin of message `seq`: `None` when the server did not answer, `Some(None)` when the
/// message is gone or was not copied in from a source.
async fn raw_origin(stream: &jetstream::stream::Stream, seq: u64) -> Option<Option<(String, u64)>> {
    match tokio::time::timeout(Duration::from_secs(3), stream.get_raw_message(seq)).await {
        Ok(Ok(m)) => Some(origin(Some(&m.headers))),
        Ok(Err(e)) if e.kind() == RawMessageErrorKind::NoMessageFound => Some(None),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_hash_is_the_one_in_nats_server_source_headers() {
        // Seen in a real `Nats-Stream-Source` header of a stream sourcing `$JS.edge.API`.
        assert_eq!(api_hash("$JS.edge.API"), "n1VdnVvB");
    }

    #[test]
    fn the_source_header_gives_the_source_and_its_sequence() {
        let mut h = async_nats::HeaderMap::new();
        h.insert(STREAM_SOURCE_HEADER, "TELEMETRY:Y2F2bA 1234 > >");
        assert_eq!(origin(Some(&h)), Some(("TELEMETRY:Y2F2bA".to_owned(), 1234)));
        assert_eq!(origin_seq(Some(&h)), Some(1234));
        h.insert(STREAM_SOURCE_HEADER, "TELEMETRY 77");
        assert_eq!(origin(Some(&h)), Some(("TELEMETRY".to_owned(), 77)));
        h.insert(STREAM_SOURCE_HEADER, "garbage");
        assert_eq!(origin(Some(&h)), None);
        assert_eq!(origin(None), None);
        assert_eq!(origin_seq(Some(&h)), None);
    }
}
