//! Test harness: a real nats-server per test, workers started and stopped in-process, and
//! helpers that wait on conditions instead of sleeping.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, message::PublishMessage};
use bytes::Bytes;
use stator::nats_server::{NatsServer, ServerConfig};
use stator_engine::config::{self, Pipeline};
use stator_engine::observe::{self, Counter, Metrics};
use stator_engine::worker::{self, RunMode, Stats, WorkerError};
use tempfile::TempDir;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// One nats-server with JetStream on a free port and its own temp store; killed on drop.
pub struct TestServer {
    pub server: NatsServer,
    _dir: TempDir,
}

impl TestServer {
    /// Starts a server and creates the TELEMETRY, ALERTS and dead-letter streams.
    pub async fn with_streams() -> Self {
        let s = Self::start("");
        stator::plant::ensure_streams(&s.js().await).await.expect("streams");
        s
    }

    /// Starts a bare server with `extra` config (cluster, leafnodes, auth...).
    pub fn start(extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let server = NatsServer::start_in(dir.path(), "stator-test", extra).expect("nats-server starts");
        Self { server, _dir: dir }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    pub async fn client(&self) -> async_nats::Client {
        stator::connect(&self.url()).await.expect("connect")
    }

    pub async fn js(&self) -> jetstream::Context {
        jetstream::new(self.client().await)
    }
}

/// A 3-node JetStream cluster, each node a [`NatsServer`] with its own store.
pub struct TestCluster {
    pub nodes: Vec<NatsServer>,
    _dir: TempDir,
}

impl TestCluster {
    pub async fn start(size: usize) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        // A free port is only free when it is picked: another process may take it before the
        // node binds it. Then the nodes are started again on new ports.
        for attempt in 0.. {
            match Self::start_nodes(&dir.path().join(format!("try{attempt}")), size) {
                Ok(nodes) => return Self { nodes, _dir: dir },
                Err(e) if attempt < 4 && e.contains("address already in use") => continue,
                Err(e) => panic!("cluster node starts: {e}"),
            }
        }
        unreachable!("the loop returns or panics")
    }

    fn start_nodes(dir: &std::path::Path, size: usize) -> Result<Vec<NatsServer>, String> {
        let port = || stator::nats_server::free_port().expect("port");
        let client_ports: Vec<u16> = (0..size).map(|_| port()).collect();
        let route_ports: Vec<u16> = (0..size).map(|_| port()).collect();
        let routes: Vec<String> = route_ports.iter().map(|p| format!("\"nats-route://127.0.0.1:{p}\"")).collect();
        (0..size)
            .map(|i| {
                let node_dir = dir.join(format!("n{i}"));
                std::fs::create_dir_all(&node_dir).expect("node dir");
                let extra = format!(
                    "cluster {{\n  name: \"stator\"\n  listen: \"127.0.0.1:{}\"\n  routes: [{}]\n}}",
                    route_ports[i],
                    routes.join(", ")
                );
                let config = ServerConfig { name: format!("n{i}"), port: client_ports[i], extra, ..Default::default() };
                NatsServer::start_with(&node_dir, &config).map_err(|e| format!("{e:?}"))
            })
            .collect()
    }

    /// All client URLs, comma-separated, as a pipeline's `url` takes them.
    pub fn urls(&self) -> String {
        self.nodes.iter().map(NatsServer::url).collect::<Vec<_>>().join(",")
    }
}

/// A hub server and a leaf node (with its own JetStream domain `edge`) connected to it.
pub struct TestLeaf {
    pub hub: NatsServer,
    pub leaf: NatsServer,
    _dir: TempDir,
}

