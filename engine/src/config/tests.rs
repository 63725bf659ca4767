use std::time::Duration;

use super::*;

const GOOD: &str = r#"
[pipeline]
name = "line-health"

[source]
url = "${NATS_URL:-nats://127.0.0.1:4222}"
stream = "TELEMETRY"
durable = "line-health"
filter_subjects = ["acme.*.*.*.*.*.vibration.rms"]

[[window]]
name = "rms_10s"
key = ["site", "machine", "sensor"]
tumbling = "10s"
allowed_lateness = "5s"
aggregates = ["count", "rms"]

[[alert]]
name = "vibration-rms"
window = "rms_10s"
metric = "rms"
warning = 2.8
critical = 4.5
clear_below = 2.5
for_windows = 2
subject = "acme.{site}.alert.vibration.{machine}"
"#;

fn load(text: &str) -> Result<Loaded, ConfigError> {
    load_str(Path::new("p.toml"), text, &|_| None)
}

fn errors(text: &str) -> Vec<String> {
    match load(text) {
        Err(ConfigError::Invalid(d)) => d.iter().map(ToString::to_string).collect(),
        other => panic!("expected errors, got {other:?}"),
    }
}

#[test]
fn a_complete_file_builds_with_defaults() {
    let loaded = load(GOOD).unwrap();
    let p = loaded.pipeline;
    assert_eq!(p.source.url, "nats://127.0.0.1:4222");
    assert_eq!(p.dead_letter_subject, "stator.deadletter.line-health");
    assert_eq!(p.windows[0].size, Duration::from_secs(10));
    assert_eq!(p.windows[0].key_index, vec![1, 4, 5]);
    assert_eq!(p.alerts[0].for_windows, 2);
    assert_eq!(p.source.ack_wait, Duration::from_secs(30));
    assert!(loaded.warnings.is_empty());
}

#[test]
fn every_unknown_key_is_reported_with_its_line() {
    let text = GOOD
        .replace("tumbling = \"10s\"", "tumbling = \"10s\"\ntumblin = 3")
        .replace("for_windows = 2", "for_windows = 2\nseverity = \"x\"");
    let e = errors(&text);
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e[0].starts_with("p.toml:15:1: error: `window[0].tumblin`: unknown key"), "{e:?}");
    assert!(e[1].contains("`alert[0].severity`: unknown key"), "{e:?}");
}

#[test]
fn semantic_errors_are_all_collected() {
    let text = GOOD
        .replace("tumbling = \"10s\"", "tumbling = \"10 parsecs\"")
        .replace("critical = 4.5", "critical = 1.0")
        .replace("key = [\"site\", \"machine\", \"sensor\"]", "key = [\"site\", \"plant\"]");
    let e = errors(&text);
    assert!(
        e.iter().any(|l| l.contains(":14:1: error: `window[0].tumbling`: `10 parsecs` is not a duration")),
        "{e:?}"
    );
    assert!(e.iter().any(|l| l.contains("`window[0].key[1]`: `plant` is not a field")), "{e:?}");
    assert!(e.iter().any(|l| l.contains("`alert[0].critical`: critical (1) must be above warning (2.8)")), "{e:?}");
    assert_eq!(e.len(), 3, "no follow-on errors: {e:?}");
}

#[test]
fn unset_variables_and_syntax_errors_name_the_position() {
    let e = errors(&GOOD.replace("${NATS_URL:-nats://127.0.0.1:4222}", "${NATS_URL}"));
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("p.toml:6:8: error: environment variable `NATS_URL` is not set"), "{e:?}");
    let e = errors("[pipeline\nname = 1\n");
    assert!(e[0].starts_with("p.toml:1:"), "{e:?}");
}

#[test]
fn alert_subject_outside_the_alert_hierarchy_is_a_warning() {
    let text = GOOD.replace("acme.{site}.alert.vibration.{machine}", "alerts.{machine}");
    let loaded = load(&text).unwrap();
    assert_eq!(loaded.warnings.len(), 1);
    assert!(loaded.warnings[0].to_string().contains("warning: `alert[0].subject`"));
}

#[test]
fn partitions_need_a_key_field_common_to_every_window() {
    let text = GOOD.replace("filter_subjects = [", "partitions = 4\nfilter_subjects = [")
        + "[[window]]\nname = \"per_site\"\nkey = [\"site\"]\ntumbling = \"1m\"\naggregates = [\"max\"]\n";
    let p = load(&text).expect("site is common to both windows").pipeline;
    assert_eq!((p.source.partitions, crate::source::partitions::key_fields(&p)), (4, vec!["site".to_owned()]));
    let apart = text.replace("key = [\"site\"]", "key = [\"line\"]");
    let errs = errors(&apart);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].contains("`source.partitions`: no field is in every window's key (`rms_10s`: [site, machine, sensor]; `per_site`: [line])"), "{errs:?}");
}

