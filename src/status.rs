//! `stator status`: each pipeline's consumer, lag, watermark and recent alerts, from a running
//! worker's `/status` endpoint or, without one, from JetStream itself.

use std::fmt::Write as _;

use anyhow::Context as _;
use async_nats::jetstream;
use futures::TryStreamExt as _;
use stator_engine::config::Pipeline;
use stator_engine::observe::{PartitionStatus, PipelineStatus, RecentAlert};
use stator_engine::source::partitions;

/// Alerts shown per pipeline.
const RECENT: usize = 10;
/// Stream messages looked at, newest first, to find them.
const SCAN: u64 = 5_000;

/// Reads `/status` of the worker serving on `base` (`http://host:port`).
///
/// # Errors
/// When the worker cannot be reached or answers nonsense.
pub async fn from_worker(base: &str) -> anyhow::Result<Vec<PipelineStatus>> {
    let url = format!("{}/status", base.trim_end_matches('/'));
    let response = reqwest::get(&url).await.with_context(|| format!("GET {url}"))?;
    let response = response.error_for_status().with_context(|| format!("GET {url}"))?;
    response.json().await.with_context(|| format!("reading {url}"))
}

/// What JetStream knows of `pipeline`: its consumer and the newest alerts its rules published.
/// The watermark is the worker's own and is not known here (NaN).
///
/// # Errors
/// When the server cannot be reached or the consumer does not exist.
pub async fn from_jetstream(pipeline: &Pipeline) -> anyhow::Result<PipelineStatus> {
    let client = stator_engine::source::connect(&pipeline.source)
        .await
        .with_context(|| format!("connecting to {}", pipeline.source.url))?;
    let js = jetstream::new(client);
    let source = &pipeline.source;
    let workers = workers(&js, pipeline).await;
    let (stream_name, specs) = if source.partitions > 1 {
        // A partitioned pipeline's consumers are on the stream derived from the source.
        let name = partitions::stream_name(pipeline);
        (name, (0..source.partitions).map(|p| partitions::durable(pipeline, p)).collect::<Vec<_>>())
    } else {
        let stream = js.get_stream(&source.stream).await.with_context(|| format!("stream `{}`", source.stream))?;
        // One consumer per filter subject when the pipeline has several: add them up.
        let specs = stator_engine::source::specs_in_use(&stream, pipeline).await?;
        (source.stream.clone(), specs.into_iter().map(|c| c.durable).collect())
    };
    let stream = js.get_stream(&stream_name).await.with_context(|| format!("stream `{stream_name}`"))?;
    let mut lag = stator_engine::source::Lag::new();
    let mut parts = Vec::new();
    for durable in &specs {
        let info = stream
            .consumer_info(durable)
            .await
            .with_context(|| format!("consumer `{durable}` of stream `{stream_name}`"))?;
        lag.add(&info);
        if source.partitions > 1 {
            // The pinned worker, or the one running the partition (pinned with its next
            // delivery).
            let worker = workers
                .iter()
                .find(|w| w.pinned.contains(durable))
                .or_else(|| workers.iter().find(|w| w.consumers.contains(durable)))
                .map(|w| w.worker.clone());
            parts.push(PartitionStatus {
                consumer: durable.clone(),
                pending: info.num_pending,
                ack_pending: info.num_ack_pending as u64,
                worker,
            });
        }
    }
    let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    Ok(PipelineStatus {
        pipeline: pipeline.name.clone(),
        source: Some(stator_engine::observe::SourceInfo { stream: stream_name, durable: specs.join(", ") }),
        fetched: lag.delivered,
        acked: lag.ack_floor,
        dead_letters: 0,
        windows_closed: 0,
        alerts_published: 0,
        pending: gauge(lag.pending),
        ack_pending: gauge(lag.ack_pending as u64),
        ack_floor: gauge(lag.ack_floor),
        watermark_lag_s: f64::NAN,
        recent_alerts: recent_alerts(&js, pipeline).await?,
        workers,
        partitions: parts,
    })
}

/// The workers of `pipeline` that announced themselves lately; none when the bucket is
/// missing (no worker ran since the server started) or unreadable.
async fn workers(js: &jetstream::Context, pipeline: &Pipeline) -> Vec<stator_engine::observe::Member> {
    use stator_engine::source::members;
    let Ok(store) = js.get_key_value(members::BUCKET).await else { return Vec::new() };
    members::list(&store, &pipeline.name).await.unwrap_or_default()
}

