//! Decoding waveform messages: sample blocks from accelerometers.
//!
//! Two encodings: a message with a `Sample-Rate` header is binary; otherwise one whose payload
//! starts with `{` is JSON (a binary block can start with that byte: `{` is the low byte of
//! many `f32`s, so the header decides):
//! - **binary**: little-endian `f32` samples; metadata in NATS headers `Sample-Rate` (Hz,
//!   required), `Start-Time` (RFC 3339 time of the first sample; default: the JetStream
//!   publish time), `Units` (`g` or `m/s^2`), `Rpm` (shaft speed) and `Chunk` (`k/n`, when
//!   a block larger than the server's max payload is sent in pieces; each piece's
//!   `Start-Time` is that of its own first sample);
//! - **JSON**: `{"sample_rate": 25600, "start_time": "...", "units": "g", "rpm": 1797,
//!   "samples": [...]}`.

use async_nats::HeaderMap;
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use stator_operators::velocity::AccelUnit;

/// Lowest and highest sample rates accepted, Hz.
pub const SAMPLE_RATE_RANGE: std::ops::RangeInclusive<f64> = 100.0..=1_000_000.0;

/// Why a waveform message was refused; [`Self::code`] is the dead-letter reason.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WaveformError {
    /// A binary payload whose length is not a whole number of `f32`s.
    #[error("odd_byte_count: {0} bytes is not a whole number of 4-byte samples")]
    OddByteCount(usize),
    /// A sample is NaN or infinite.
    #[error("non_finite_sample: sample {0} is not finite")]
    NonFinite(usize),
    /// The sample rate is missing, not a number, or outside 100 Hz to 1 MHz.
    #[error("bad_sample_rate: {0}")]
    BadSampleRate(String),
    /// A required header is missing.
    #[error("missing_header: `{0}`")]
    MissingHeader(&'static str),
    /// A header or field has a value that cannot be read.
    #[error("bad_metadata: {0}")]
    BadMetadata(String),
    /// An empty block.
    #[error("empty_waveform: the message has no samples")]
    Empty,
    /// The JSON form is malformed.
    #[error("invalid_json: {0}")]
    InvalidJson(String),
}

impl WaveformError {
    /// Short machine-readable reason.
    pub fn code(&self) -> &'static str {
        match self {
            WaveformError::OddByteCount(_) => "odd_byte_count",
            WaveformError::NonFinite(_) => "non_finite_sample",
            WaveformError::BadSampleRate(_) => "bad_sample_rate",
            WaveformError::MissingHeader(_) => "missing_header",
            WaveformError::BadMetadata(_) => "bad_metadata",
            WaveformError::Empty => "empty_waveform",
            WaveformError::InvalidJson(_) => "invalid_json",
        }
    }
}

/// A decoded block of samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Waveform {
    /// Samples per second.
    pub sample_rate: f64,
    /// Time of the first sample, Unix microseconds.
    pub start_us: i64,
    /// Acceleration unit, when the message says.
    pub units: Option<AccelUnit>,
    /// Shaft speed, when the message says.
    pub rpm: Option<f64>,
    /// The samples.
    pub samples: Vec<f32>,
}

impl Waveform {
    /// Time just after the last sample, Unix microseconds.
    pub fn end_us(&self) -> i64 {
        self.start_us + (self.samples.len() as f64 * 1e6 / self.sample_rate).round() as i64
    }
}

#[derive(Deserialize)]
struct JsonWaveform {
    sample_rate: f64,
    start_time: Option<String>,
    units: Option<String>,
    rpm: Option<f64>,
    samples: Vec<f64>,
}

/// Decodes a waveform message; `published_us` is the JetStream publish time.
///
/// # Errors
/// A [`WaveformError`] naming what is wrong.
pub fn decode(headers: Option<&HeaderMap>, payload: &[u8], published_us: i64) -> Result<Waveform, WaveformError> {
    let w = if header(headers, "Sample-Rate").is_none() && payload.first() == Some(&b'{') {
        decode_json(payload, published_us)?
    } else {
        decode_binary(headers, payload, published_us)?
    };
    if !SAMPLE_RATE_RANGE.contains(&w.sample_rate) {
        return Err(WaveformError::BadSampleRate(format!("{} Hz is outside 100 Hz to 1 MHz", w.sample_rate)));
    }
    if w.samples.is_empty() {
        return Err(WaveformError::Empty);
    }
    if let Some(i) = w.samples.iter().position(|s| !s.is_finite()) {
        return Err(WaveformError::NonFinite(i));
    }
    if w.rpm.is_some_and(|r| !(r > 0.0 && r < 200_000.0)) {
        return Err(WaveformError::BadMetadata(format!("rpm {} is out of range", w.rpm.unwrap_or_default())));
    }
    Ok(w)
}

fn header<'h>(headers: Option<&'h HeaderMap>, name: &str) -> Option<&'h str> {
    headers.and_then(|h| h.get(name)).map(|v| v.as_str())
}

fn parse_time(s: &str) -> Result<i64, WaveformError> {
    OffsetDateTime::parse(s, &Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1000) as i64)
        .map_err(|e| WaveformError::BadMetadata(format!("start time `{s}` is not RFC 3339: {e}")))
}

