//! What a closed window reports: named scalar, text and vector features.
//!
//! Scalar windows report their aggregates (`rms`, `count`...); waveform windows report what
//! their operators compute (`velocity_rms`, `iso_zone`, `bearing.bpfo_db`, a spectrum...).
//! Alert rules read scalars by name; everything is published and archived.

/// A spectrum-like vector feature.
#[derive(Debug, Clone, PartialEq)]
pub struct Vector {
    /// Spacing of the entries (Hz per bin).
    pub step: f64,
    /// The entries.
    pub values: Vec<f32>,
}

/// The features of one closed window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Features {
    /// Numeric features.
    pub scalars: Vec<(&'static str, f64)>,
    /// Text features (verdicts, zone letters).
    pub texts: Vec<(&'static str, String)>,
    /// Vector features (spectra).
    pub vectors: Vec<(&'static str, Vector)>,
}

impl Features {
    /// A numeric feature by name.
    pub fn scalar(&self, name: &str) -> Option<f64> {
        self.scalars.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    /// A text feature by name.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.texts.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }
}
