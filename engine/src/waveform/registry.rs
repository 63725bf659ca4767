//! The one list of waveform operators. Pipeline validation (known names, the features alert
//! rules may compare), the analysis loop and the operator table of docs/VIBRATION.md (checked
//! by a test) all read it.
//!
//! Adding an operator: write it in a file of `ops/` and add one line to [`REGISTRY`].

use super::operator::{FeatureKind, Operator, WaveformOperator};
use super::ops;

/// Every operator, in the order the docs list them. One line per operator.
pub static REGISTRY: &[&dyn WaveformOperator] = &[
    &ops::levels::RMS,
    &ops::levels::PEAK,
    &ops::levels::PEAK_TO_PEAK,
    &ops::levels::CREST_FACTOR,
    &ops::levels::KURTOSIS,
    &ops::levels::SKEWNESS,
    &ops::velocity::VelocityRms,
    &ops::velocity::IsoZoneOp,
    &ops::spectrum::SpectrumOp,
    &ops::envelope::EnvelopeOp,
    &ops::bearing::BearingFaults,
];

impl Operator {
    /// The registered operator called `name`.
    pub fn named(name: &str) -> Option<Self> {
        REGISTRY.iter().find(|op| op.name() == name).map(|op| Self(*op))
    }

    /// Every registered operator.
    pub fn all() -> impl Iterator<Item = Self> {
        REGISTRY.iter().map(|op| Self(*op))
    }

    /// The names of every registered operator.
    pub fn names() -> Vec<&'static str> {
        REGISTRY.iter().map(|op| op.name()).collect()
    }
}

/// The operator table of docs/VIBRATION.md, generated from the registry.
pub fn markdown_table() -> String {
    let mut out = String::from("| operator | features (unit) | settings | notes |\n|---|---|---|---|\n");
    for op in REGISTRY {
        let features: Vec<String> = op
            .features()
            .iter()
            .map(|f| match (f.kind, f.unit, f.sometimes) {
                (FeatureKind::Text, _, _) => format!("`{}` (text)", f.name),
                (FeatureKind::Vector, u, _) => format!("`{}` (vector, {u})", f.name),
                (FeatureKind::Scalar, u, false) => format!("`{}` ({u})", f.name),
                (FeatureKind::Scalar, u, true) => format!("`{}` ({u}, some windows)", f.name),
            })
            .collect();
        let settings: Vec<String> = op.settings().iter().map(|s| format!("`{s}`")).collect();
        let settings = if settings.is_empty() { "-".to_owned() } else { settings.join(", ") };
        out.push_str(&format!("| `{}` | {} | {settings} | {} |\n", op.name(), features.join(", "), op.about()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_feature_names_are_unique() {
        let names = Operator::names();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "{names:?}");
        // A feature (name and kind: `iso_zone` is a number and a letter) comes from one
        // operator only, so outputs never carry two values under one name.
        let mut features: Vec<(&str, String)> =
            REGISTRY.iter().flat_map(|op| op.features().iter().map(|f| (f.name, format!("{:?}", f.kind)))).collect();
        let n = features.len();
        features.sort_unstable();
        features.dedup();
        assert_eq!(features.len(), n);
    }

    /// The docs list exactly the registered operators: the table between the markers in
    /// docs/VIBRATION.md is the one the registry generates (`STATOR_UPDATE_DOCS=1` rewrites it).
    #[test]
    fn the_docs_table_lists_every_registered_operator() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/VIBRATION.md");
        let doc = std::fs::read_to_string(&path).expect("docs/VIBRATION.md");
        let (begin, end) = ("<!-- operators:begin -->\n", "<!-- operators:end -->");
        let start = doc.find(begin).expect("begin marker") + begin.len();
        let stop = doc.find(end).expect("end marker");
        let table = markdown_table();
        if std::env::var_os("STATOR_UPDATE_DOCS").is_some() {
            std::fs::write(&path, format!("{}{table}{}", &doc[..start], &doc[stop..])).expect("write docs");
            return;
        }
        assert_eq!(&doc[start..stop], table, "docs/VIBRATION.md is stale: run with STATOR_UPDATE_DOCS=1");
        for name in Operator::names() {
            assert!(doc[start..stop].contains(&format!("| `{name}` |")), "{name} missing from the docs");
        }
    }
}
