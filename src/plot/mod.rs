//! `stator plot`: charts from the archive, as PNG and SVG.
//!
//! - `{machine}-{metric}.png|svg`: the machine's trend of a window feature (RMS by default)
//!   with its warning and critical levels and its alert transitions marked;
//! - `{machine}-spectrum.png|svg` and `{machine}-envelope.png|svg`: the latest spectrum and
//!   envelope spectrum archived for the machine, with its bearing's defect frequencies
//!   (BPFO, BPFI, 2×BSF, FTF at the window's shaft speed) and their harmonics marked.
//!
//! Text is drawn with DejaVu Sans, embedded (its licence is in `FONT-LICENSE`), so PNGs look
//! the same on a box without fonts.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float32Type, Float64Type, Int64Type};
use datafusion::prelude::SessionContext;
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use stator_engine::archive::ArchiveLocation;

static FONT: &[u8] = include_bytes!("DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";

/// What to plot.
#[derive(Debug, Clone)]
pub struct PlotRequest {
    /// Machine (the `machine` key column).
    pub machine: String,
    /// Only this site (default: any).
    pub site: Option<String>,
    /// The trend's feature.
    pub metric: String,
    /// The `[[window]]` whose feature is plotted, when several pipelines or windows compute
    /// it (default: the one with the most windows).
    pub window: Option<String>,
    /// Warning and critical levels to draw besides those found in the machine's alerts (from a
    /// pipeline file's rules).
    pub levels: Vec<(Severity, f64)>,
    /// Output directory.
    pub out: PathBuf,
    /// Image size in pixels.
    pub size: (u32, u32),
}

/// An alert level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Warning.
    Warning,
    /// Critical.
    Critical,
}

impl Severity {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "warning" => Some(Self::Warning),
            "critical" => Some(Self::Critical),
            _ => None,
        }
    }

    fn colour(self) -> RGBColor {
        match self {
            Self::Warning => RGBColor(230, 150, 0),
            Self::Critical => RGBColor(200, 30, 30),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
}

/// The files written and what was skipped, and why.
#[derive(Debug, Default)]
pub struct Plotted {
    /// Files written.
    pub files: Vec<PathBuf>,
    /// Charts not drawn, with the reason.
    pub skipped: Vec<String>,
}

/// A trend point.
#[derive(Debug, Clone, Copy)]
struct Point {
    t_ms: i64,
    value: f64,
}

/// An alert transition.
#[derive(Debug, Clone)]
struct Mark {
    t_ms: i64,
    value: f64,
    state: String,
}

/// A vector feature of one window.
#[derive(Debug, Clone)]
struct Spectrum {
    t_ms: i64,
    step_hz: f64,
    values: Vec<f32>,
    bearing: Option<String>,
    rpm: Option<f64>,
}

/// Draws every chart the archive has data for.
///
/// # Errors
/// When the archive cannot be read or a file cannot be written; a chart without data is
/// skipped (see [`Plotted::skipped`]), not an error.
pub async fn render(archive: &ArchiveLocation, req: &PlotRequest) -> anyhow::Result<Plotted> {
    register_font();
    std::fs::create_dir_all(&req.out).with_context(|| format!("creating {}", req.out.display()))?;
    let ctx = stator_engine::query::session(archive).await?;
    let mut done = Plotted::default();
    let scope = scope(req);
    let windows = windows_with(&ctx, &scope, &req.metric).await?;
    let chosen = match &req.window {
        Some(w) => windows.iter().find(|(_, name, _)| name == w),
        None => windows.first(),
    };
    let trend = match chosen {
        Some((pipeline, window, _)) => trend(&ctx, &scope, &req.metric, pipeline, window).await?,
        None => Vec::new(),
    };
    if let (Some((_, w, _)), true, None) = (chosen, windows.len() > 1, &req.window) {
        let all: Vec<&str> = windows.iter().map(|(_, w, _)| w.as_str()).collect();
        tracing::info!(window = %w, "several windows compute `{}` ({}); plotting `{w}` (choose with --window)", req.metric, all.join(", "));
    }
    if let Some((pipeline, window, _)) = chosen.filter(|_| !trend.is_empty()) {
        let scope = format!("{scope} AND pipeline = {}", lit(pipeline));
        let (marks, mut levels) = alerts(&ctx, &scope, &req.metric).await?;
        levels.extend(req.levels.iter().copied());
        levels.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        levels.dedup();
        let base = req.out.join(format!("{}-{}", file_token(&req.machine), file_token(&req.metric)));
        let title = format!("{} {}: {pipeline} / {window}, {} windows", req.machine, req.metric, trend.len());
        let chart = TrendChart { title, metric: &req.metric, points: &trend, marks: &marks, levels: &levels };
        draw_both(&base, req.size, &mut done, &chart)?;
    } else {
        let what = req.window.as_ref().map_or(String::new(), |w| format!(" in window `{w}`"));
        done.skipped.push(format!("{}: no `{}` feature{what} for {}", req.metric, req.metric, req.machine));
    }
    for feature in ["spectrum", "envelope"] {
        match latest_vector(&ctx, &scope, feature).await? {
            None => done.skipped.push(format!("{feature}: no `{feature}` feature for {}", req.machine)),
            Some(s) => {
                let base = req.out.join(format!("{}-{feature}", file_token(&req.machine)));
                let chart = SpectrumChart { machine: &req.machine, feature, spectrum: &s };
                draw_both(&base, req.size, &mut done, &chart)?;
            }
        }
    }
    Ok(done)
}

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_err() {
            tracing::warn!("the embedded font could not be loaded; charts will have no text");
        }
    });
}

