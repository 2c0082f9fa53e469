//! The deltas chart: for every measure, one horizontal bar per non-base variant showing its
//! paired difference from the base, with the 95% interval as an error bar and a zero line.
//! Rubric dimensions and automatic metrics are on different units, so each gets its own panel
//! (and x axis); every bar is also labelled with its number.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::error::ReportError;
use super::font::FAMILY;
use super::model::{Delta, MeasureKind, Report};
use super::number::{fixed, signed};
use super::palette::{variant_color, AXIS, INK};

/// Width of `deltas.png` / `deltas.svg`; the height grows with the number of bars.
pub const DELTAS_WIDTH: u32 = 1100;
const ROW_PX: u32 = 30;
const GROUP_GAP_PX: u32 = 14;
const PANEL_EXTRA_PX: u32 = 110;
const TITLE_PX: u32 = 50;
const LEGEND_ROW_PX: u32 = 30;
const LEGEND_LEFT: i32 = 40;
const LABEL_AREA_PX: u32 = 260;
const VALUE_AREA_PX: u32 = 200;

/// One bar: which variant (report index, for the colour), its difference.
struct Bar {
    variant: usize,
    delta: Delta,
}

/// One measure's bars.
struct Group {
    measure: String,
    bars: Vec<Bar>,
}

/// One panel: rubric dimensions or automatic metrics.
struct Panel {
    title: &'static str,
    groups: Vec<Group>,
}

impl Panel {
    fn rows(&self) -> usize {
        self.groups.iter().map(|g| g.bars.len()).sum()
    }
    fn height(&self) -> u32 {
        self.rows() as u32 * ROW_PX + self.groups.len() as u32 * GROUP_GAP_PX + PANEL_EXTRA_PX
    }
}

fn panels(report: &Report) -> Vec<Panel> {
    let mut rubric = Panel {
        title: "rubric dimensions (difference in scale points)",
        groups: vec![],
    };
    let mut metric = Panel {
        title: "automatic metrics (difference in metric units)",
        groups: vec![],
    };
    for m in &report.measures {
        let bars: Vec<Bar> = report
            .variants
            .iter()
            .enumerate()
            .filter(|(_, v)| v.name != report.base)
            .filter_map(|(i, v)| {
                v.scores
                    .get(&m.id)
                    .and_then(|s| s.delta)
                    .map(|delta| Bar { variant: i, delta })
            })
            .collect();
        if bars.is_empty() {
            continue;
        }
        let g = Group {
            measure: m.id.clone(),
            bars,
        };
        match m.kind {
            MeasureKind::Rubric { .. } => rubric.groups.push(g),
            MeasureKind::Metric => metric.groups.push(g),
        }
    }
    [rubric, metric]
        .into_iter()
        .filter(|p| !p.groups.is_empty())
        .collect()
}

/// Legend entries (report index, name) of the non-base variants with their pixel positions
/// (x, row), wrapped to the chart width. Widths are estimated from the name length.
fn legend_layout(report: &Report) -> Vec<(usize, &str, i32, u32)> {
    let mut out = Vec::new();
    let (mut x, mut row) = (LEGEND_LEFT, 0);
    for (vi, v) in report.variants.iter().enumerate() {
        if v.name == report.base {
            continue;
        }
        let w = 40 + 10 * v.name.chars().count() as i32;
        if x > LEGEND_LEFT && x + w > DELTAS_WIDTH as i32 - LEGEND_LEFT {
            (x, row) = (LEGEND_LEFT, row + 1);
        }
        out.push((vi, v.name.as_str(), x, row));
        x += w;
    }
    out
}

fn legend_height(report: &Report) -> u32 {
    let rows = legend_layout(report).last().map_or(1, |l| l.3 + 1);
    rows * LEGEND_ROW_PX + 20
}

/// Total pixel height of the chart for `report`, or `None` when there is no difference to draw.
pub fn deltas_height(report: &Report) -> Option<u32> {
    let ps = panels(report);
    (!ps.is_empty())
        .then(|| TITLE_PX + legend_height(report) + ps.iter().map(Panel::height).sum::<u32>())
}

/// X range covering zero and every interval, with a margin.
fn x_range(p: &Panel) -> (f64, f64) {
    let (mut lo, mut hi) = (0.0f64, 0.0f64);
    for b in p.groups.iter().flat_map(|g| &g.bars) {
        lo = lo.min(b.delta.low).min(b.delta.mean);
        hi = hi.max(b.delta.high).max(b.delta.mean);
    }
    if hi - lo < 1e-12 {
        return (-1.0, 1.0);
    }
    let pad = (hi - lo) * 0.08;
    (lo - pad, hi + pad)
}