impl TestLeaf {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let leaf_port = stator::nats_server::free_port().expect("port");
        let (hub_dir, leaf_dir) = (dir.path().join("hub"), dir.path().join("leaf"));
        std::fs::create_dir_all(&hub_dir).expect("dir");
        std::fs::create_dir_all(&leaf_dir).expect("dir");
        let hub = NatsServer::start_in(&hub_dir, "hub", &format!("leafnodes {{ listen: \"127.0.0.1:{leaf_port}\" }}"))
            .expect("hub starts");
        let config = ServerConfig {
            name: "edge".into(),
            port: stator::nats_server::free_port().expect("port"),
            jetstream_domain: Some("edge".into()),
            extra: format!("leafnodes {{ remotes: [ {{ url: \"nats-leaf://127.0.0.1:{leaf_port}\" }} ] }}"),
        };
        let leaf = NatsServer::start_with(&leaf_dir, &config).expect("leaf starts");
        Self { hub, leaf, _dir: dir }
    }
}

/// Waits until `check` returns true, polling every 50 ms; panics after `timeout`.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Loads a pipeline from text, with `${NATS_URL}` pointing at `url`.
pub fn pipeline(text: &str, url: &str) -> Pipeline {
    assert!(!text.contains("${STATOR_ARCHIVE"), "give the archive a temp dir: use pipeline_with");
    pipeline_with(text, &[("NATS_URL", url)])
}

/// Loads a pipeline from text, with `${NAME}` variables from `vars` only.
pub fn pipeline_with(text: &str, vars: &[(&str, &str)]) -> Pipeline {
    let env = |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned());
    match config::load_str(Path::new("test.toml"), text, &env) {
        Ok(loaded) => loaded.pipeline,
        Err(e) => panic!("test pipeline invalid:\n{e}"),
    }
}

/// A worker running in this process.
pub struct RunningWorker {
    stop: watch::Sender<bool>,
    pub task: JoinHandle<Result<(), WorkerError>>,
    pub stats: Arc<Stats>,
    /// Base URL of its HTTP endpoints (`/metrics`, `/healthz`, `/readyz`, `/status`).
    pub http: String,
}

impl RunningWorker {
    pub async fn start(pipeline: &Pipeline, url: &str, mode: RunMode) -> Self {
        let client = stator::connect(url).await.expect("connect");
        Self::on(pipeline, client, mode).await
    }

    /// Starts the worker on a client the test connected (e.g. through a proxy it cuts).
    pub async fn on(pipeline: &Pipeline, client: async_nats::Client, mode: RunMode) -> Self {
        let (stop, rx) = watch::channel(false);
        let metrics = Arc::new(Metrics::default());
        let stats = metrics.pipeline(&pipeline.name);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let http = format!("http://{}", listener.local_addr().expect("address"));
        let mut http_stop = rx.clone();
        tokio::spawn(observe::serve(listener, metrics, async move {
            let _ = http_stop.wait_for(|s| *s).await;
        }));
        let task = tokio::spawn(worker::run(Arc::new(pipeline.clone()), client, rx, stats.clone(), mode));
        Self { stop, task, stats, http }
    }