/// A file name token: anything outside `[A-Za-z0-9_.-]` becomes `_`.
fn file_token(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || "_.-".contains(c) { c } else { '_' }).collect()
}

/// SQL string literal.
fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The `WHERE` conditions selecting the machine (and site).
fn scope(req: &PlotRequest) -> String {
    let mut s = format!("machine = {}", lit(&req.machine));
    if let Some(site) = &req.site {
        s += &format!(" AND site = {}", lit(site));
    }
    s
}

/// Runs a query; a table missing from the archive gives no rows.
async fn rows(ctx: &SessionContext, table: &str, sql: &str) -> anyhow::Result<Vec<RecordBatch>> {
    if !ctx.table_exist(table)? {
        return Ok(Vec::new());
    }
    Ok(stator_engine::query::run(ctx, sql).await?)
}

fn i64s(col: &dyn Array) -> anyhow::Result<Vec<Option<i64>>> {
    let c = cast(col, &DataType::Int64)?;
    Ok(c.as_primitive::<Int64Type>().iter().collect())
}

fn f64s(col: &dyn Array) -> anyhow::Result<Vec<Option<f64>>> {
    let c = cast(col, &DataType::Float64)?;
    Ok(c.as_primitive::<Float64Type>().iter().collect())
}

fn strings(col: &dyn Array) -> anyhow::Result<Vec<Option<String>>> {
    let c = cast(col, &DataType::Utf8)?;
    Ok(c.as_string::<i32>().iter().map(|s| s.map(str::to_owned)).collect())
}

/// The (pipeline, window, rows) that have `metric` for the machine, most rows first.
async fn windows_with(ctx: &SessionContext, scope: &str, metric: &str) -> anyhow::Result<Vec<(String, String, i64)>> {
    let sql = format!(
        "SELECT pipeline, \"window\", count(*) AS n FROM features WHERE {scope} AND feature = {} \
         AND value IS NOT NULL GROUP BY pipeline, \"window\" ORDER BY n DESC, pipeline, \"window\"",
        lit(metric)
    );
    let mut out = Vec::new();
    for b in rows(ctx, "features", &sql).await? {
        let (p, w, n) = (strings(b.column(0))?, strings(b.column(1))?, i64s(b.column(2))?);
        for i in 0..b.num_rows() {
            if let (Some(p), Some(w), Some(n)) = (p[i].clone(), w[i].clone(), n[i]) {
                out.push((p, w, n));
            }
        }
    }
    Ok(out)
}