fn draw_panel<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    text: bool,
) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let (x0, x1) = x_range(panel);
    // Rows are laid out top-down in "row units"; a group gap is half a row.
    let gap = GROUP_GAP_PX as f64 / ROW_PX as f64;
    let extent = panel.rows() as f64 + gap * panel.groups.len() as f64;
    let mut b = ChartBuilder::on(area);
    b.margin_top(10)
        .margin_bottom(10)
        .margin_left(10)
        .margin_right(VALUE_AREA_PX);
    if text {
        b.caption(panel.title, (FAMILY, 19).into_font().color(&INK))
            .x_label_area_size(45)
            .y_label_area_size(LABEL_AREA_PX);
    } else {
        b.y_label_area_size(LABEL_AREA_PX);
    }
    // Enough decimals for ticks about a tenth of the range apart.
    let digits = ((-(x1 - x0).log10()).ceil() + 1.0).clamp(0.0, 6.0) as usize;
    let mut chart = b.build_cartesian_2d(x0..x1, 0.0..extent).map_err(err)?;
    if text {
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(0)
            .x_labels(8)
            .light_line_style(WHITE.mix(0.0))
            .bold_line_style(RGBColor(225, 225, 225))
            .x_label_formatter(&|x| fixed(*x, digits))
            .x_desc("variant − base (95% interval)")
            .label_style((FAMILY, 14).into_font().color(&AXIS))
            .axis_desc_style((FAMILY, 15).into_font().color(&INK))
            .draw()
            .map_err(err)?;
    }
    // Top-down: y of row r (in row units from the top) is extent - r.
    let mut r = 0.0;
    let label = |h: HPos| {
        TextStyle::from((FAMILY, 15).into_font())
            .color(&INK)
            .pos(Pos::new(h, VPos::Center))
    };
    for g in &panel.groups {
        r += gap / 2.0;
        let first = r;
        for bar in &g.bars {
            let y = extent - r - 0.5;
            let color = variant_color(bar.variant);
            let d = bar.delta;
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(0.0, y - 0.34), (d.mean, y + 0.34)],
                    color.mix(0.85).filled(),
                )))
                .map_err(err)?;
            let whisker = AXIS.stroke_width(2);
            chart
                .draw_series([
                    PathElement::new(vec![(d.low, y), (d.high, y)], whisker),
                    PathElement::new(vec![(d.low, y - 0.2), (d.low, y + 0.2)], whisker),
                    PathElement::new(vec![(d.high, y - 0.2), (d.high, y + 0.2)], whisker),
                ])
                .map_err(err)?;
            if text {
                let (px, py) = chart.backend_coord(&(x1, y));
                root.draw(&Text::new(
                    format!(
                        "{} [{}, {}]",
                        signed(d.mean, 3),
                        signed(d.low, 3),
                        signed(d.high, 3)
                    ),
                    (px + 10, py),
                    label(HPos::Left),
                ))
                .map_err(err)?;
            }
            r += 1.0;
        }
        if text {
            let mid = extent - (first + r) / 2.0;
            let (px, py) = chart.backend_coord(&(x0, mid));
            root.draw(&Text::new(
                g.measure.clone(),
                (px - 10, py),
                label(HPos::Right),
            ))
            .map_err(err)?;
        }
        r += gap / 2.0;
    }
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![(0.0, 0.0), (0.0, extent)],
            BLACK.stroke_width(2),
        )))
        .map_err(err)?;
    Ok(())
}

/// Draws the deltas chart of `report` on `area` (sized by [`deltas_height`]); `text` is false
/// when no font is available.
pub fn draw_deltas<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    report: &Report,
    text: bool,
) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    area.fill(&WHITE).map_err(err)?;
    let (w, _) = area.dim_in_pixel();
    if text {
        area.draw(&Text::new(
            format!("{}: difference from `{}`", report.name, report.base),
            (w as i32 / 2, 14),
            TextStyle::from((FAMILY, 24).into_font())
                .color(&INK)
                .pos(Pos::new(HPos::Center, VPos::Top)),
        ))
        .map_err(err)?;
        // Legend: one dot per non-base variant.
        for (vi, name, x, row) in legend_layout(report) {
            let y = TITLE_PX as i32 + 18 + (row * LEGEND_ROW_PX) as i32;
            area.draw(&Circle::new((x + 8, y), 8, variant_color(vi).filled()))
                .map_err(err)?;
            area.draw(&Text::new(
                name.to_string(),
                (x + 24, y),
                TextStyle::from((FAMILY, 16).into_font())
                    .color(&INK)
                    .pos(Pos::new(HPos::Left, VPos::Center)),
            ))
            .map_err(err)?;
        }
    }
    let mut rest = area.margin(TITLE_PX + legend_height(report), 0, 0, 0);
    for p in panels(report) {
        let (top, bottom) = rest.split_vertically(p.height());
        draw_panel(area, &top, &p, text)?;
        rest = bottom;
    }
    Ok(())
}

fn chart_err(path: &Path) -> impl Fn(String) -> ReportError + '_ {
    move |reason| ReportError::Chart {
        path: path.to_path_buf(),
        reason,
    }
}

/// Writes `deltas.png` and `deltas.svg` into `dir`; `false` when there is no difference to draw
/// (a single variant).
pub fn write_deltas(dir: &Path, report: &Report, text: bool) -> Result<bool, ReportError> {
    let Some(h) = deltas_height(report) else {
        return Ok(false);
    };
    let size = (DELTAS_WIDTH, h);
    let png = dir.join("deltas.png");
    {
        let root = BitMapBackend::new(&png, size).into_drawing_area();
        draw_deltas(&root, report, text).map_err(chart_err(&png))?;
        root.present().map_err(|e| chart_err(&png)(e.to_string()))?;
    }
    let svg = dir.join("deltas.svg");
    let root = SVGBackend::new(&svg, size).into_drawing_area();
    draw_deltas(&root, report, text).map_err(chart_err(&svg))?;
    root.present().map_err(|e| chart_err(&svg)(e.to_string()))?;
    Ok(true)
}
