//! The HTTP endpoints of a worker.
//!
//! - `/metrics`: every pipeline's metrics in the OpenMetrics text format (Prometheus scrapes
//!   it as is).
//! - `/healthz`: liveness; always 200 while the process serves, with the health document
//!   (`ok`, `starting` or `degraded`, and why). A worker whose NATS or object store is down
//!   is alive and catches up when they are back: restarting it would not help.
//! - `/readyz`: 200 once every pipeline is bound to its consumer and nothing it depends on is
//!   failing; 503 with the health document otherwise.
//! - `/status`: what `stator status` shows: consumer, lag, watermark and recent alerts.

use std::future::Future;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde::{Deserialize, Serialize};

use super::stats::{Member, Metrics, RecentAlert, SourceInfo, Stats};

/// Overall health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Every pipeline bound, nothing failing.
    Ok,
    /// A pipeline is not bound to its consumer yet.
    Starting,
    /// A pipeline is bound but NATS, the object store or output publishing is failing; the
    /// worker holds its messages and retries.
    Degraded,
}

/// One pipeline's health.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PipelineHealth {
    /// Pipeline name.
    pub pipeline: String,
    /// Bound to its consumer.
    pub bound: bool,
    /// NATS connection up.
    pub nats: bool,
    /// Archive writes succeeding (true without an archive).
    pub archive: bool,
    /// Output publishing succeeding.
    pub outputs: bool,
}

/// The health document of `/healthz` and `/readyz`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Health {
    /// Overall status.
    pub status: HealthStatus,
    /// Why it is not ok, one line each.
    pub problems: Vec<String>,
    /// Per pipeline.
    pub pipelines: Vec<PipelineHealth>,
}

impl Health {
    /// The health of every pipeline in `metrics`.
    pub fn of(metrics: &Metrics) -> Self {
        let mut status = HealthStatus::Ok;
        let mut problems = Vec::new();
        let mut pipelines = Vec::new();
        for s in metrics.pipelines() {
            let p = PipelineHealth {
                pipeline: s.pipeline.clone(),
                bound: s.consumer_bound.get() == 1,
                nats: s.nats_connected.get() == 1,
                archive: s.archive_available.get() == 1,
                outputs: s.outputs_available.get() == 1,
            };
            let name = &p.pipeline;
            if !p.bound {
                problems.push(format!("pipeline `{name}`: not bound to its consumer"));
                if status == HealthStatus::Ok {
                    status = HealthStatus::Starting;
                }
            }
            if let Some(why) = s.refusal() {
                problems.push(format!("pipeline `{name}`: the server refuses an output, {why}"));
                status = HealthStatus::Degraded;
            }
            for (up, what) in [
                (p.nats, "NATS is unreachable"),
                (p.archive, "the archive's object store is failing"),
                (p.outputs, "publishing outputs is failing"),
            ] {
                if !up && p.bound {
                    problems.push(format!("pipeline `{name}`: {what}"));
                    status = HealthStatus::Degraded;
                }
            }
            pipelines.push(p);
        }
        Self { status, problems, pipelines }
    }
}

/// What `/status` tells about one pipeline.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PipelineStatus {
    /// Pipeline name.
    pub pipeline: String,
    /// Stream and consumer, once bound.
    pub source: Option<SourceInfo>,
    /// Messages received.
    pub fetched: u64,
    /// Messages acknowledged.
    pub acked: u64,
    /// Dead letters published.
    pub dead_letters: u64,
    /// Windows closed.
    pub windows_closed: u64,
    /// Alert transitions published.
    pub alerts_published: u64,
    /// Messages not delivered yet.
    pub pending: i64,
    /// Messages delivered and not acknowledged.
    pub ack_pending: i64,
    /// Ack floor (stream sequence).
    pub ack_floor: i64,
    /// Wall clock minus the newest watermark, seconds.
    pub watermark_lag_s: f64,
    /// Newest confirmed alert transitions, oldest first.
    pub recent_alerts: Vec<RecentAlert>,
    /// The workers running the pipeline, as they announce themselves (known to `stator
    /// status` asking JetStream; a worker's own `/status` leaves it empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workers: Vec<Member>,
    /// A partitioned pipeline's partitions: their consumers' counts (known to `stator status`
    /// asking JetStream).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<PartitionStatus>,
}

/// One partition of a partitioned pipeline.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartitionStatus {
    /// Its consumer.
    pub consumer: String,
    /// Messages not delivered yet.
    pub pending: u64,
    /// Messages delivered and not acknowledged.
    pub ack_pending: u64,
    /// The worker pinned on it, or else the one running it, by their announcements.
    pub worker: Option<String>,
}

impl PipelineStatus {
    fn of(s: &Stats) -> Self {
        Self {
            pipeline: s.pipeline.clone(),
            source: s.source.get().cloned(),
            fetched: Stats::get(&s.fetched),
            acked: Stats::get(&s.acked),
            dead_letters: Stats::get(&s.dead_letters),
            windows_closed: Stats::get(&s.windows_closed),
            alerts_published: Stats::get(&s.alerts_published),
            pending: s.consumer_pending.get(),
            ack_pending: s.consumer_ack_pending.get(),
            ack_floor: s.consumer_ack_floor.get(),
            watermark_lag_s: s.watermark_lag.get(),
            recent_alerts: s.recent_alerts(),
            workers: Vec::new(),
            partitions: Vec::new(),
        }
    }
}

fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|State(m): State<Arc<Metrics>>| async move { Json(Health::of(&m)) }))
        .route("/readyz", get(ready))
        .route(
            "/status",
            get(|State(m): State<Arc<Metrics>>| async move {
                Json(m.pipelines().iter().map(|s| PipelineStatus::of(s)).collect::<Vec<_>>())
            }),
        )
        .with_state(metrics)
}

async fn metrics_text(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], m.encode())
}

async fn ready(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    let health = Health::of(&m);
    let code = if health.status == HealthStatus::Ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(health))
}

/// Serves the endpoints on `listener` until `shutdown` completes.
///
/// # Errors
/// When the listener fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(metrics)).with_graceful_shutdown(shutdown).await
}