async fn trend(
    ctx: &SessionContext,
    scope: &str,
    metric: &str,
    pipeline: &str,
    window: &str,
) -> anyhow::Result<Vec<Point>> {
    let sql = format!(
        "SELECT CAST(window_end AS BIGINT) AS t, value FROM features \
         WHERE {scope} AND pipeline = {} AND \"window\" = {} AND feature = {} AND value IS NOT NULL ORDER BY window_end",
        lit(pipeline),
        lit(window),
        lit(metric)
    );
    let mut out = Vec::new();
    for b in rows(ctx, "features", &sql).await? {
        for (t, v) in i64s(b.column(0))?.into_iter().zip(f64s(b.column(1))?) {
            if let (Some(t_ms), Some(value)) = (t, v)
                && value.is_finite()
            {
                out.push(Point { t_ms, value });
            }
        }
    }
    Ok(out)
}

/// The machine's alert transitions on `metric`, and the levels they crossed.
async fn alerts(ctx: &SessionContext, scope: &str, metric: &str) -> anyhow::Result<(Vec<Mark>, Vec<(Severity, f64)>)> {
    let sql = format!(
        "SELECT CAST(window_end AS BIGINT) AS t, value, state, threshold FROM alerts \
         WHERE {scope} AND feature = {} ORDER BY window_end",
        lit(metric)
    );
    let (mut marks, mut levels) = (Vec::new(), Vec::new());
    for b in rows(ctx, "alerts", &sql).await? {
        let (t, v, s, th) = (i64s(b.column(0))?, f64s(b.column(1))?, strings(b.column(2))?, f64s(b.column(3))?);
        for i in 0..b.num_rows() {
            let (Some(t_ms), Some(value), Some(state)) = (t[i], v[i], s[i].clone()) else { continue };
            if let (Some(sev), Some(threshold)) = (Severity::parse(&state), th[i]) {
                levels.push((sev, threshold));
            }
            marks.push(Mark { t_ms, value, state });
        }
    }
    Ok((marks, levels))
}

async fn latest_vector(ctx: &SessionContext, scope: &str, feature: &str) -> anyhow::Result<Option<Spectrum>> {
    let sql = format!(
        "SELECT CAST(window_end AS BIGINT) AS t, step_hz, \"values\" FROM features \
         WHERE {scope} AND feature = {} AND \"values\" IS NOT NULL ORDER BY window_end DESC LIMIT 1",
        lit(feature)
    );
    let batches = rows(ctx, "features", &sql).await?;
    let Some(b) = batches.iter().find(|b| b.num_rows() > 0) else { return Ok(None) };
    let (Some(t_ms), Some(step_hz)) = (i64s(b.column(0))?[0], f64s(b.column(1))?[0]) else { return Ok(None) };
    let list = b.column(2).as_list::<i32>();
    let values = cast(&list.value(0), &DataType::Float32)?;
    let values: Vec<f32> = values.as_primitive::<Float32Type>().iter().map(|v| v.unwrap_or(0.0)).collect();
    let sql = format!(
        "SELECT feature, value, text FROM features WHERE {scope} AND CAST(window_end AS BIGINT) = {t_ms} \
         AND feature IN ('rpm', 'bearing.type')"
    );
    let (mut bearing, mut rpm) = (None, None);
    for b in rows(ctx, "features", &sql).await? {
        let (f, v, t) = (strings(b.column(0))?, f64s(b.column(1))?, strings(b.column(2))?);
        for i in 0..b.num_rows() {
            match f[i].as_deref() {
                Some("rpm") => rpm = v[i],
                Some("bearing.type") => bearing = t[i].clone(),
                _ => {}
            }
        }
    }
    Ok(Some(Spectrum { t_ms, step_hz, values, bearing, rpm }))
}