#[test]
fn an_alert_includes_window_features_and_each_wrong_entry_is_named() {
    let text = GOOD.replace("for_windows = 2", "for_windows = 2\ninclude = [\"count\", \"rms\"]\nkind = \"vibration\"");
    let rule = &load(&text).unwrap().pipeline.alerts[0];
    let included: Vec<(&str, &str)> = rule.include.iter().map(|d| (d.name, d.unit)).collect();
    assert_eq!(included, vec![("count", "readings"), ("rms", "input unit")]);
    assert_eq!(rule.kind, AlertKind::Fixed("vibration".into()));
    assert_eq!(load(GOOD).unwrap().pipeline.alerts[0].kind, AlertKind::Fixed("threshold".into()));
    assert!(load(GOOD).unwrap().pipeline.alerts[0].include.is_empty(), "a plain threshold rule attaches nothing");
    let by_kind = GOOD.replace("alert.vibration.{machine}", "alert.{kind}.{machine}");
    assert_eq!(load(&by_kind).unwrap().pipeline.alerts[0].subject.fields(), ["site", "kind", "machine"]);

    let bad = GOOD.replace("for_windows = 2", "for_windows = 2\ninclude = [\"rms\", \"max\", \"rms\"]\nkind = \"a b\"");
    let e = errors(&bad);
    assert!(
        e.iter().any(|l| l.starts_with("p.toml:26:")
            && l.contains(
                "error: `alert[0].include[1]`: window `rms_10s` does not compute `max`; it computes count, rms"
            )),
        "{e:?}"
    );
    assert!(e.iter().any(|l| l.contains("`alert[0].include[2]`: `rms` is listed twice")), "{e:?}");
    assert!(e.iter().any(|l| l.contains(":27:1: error: `alert[0].kind`: a kind uses only")), "{e:?}");
    assert_eq!(e.len(), 3, "{e:?}");
}

#[test]
fn bearing_rules_attach_the_verdicts_evidence_by_default() {
    let text = include_str!("../../../pipelines/bearing-health.toml");
    let p = load_str(Path::new("bearing-health.toml"), text, &|_| None).unwrap().pipeline;
    let rule = |name: &str| p.alerts.iter().find(|r| r.name == name).unwrap();
    let bearing = rule("bearing-fault");
    assert_eq!(bearing.kind, AlertKind::BearingFault);
    let names: Vec<&str> = bearing.include.iter().map(|d| d.name).collect();
    for want in ["bearing.verdict", "bearing.defect_hz", "bearing.defect_orders", "bearing.sideband_db", "rpm_source"] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    let unit = |n: &str| bearing.include.iter().find(|d| d.name == n).map(|d| d.unit);
    assert_eq!(
        (unit("bearing.defect_hz"), unit("bearing.defect_orders"), unit("rpm")),
        (Some("Hz"), Some("orders"), Some("rpm"))
    );
    assert_eq!(names.iter().filter(|n| **n == "iso_zone").count(), 2, "the zone's number and its letter");
    let zone = rule("iso-zone");
    assert_eq!(zone.kind, AlertKind::Fixed("threshold".into()));
    assert_eq!(zone.include.iter().map(|d| d.name).collect::<Vec<_>>(), vec!["iso_zone", "iso_zone", "velocity_rms"]);

    let spectrum = text.replace(
        "subject = \"acme.{site}.alert.iso.{machine}\"",
        "subject = \"acme.{site}.alert.iso.{machine}\"\ninclude = [\"spectrum\"]",
    );
    let e = match load_str(Path::new("bearing-health.toml"), &spectrum, &|_| None) {
        Err(ConfigError::Invalid(d)) => d.iter().map(ToString::to_string).collect::<Vec<_>>(),
        other => panic!("expected errors, got {other:?}"),
    };
    assert!(e.iter().any(|l| l.contains("`alert[0].include[0]`: `spectrum` is a spectrum")), "{e:?}");
}

#[test]
fn a_rule_may_compare_a_baseline_or_a_rate_and_misplaced_settings_are_named() {
    let with = |extra: &str| GOOD.replace("for_windows = 2", &format!("for_windows = 2\n{extra}"));
    let compare = |extra: &str| load(&with(extra)).unwrap().pipeline.alerts[0].compare;
    assert_eq!(compare(""), Compare::Value);
    assert_eq!(compare("compare = \"ratio\""), Compare::Ratio(BaselineSpec { windows: 30, period: None }));
    assert_eq!(
        compare("compare = \"db\"\nbaseline_period = \"1h\""),
        Compare::Db(BaselineSpec { windows: 30, period: Some(Duration::from_secs(3600)) })
    );
    assert_eq!(compare("compare = \"rate\"\ntrend_windows = 5"), Compare::Rate { windows: 5 });

    for (extra, want) in [
        ("compare = \"median\"", "`alert[0].compare`: `median` is not a comparison: value, ratio, db or rate"),
        (
            "baseline_windows = 10",
            "`alert[0].baseline_windows`: `baseline_windows` goes with `compare = \"ratio\" or \"db\"`, not `value`",
        ),
        ("compare = \"rate\"\nbaseline_period = \"1h\"", "`alert[0].baseline_period`: `baseline_period` goes with"),
        (
            "compare = \"ratio\"\ntrend_windows = 4",
            "`alert[0].trend_windows`: `trend_windows` goes with `compare = \"rate\"`, not `ratio`",
        ),
        (
            "compare = \"ratio\"\nbaseline_windows = 5\nbaseline_period = \"1h\"",
            "give `baseline_windows` or `baseline_period`, not both",
        ),
        (
            "compare = \"ratio\"\nbaseline_windows = 0",
            "`alert[0].baseline_windows`: baseline_windows must be from 1 to 100000",
        ),
        ("compare = \"rate\"\ntrend_windows = 1", "`alert[0].trend_windows`: trend_windows must be from 2 to 10000"),
        ("compare = \"db\"\nbaseline_period = \"soon\"", "`alert[0].baseline_period`: `soon` is not a duration"),
    ] {
        let e = errors(&with(extra));
        assert!(e.iter().any(|l| l.contains(want)), "{extra}: {e:?}");
    }
}