/// The newest alerts on the pipeline's alert subjects, from whichever streams capture them.
async fn recent_alerts(js: &jetstream::Context, pipeline: &Pipeline) -> anyhow::Result<Vec<RecentAlert>> {
    let filters: Vec<String> = pipeline.alerts.iter().map(|r| wildcard(r.subject.as_str())).collect();
    let mut found = Vec::new();
    let mut names = js.stream_names();
    while let Some(name) = names.try_next().await? {
        let mut stream = js.get_stream(&name).await?;
        let info = stream.info().await?;
        let captures =
            info.config.subjects.iter().any(|s| filters.iter().any(|f| stator_engine::subject::overlaps(s, f)));
        if !captures {
            continue;
        }
        let last = info.state.last_sequence;
        for seq in (last.saturating_sub(SCAN) + 1..=last).rev() {
            let Ok(m) = stream.get_raw_message(seq).await else { continue };
            if filters.iter().any(|f| stator_engine::subject::matches(f, m.subject.as_str())) {
                let alert = serde_json::from_slice(&m.payload).unwrap_or(serde_json::Value::Null);
                found.push((m.time, RecentAlert { subject: m.subject.to_string(), alert }));
                if found.len() == RECENT {
                    break;
                }
            }
        }
    }
    found.sort_by_key(|(t, _)| *t);
    let skip = found.len().saturating_sub(RECENT);
    Ok(found.into_iter().skip(skip).map(|(_, a)| a).collect())
}

/// An output subject template as a filter: every `{field}` token becomes `*`.
fn wildcard(template: &str) -> String {
    template.split('.').map(|t| if t.starts_with('{') { "*" } else { t }).collect::<Vec<_>>().join(".")
}

/// Renders statuses for a terminal.
pub fn render(statuses: &[PipelineStatus]) -> String {
    let mut out = String::new();
    for s in statuses {
        let source = s
            .source
            .as_ref()
            .map_or("not bound yet".to_owned(), |i| format!("stream {}, consumer {}", i.stream, i.durable));
        let _ = writeln!(out, "pipeline {} ({source})", s.pipeline);
        let _ = writeln!(
            out,
            "  lag: {} not yet delivered, {} delivered and not acknowledged, ack floor {}",
            s.pending, s.ack_pending, s.ack_floor
        );
        for w in &s.workers {
            let role = match &w.pinned[..] {
                [] => "standing by".to_owned(),
                pinned => format!("active on {}", pinned.join(", ")),
            };
            let _ = writeln!(out, "  worker {}: {role} | fetched {} | started {}", w.worker, w.fetched, w.started);
        }
        for p in &s.partitions {
            let on = p.worker.as_deref().map_or("no worker".to_owned(), |w| format!("on {w}"));
            let _ = writeln!(
                out,
                "  partition {}: {on} | {} not yet delivered, {} delivered and not acknowledged",
                p.consumer, p.pending, p.ack_pending
            );
        }
        if s.watermark_lag_s.is_finite() {
            let _ = writeln!(
                out,
                "  watermark: {:.1} s behind the wall clock | fetched {} | acked {} | windows {} | alerts {} | dead letters {}",
                s.watermark_lag_s, s.fetched, s.acked, s.windows_closed, s.alerts_published, s.dead_letters
            );
        }
        if s.recent_alerts.is_empty() {
            let _ = writeln!(out, "  no recent alerts");
        } else {
            let _ = writeln!(out, "  recent alerts (oldest first):");
        }
        for a in &s.recent_alerts {
            let v = &a.alert;
            let _ = writeln!(
                out,
                "    {} {:<44} {:<9} {} {:.3} (threshold {})",
                v["window_end"].as_str().unwrap_or("?"),
                a.subject,
                v["state"].as_str().unwrap_or("?"),
                v["metric"].as_str().unwrap_or("?"),
                v["value"].as_f64().unwrap_or(f64::NAN),
                v["threshold"]
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn output_templates_become_filters() {
        assert_eq!(super::wildcard("acme.{site}.alert.vibration.{machine}"), "acme.*.alert.vibration.*");
    }
}
