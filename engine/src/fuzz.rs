//! Entry points of the fuzz targets (`fuzz/`), also replayed over the committed corpus by
//! the test suite (`engine/tests/fuzz_corpus.rs`). Each takes arbitrary bytes, must never
//! panic, and checks what a successful decode promises.

use std::path::Path;

use async_nats::HeaderMap;

use crate::subject::SubjectTemplate;

/// The subject template of the shipped pipelines.
const TEMPLATE: &str = "{org}.{site}.{area}.{line}.{machine}.{sensor}.{metric}";

/// A JSON reading: a decoded value is finite, an event time within 1970..2200.
pub fn json_reading(data: &[u8]) {
    for field in [None, Some("ts"), Some("timestamp")] {
        if let Ok(r) = crate::telemetry::decode_json(data, field) {
            assert!(r.value.is_finite(), "decoded a non-finite value");
            if let Some(t) = r.event_time_ms {
                assert!((0..=7_258_118_400_000).contains(&t), "event time {t} out of range");
            }
        }
    }
}

/// A waveform message. The input is headers (`Name: value` lines), an empty line, then the
/// payload. A decoded block has a positive finite sample rate and finite samples, and its
/// end time does not overflow.
pub fn waveform(data: &[u8]) {
    let (head, payload) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (&data[..0], data),
    };
    let mut headers = HeaderMap::new();
    for line in String::from_utf8_lossy(head).lines() {
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim();
            // A header on the wire cannot hold CR or LF (async-nats refuses to build one).
            let value_ok = !value.contains(['\r', '\n']);
            if value_ok && !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
                headers.insert(name, value.trim());
            }
        }
    }
    let headers = (!head.is_empty()).then_some(&headers);
    if let Ok(w) = crate::waveform::decode::decode(headers, payload, 1_795_334_400_000_000) {
        assert!(w.sample_rate.is_finite() && w.sample_rate > 0.0, "sample rate {}", w.sample_rate);
        assert!(w.samples.iter().all(|s| s.is_finite()), "a non-finite sample");
        let _ = w.end_us();
    }
}

/// A subject against the shipped template: either refused, or split into exactly the
/// template's fields that join back into the subject: valid tokens, but for the last field,
/// which takes the rest of the subject (`vibration.rms` for `{metric}`).
pub fn subject(data: &[u8]) {
    let Ok(subject) = std::str::from_utf8(data) else { return };
    let Ok(template) = SubjectTemplate::parse(TEMPLATE) else { unreachable!("the shipped template parses") };
    let mut fields = Vec::new();
    if template.extract(subject, &mut fields).is_ok() {
        assert_eq!(fields.len(), template.field_names().len());
        assert_eq!(fields.join("."), subject);
        let (last, tokens) = fields.split_last().unwrap_or((&"", &[]));
        assert!(tokens.iter().all(|f| crate::subject::is_valid_token(f)), "{fields:?}");
        assert!(crate::subject::is_valid_subject(last), "{fields:?}");
    }
    // Templates and filters: parsing and matching arbitrary text must not panic.
    let _ = SubjectTemplate::parse(subject);
    let _ = crate::subject::OutputTemplate::parse(subject);
    if crate::subject::is_valid_filter(subject) {
        let _ = crate::subject::matches(subject, "acme.munich.hall-a.line-1.cnc-001.spindle.vibration.rms");
        let _ = crate::subject::overlaps(subject, "acme.*.alert.*.*");
    }
}

/// A pipeline file: it loads, or every error names the file and a line within it.
pub fn pipeline_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let env = |name: &str| (name == "NATS_URL").then(|| "nats://127.0.0.1:4222".to_owned());
    if let Err(crate::config::ConfigError::Invalid(errors)) =
        crate::config::load_str(Path::new("fuzz.toml"), text, &env)
    {
        let lines = text.lines().count().max(1);
        for e in &errors {
            let shown = e.to_string();
            assert!(shown.starts_with("fuzz.toml:"), "{shown}");
            assert!(e.line >= 1 && e.line <= lines + 1, "line {} of {lines}: {shown}", e.line);
        }
    }
}

/// A machine config document from the KV bucket.
pub fn machine_config(data: &[u8]) {
    let _ = crate::machine::parse(data, 1);
}
