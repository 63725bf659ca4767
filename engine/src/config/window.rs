//! Building a `[[window]]`: timing, key, and what it computes (aggregates of scalar
//! readings, or operators over waveform samples).

use stator_operators::Aggregate;
use stator_operators::faults::ScoreConfig;
use stator_operators::spectrum::WindowFn;
use stator_operators::velocity::{AccelUnit, Foundation, MachineGroup};

use super::checker::{Checker, duration, is_name};
use super::file::{BandSetting, WindowSection};
use super::{KeyPath, MAX_KEY_FIELDS, WindowKind, WindowSpec};
use crate::subject::{self, SubjectTemplate};
use crate::waveform::speed::SpeedSpec;
use crate::waveform::{AnalysisSettings, Operator, WaveformSpec};
use std::time::Duration;

pub(super) fn build_window(
    cx: &mut Checker,
    p: &KeyPath,
    w: &WindowSection,
    template: Option<&SubjectTemplate>,
    waveform: bool,
) -> Option<WindowSpec> {
    let mut ok = is_name(&w.name);
    if !ok {
        cx.error(&p.key("name"), "a window name uses only letters, digits, `-` and `_`");
    }
    let key = if w.key.is_empty() { vec!["machine".to_owned()] } else { w.key.clone() };
    if key.len() > MAX_KEY_FIELDS {
        cx.error(&p.key("key"), format!("a window key has at most {MAX_KEY_FIELDS} fields"));
        ok = false;
    }
    let mut key_index = Vec::new();
    for (i, k) in key.iter().enumerate() {
        match template.and_then(|t| t.field_index(k)) {
            Some(idx) => key_index.push(idx),
            None => {
                if let Some(t) = template {
                    let known = t.field_names().join(", ");
                    cx.error(&p.key("key").index(i), format!("`{k}` is not a field of the subject template ({known})"));
                }
                ok = false;
            }
        }
    }
    if let Some(f) = w.filter.as_deref().filter(|f| !subject::is_valid_filter(f)) {
        cx.error(&p.key("filter"), format!("`{f}` is not a valid subject filter"));
        ok = false;
    }
    let (size, every) = match (&w.tumbling, &w.hopping) {
        (Some(t), None) => {
            let d = duration(cx, &p.key("tumbling"), Some(t), Duration::ZERO);
            (d, d)
        }
        (None, Some(h)) => (
            duration(cx, &p.key("hopping").key("size"), Some(&h.size), Duration::ZERO),
            duration(cx, &p.key("hopping").key("every"), Some(&h.every), Duration::ZERO),
        ),
        _ => {
            cx.error(p, "a window needs exactly one of `tumbling = \"10s\"` or `hopping = { size, every }`");
            return None;
        }
    };
    let whole_ms = |d: Duration| d.as_millis() > 0 && d.subsec_nanos().is_multiple_of(1_000_000);
    let errors_before = cx.found.len();
    if cx.found[..errors_before]
        .iter()
        .any(|d| d.key.starts_with(&format!("{p}.tumbling")) || d.key.starts_with(&format!("{p}.hopping")))
    {
        ok = false;
    } else if !whole_ms(size) || !whole_ms(every) {
        cx.error(p, "window lengths must be whole milliseconds and greater than zero");
        ok = false;
    } else if size.as_millis() % every.as_millis() != 0 {
        cx.error(&p.key("hopping").key("every"), "`every` must divide `size`");
        ok = false;
    }
    let allowed_lateness = duration(cx, &p.key("allowed_lateness"), w.allowed_lateness.as_deref(), Duration::ZERO);
    let idle_timeout = duration(cx, &p.key("idle_timeout"), w.idle_timeout.as_deref(), Duration::from_secs(30));
    let mut kind = if waveform { waveform_kind(cx, p, w) } else { scalar_kind(cx, p, w) };
    if let (Some(WindowKind::Waveform(spec)), Some(t)) = (&mut kind, template) {
        match speed(cx, p, w, t, &key) {
            Ok(s) => spec.speed = s,
            Err(()) => ok = false,
        }
    } else if !waveform && (w.rpm_subject.is_some() || w.rpm_max_age.is_some() || w.rpm_key.is_some()) {
        cx.error(&p.key("rpm_subject"), "a tachometer subject serves waveform windows");
        ok = false;
    }
    ok &= kind.is_some();
    let kind = kind?;
    let publish = match w.publish.as_deref().map(crate::subject::OutputTemplate::parse) {
        None => None,
        Some(Ok(t)) => {
            for f in t.fields() {
                if !key.contains(f) && f != "pipeline" && f != "window" {
                    cx.error(&p.key("publish"), format!("`{{{f}}}` is not in the window's key ({})", key.join(", ")));
                    ok = false;
                }
            }
            Some(t)
        }
        Some(Err(e)) => {
            cx.error(&p.key("publish"), e);
            ok = false;
            None
        }
    };
    ok.then(|| WindowSpec {
        name: w.name.clone(),
        key,
        key_index,
        filter: w.filter.clone(),
        size,
        every,
        allowed_lateness,
        idle_timeout,
        kind,
        publish,
    })
}

