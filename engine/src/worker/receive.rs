//! One message in: decode it, route it into its windows and the archive, or dead-letter it;
//! and messages JetStream gave up on (max_deliver advisories).

use std::time::Instant;

use async_nats::jetstream;

use super::commit::Commit;
use super::output::{self, Origin};
use super::route::{self, Refused};
use super::{InFlight, Stats, Worker};
use crate::archive::{Arrival, Sink};

impl Worker {
    pub(super) fn on_message(&mut self, msg: jetstream::Message, now: Instant, commit: &mut Commit) {
        let Ok(info) = msg.info() else {
            tracing::warn!(subject = %msg.subject, "message without JetStream metadata ignored");
            return;
        };
        let (stream_seq, delivered) = (info.stream_sequence, info.delivered);
        let published_us = (info.published.unix_timestamp_nanos() / 1000) as i64;
        Stats::add(&self.stats.fetched, 1);
        self.delivered_upto = self.delivered_upto.max(stream_seq);
        // A message is known by its sequence in the pipeline's stream: for a partition, the one
        // the partitioned stream copied it from.
        let seq = match &self.lane {
            Some(_) => crate::source::upstream::origin_seq(msg.headers.as_ref()).unwrap_or(stream_seq),
            None => stream_seq,
        };
        if delivered > 1 {
            Stats::add(&self.stats.redelivered, 1);
            if let Some(b) = self.barrier.as_mut().filter(|b| seq <= b.upto_seq) {
                b.remaining = b.remaining.saturating_sub(1);
            }
        }
        self.note_delivery(info.consumer, info.consumer_sequence, seq, now);
        let jetstream::Message { message: mut msg, .. } = msg;
        let Some(reply) = msg.reply.take() else {
            return; // JetStream metadata comes from the reply subject: not reached
        };
        if self.lane.is_some() {
            msg.subject = crate::source::partitions::original_subject(msg.subject.as_str()).into();
        }
        if let Some(f) = self.inflight.get_mut(&seq) {
            f.reply = reply; // a redelivery of a message we hold: ack the newest delivery
            return;
        }
        if self.done.contains(seq) {
            commit.ack(reply); // handled in this run, its ack was lost: ack again
            return;
        }
        let origin_stream = self.origin_stream.clone();
        let origin = Origin { stream: &origin_stream, seq, subject: msg.subject.as_str() };
        let arrival = Arrival { now, redelivered: delivered > 1 };
        let (refs, late) = match self.route(&msg, published_us, seq, arrival) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(pipeline = %self.pipeline.name, seq, reason = e.code, "dead letter");
                self.stats.decode_error(e.code);
                self.stats.dead_letter(e.code);
                let out = output::dead_letter(
                    &self.pipeline,
                    origin,
                    msg.headers.as_ref(),
                    msg.payload.clone(),
                    e.code,
                    &e.detail,
                );
                commit.dead_letters.push(out);
                commit.term(reply);
                self.done.insert(seq);
                return;
            }
        };
        if let Some(detail) = late {
            Stats::add(&self.stats.late, 1);
            self.stats.dead_letter("late");
            let out =
                output::dead_letter(&self.pipeline, origin, msg.headers.as_ref(), msg.payload.clone(), "late", &detail);
            commit.dead_letters.push(out);
            if refs == 0 {
                commit.term(reply);
                self.done.insert(seq);
                return;
            }
        }
        if refs == 0 {
            commit.ack(reply);
            self.done.insert(seq);
        } else {
            self.inflight.insert(seq, InFlight { reply, refs, since: now });
        }
        for seq in std::mem::take(&mut self.speed_released) {
            self.release(seq, commit);
        }
        if self.archive.as_mut().is_some_and(Sink::take_full) {
            self.roll_archive(now, false, commit);
        }
    }

    /// Decodes a message and adds it to its windows: (windows taken, late detail).
    pub(super) fn route(
        &mut self,
        msg: &async_nats::Message,
        published_us: i64,
        seq: u64,
        arrival: Arrival,
    ) -> Result<(u32, Option<String>), Refused> {
        let now = arrival.now;
        let pipeline = self.pipeline.clone();
        let mut fields = Vec::with_capacity(8);
        pipeline
            .source
            .template
            .extract(msg.subject.as_str(), &mut fields)
            .map_err(|e| Refused::from(crate::telemetry::DecodeError::SubjectMismatch(e.to_string())))?;
        if self.ops.iter_mut().any(|op| op.takes_speed(msg.subject.as_str())) {
            return self.route_speed(msg, &fields, published_us, seq);
        }
        let input = route::decode(&pipeline, msg, published_us)?;
        route::check_event_time(&pipeline, &input, published_us)?;
        let hold = self.barrier.is_some();
        let (mut refs, mut late) = (0, None);
        for (spec, op) in pipeline.windows.iter().zip(self.ops.iter_mut()) {
            if spec.filter.as_deref().is_some_and(|f| !crate::subject::matches(f, msg.subject.as_str())) {
                continue;
            }
            let (parts, n) = route::key_of(spec, &fields, &mut self.key_buf);
            match op.add(&self.key_buf, &parts[..n], &input, seq, now, hold) {
                Ok(n) => refs += n,
                Err(l) => {
                    late = Some(format!(
                        "window `{}` ending {} closed (closed up to {})",
                        spec.name,
                        output::rfc3339_ms(l.window_end_ms),
                        output::rfc3339_ms(l.closed_until_ms),
                    ))
                }
            }
        }
        if let Some(sink) = self.archive.as_mut().filter(|s| s.archives_messages()) {
            let subject = msg.subject.as_str();
            match &input {
                route::Input::Reading { t_ms, value } => {
                    sink.add_reading(&fields, subject, *t_ms, *value, seq, arrival)
                }
                route::Input::Wave(w) => sink.add_wave(&fields, subject, w, seq, arrival),
            }
            refs += 1;
        }
        Ok((refs, late))
    }

    /// A shaft speed reading (`rpm_subject`): held by the windows that take their speed from it
    /// (never late: a window that closed without it said its speed was unknown).
    fn route_speed(
        &mut self,
        msg: &async_nats::Message,
        fields: &[&str],
        published_us: i64,
        seq: u64,
    ) -> Result<(u32, Option<String>), Refused> {
        let (t_ms, rpm) = route::decode_speed(&self.pipeline, msg, published_us)?;
        route::check_event_time(&self.pipeline, &route::Input::Reading { t_ms, value: rpm }, published_us)?;
        let mut refs = 0;
        for op in &mut self.ops {
            refs += u32::from(op.add_speed(msg.subject.as_str(), fields, (t_ms, rpm), seq, &mut self.speed_released));
        }
        Ok((refs, None))
    }

    /// A message JetStream will not deliver again: dead-letter it with reason `max_deliver`.
    pub(super) async fn on_max_deliveries(&mut self, advisory: &async_nats::Message, commit: &mut Commit) {
        #[derive(serde::Deserialize)]
        struct MaxDeliveries {
            stream_seq: u64,
            deliveries: u64,
        }
        let Ok(a) = serde_json::from_slice::<MaxDeliveries>(&advisory.payload) else {
            tracing::warn!(pipeline = %self.pipeline.name, "unreadable max-delivery advisory");
            return;
        };
        let Some(stream) = &self.stream else { return };
        let msg = match stream.get_raw_message(a.stream_seq).await {
            Ok(m) => m,
            Err(e) => {
                if !self.done.contains(a.stream_seq) && !self.inflight.contains_key(&a.stream_seq) {
                    tracing::error!(pipeline = %self.pipeline.name, seq = a.stream_seq, error = %e, "message past max_deliver is gone from the stream; not dead-lettered");
                }
                return;
            }
        };
        let (seq, subject) = match &self.lane {
            Some(_) => (
                crate::source::upstream::origin_seq(Some(&msg.headers)).unwrap_or(a.stream_seq),
                crate::source::partitions::original_subject(msg.subject.as_str()),
            ),
            None => (a.stream_seq, msg.subject.as_str()),
        };
        if self.done.contains(seq) || self.inflight.contains_key(&seq) {
            return; // handled, or held and about to be
        }
        tracing::warn!(pipeline = %self.pipeline.name, seq, deliveries = a.deliveries, "message past max_deliver dead-lettered");
        let origin = Origin { stream: &self.origin_stream, seq, subject };
        let detail = format!("delivered {} times without being acknowledged (max_deliver)", a.deliveries);
        self.stats.dead_letter("max_deliver");
        let payload = msg.payload.clone();
        let out = output::dead_letter(&self.pipeline, origin, Some(&msg.headers), payload, "max_deliver", &detail);
        commit.dead_letters.push(out);
    }
}
