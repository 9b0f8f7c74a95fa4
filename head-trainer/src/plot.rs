//! Small charts for reports, written as SVG and rasterised to PNG with resvg (pure Rust).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use feature_cache::atomic::write_atomic;

use crate::error::{Result, TrainError};

const PALETTE: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
    "#17becf",
];
const W: f64 = 900.0;
const H: f64 = 620.0;
const LEFT: f64 = 70.0;
const TOP: f64 = 50.0;
const PLOT_W: f64 = 520.0;
const PLOT_H: f64 = 500.0;

/// One line of a chart.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// Points in data coordinates.
    pub points: Vec<(f64, f64)>,
    /// Drawn thicker and black (e.g. a micro average).
    pub emphasised: bool,
}

/// A line chart with a legend on the right.
#[derive(Debug, Clone)]
pub struct LineChart {
    /// Title.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// X range.
    pub x_range: (f64, f64),
    /// Y range.
    pub y_range: (f64, f64),
    /// Lines.
    pub series: Vec<Series>,
    /// Draw the y = x diagonal (ROC chance line).
    pub diagonal: bool,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn header(out: &mut String, title: &str) {
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="DejaVu Sans, Arial, sans-serif">
<rect width="{W}" height="{H}" fill="white"/>
<text x="{}" y="28" font-size="18" text-anchor="middle">{}</text>
"#,
        LEFT + PLOT_W / 2.0,
        esc(title)
    );
}

fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = (hi - lo).max(1e-12);
    let raw = span / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step =
        [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * mag).find(|s| span / s <= 6.0).unwrap_or(mag * 10.0);
    let mut t = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while t <= hi + step * 1e-9 {
        out.push(t);
        t += step;
    }
    out
}

