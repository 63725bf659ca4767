//! Publishing an output durably: through JetStream when a stream captures the subject
//! (waiting for the PubAck, retrying with backoff), else as a core NATS message flushed to
//! the server.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, message::PublishMessage};
use bytes::Bytes;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::watch;

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
}

/// Publishes outputs, remembering which subjects a stream captures.
#[derive(Debug)]
pub struct Publisher {
    js: jetstream::Context,
    captured: HashMap<String, (bool, std::time::Instant)>,
    available: Gauge,
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
        Self { js, captured: HashMap::new(), available: Gauge::default() }
    }

    /// Reports on `available` (1, or 0 while publishing fails and is retried).
    pub fn with_health(mut self, available: Gauge) -> Self {
        self.available = available;
        self
    }

    /// Publishes `out` and waits until it is durable (or, for an uncaptured subject, flushed).
    /// Retries with backoff until it succeeds or `stop` turns true.
    ///
    /// # Errors
    /// [`ShuttingDown`] when `stop` turned true first.
    pub async fn publish(&mut self, out: &Outbound, stop: &watch::Receiver<bool>) -> Result<bool, ShuttingDown> {
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.try_publish(out).await {
                Ok(duplicate) => {
                    self.available.set(1);
                    return Ok(duplicate);
                }
                Err(e) => {
                    self.available.set(0);
                    tracing::warn!(subject = %out.subject, error = %e, retry_in = ?backoff, "publish failed");
                    if *stop.borrow() {
                        return Err(ShuttingDown);
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    async fn try_publish(&mut self, out: &Outbound) -> Result<bool, String> {
        if self.is_captured(&out.subject).await? {
            let msg = PublishMessage::build()
                .headers(out.headers.clone())
                .message_id(&out.msg_id)
                .payload(out.payload.clone());
            let ack = self.js.send_publish(out.subject.clone(), msg).await.map_err(|e| e.to_string())?;
            let ack = ack.await.map_err(|e| e.to_string())?;
            Ok(ack.duplicate)
        } else {
            let client = self.js.client();
            let mut headers = out.headers.clone();
            headers.insert("Nats-Msg-Id", out.msg_id.as_str());
            client
                .publish_with_headers(out.subject.clone(), headers, out.payload.clone())
                .await
                .map_err(|e| e.to_string())?;
            client.flush().await.map_err(|e| e.to_string())?;
            Ok(false)
        }
    }

    async fn is_captured(&mut self, subject: &str) -> Result<bool, String> {
        if let Some((c, at)) = self.captured.get(subject)
            && (*c || at.elapsed() < UNCAPTURED_TTL)
        {
            return Ok(*c);
        }
        // A cluster's view of a just-created stream can lag: ask twice before concluding
        // that nothing captures the subject.
        let mut captured = false;
        for attempt in 0..2 {
            match self.js.stream_by_subject(subject).await {
                Ok(_) => {
                    captured = true;
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
