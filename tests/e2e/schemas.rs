//! The published message formats (docs/schemas/): every alert a test reads from JetStream is
//! checked against its schema by the harness ([`check`]), features and dead letters by the
//! tests that read them; here, the schemas themselves are checked to reject what they should.

use std::collections::HashMap;
use std::sync::OnceLock;

use async_nats::HeaderMap;
use serde_json::{Value, json};

/// A compiled schema and the top-level fields it declares.
struct Schema {
    validator: jsonschema::Validator,
    declared: Vec<String>,
}

fn schema(name: &str) -> &'static Schema {
    static SCHEMAS: OnceLock<HashMap<&'static str, Schema>> = OnceLock::new();
    let all = SCHEMAS.get_or_init(|| {
        ["alert", "features", "dead-letter"]
            .into_iter()
            .map(|name| {
                let path = format!("{}/docs/schemas/{name}.v1.schema.json", env!("CARGO_MANIFEST_DIR"));
                let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
                let doc: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
                jsonschema::draft202012::meta::validate(&doc).unwrap_or_else(|e| panic!("{path} is no schema: {e}"));
                let validator = jsonschema::draft202012::options()
                    .should_validate_formats(true)
                    .build(&doc)
                    .unwrap_or_else(|e| panic!("{path}: {e}"));
                let declared = doc["properties"].as_object().map(|p| p.keys().cloned().collect()).unwrap_or_default();
                (name, Schema { validator, declared })
            })
            .collect()
    });
    &all[name]
}

/// Why `instance` does not match docs/schemas/`name`.v1.schema.json; for alerts and features,
/// also every top-level field the schema does not declare (the schema allows such fields for
/// readers of later minor versions, but the published files must list all that is published).
pub fn violations(name: &str, instance: &Value) -> Vec<String> {
    let s = schema(name);
    let mut out: Vec<String> =
        s.validator.iter_errors(instance).map(|e| format!("{}: {e}", e.instance_path())).collect();
    if name != "dead-letter" {
        for field in instance.as_object().into_iter().flat_map(|o| o.keys()) {
            if !s.declared.contains(field) {
                out.push(format!("`{field}` is published but not declared in the {name} schema"));
            }
        }
    }
    out
}

/// Panics unless `instance` matches docs/schemas/`name`.v1.schema.json.
pub fn check(name: &str, instance: &Value) {
    let v = violations(name, instance);
    assert!(v.is_empty(), "{name} message breaks its schema: {v:#?}\n{instance:#}");
}

/// A message's headers as the dead-letter schema sees them: name to first value.
pub fn headers_json(headers: &HeaderMap) -> Value {
    let map: serde_json::Map<String, Value> = headers
        .iter()
        .filter_map(|(name, values)| values.first().map(|v| (name.to_string(), json!(v.as_str()))))
        .collect();
    Value::Object(map)
}

fn an_alert() -> Value {
    json!({
        "schema": "urn:stator:schema:alert:1", "kind": "outer_race", "pipeline": "bearing-health",
        "rule": "bearing-fault", "state": "warning", "previous": "ok", "severity": "warning",
        "metric": "bearing.fault_score_db", "value": 21.5, "threshold": 15.0,
        "key": {"site": "munich", "machine": "cnc-002", "sensor": "drive-end"},
        "window_start": "2026-11-22T08:00:00Z", "window_end": "2026-11-22T08:00:02Z", "readings": 4,
        "stream": "TELEMETRY", "first_seq": 9, "last_seq": 12,
        "evidence": {
            "bearing.defect_hz": {"value": 107.4, "unit": "Hz"},
            "bearing.verdict": {"text": "outer_race"},
            "iso_zone": {"value": 1.0, "unit": "zone 1-4", "text": "A"}
        }
    })
}

#[test]
fn the_schemas_accept_good_messages_and_reject_broken_ones() {
    assert_eq!(violations("alert", &an_alert()), Vec::<String>::new());
    type Breaks = fn(&mut Value);
    let broken: [(&str, Breaks); 7] = [
        ("no kind", |a| drop(a.as_object_mut().unwrap().remove("kind"))),
        ("an unknown state", |a| a["state"] = json!("raised")),
        ("a number without a unit", |a| a["evidence"]["bearing.defect_hz"] = json!({"value": 107.4})),
        ("an empty evidence entry", |a| a["evidence"]["rpm"] = json!({})),
        ("a window end that is no time", |a| a["window_end"] = json!("yesterday")),
        ("another major version", |a| a["schema"] = json!("urn:stator:schema:alert:2")),
        ("an undeclared field", |a| a["verdict"] = json!("outer_race")),
    ];
    for (what, breaks) in broken {
        let mut a = an_alert();
        breaks(&mut a);
        assert!(!violations("alert", &a).is_empty(), "the alert schema accepts {what}");
    }

    let features = json!({
        "schema": "urn:stator:schema:features:1", "pipeline": "p", "window": "w", "key": {"machine": "m"},
        "window_start": "2026-11-22T08:00:00Z", "window_end": "2026-11-22T08:00:02Z", "messages": 2,
        "first_seq": 1, "last_seq": 2, "features": {"rms": 0.5, "bearing.verdict": "normal", "kurtosis": null},
        "spectra": {"spectrum": {"step_hz": 6.25, "values": [0.0, 1.5]}}
    });
    assert_eq!(violations("features", &features), Vec::<String>::new());
    let mut bad = features.clone();
    bad["spectra"]["spectrum"]["step_hz"] = json!(0);
    assert!(!violations("features", &bad).is_empty(), "a spectrum without a bin spacing");

    let mut headers = HeaderMap::new();
    for (k, v) in [
        ("Nats-Msg-Id", "p.dlq.TELEMETRY.7"),
        ("Stator-Reason", "invalid_json"),
        ("Stator-Detail", "expected value at line 1 column 1"),
        ("Stator-Stream", "TELEMETRY"),
        ("Stator-Seq", "7"),
        ("Stator-Subject", "acme.munich.a.l.m.s.vibration.rms"),
        ("Stator-Pipeline", "p"),
        ("Stator-Schema", "urn:stator:schema:dead-letter:1"),
        ("Stator-Original-Nats-Expected-Stream", "X"),
    ] {
        headers.insert(k, v);
    }
    assert_eq!(violations("dead-letter", &headers_json(&headers)), Vec::<String>::new());
    let mut unknown = headers.clone();
    unknown.insert("Stator-Reason", "oops");
    assert!(!violations("dead-letter", &headers_json(&unknown)).is_empty(), "an unknown reason");
    let mut reserved = headers.clone();
    reserved.insert("Nats-Expected-Stream", "X");
    assert!(!violations("dead-letter", &headers_json(&reserved)).is_empty(), "a Nats-* header the server acts on");
}