    /// Signals a clean stop and waits for it.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let result = tokio::time::timeout(Duration::from_secs(30), self.task).await;
        result.expect("worker stops in time").expect("worker task").expect("worker ok");
    }

    /// Waits for a drain-mode run to finish by itself.
    pub async fn finish(self) {
        let result = tokio::time::timeout(Duration::from_secs(60), self.task).await;
        result.expect("worker drains in time").expect("worker task").expect("worker ok");
    }

    /// Kills the worker without any clean-up, like SIGKILL: nothing acked, nothing NAKed.
    pub async fn crash(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// One published reading.
#[derive(Debug, Clone)]
pub struct Reading {
    pub subject: String,
    pub t_ms: i64,
    pub value: f64,
}

impl Reading {
    pub fn rms(site: &str, machine: &str, t_ms: i64, value: f64) -> Self {
        Self { subject: format!("acme.{site}.hall-a.line-1.{machine}.spindle.vibration.rms"), t_ms, value }
    }

    pub fn payload(&self) -> Bytes {
        let msg = serde_json::json!({
            "machine_id": self.subject.split('.').nth(4),
            "sensor": "spindle",
            "value": self.value,
            "unit": "mm/s",
            "timestamp": stator::rfc3339_ms(self.t_ms),
            "quality": "good",
        });
        Bytes::from(msg.to_string())
    }
}

/// Publishes readings through JetStream, in order, each with a `Nats-Msg-Id`; returns their
/// stream sequences.
pub async fn publish(js: &jetstream::Context, readings: &[Reading]) -> Vec<u64> {
    let mut acks = Vec::with_capacity(readings.len());
    for r in readings {
        let id = format!("{}-{}", r.subject, r.t_ms);
        let msg = PublishMessage::build().payload(r.payload()).message_id(id);
        acks.push(js.send_publish(r.subject.clone(), msg).await.expect("publish"));
    }
    let mut seqs = Vec::with_capacity(acks.len());
    for a in acks {
        seqs.push(a.await.expect("puback").sequence);
    }
    seqs
}

/// Publishes raw bytes to a subject through JetStream; returns the stream sequence.
pub async fn publish_raw(js: &jetstream::Context, subject: &str, payload: &'static [u8]) -> u64 {
    js.publish(subject.to_owned(), Bytes::from_static(payload)).await.expect("publish").await.expect("puback").sequence
}

/// An alert event as read back from the ALERTS stream.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct Alert {
    pub kind: String,
    pub rule: String,
    pub state: String,
    pub value: f64,
    pub threshold: f64,
    pub key: std::collections::BTreeMap<String, String>,
    pub window_start: String,
    pub window_end: String,
    pub readings: usize,
    pub first_seq: u64,
    pub last_seq: u64,
    pub evidence: std::collections::BTreeMap<String, serde_json::Value>,
    pub change: Option<serde_json::Value>,
}

/// Every alert in the ALERTS stream, with its subject and `Nats-Msg-Id`; each one is checked
/// against docs/schemas/alert.v1.schema.json and its `Stator-Kind` header against its `kind`.
pub async fn alerts(js: &jetstream::Context) -> Vec<(String, String, Alert)> {
    stator::plant::read_stream(js, "ALERTS", None)
        .await
        .expect("read ALERTS")
        .into_iter()
        .map(|m| {
            let id = m.headers.get("Nats-Msg-Id").map(|v| v.to_string()).unwrap_or_default();
            let json: serde_json::Value = serde_json::from_slice(&m.payload).expect("alert JSON");
            crate::schemas::check("alert", &json);
            let alert: Alert = serde_json::from_value(json).expect("alert fields");
            assert_eq!(m.headers.get("Stator-Kind").map(|v| v.as_str()), Some(alert.kind.as_str()), "{id}");
            (m.subject.to_string(), id, alert)
        })
        .collect()
}

/// Every dead letter in the STATOR_DEADLETTER stream; each one's headers are checked against
/// docs/schemas/dead-letter.v1.schema.json.
pub async fn dead_letters(js: &jetstream::Context) -> Vec<jetstream::message::StreamMessage> {
    let dead = stator::plant::read_stream(js, "STATOR_DEADLETTER", None).await.expect("read STATOR_DEADLETTER");
    for m in &dead {
        crate::schemas::check("dead-letter", &crate::schemas::headers_json(&m.headers));
    }
    dead
}

/// Every window's features in the FEATURES stream, as JSON; each one is checked against
/// docs/schemas/features.v1.schema.json.
pub async fn features(js: &jetstream::Context) -> Vec<serde_json::Value> {
    let messages = stator::plant::read_stream(js, "FEATURES", None).await.expect("read FEATURES");
    messages
        .iter()
        .map(|m| {
            let v: serde_json::Value = serde_json::from_slice(&m.payload).expect("features JSON");
            crate::schemas::check("features", &v);
            v
        })
        .collect()
}

/// Consumer state: (num_pending, num_ack_pending).
pub async fn consumer_backlog(js: &jetstream::Context, durable: &str) -> (u64, usize) {
    let stream = js.get_stream("TELEMETRY").await.expect("stream");
    let info = stream.consumer_info(durable).await.expect("consumer info");
    (info.num_pending, info.num_ack_pending)
}