/// `rpm_subject`, `rpm_max_age` and `rpm_key`.
fn speed(
    cx: &mut Checker,
    p: &KeyPath,
    w: &WindowSection,
    template: &SubjectTemplate,
    window_key: &[String],
) -> Result<Option<Box<SpeedSpec>>, ()> {
    let Some(subject) = &w.rpm_subject else {
        for (set, key) in [(w.rpm_max_age.is_some(), "rpm_max_age"), (w.rpm_key.is_some(), "rpm_key")] {
            if set {
                cx.error(&p.key(key), format!("`{key}` goes with `rpm_subject`"));
                return Err(());
            }
        }
        return Ok(None);
    };
    let mut ok = true;
    if !subject::is_valid_filter(subject) {
        cx.error(&p.key("rpm_subject"), format!("`{subject}` is not a valid subject filter"));
        ok = false;
    }
    let max_age = duration(cx, &p.key("rpm_max_age"), w.rpm_max_age.as_deref(), Duration::from_secs(10));
    if max_age.is_zero() {
        cx.error(&p.key("rpm_max_age"), "rpm_max_age must be longer than 0s");
        ok = false;
    }
    let key: Vec<String> = match &w.rpm_key {
        Some(k) => k.clone(),
        None => window_key.iter().filter(|f| *f != "sensor" && *f != "metric").cloned().collect(),
    };
    if key.is_empty() {
        cx.error(&p.key("rpm_key"), "a speed needs key fields, e.g. [\"site\", \"machine\"]");
        ok = false;
    }
    let mut template_index = Vec::new();
    let mut window_index = Vec::new();
    for (i, f) in key.iter().enumerate() {
        match (template.field_index(f), window_key.iter().position(|k| k == f)) {
            (Some(t), Some(w)) => {
                template_index.push(t);
                window_index.push(w);
            }
            _ => {
                cx.error(
                    &p.key("rpm_key").index(i),
                    format!("`{f}` is not in the window's key ({})", window_key.join(", ")),
                );
                ok = false;
            }
        }
    }
    if !ok {
        return Err(());
    }
    Ok(Some(Box::new(SpeedSpec { subject: subject.clone(), max_age, key, template_index, window_index })))
}

fn scalar_kind(cx: &mut Checker, p: &KeyPath, w: &WindowSection) -> Option<WindowKind> {
    if !w.operators.is_empty() {
        cx.error(
            &p.key("operators"),
            "operators run on waveforms; this source is `json` (scalar readings): use `aggregates`",
        );
        return None;
    }
    let names: Vec<&str> = if w.aggregates.is_empty() {
        vec!["count", "mean", "min", "max", "rms"]
    } else {
        w.aggregates.iter().map(String::as_str).collect()
    };
    let mut aggregates = Vec::new();
    let mut ok = true;
    for (i, a) in names.iter().enumerate() {
        match a.parse::<Aggregate>() {
            Ok(agg) => aggregates.push(agg),
            Err(e) => {
                cx.error(&p.key("aggregates").index(i), e.to_string());
                ok = false;
            }
        }
    }
    ok.then_some(WindowKind::Scalar(aggregates))
}

