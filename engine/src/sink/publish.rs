//! Publishing an output durably: through JetStream when a stream captures the subject
//! (waiting for the PubAck, retrying with backoff), else as a core NATS message flushed to
//! the server.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, context::PublishErrorKind, message::PublishMessage};
use bytes::Bytes;
use tokio::sync::watch;

use crate::observe::Stats;

/// One message to publish.
#[derive(Debug, Clone)]
pub struct Outbound {
    /// Subject.
    pub subject: String,
    /// Deterministic `Nats-Msg-Id`, so a repeat is dropped by the stream.
    pub msg_id: String,
    /// Extra headers.
    pub headers: HeaderMap,
    /// Payload.
    pub payload: Bytes,
    /// Event time it speaks for (a window's end), Unix ms; 0 when none.
    pub event_ms: i64,
    /// When the worker made it (closed its window), for the latency of its own part.
    pub made: Option<std::time::Instant>,
}

/// Publishes outputs, remembering which subjects a stream captures.
#[derive(Debug)]
pub struct Publisher {
    js: jetstream::Context,
    captured: HashMap<String, (bool, std::time::Instant)>,
    /// The subjects of the streams found capturing an output: an output subject they match
    /// is known captured without asking the server (alert subjects differ per machine).
    capturing: Vec<String>,
    stats: Arc<Stats>,
}

/// Why a publish failed: the server refused the message (it answered with an error: retrying
/// the same message will not help until someone changes the stream or the message), or it
/// could not be confirmed (no answer in time, no connection, no responders).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The server answered with an error.
    Refused(String),
    /// No confirmation; retrying may help.
    Unconfirmed(String),
}

impl Failure {
    fn of(e: &jetstream::context::PublishError) -> Self {
        let answered = match e.kind() {
            PublishErrorKind::WrongLastMessageId
            | PublishErrorKind::WrongLastSequence
            | PublishErrorKind::MaxPayloadExceeded => true,
            PublishErrorKind::Other => std::error::Error::source(e).is_some_and(|s| s.is::<jetstream::Error>()),
            _ => false,
        };
        let text = match std::error::Error::source(e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        };
        if answered { Self::Refused(text) } else { Self::Unconfirmed(text) }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Refused(why) => write!(f, "refused by the server: {why}"),
            Failure::Unconfirmed(why) => write!(f, "not confirmed: {why}"),
        }
    }
}

/// How long "no stream captures this subject" is believed before asking again (a stream may
/// be created, or a cluster's view of its streams may lag).
const UNCAPTURED_TTL: Duration = Duration::from_secs(30);

/// Publishing stopped because the worker is shutting down; the output was not confirmed.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("shutting down before the output was confirmed")]
pub struct ShuttingDown;