/// A chart that draws on any backend.
trait Chart {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static;
}

/// Draws `chart` into `{base}.svg` and `{base}.png`.
fn draw_both(base: &Path, size: (u32, u32), done: &mut Plotted, chart: &impl Chart) -> anyhow::Result<()> {
    let svg = base.with_extension("svg");
    {
        let root = SVGBackend::new(&svg, size).into_drawing_area();
        chart.draw(&root)?;
        root.present().map_err(|e| anyhow::anyhow!("writing {}: {e}", svg.display()))?;
    }
    let png = base.with_extension("png");
    {
        let root = BitMapBackend::new(&png, size).into_drawing_area();
        chart.draw(&root)?;
        root.present().map_err(|e| anyhow::anyhow!("writing {}: {e}", png.display()))?;
    }
    done.files.push(png);
    done.files.push(svg);
    Ok(())
}

fn drawing<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> anyhow::Error {
    anyhow::anyhow!("drawing: {e}")
}

/// `HH:MM:SS` (UTC), with the date when the span is over a day.
fn clock(t_ms: f64, with_date: bool) -> String {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp_nanos((t_ms as i128) * 1_000_000) else {
        return String::new();
    };
    if with_date {
        format!("{:02}-{:02} {:02}:{:02}", u8::from(t.month()), t.day(), t.hour(), t.minute())
    } else {
        format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())
    }
}

type Chart2d<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// The legend box, where it hides the least.
fn legend<'a, DB: DrawingBackend + 'a>(chart: &mut Chart2d<'a, DB>, at: SeriesLabelPosition) -> anyhow::Result<()> {
    chart
        .configure_series_labels()
        .position(at)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FAMILY, 14))
        .draw()
        .map_err(drawing)
}

struct TrendChart<'a> {
    title: String,
    metric: &'a str,
    points: &'a [Point],
    marks: &'a [Mark],
    levels: &'a [(Severity, f64)],
}

const LINE: RGBColor = RGBColor(31, 119, 180);
const CLEARED: RGBColor = RGBColor(40, 160, 60);

impl Chart for TrendChart<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE).map_err(drawing)?;
        let t0 = self.points.first().map_or(0, |p| p.t_ms) as f64;
        let mut t1 = self.points.last().map_or(0, |p| p.t_ms) as f64;
        if t1 <= t0 {
            t1 = t0 + 1000.0;
        }
        let top = self
            .points
            .iter()
            .map(|p| p.value)
            .chain(self.levels.iter().map(|l| l.1))
            .chain(self.marks.iter().map(|m| m.value))
            .fold(0.0f64, f64::max)
            .max(1e-9)
            * 1.15;
        let with_date = t1 - t0 > 86_400_000.0;
        // Room on the right for the last time label.
        let t1 = t1 + (t1 - t0) * 0.03;
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FAMILY, 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(t0..t1, 0.0..top)
            .map_err(drawing)?;
        chart
            .configure_mesh()
            .x_desc("window end (UTC)")
            .y_desc(self.metric)
            .x_label_formatter(&|t| clock(*t, with_date))
            .label_style((FAMILY, 14))
            .draw()
            .map_err(drawing)?;
        chart
            .draw_series(LineSeries::new(self.points.iter().map(|p| (p.t_ms as f64, p.value)), LINE.stroke_width(2)))
            .map_err(drawing)?
            .label(self.metric)
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], LINE.stroke_width(2)));
        for &(severity, level) in self.levels {
            let colour = severity.colour();
            chart
                .draw_series(DashedLineSeries::new([(t0, level), (t1, level)], 8, 5, colour.stroke_width(2)))
                .map_err(drawing)?
                .label(format!("{} {level}", severity.name()))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(2)));
        }
        for (state, colour) in
            [("warning", Severity::Warning.colour()), ("critical", Severity::Critical.colour()), ("cleared", CLEARED)]
        {
            let marks: Vec<&Mark> = self.marks.iter().filter(|m| m.state == state).collect();
            if marks.is_empty() {
                continue;
            }
            chart
                .draw_series(marks.iter().map(|m| Circle::new((m.t_ms as f64, m.value), 6, colour.filled())))
                .map_err(drawing)?
                .label(format!("alert: {state} ({})", marks.len()))
                .legend(move |(x, y)| Circle::new((x + 10, y), 5, colour.filled()));
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft)
    }
}