#[test]
fn a_tachometer_subject_is_checked_against_the_window_and_the_source() {
    let shipped = include_str!("../../../pipelines/bearing-health.toml");
    let load_errors = |text: &str| match load_str(Path::new("b.toml"), text, &|_| None) {
        Ok(l) => Ok(l.pipeline),
        Err(ConfigError::Invalid(d)) => Err(d.iter().map(ToString::to_string).collect::<Vec<_>>()),
        Err(e) => panic!("{e:?}"),
    };
    let delivered = shipped.replace(
        "filter_subjects = [\"acme.*.*.*.*.*.vibration.raw\"]",
        "filter_subjects = [\"acme.*.*.*.*.*.vibration.raw\", \"acme.*.*.*.*.*.speed.rpm\"]",
    );
    let with = |text: &str, extra: &str| text.replace("rpm = 1797.0", &format!("rpm = 1797.0\n{extra}"));
    let p = load_errors(&with(&delivered, "rpm_subject = \"acme.*.*.*.*.*.speed.rpm\"")).unwrap();
    let WindowKind::Waveform(w) = &p.windows[0].kind else { panic!("a waveform window") };
    let s = w.speed.as_ref().unwrap();
    assert_eq!((s.key.clone(), s.max_age), (vec!["site".to_owned(), "machine".to_owned()], Duration::from_secs(10)));
    assert_eq!((s.template_index.clone(), s.window_index.clone()), (vec![1, 4], vec![0, 1]));

    for (text, want) in [
        (
            with(shipped, "rpm_subject = \"acme.*.*.*.*.*.speed.rpm\""),
            "`window[0].rpm_subject`: the source does not deliver `acme.*.*.*.*.*.speed.rpm`",
        ),
        (with(&delivered, "rpm_max_age = \"5s\""), "`window[0].rpm_max_age`: `rpm_max_age` goes with `rpm_subject`"),
        (
            with(&delivered, "rpm_subject = \"acme.*.*.*.*.*.speed.rpm\"\nrpm_key = [\"line\"]"),
            "`window[0].rpm_key[0]`: `line` is not in the window's key",
        ),
        (
            with(&delivered, "rpm_subject = \"acme..speed\""),
            "`window[0].rpm_subject`: `acme..speed` is not a valid subject filter",
        ),
    ] {
        let e = load_errors(&text).unwrap_err();
        assert!(e.iter().any(|l| l.contains(want)), "{want}: {e:?}");
    }
    let scalar =
        GOOD.replace("aggregates = [\"count\", \"rms\"]", "aggregates = [\"count\", \"rms\"]\nrpm_subject = \"a.b\"");
    assert!(
        errors(&scalar)
            .iter()
            .any(|l| l.contains("`window[0].rpm_subject`: a tachometer subject serves waveform windows"))
    );
}

#[test]
fn an_envelope_band_is_a_range_or_the_kurtogram() {
    let shipped = include_str!("../../../pipelines/bearing-health.toml");
    let band = |setting: &str| {
        let text = shipped.replace("rpm = 1797.0", &format!("rpm = 1797.0\nenvelope_band = {setting}"));
        match load_str(Path::new("b.toml"), &text, &|_| None) {
            Ok(l) => match &l.pipeline.windows[0].kind {
                WindowKind::Waveform(w) => Ok(w.settings.envelope_band),
                WindowKind::Scalar(_) => panic!("a waveform window"),
            },
            Err(ConfigError::Invalid(d)) => Err(d.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")),
            Err(e) => panic!("{e:?}"),
        }
    };
    assert_eq!(band("[2000.0, 5000.0]"), Ok(Some((2000.0, 5000.0))));
    assert_eq!(band("\"kurtogram\""), Ok(None));
    assert!(band("\"widest\"").unwrap_err().contains("`window[0].envelope_band`: `widest` is not a band"));
    assert!(band("[5000.0, 2000.0]").unwrap_err().contains("a band is [low_hz, high_hz] with low < high"));
}