fn waveform_kind(cx: &mut Checker, p: &KeyPath, w: &WindowSection) -> Option<WindowKind> {
    let mut ok = true;
    if !w.aggregates.is_empty() {
        cx.error(&p.key("aggregates"), "aggregates are for scalar readings; a waveform window declares `operators`");
        ok = false;
    }
    if w.hopping.is_some() {
        cx.error(&p.key("hopping"), "waveform windows are tumbling: each sample is analysed once");
        ok = false;
    }
    if w.operators.is_empty() {
        cx.error(
            &p.key("operators"),
            "a waveform window needs `operators`, e.g. [\"rms\", \"velocity_rms\", \"bearing_faults\"]",
        );
        ok = false;
    }
    let mut operators = Vec::new();
    for (i, name) in w.operators.iter().enumerate() {
        match Operator::named(name) {
            Some(op) if !operators.contains(&op) => operators.push(op),
            Some(_) => {}
            None => {
                let known = Operator::names();
                cx.error(
                    &p.key("operators").index(i),
                    format!("unknown operator `{name}`, expected one of {}", known.join(", ")),
                );
                ok = false;
            }
        }
    }
    let defaults = AnalysisSettings::default();
    let fft_size = w.fft_size.unwrap_or(defaults.fft_size);
    if !(64..=1 << 20).contains(&fft_size) || !fft_size.is_multiple_of(2) {
        cx.error(&p.key("fft_size"), "fft_size must be even, from 64 to 1048576");
        ok = false;
    }
    let overlap = w.overlap.unwrap_or(defaults.overlap);
    if !(0.0..=0.9).contains(&overlap) {
        cx.error(&p.key("overlap"), "overlap must be from 0 to 0.9");
        ok = false;
    }
    let spectral_window = match w.spectral_window.as_deref().unwrap_or("hann") {
        "hann" => WindowFn::Hann,
        "flat_top" => WindowFn::FlatTop,
        "rectangular" => WindowFn::Rectangular,
        other => {
            cx.error(
                &p.key("spectral_window"),
                format!("unknown window `{other}`, expected hann, flat_top or rectangular"),
            );
            ok = false;
            WindowFn::Hann
        }
    };
    let mut band = |key: &str, value: Option<[f64; 2]>| {
        let b = value.map(|[lo, hi]| (lo, hi));
        if let Some((lo, hi)) = b
            && !(lo >= 0.0 && hi > lo)
        {
            cx.error(&p.key(key), "a band is [low_hz, high_hz] with low < high");
            ok = false;
        }
        b
    };
    let (envelope_range, unknown_method) = match &w.envelope_band {
        Some(BandSetting::Range(r)) => (Some(*r), None),
        Some(BandSetting::Method(m)) if m != "kurtogram" => (None, Some(m.clone())),
        _ => (None, None),
    };
    let envelope_band = band("envelope_band", envelope_range);
    let velocity_band = band("velocity_band", w.velocity_band).unwrap_or(defaults.velocity_band);
    if let Some(m) = unknown_method {
        cx.error(&p.key("envelope_band"), format!("`{m}` is not a band: write [low_hz, high_hz] or \"kurtogram\""));
        ok = false;
    }
    let machine_group = match w.machine_group.as_deref().unwrap_or("medium") {
        "medium" => MachineGroup::Medium,
        "large" => MachineGroup::Large,
        _ => {
            cx.error(&p.key("machine_group"), "expected `medium` (15-300 kW) or `large` (300 kW-50 MW)");
            ok = false;
            MachineGroup::Medium
        }
    };
    let foundation = match w.foundation.as_deref().unwrap_or("rigid") {
        "rigid" => Foundation::Rigid,
        "flexible" => Foundation::Flexible,
        _ => {
            cx.error(&p.key("foundation"), "expected `rigid` or `flexible`");
            ok = false;
            Foundation::Rigid
        }
    };
    if let Some(b) = w.bearing.as_deref()
        && stator_operators::bearing::catalog(b).is_none()
    {
        let known: Vec<&str> = stator_operators::bearing::catalog_designations().collect();
        cx.error(&p.key("bearing"), format!("bearing `{b}` is not in the catalog ({})", known.join(", ")));
        ok = false;
    }
    if w.rpm.is_some_and(|r| !(r > 0.0 && r < 200_000.0)) {
        cx.error(&p.key("rpm"), "rpm must be above 0 and below 200000");
        ok = false;
    }
    let units = match w.units.as_deref().unwrap_or("g").parse::<AccelUnit>() {
        Ok(u) => u,
        Err(e) => {
            cx.error(&p.key("units"), e);
            ok = false;
            AccelUnit::G
        }
    };
    if w.revolutions.is_some_and(|n| !(1..=100_000).contains(&n)) {
        cx.error(&p.key("revolutions"), "revolutions must be from 1 to 100000");
        ok = false;
    }
    let mut score = ScoreConfig::default();
    if let Some(t) = w.fault_threshold_db {
        score.threshold_db = t;
        score.min_score_db = score.min_score_db.max(t);
    }
    ok.then(|| {
        WindowKind::Waveform(WaveformSpec {
            operators,
            settings: AnalysisSettings {
                fft_size,
                overlap,
                spectral_window,
                envelope_band,
                whiten: w.whiten.unwrap_or(defaults.whiten),
                velocity_band,
                machine_group,
                foundation,
                bearing: w.bearing.clone(),
                rpm: w.rpm,
                units,
                score,
                revolutions: w.revolutions,
            },
            speed: None,
        })
    })
}
