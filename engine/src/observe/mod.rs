//! What a running worker tells its operators: Prometheus metrics, health and status over
//! HTTP (`/metrics`, `/healthz`, `/readyz`, `/status`).

mod http;
mod stats;

pub use http::{Health, HealthStatus, PartitionStatus, PipelineHealth, PipelineStatus, serve};
pub use prometheus_client::metrics::counter::Counter;
pub use stats::{Member, Metrics, PipelineLabel, ReasonLabels, RecentAlert, Seconds, SourceInfo, Stats};