/// Event time origin used by tests: 2026-11-22T08:00:00Z.
pub const T0: i64 = 1_795_334_400_000;

/// RMS of values.
pub fn rms(values: &[f64]) -> f64 {
    (values.iter().map(|v| v * v).sum::<f64>() / values.len() as f64).sqrt()
}

/// A pipeline over vibration RMS: 10 s tumbling windows keyed by site and machine.
pub fn rms_pipeline(lateness: &str, for_windows: u32, idle: &str) -> String {
    format!(
        r#"
[pipeline]
name = "test-rms"

[source]
url = "${{NATS_URL}}"
stream = "TELEMETRY"
durable = "test-rms"
create_consumer = true
filter_subjects = ["acme.*.*.*.*.*.vibration.rms"]
ack_wait = "30s"

[[window]]
name = "rms_10s"
key = ["site", "machine"]
tumbling = "10s"
allowed_lateness = "{lateness}"
idle_timeout = "{idle}"
aggregates = ["count", "rms"]

[[alert]]
name = "vibration-rms"
window = "rms_10s"
metric = "rms"
warning = 2.8
critical = 4.5
clear_below = 2.5
for_windows = {for_windows}
subject = "acme.{{site}}.alert.vibration.{{machine}}"
"#
    )
}

/// Runs read-only SQL over an archive; every value as text, row by row.
pub async fn sql(location: &stator_engine::archive::ArchiveLocation, sql: &str) -> Vec<Vec<String>> {
    let ctx = stator_engine::query::session(location).await.expect("session");
    let batches = stator_engine::query::run(&ctx, sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    stator_engine::query::text_rows(&batches).expect("values as text")
}

/// Waits until the counter `of` the worker's stats reaches `at_least`.
pub async fn wait_for_count(stats: &Arc<Stats>, what: &str, at_least: u64, of: fn(&Stats) -> &Counter) {
    wait_until(Duration::from_secs(30), what, || {
        let stats = stats.clone();
        async move { Stats::get(of(&stats)) >= at_least }
    })
    .await;
}

/// GETs `url`: (status code, body).
pub async fn http_get(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

/// The value of one sample in an OpenMetrics text exposition: `name` with its labels as
/// written, e.g. `stator_messages_acked_total{pipeline="p"}`.
pub fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.split(' ').next()?.parse().ok())
}

/// Starts `stator run [args] p.toml` on `rms_pipeline` after publishing one reading (which
/// its open window holds); stderr is piped. The temp dir holds the pipeline file.
pub async fn stator_run_holding_one_reading(server: &TestServer, args: &[&str]) -> (std::process::Child, TempDir) {
    let js = server.js().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("p.toml");
    std::fs::write(&file, rms_pipeline("2s", 1, "1h")).expect("pipeline file");
    publish(&js, &[Reading::rms("munich", "cnc-001", T0, 1.0)]).await;
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_stator"))
        .arg("run")
        .args(args)
        .arg(&file)
        .env("NATS_URL", server.url())
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("stator run");
    (child, dir)
}

/// The reference articles' edge-to-cloud setting ([`stator::wan::Wan`]) in a temp dir: a
/// hub (domain `hub`, one node or a cluster) and a factory's leaf node (domain `edge`)
/// connected through a proxy the test can cut.
pub struct TestWan {
    pub wan: stator::wan::Wan,
    _dir: TempDir,
}

impl TestWan {
    pub async fn start(options: &stator::wan::WanOptions) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let wan = stator::wan::Wan::start(dir.path(), options).await.expect("hub and leaf start");
        Self { wan, _dir: dir }
    }
}

impl std::ops::Deref for TestWan {
    type Target = stator::wan::Wan;
    fn deref(&self) -> &Self::Target {
        &self.wan
    }
}

impl std::ops::DerefMut for TestWan {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.wan
    }
}