struct SpectrumChart<'a> {
    machine: &'a str,
    feature: &'a str,
    spectrum: &'a Spectrum,
}

/// A bearing's defect frequencies at a shaft speed: (name, Hz, colour).
fn defect_lines(bearing: Option<&str>, rpm: Option<f64>) -> Vec<(&'static str, f64, RGBColor)> {
    let (Some(g), Some(rpm)) = (bearing.and_then(stator_operators::bearing::catalog), rpm) else {
        return Vec::new();
    };
    let m = g.multipliers();
    let shaft = rpm / 60.0;
    vec![
        ("BPFO", m.bpfo * shaft, RGBColor(200, 30, 30)),
        ("BPFI", m.bpfi * shaft, RGBColor(150, 60, 200)),
        ("2xBSF", 2.0 * m.bsf * shaft, RGBColor(230, 150, 0)),
        ("FTF", m.ftf * shaft, RGBColor(40, 160, 60)),
    ]
}

impl Chart for SpectrumChart<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE).map_err(drawing)?;
        let s = self.spectrum;
        let lines = defect_lines(s.bearing.as_deref(), s.rpm);
        let full = s.values.len() as f64 * s.step_hz;
        // Envelope spectra are read at the defect frequencies and a few harmonics.
        let max_hz = match self.feature {
            "envelope" => full.min(lines.iter().map(|l| l.1 * 4.0).fold(500.0, f64::max)),
            _ => full,
        };
        let shown: Vec<(f64, f64)> = s
            .values
            .iter()
            .enumerate()
            .map(|(i, v)| (i as f64 * s.step_hz, f64::from(*v)))
            .filter(|(f, _)| *f <= max_hz)
            .collect();
        let top = shown.iter().skip(1).map(|p| p.1).fold(0.0f64, f64::max).max(1e-12) * 1.1;
        let speed = match (&s.bearing, s.rpm) {
            (Some(b), Some(rpm)) => format!(", bearing {b} at {rpm:.0} rpm"),
            (None, Some(rpm)) => format!(", {rpm:.0} rpm"),
            _ => String::new(),
        };
        let what = if self.feature == "envelope" { "envelope spectrum" } else { "spectrum" };
        let title = format!("{} {what}, window ending {}{speed}", self.machine, crate::rfc3339_ms(s.t_ms));
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FAMILY, 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..max_hz, 0.0..top)
            .map_err(drawing)?;
        chart
            .configure_mesh()
            .x_desc("frequency (Hz)")
            .y_desc("amplitude")
            .label_style((FAMILY, 14))
            .draw()
            .map_err(drawing)?;
        chart
            .draw_series(LineSeries::new(shown.iter().copied(), LINE.stroke_width(1)))
            .map_err(drawing)?
            .label(self.feature)
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], LINE.stroke_width(2)));
        for (name, hz, colour) in lines {
            let harmonics: Vec<f64> = (1..=3).map(|k| hz * f64::from(k)).filter(|f| *f <= max_hz).collect();
            if harmonics.is_empty() {
                continue;
            }
            chart
                .draw_series(harmonics.iter().enumerate().flat_map(|(k, f)| {
                    let style = if k == 0 { colour.stroke_width(2) } else { colour.stroke_width(1) };
                    DashedLineSeries::new([(*f, 0.0), (*f, top)], 6, 4, style)
                }))
                .map_err(drawing)?
                .label(format!("{name} {hz:.1} Hz (1-3x)"))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(2)));
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)
    }
}