fn decode_binary(headers: Option<&HeaderMap>, payload: &[u8], published_us: i64) -> Result<Waveform, WaveformError> {
    if !payload.len().is_multiple_of(4) {
        return Err(WaveformError::OddByteCount(payload.len()));
    }
    let rate = header(headers, "Sample-Rate").ok_or(WaveformError::MissingHeader("Sample-Rate"))?;
    let sample_rate: f64 =
        rate.trim().parse().map_err(|_| WaveformError::BadSampleRate(format!("`{rate}` is not a number")))?;
    let start_us = match header(headers, "Start-Time") {
        Some(t) => parse_time(t.trim())?,
        None => published_us,
    };
    let units = header(headers, "Units")
        .map(|u| u.trim().parse::<AccelUnit>().map_err(WaveformError::BadMetadata))
        .transpose()?;
    let rpm = header(headers, "Rpm")
        .map(|r| r.trim().parse::<f64>().map_err(|_| WaveformError::BadMetadata(format!("Rpm `{r}` is not a number"))))
        .transpose()?;
    let samples = payload.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    Ok(Waveform { sample_rate, start_us, units, rpm, samples })
}

fn decode_json(payload: &[u8], published_us: i64) -> Result<Waveform, WaveformError> {
    let j: JsonWaveform = serde_json::from_slice(payload).map_err(|e| WaveformError::InvalidJson(e.to_string()))?;
    let start_us = match j.start_time.as_deref() {
        Some(t) => parse_time(t)?,
        None => published_us,
    };
    let units = j.units.as_deref().map(|u| u.parse::<AccelUnit>().map_err(WaveformError::BadMetadata)).transpose()?;
    Ok(Waveform {
        sample_rate: j.sample_rate,
        start_us,
        units,
        rpm: j.rpm,
        samples: j.samples.into_iter().map(|s| s as f32).collect(),
    })
}

/// Encodes samples as a binary waveform payload with its headers (used by the simulator).
pub fn encode_binary(samples: &[f32], sample_rate: f64, start_us: i64, rpm: Option<f64>) -> (HeaderMap, bytes::Bytes) {
    let mut headers = HeaderMap::new();
    headers.insert("Sample-Rate", sample_rate.to_string().as_str());
    let start = OffsetDateTime::from_unix_timestamp_nanos(i128::from(start_us) * 1000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default();
    headers.insert("Start-Time", start.as_str());
    headers.insert("Units", "g");
    if let Some(r) = rpm {
        headers.insert("Rpm", r.to_string().as_str());
    }
    let mut payload = Vec::with_capacity(samples.len() * 4);
    for s in samples {
        payload.extend_from_slice(&s.to_le_bytes());
    }
    (headers, bytes::Bytes::from(payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_round_trips_with_its_headers() {
        let (h, p) = encode_binary(&[0.5, -1.25, 3.0], 25_600.0, 1_795_334_400_000_000, Some(1797.0));
        let w = decode(Some(&h), &p, 0).unwrap();
        assert_eq!(w.samples, vec![0.5, -1.25, 3.0]);
        assert_eq!((w.sample_rate, w.start_us, w.rpm), (25_600.0, 1_795_334_400_000_000, Some(1797.0)));
        assert_eq!(w.units, Some(AccelUnit::G));
    }

    #[test]
    fn a_binary_block_whose_first_byte_is_a_brace_is_binary() {
        let first = f32::from_le_bytes([b'{', 0x14, 0xAE, 0x3E]);
        let (h, p) = encode_binary(&[first, 1.0], 25_600.0, 0, None);
        assert_eq!(p[0], b'{');
        assert_eq!(decode(Some(&h), &p, 0).unwrap().samples, vec![first, 1.0]);
    }

    #[test]
    fn json_form_decodes() {
        let p = br#"{"sample_rate":12000,"start_time":"2026-11-22T08:00:00Z","samples":[1,2,3],"units":"m/s^2"}"#;
        let w = decode(None, p, 0).unwrap();
        assert_eq!((w.samples.len(), w.units), (3, Some(AccelUnit::MetersPerSecondSquared)));
        assert_eq!(w.end_us() - w.start_us, 250);
    }

    #[test]
    fn bad_waveforms_name_their_reason() {
        let (h, p) = encode_binary(&[1.0, 2.0], 12_000.0, 0, None);
        assert_eq!(decode(Some(&h), &p[..7], 0).unwrap_err().code(), "odd_byte_count");
        assert_eq!(decode(None, &p, 0).unwrap_err().code(), "missing_header");
        let (h, nan) = encode_binary(&[1.0, f32::NAN], 12_000.0, 0, None);
        assert_eq!(decode(Some(&h), &nan, 0).unwrap_err(), WaveformError::NonFinite(1));
        let (h, p) = encode_binary(&[1.0], 5.0, 0, None);
        assert_eq!(decode(Some(&h), &p, 0).unwrap_err().code(), "bad_sample_rate");
        let mut h2 = h.clone();
        h2.insert("Sample-Rate", "fast");
        assert_eq!(decode(Some(&h2), &p, 0).unwrap_err().code(), "bad_sample_rate");
        assert_eq!(decode(None, br#"{"sample_rate":1e9,"samples":[1]}"#, 0).unwrap_err().code(), "bad_sample_rate");
        assert_eq!(decode(None, br#"{"sample_rate":1000,"samples":[]}"#, 0).unwrap_err().code(), "empty_waveform");
        assert_eq!(decode(None, br#"{"samples":[1]}"#, 0).unwrap_err().code(), "invalid_json");
    }
}
