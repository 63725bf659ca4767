//! Decoding of scalar telemetry: the JSON `TelemetryMessage` of the reference articles.
//!
//! ```json
//! {"machine_id":"cnc-001","sensor":"spindle","value":2.45,"unit":"mm/s",
//!  "timestamp":"2026-11-22T08:00:00Z","quality":"good"}
//! ```
//! Only `value` and the event-time field are read; other fields are skipped without
//! allocating.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Why a message was refused. The code (see [`Self::code`]) is what dead-letter headers and
/// metrics carry; the text adds detail.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// The payload is not JSON, or not an object.
    #[error("invalid_json: {0}")]
    InvalidJson(String),
    /// No numeric `value`.
    #[error("missing_value: the payload has no numeric `value`")]
    MissingValue,
    /// `value` is not a finite number.
    #[error("non_finite_value: `value` is {0}")]
    NonFiniteValue(f64),
    /// The event-time field is absent.
    #[error("missing_event_time: the payload has no `{0}` field")]
    MissingEventTime(String),
    /// The event-time field could not be read as a time.
    #[error("bad_event_time: {0}")]
    BadEventTime(String),
    /// The subject does not fit the pipeline's subject template.
    #[error("subject_mismatch: {0}")]
    SubjectMismatch(String),
}

impl DecodeError {
    /// Short machine-readable reason.
    pub fn code(&self) -> &'static str {
        match self {
            DecodeError::InvalidJson(_) => "invalid_json",
            DecodeError::MissingValue => "missing_value",
            DecodeError::NonFiniteValue(_) => "non_finite_value",
            DecodeError::MissingEventTime(_) => "missing_event_time",
            DecodeError::BadEventTime(_) => "bad_event_time",
            DecodeError::SubjectMismatch(_) => "subject_mismatch",
        }
    }
}

/// A decoded reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// The measured value.
    pub value: f64,
    /// Event time in Unix milliseconds, when the payload carries it.
    pub event_time_ms: Option<i64>,
}

/// Formats Unix milliseconds as RFC 3339 (UTC).
pub fn rfc3339_ms(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| ms.to_string())
}

/// Earliest and latest event time accepted: 1970 to 2200. Anything else is a unit mix-up.
const TIME_RANGE_MS: std::ops::RangeInclusive<i64> = 0..=7_258_118_400_000;

/// Decodes a JSON TelemetryMessage, reading the event time from `time_field` when given.
///
/// # Errors
/// A [`DecodeError`] naming what is wrong with the payload.
pub fn decode_json(payload: &[u8], time_field: Option<&str>) -> Result<Reading, DecodeError> {
    let mut de = serde_json::Deserializer::from_slice(payload);
    let seed = ReadingSeed { time_field };
    let raw = seed.deserialize(&mut de).map_err(|e| DecodeError::InvalidJson(e.to_string()))?;
    de.end().map_err(|e| DecodeError::InvalidJson(e.to_string()))?;
    let value = raw.value.ok_or(DecodeError::MissingValue)?;
    if !value.is_finite() {
        return Err(DecodeError::NonFiniteValue(value));
    }
    let event_time_ms = match (time_field, raw.time) {
        (None, _) => None,
        (Some(f), None) => return Err(DecodeError::MissingEventTime(f.to_owned())),
        (Some(_), Some(t)) => Some(t.into_millis()?),
    };
    Ok(Reading { value, event_time_ms })
}

enum RawTime {
    Text(String),
    Number(f64),
    Other,
}

impl RawTime {
    fn into_millis(self) -> Result<i64, DecodeError> {
        let ms = match self {
            RawTime::Text(s) => {
                let t = OffsetDateTime::parse(&s, &Rfc3339)
                    .map_err(|e| DecodeError::BadEventTime(format!("`{s}` is not RFC 3339: {e}")))?;
                (t.unix_timestamp_nanos() / 1_000_000) as i64
            }
            // Unix seconds; values past 1e11 (year 5138 in seconds) are taken as milliseconds.
            RawTime::Number(n) if n.abs() >= 1e11 => n as i64,
            RawTime::Number(n) => (n * 1000.0).round() as i64,
            RawTime::Other => {
                return Err(DecodeError::BadEventTime("must be an RFC 3339 string or Unix seconds".into()));
            }
        };
        if TIME_RANGE_MS.contains(&ms) {
            Ok(ms)
        } else {
            Err(DecodeError::BadEventTime(format!("{ms} ms is outside 1970..2200")))
        }
    }
}

struct RawReading {
    value: Option<f64>,
    time: Option<RawTime>,
}

struct ReadingSeed<'f> {
    time_field: Option<&'f str>,
}

impl<'de> DeserializeSeed<'de> for ReadingSeed<'_> {
    type Value = RawReading;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<RawReading, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ReadingSeed<'_> {
    type Value = RawReading;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a TelemetryMessage object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawReading, A::Error> {
        let mut out = RawReading { value: None, time: None };
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == "value" {
                out.value = Some(map.next_value::<f64>().map_err(|_| de::Error::custom("`value` must be a number"))?);
            } else if Some(key.as_ref()) == self.time_field {
                out.time = Some(match map.next_value::<serde_json::Value>()? {
                    serde_json::Value::String(s) => RawTime::Text(s),
                    serde_json::Value::Number(n) => n.as_f64().map_or(RawTime::Other, RawTime::Number),
                    _ => RawTime::Other,
                });
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TS: Option<&str> = Some("timestamp");

    #[test]
    fn decodes_the_reference_message() {
        let p = br#"{"machine_id":"cnc-001","sensor":"spindle","value":2.45,"unit":"mm/s","timestamp":"2026-11-22T08:00:00.250Z","quality":"good"}"#;
        let r = decode_json(p, TS).unwrap();
        assert_eq!(r.value, 2.45);
        assert_eq!(r.event_time_ms, Some(1_795_334_400_250));
    }

    #[test]
    fn numeric_timestamps_are_seconds_or_milliseconds() {
        let s = decode_json(br#"{"value":1,"timestamp":1795334400.5}"#, TS).unwrap();
        let ms = decode_json(br#"{"value":1,"timestamp":1795334400500}"#, TS).unwrap();
        assert_eq!(s.event_time_ms, Some(1_795_334_400_500));
        assert_eq!(ms.event_time_ms, s.event_time_ms);
    }

    #[test]
    fn bad_payloads_name_their_reason() {
        let cases: [(&[u8], &str); 8] = [
            (b"{not json", "invalid_json"),
            (b"[1,2]", "invalid_json"),
            (br#"{"value":"high","timestamp":"2026-11-22T08:00:00Z"}"#, "invalid_json"),
            (br#"{"timestamp":"2026-11-22T08:00:00Z"}"#, "missing_value"),
            (br#"{"value":1e999,"timestamp":"2026-11-22T08:00:00Z"}"#, "invalid_json"),
            (br#"{"value":1}"#, "missing_event_time"),
            (br#"{"value":1,"timestamp":"yesterday"}"#, "bad_event_time"),
            (br#"{"value":1,"timestamp":"9999-01-01T00:00:00Z"}"#, "bad_event_time"),
        ];
        for (payload, code) in cases {
            let err = decode_json(payload, TS).unwrap_err();
            assert_eq!(err.code(), code, "{}: {err}", String::from_utf8_lossy(payload));
        }
    }

    #[test]
    fn publish_time_pipelines_need_no_timestamp() {
        assert_eq!(decode_json(br#"{"value":3}"#, None).unwrap().event_time_ms, None);
    }
}