const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl Publisher {
    /// A publisher over `js`.
    pub fn new(js: jetstream::Context) -> Self {
        Self { js, captured: HashMap::new(), capturing: Vec::new(), stats: Arc::new(Stats::default()) }
    }

    /// Reports on `stats`: `outputs_available` (1, or 0 while publishing fails and is
    /// retried), `outputs_refused` and the current refusal (see [`Stats::refusal`]).
    pub fn with_stats(mut self, stats: Arc<Stats>) -> Self {
        self.stats = stats;
        self
    }

    /// Publishes `out` and waits until it is durable (or, for an uncaptured subject, flushed).
    /// Retries with backoff until it succeeds or `stop` turns true. An output is never
    /// dropped: one the server refuses is retried too (the stream's limits or permissions may
    /// be fixed), but said loudly: an error in the log, `stator_outputs_refused`, and the
    /// reason in `/readyz` until a publish succeeds.
    ///
    /// # Errors
    /// [`ShuttingDown`] when `stop` turned true first.
    pub async fn publish(&mut self, out: &Outbound, stop: &watch::Receiver<bool>) -> Result<bool, ShuttingDown> {
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.try_publish(out).await {
                Ok(duplicate) => {
                    self.stats.outputs_available.set(1);
                    self.stats.set_refusal(None);
                    return Ok(duplicate);
                }
                Err(e) => {
                    self.stats.outputs_available.set(0);
                    match &e {
                        Failure::Refused(why) => {
                            Stats::add(&self.stats.outputs_refused, 1);
                            tracing::error!(subject = %out.subject, msg_id = %out.msg_id, reason = %why, retry_in = ?backoff, "the server refuses an output; it is kept and retried, and nothing after it is acknowledged until it is published");
                            self.stats.set_refusal(Some(format!("`{}` ({}): {why}", out.subject, out.msg_id)));
                        }
                        Failure::Unconfirmed(_) => {
                            tracing::warn!(subject = %out.subject, error = %e, retry_in = ?backoff, "publish failed")
                        }
                    }
                    if *stop.borrow() {
                        return Err(ShuttingDown);
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Publishes `outs` like [`Publisher::publish`], in order per subject, without waiting for
    /// each PubAck before sending the next: in rounds in which no subject appears twice, every
    /// message of a round is sent, then their PubAcks awaited; one not confirmed is published
    /// again (with retries) before the next round, so a subject's messages stay in order. The
    /// duplicate flag of each, in order.
    ///
    /// # Errors
    /// [`ShuttingDown`] when `stop` turned true first.
    pub async fn publish_all(
        &mut self,
        outs: &[Outbound],
        stop: &watch::Receiver<bool>,
    ) -> Result<Vec<bool>, ShuttingDown> {
        let mut duplicate = vec![false; outs.len()];
        let mut left: Vec<usize> = (0..outs.len()).collect();
        while !left.is_empty() {
            let mut subjects = std::collections::HashSet::new();
            let (round, later): (Vec<usize>, Vec<usize>) =
                left.iter().partition(|&&i| subjects.insert(outs[i].subject.as_str()));
            let mut sent = Vec::with_capacity(round.len());
            for &i in &round {
                sent.push((i, self.send(&outs[i]).await));
            }
            for (i, ack) in sent {
                let confirmed = match ack {
                    Ok(Some(ack)) => ack.await.ok().map(|a| a.duplicate),
                    Ok(None) => Some(false),
                    Err(_) => None,
                };
                duplicate[i] = match confirmed {
                    Some(d) => d,
                    None => self.publish(&outs[i], stop).await?,
                };
            }
            left = later;
        }
        if !outs.is_empty() {
            self.stats.outputs_available.set(1);
        }
        Ok(duplicate)
    }

    /// Sends `out` without waiting for its PubAck: `Some(ack)` to await for a captured subject,
    /// `None` when it was published (and flushed) without persistence.
    async fn send(&mut self, out: &Outbound) -> Result<Option<jetstream::context::PublishAckFuture>, Failure> {
        let unconfirmed = |e: String| Failure::Unconfirmed(e);
        if self.is_captured(&out.subject).await.map_err(unconfirmed)? {
            let msg = PublishMessage::build()
                .headers(out.headers.clone())
                .message_id(&out.msg_id)
                .payload(out.payload.clone());
            let ack = self.js.send_publish(out.subject.clone(), msg).await.map_err(|e| Failure::of(&e))?;
            Ok(Some(ack))
        } else {
            self.publish_uncaptured(out).await.map(|()| None)
        }
    }

    async fn publish_uncaptured(&mut self, out: &Outbound) -> Result<(), Failure> {
        let client = self.js.client();
        let mut headers = out.headers.clone();
        headers.insert("Nats-Msg-Id", out.msg_id.as_str());
        client
            .publish_with_headers(out.subject.clone(), headers, out.payload.clone())
            .await
            .map_err(|e| Failure::Unconfirmed(e.to_string()))?;
        client.flush().await.map_err(|e| Failure::Unconfirmed(e.to_string()))
    }

    async fn try_publish(&mut self, out: &Outbound) -> Result<bool, Failure> {
        match self.send(out).await? {
            Some(ack) => Ok(ack.await.map_err(|e| Failure::of(&e))?.duplicate),
            None => Ok(false),
        }
    }

    async fn is_captured(&mut self, subject: &str) -> Result<bool, String> {
        if let Some((c, at)) = self.captured.get(subject)
            && (*c || at.elapsed() < UNCAPTURED_TTL)
        {
            return Ok(*c);
        }
        if self.capturing.iter().any(|f| crate::subject::matches(f, subject)) {
            return Ok(true);
        }
        // A cluster's view of a just-created stream can lag: ask twice before concluding
        // that nothing captures the subject.
        let mut captured = false;
        for attempt in 0..2 {
            match self.js.stream_by_subject(subject).await {
                Ok(name) => {
                    captured = true;
                    if let Ok(mut stream) = self.js.get_stream(&name).await
                        && let Ok(info) = stream.info().await
                    {
                        self.capturing.extend(info.config.subjects.iter().cloned());
                    }
                    break;
                }
                Err(e) if matches!(e.kind(), jetstream::context::GetStreamByNameErrorKind::NotFound) => {
                    if attempt == 0 {
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        if !captured {
            tracing::warn!(subject, "no stream captures this output subject; publishing without persistence");
        }
        self.captured.insert(subject.to_owned(), (captured, std::time::Instant::now()));
        Ok(captured)
    }
}
