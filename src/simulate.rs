//! A simulated plant publishing scalar telemetry in the subject hierarchy.
//!
//! Each machine publishes its spindle vibration RMS (mm/s) every `interval` and its coolant
//! temperature (°C) every tenth reading. Healthy machines sit between 1.2 and 2.2 mm/s with
//! noise; a *drifting* machine ramps from its base level to `drift_to` over the run, the way
//! a loosening mount or a failing bearing shows up in the ISO 20816 RMS.

use std::future::IntoFuture;
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use bytes::Bytes;
use futures::future::try_join_all;
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::Serialize;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct PlantSpec {
    /// Organisation token.
    pub org: String,
    /// Site names.
    pub sites: Vec<String>,
    /// Areas per site.
    pub areas: usize,
    /// Lines per area.
    pub lines: usize,
    /// Machines per line.
    pub machines_per_line: usize,
    /// Machine ids that drift towards a fault.
    pub drift: Vec<String>,
    /// RMS the drifting machines reach at the end of the run (mm/s).
    pub drift_to: f64,
    /// Time between readings of one machine.
    pub interval: Duration,
    /// Event time of the first reading, Unix ms.
    pub start_ms: i64,
    /// Readings per machine.
    pub readings: usize,
    /// Publish in real time (sleep between rounds) instead of as fast as possible.
    pub realtime: bool,
    /// Random seed.
    pub seed: u64,
}

/// One simulated machine.
#[derive(Debug, Clone)]
pub struct Machine {
    /// Site.
    pub site: String,
    /// Area.
    pub area: String,
    /// Line.
    pub line: String,
    /// Machine id, unique across the plant (`cnc-001`...).
    pub id: String,
    /// Healthy RMS level (mm/s).
    pub base_rms: f64,
}

impl Machine {
    /// Subject of a metric of this machine.
    pub fn subject(&self, org: &str, sensor: &str, metric: &str) -> String {
        format!("{org}.{}.{}.{}.{}.{sensor}.{metric}", self.site, self.area, self.line, self.id)
    }
}

/// The reference articles' TelemetryMessage.
#[derive(Debug, Clone, Serialize)]
pub struct TelemetryMessage<'a> {
    /// Machine id.
    pub machine_id: &'a str,
    /// Sensor.
    pub sensor: &'a str,
    /// Value.
    pub value: f64,
    /// Unit.
    pub unit: &'a str,
    /// RFC 3339 event time.
    pub timestamp: String,
    /// Quality flag.
    pub quality: &'a str,
}

/// The machines of a plant, in a stable order.
pub fn machines(spec: &PlantSpec) -> Vec<Machine> {
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let mut out = Vec::new();
    for site in &spec.sites {
        for a in 0..spec.areas {
            for l in 0..spec.lines {
                for _ in 0..spec.machines_per_line {
                    out.push(Machine {
                        site: site.clone(),
                        area: format!("hall-{}", (b'a' + a as u8) as char),
                        line: format!("line-{}", l + 1),
                        id: format!("cnc-{:03}", out.len() + 1),
                        base_rms: rng.random_range(1.2..2.2),
                    });
                }
            }
        }
    }
    out
}

/// The RMS a machine reports at reading `i`.
pub fn rms_at(spec: &PlantSpec, m: &Machine, i: usize, rng: &mut StdRng) -> f64 {
    let noise = rng.random_range(-0.15..0.15);
    let level = if spec.drift.contains(&m.id) {
        let progress = i as f64 / spec.readings.max(1) as f64;
        m.base_rms + (spec.drift_to - m.base_rms) * progress
    } else {
        m.base_rms
    };
    ((level + noise) * 1000.0).round() / 1000.0
}

/// Publishes the plant's readings through JetStream (each with a `Nats-Msg-Id`), waiting
/// for every PubAck; calls `progress` with the count published after each round.
///
/// # Errors
/// The first publish error, as text.
pub async fn publish(js: &jetstream::Context, spec: &PlantSpec, mut progress: impl FnMut(u64)) -> Result<u64, String> {
    let machines = machines(spec);
    let mut rng = StdRng::seed_from_u64(spec.seed ^ 0x5eed);
    let mut published = 0u64;
    let step_ms = spec.interval.as_millis() as i64;
    for i in 0..spec.readings {
        let t_ms = spec.start_ms + i as i64 * step_ms;
        let timestamp = crate::rfc3339_ms(t_ms);
        let mut acks = Vec::with_capacity(machines.len() * 2);
        for m in &machines {
            let value = rms_at(spec, m, i, &mut rng);
            let msg = TelemetryMessage {
                machine_id: &m.id,
                sensor: "spindle",
                value,
                unit: "mm/s",
                timestamp: timestamp.clone(),
                quality: "good",
            };
            acks.push(
                send(js, m.subject(&spec.org, "spindle", "vibration.rms"), &msg, format!("{}-rms-{t_ms}", m.id))
                    .await?,
            );
            if i % 10 == 0 {
                let temp = 38.0 + rng.random_range(-2.0..2.0);
                let msg = TelemetryMessage {
                    machine_id: &m.id,
                    sensor: "coolant",
                    value: temp,
                    unit: "C",
                    timestamp: timestamp.clone(),
                    quality: "good",
                };
                acks.push(
                    send(js, m.subject(&spec.org, "coolant", "temperature"), &msg, format!("{}-temp-{t_ms}", m.id))
                        .await?,
                );
            }
        }
        published += acks.len() as u64;
        try_join_all(acks.into_iter().map(IntoFuture::into_future)).await.map_err(|e| e.to_string())?;
        progress(published);
        if spec.realtime {
            tokio::time::sleep(spec.interval).await;
        }
    }
    Ok(published)
}

