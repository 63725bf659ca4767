//! Rolling-element bearing defect frequencies from geometry, and a catalog of common bearings.
//!
//! With `n` rolling elements of diameter `d` on pitch diameter `D` at contact angle `phi`,
//! and `r = d / D cos(phi)`, as multiples of shaft speed:
//! FTF = (1 - r) / 2, BPFO = n (1 - r) / 2, BPFI = n (1 + r) / 2, BSF = D / (2 d) (1 - r^2).

/// Bearing geometry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Geometry {
    /// Number of rolling elements.
    pub elements: u32,
    /// Rolling element diameter (any length unit, the same as `pitch_diameter`).
    pub element_diameter: f64,
    /// Pitch diameter.
    pub pitch_diameter: f64,
    /// Contact angle, degrees.
    pub contact_angle_deg: f64,
}

/// Defect frequencies as multiples of shaft speed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Multipliers {
    /// Fundamental train (cage) frequency.
    pub ftf: f64,
    /// Ball pass frequency, outer race.
    pub bpfo: f64,
    /// Ball pass frequency, inner race.
    pub bpfi: f64,
    /// Ball spin frequency (a ball defect shows mostly at 2 x BSF).
    pub bsf: f64,
}

impl Multipliers {
    /// The frequencies in Hz at a shaft speed.
    pub fn at_rpm(&self, rpm: f64) -> Multipliers {
        let f = rpm / 60.0;
        Multipliers { ftf: self.ftf * f, bpfo: self.bpfo * f, bpfi: self.bpfi * f, bsf: self.bsf * f }
    }
}

impl Geometry {
    /// The defect frequency multipliers.
    pub fn multipliers(&self) -> Multipliers {
        let r = self.element_diameter / self.pitch_diameter * self.contact_angle_deg.to_radians().cos();
        let n = f64::from(self.elements);
        Multipliers {
            ftf: 0.5 * (1.0 - r),
            bpfo: n / 2.0 * (1.0 - r),
            bpfi: n / 2.0 * (1.0 + r),
            bsf: self.pitch_diameter / (2.0 * self.element_diameter) * (1.0 - r * r),
        }
    }
}

/// Nominal geometry (mm) of common bearings: pitch diameter is the bore/outside mean, element
/// count and size are typical of the series. For acceptance work, use the manufacturer's
/// figures in the pipeline or machine config.
const CATALOG: [(&str, Geometry); 7] = [
    ("6203", Geometry { elements: 8, element_diameter: 6.747, pitch_diameter: 28.5, contact_angle_deg: 0.0 }),
    ("6204", Geometry { elements: 8, element_diameter: 7.938, pitch_diameter: 33.5, contact_angle_deg: 0.0 }),
    // SKF 6205-2RS JEM as on the CWRU rig: 0.3126 in and 1.537 in.
    ("6205", Geometry { elements: 9, element_diameter: 7.940, pitch_diameter: 39.04, contact_angle_deg: 0.0 }),
    ("6206", Geometry { elements: 9, element_diameter: 9.525, pitch_diameter: 46.0, contact_angle_deg: 0.0 }),
    ("6305", Geometry { elements: 8, element_diameter: 10.319, pitch_diameter: 43.5, contact_angle_deg: 0.0 }),
    ("6308", Geometry { elements: 8, element_diameter: 15.081, pitch_diameter: 65.0, contact_angle_deg: 0.0 }),
    ("NU210", Geometry { elements: 16, element_diameter: 10.0, pitch_diameter: 70.0, contact_angle_deg: 0.0 }),
];

/// The geometry of a bearing by designation (`6205`, `6205-2RS`, `NU210 ECP`...): the
/// designation's leading series-and-size part is looked up.
pub fn catalog(designation: &str) -> Option<Geometry> {
    let base: String = designation.trim().chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
    CATALOG.iter().find(|(d, _)| d.eq_ignore_ascii_case(&base)).map(|(_, g)| *g)
}

/// Designations in the catalog.
pub fn catalog_designations() -> impl Iterator<Item = &'static str> {
    CATALOG.iter().map(|(d, _)| *d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_6205_has_the_published_multipliers() {
        let m = catalog("6205-2RS JEM").unwrap().multipliers();
        for (got, want) in [(m.ftf, 0.3983), (m.bpfo, 3.5848), (m.bpfi, 5.4152), (m.bsf, 2.3567)] {
            assert!((got - want).abs() < 5e-4, "{got} vs {want}");
        }
        let hz = m.at_rpm(1797.0);
        assert!((hz.bpfo - 107.4).abs() < 0.1 && (hz.bpfi - 162.2).abs() < 0.1);
    }

    #[test]
    fn the_catalog_covers_the_common_bearings() {
        for d in ["6203", "6204", "6205", "6206", "6305", "6308", "NU210", "nu210"] {
            let m = catalog(d).unwrap_or_else(|| panic!("{d}")).multipliers();
            assert!(m.ftf > 0.3 && m.ftf < 0.5 && m.bpfi > m.bpfo && m.bsf > 1.0, "{d}: {m:?}");
        }
        assert!(catalog("7205").is_none());
    }
}