impl LineChart {
    /// The chart as an SVG document.
    pub fn to_svg(&self) -> String {
        let mut s = String::new();
        header(&mut s, &self.title);
        let (x0, x1) = self.x_range;
        let (y0, y1) = self.y_range;
        let px = |x: f64| LEFT + (x - x0) / (x1 - x0).max(1e-12) * PLOT_W;
        let py = |y: f64| TOP + PLOT_H - (y - y0) / (y1 - y0).max(1e-12) * PLOT_H;
        let _ = writeln!(
            s,
            r##"<rect x="{LEFT}" y="{TOP}" width="{PLOT_W}" height="{PLOT_H}" fill="none" stroke="#444"/>"##
        );
        for t in ticks(x0, x1) {
            let _ = writeln!(
                s,
                r##"<line x1="{0}" y1="{TOP}" x2="{0}" y2="{1}" stroke="#eee"/><text x="{0}" y="{2}" font-size="12" text-anchor="middle">{3}</text>"##,
                px(t),
                TOP + PLOT_H,
                TOP + PLOT_H + 18.0,
                fmt_tick(t)
            );
        }
        for t in ticks(y0, y1) {
            let _ = writeln!(
                s,
                r##"<line x1="{LEFT}" y1="{0}" x2="{1}" y2="{0}" stroke="#eee"/><text x="{2}" y="{3}" font-size="12" text-anchor="end">{4}</text>"##,
                py(t),
                LEFT + PLOT_W,
                LEFT - 6.0,
                py(t) + 4.0,
                fmt_tick(t)
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" font-size="14" text-anchor="middle">{}</text><text x="18" y="{}" font-size="14" text-anchor="middle" transform="rotate(-90 18 {})">{}</text>"#,
            LEFT + PLOT_W / 2.0,
            TOP + PLOT_H + 40.0,
            esc(&self.x_label),
            TOP + PLOT_H / 2.0,
            TOP + PLOT_H / 2.0,
            esc(&self.y_label)
        );
        if self.diagonal {
            let _ = writeln!(
                s,
                r##"<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="#999" stroke-dasharray="5,5"/>"##,
                px(x0),
                py(y0),
                px(x1),
                py(y1)
            );
        }
        for (i, series) in self.series.iter().enumerate() {
            let (color, width, dash) = if series.emphasised {
                ("#000000", 3.0, "")
            } else {
                (PALETTE[i % PALETTE.len()], 1.6, if i >= PALETTE.len() { "6,3" } else { "" })
            };
            let pts = thin(&series.points, 600);
            let mut d = String::new();
            for (k, (x, y)) in pts.iter().enumerate() {
                let _ = write!(d, "{}{:.1},{:.1} ", if k == 0 { "M" } else { "L" }, px(*x), py(*y));
            }
            let _ = writeln!(
                s,
                r#"<path d="{d}" fill="none" stroke="{color}" stroke-width="{width}" stroke-dasharray="{dash}"/>"#
            );
            let ly = TOP + 10.0 + i as f64 * 17.0;
            if ly < H - 10.0 {
                let lx = LEFT + PLOT_W + 20.0;
                let _ = writeln!(
                    s,
                    r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="{width}" stroke-dasharray="{dash}"/><text x="{}" y="{}" font-size="12">{}</text>"#,
                    lx + 24.0,
                    lx + 30.0,
                    ly + 4.0,
                    esc(&series.name)
                );
            }
        }
        s.push_str("</svg>\n");
        s
    }
}

/// A horizontal bar chart (one bar per category).
#[derive(Debug, Clone)]
pub struct BarChart {
    /// Title.
    pub title: String,
    /// Value axis label.
    pub x_label: String,
    /// (category, value) pairs, drawn top to bottom.
    pub bars: Vec<(String, f64)>,
}

impl BarChart {
    /// The chart as an SVG document.
    pub fn to_svg(&self) -> String {
        let mut s = String::new();
        header(&mut s, &self.title);
        let left = 230.0;
        let width = W - left - 60.0;
        let max = self.bars.iter().map(|b| b.1).fold(0.0, f64::max).max(1e-12);
        let bar_h = ((H - TOP - 60.0) / self.bars.len().max(1) as f64).min(28.0);
        for (i, (name, v)) in self.bars.iter().enumerate() {
            let y = TOP + i as f64 * bar_h;
            let w = v / max * width;
            let _ = writeln!(
                s,
                r##"<rect x="{left}" y="{y:.1}" width="{w:.1}" height="{:.1}" fill="#1f77b4"/><text x="{}" y="{:.1}" font-size="12" text-anchor="end">{}</text><text x="{:.1}" y="{:.1}" font-size="11">{}</text>"##,
                bar_h * 0.8,
                left - 6.0,
                y + bar_h * 0.55,
                esc(name),
                left + w + 4.0,
                y + bar_h * 0.55,
                fmt_value(*v)
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" font-size="14" text-anchor="middle">{}</text>"#,
            left + width / 2.0,
            H - 15.0,
            esc(&self.x_label)
        );
        s.push_str("</svg>\n");
        s
    }
}

fn fmt_tick(t: f64) -> String {
    if t.abs() >= 1000.0 || (t.fract() == 0.0 && t.abs() >= 1.0) {
        format!("{t:.0}")
    } else {
        let s = format!("{t:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn fmt_value(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

fn thin(points: &[(f64, f64)], max: usize) -> Vec<(f64, f64)> {
    if points.len() <= max {
        return points.to_vec();
    }
    let step = points.len().div_ceil(max);
    let mut out: Vec<(f64, f64)> = points.iter().step_by(step).copied().collect();
    if out.last() != points.last() {
        out.extend(points.last());
    }
    out
}

fn fontdb() -> Arc<resvg::usvg::fontdb::Database> {
    static DB: OnceLock<Arc<resvg::usvg::fontdb::Database>> = OnceLock::new();
    DB.get_or_init(|| {
        let mut db = resvg::usvg::fontdb::Database::new();
        db.load_system_fonts();
        db.set_sans_serif_family("DejaVu Sans");
        Arc::new(db)
    })
    .clone()
}

/// Writes `<base>.svg` and `<base>.png` (the PNG at 1.5x for sharp text), each atomically.
pub fn write_chart(svg: &str, base: &Path) -> Result<()> {
    use resvg::{tiny_skia, usvg};
    let svg_path = base.with_extension("svg");
    write_atomic(&svg_path, svg.as_bytes())?;
    let opts = usvg::Options { fontdb: fontdb(), ..Default::default() };
    let tree = usvg::Tree::from_str(svg, &opts)
        .map_err(|e| TrainError::Data(format!("{}: internal SVG error: {e}", svg_path.display())))?;
    let scale = 1.5;
    let size = tree.size();
    let mut pixmap = tiny_skia::Pixmap::new((size.width() * scale) as u32, (size.height() * scale) as u32)
        .ok_or_else(|| TrainError::Data("chart has zero size".into()))?;
    resvg::render(&tree, tiny_skia::Transform::from_scale(scale, scale), &mut pixmap.as_mut());
    let png_path = base.with_extension("png");
    let png = pixmap.encode_png().map_err(|e| TrainError::Data(format!("{}: {e}", png_path.display())))?;
    write_atomic(&png_path, &png)?;
    Ok(())
}