pub(crate) async fn send(
    js: &jetstream::Context,
    subject: String,
    msg: &TelemetryMessage<'_>,
    id: String,
) -> Result<jetstream::context::PublishAckFuture, String> {
    let payload = Bytes::from(serde_json::to_vec(msg).map_err(|e| e.to_string())?);
    js.send_publish(subject, PublishMessage::build().payload(payload).message_id(id)).await.map_err(|e| e.to_string())
}

/// A bearing fault to simulate on one machine.
#[derive(Debug, Clone, PartialEq)]
pub struct SimFault {
    /// Machine id.
    pub machine: String,
    /// Fault kind.
    pub kind: stator_operators::faults::FaultKind,
    /// Impact amplitude, g (0.5 clear, 0.1 subtle).
    pub severity: f64,
}

impl std::str::FromStr for SimFault {
    type Err = String;

    /// `cnc-003:outer_race[:0.5]`.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = s.split(':');
        let machine = parts.next().filter(|m| !m.is_empty()).ok_or("expected MACHINE:KIND[:SEVERITY]")?;
        let kind = parts
            .next()
            .unwrap_or_default()
            .parse()
            .map_err(|e| format!("{e}: outer_race, inner_race, ball or cage"))?;
        let severity = parts.next().map(str::parse).transpose().map_err(|e| format!("severity: {e}"))?.unwrap_or(0.5);
        Ok(SimFault { machine: machine.to_owned(), kind, severity })
    }
}

/// Waveform simulation settings (machines come from the [`PlantSpec`]).
#[derive(Debug, Clone)]
pub struct WaveformSim {
    /// Sample rate, Hz.
    pub sample_rate: f64,
    /// Samples per message.
    pub block: usize,
    /// Messages per machine.
    pub blocks: usize,
    /// Bearing designation of every machine.
    pub bearing: String,
    /// Shaft speed, rpm.
    pub rpm: f64,
    /// Faults.
    pub faults: Vec<SimFault>,
}

/// Publishes accelerometer waveforms (binary `f32` with headers) for every machine of the
/// plant on `{org}.{site}.{area}.{line}.{machine}.drive-end.vibration.raw`.
///
/// # Errors
/// An unknown bearing, or the first publish error, as text.
pub async fn publish_waveforms(
    js: &jetstream::Context,
    plant: &PlantSpec,
    sim: &WaveformSim,
    mut progress: impl FnMut(u64),
) -> Result<u64, String> {
    use stator_operators::synth::{SynthSpec, synthesize};
    let bearing = stator_operators::bearing::catalog(&sim.bearing)
        .ok_or_else(|| format!("bearing `{}` is not in the catalog", sim.bearing))?
        .multipliers();
    let machines = machines(plant);
    let mut published = 0u64;
    for b in 0..sim.blocks {
        let mut acks = Vec::with_capacity(machines.len());
        for (i, m) in machines.iter().enumerate() {
            let fault = sim.faults.iter().find(|f| f.machine == m.id).map(|f| (f.kind, f.severity));
            let spec =
                SynthSpec { fault, ..SynthSpec::healthy(sim.sample_rate, sim.rpm, bearing, plant.seed ^ i as u64) };
            let offset = (b * sim.block) as u64;
            let samples = synthesize(&spec, offset, sim.block);
            let start_us = plant.start_ms * 1000 + (offset as f64 * 1e6 / sim.sample_rate) as i64;
            let (headers, payload) =
                stator_engine::waveform::decode::encode_binary(&samples, sim.sample_rate, start_us, Some(sim.rpm));
            let msg = PublishMessage::build()
                .payload(payload)
                .headers(headers)
                .message_id(format!("{}-wave-{start_us}", m.id));
            let subject = m.subject(&plant.org, "drive-end", "vibration.raw");
            acks.push(js.send_publish(subject, msg).await.map_err(|e| e.to_string())?);
        }
        published += acks.len() as u64;
        try_join_all(acks.into_iter().map(IntoFuture::into_future)).await.map_err(|e| e.to_string())?;
        progress(published);
        if plant.realtime {
            tokio::time::sleep(Duration::from_secs_f64(sim.block as f64 / sim.sample_rate)).await;
        }
    }
    Ok(published)
}
