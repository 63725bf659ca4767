//! `stator simulate`: publishes a simulated plant's readings or accelerometer waveforms.

use std::process::ExitCode;
use std::time::Duration;

use crate::simulate::{self, PlantSpec};

/// Arguments of `stator simulate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// NATS URL.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub url: String,
    /// Comma-separated site names.
    #[arg(long, default_value = "munich,berlin", value_delimiter = ',')]
    pub sites: Vec<String>,
    /// Areas per site.
    #[arg(long, default_value_t = 1)]
    pub areas: usize,
    /// Lines per area.
    #[arg(long, default_value_t = 2)]
    pub lines: usize,
    /// Machines per line.
    #[arg(long, default_value_t = 4)]
    pub machines: usize,
    /// Machines that drift towards a fault (comma-separated ids such as cnc-003).
    #[arg(long, value_delimiter = ',')]
    pub drift: Vec<String>,
    /// RMS the drifting machines reach at the end (mm/s).
    #[arg(long, default_value_t = 6.0)]
    pub drift_to: f64,
    /// Time between readings of a machine.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// Readings per machine.
    #[arg(long, default_value_t = 60)]
    pub readings: usize,
    /// Publish in real time instead of as fast as possible (with past timestamps).
    #[arg(long)]
    pub realtime: bool,
    /// Random seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Publish accelerometer waveforms instead of scalar readings.
    #[arg(long)]
    pub waveform: bool,
    /// Waveform sample rate, Hz.
    #[arg(long, default_value_t = 25_600.0)]
    pub sample_rate: f64,
    /// Waveform samples per message.
    #[arg(long, default_value_t = 12_800)]
    pub block: usize,
    /// Bearing designation of every machine (catalog: 6203, 6204, 6205, 6206, 6305, 6308, NU210).
    #[arg(long, default_value = "6205")]
    pub bearing: String,
    /// Shaft speed, rpm.
    #[arg(long, default_value_t = 1797.0)]
    pub rpm: f64,
    /// A bearing fault: MACHINE:KIND[:SEVERITY_G], e.g. cnc-003:outer_race:0.5 (repeatable).
    #[arg(long)]
    pub fault: Vec<simulate::SimFault>,
}

/// Publishes the plant and says how many messages went out.
///
/// # Errors
/// When NATS cannot be reached or a publish is not acknowledged.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Args { url, sites, areas, lines, machines, drift, drift_to, interval, readings, realtime, seed, .. } = args;
    let now_ms = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let start_ms = if realtime { now_ms } else { now_ms - readings as i64 * interval.as_millis() as i64 };
    let spec = PlantSpec {
        org: "acme".into(),
        sites,
        areas,
        lines,
        machines_per_line: machines,
        drift,
        drift_to,
        interval,
        start_ms,
        readings,
        realtime,
        seed,
    };
    let client = crate::connect(&url).await?;
    let js = async_nats::jetstream::new(client);
    if args.waveform {
        let sim = simulate::WaveformSim {
            sample_rate: args.sample_rate,
            block: args.block,
            blocks: readings,
            bearing: args.bearing,
            rpm: args.rpm,
            faults: args.fault,
        };
        let n = simulate::publish_waveforms(&js, &spec, &sim, |n| tracing::debug!(published = n))
            .await
            .map_err(anyhow::Error::msg)?;
        println!("published {n} waveform blocks");
    } else {
        let n = simulate::publish(&js, &spec, |n| tracing::debug!(published = n)).await.map_err(anyhow::Error::msg)?;
        println!("published {n} readings");
    }
    Ok(ExitCode::SUCCESS)
}
