//! The radar (spider) chart: one axis per rubric dimension, each normalised to its own scale
//! (centre = scale minimum, rim = maximum), one polygon per variant, as in the PsyLLM paper's
//! figure. Plotters has no radar primitive, so it is drawn in pixel space: rings and spokes as
//! polylines, each variant as one filled `Polygon` plus its outline.

use std::f64::consts::PI;
use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::error::ReportError;
use super::font::FAMILY;
use super::model::Report;
use super::number::fixed;
use super::palette::{variant_color, AXIS, GRID, INK};

/// Width of `radar.png` / `radar.svg`.
pub const RADAR_WIDTH: u32 = 1100;
/// Legend entries per row.
const LEGEND_COLUMNS: usize = 3;
/// Top of the legend, below the lowest axis label.
const LEGEND_TOP: i32 = 770;
const LEGEND_ROW_PX: i32 = 30;

/// Pixel size of the radar of a report with `variants` variants (the legend grows downwards).
pub fn radar_size(variants: usize) -> (u32, u32) {
    let rows = variants.div_ceil(LEGEND_COLUMNS).max(1) as i32;
    (RADAR_WIDTH, (LEGEND_TOP + rows * LEGEND_ROW_PX + 10) as u32)
}

/// Rings drawn at these fractions of each scale.
const RINGS: [f64; 4] = [0.25, 0.5, 0.75, 1.0];

/// Normalised position of `value` on `min..=max`, clamped to the rim and centre.
fn unit(value: f64, min: f64, max: f64) -> f64 {
    ((value - min) / (max - min)).clamp(0.0, 1.0)
}

/// Draws the radar of `report` on `area`; `text` is false when no font is available. Returns
/// notes for the report (e.g. a variant without a score on some dimension).
pub fn draw_radar<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    report: &Report,
    text: bool,
) -> Result<Vec<String>, String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let dims: Vec<_> = report.rubric_measures().collect();
    let mut notes = Vec::new();
    if dims.len() < 3 {
        notes.push(format!(
            "radar: only {} rubric dimension(s), so each variant is drawn as a line, not an area",
            dims.len()
        ));
    }
    area.fill(&WHITE).map_err(err)?;
    let (w, _) = area.dim_in_pixel();
    let centre = (w as f64 / 2.0, 420.0);
    let radius = 260.0;
    let k = dims.len().max(1);
    // Axis i points up for i = 0 and goes clockwise.
    let angle = |i: usize| -PI / 2.0 + 2.0 * PI * i as f64 / k as f64;
    let at = |i: usize, r: f64| -> (i32, i32) {
        let a = angle(i);
        (
            (centre.0 + radius * r * a.cos()).round() as i32,
            (centre.1 + radius * r * a.sin()).round() as i32,
        )
    };

    for ring in RINGS {
        let mut pts: Vec<_> = (0..k).map(|i| at(i, ring)).collect();
        pts.push(pts[0]);
        area.draw(&PathElement::new(pts, GRID.stroke_width(1)))
            .map_err(err)?;
    }
    for i in 0..dims.len() {
        area.draw(&PathElement::new(
            vec![at(i, 0.0), at(i, 1.0)],
            AXIS.stroke_width(1),
        ))
        .map_err(err)?;
    }

    for (vi, v) in report.variants.iter().enumerate() {
        let color = variant_color(vi);
        let pts: Vec<(i32, i32)> = dims
            .iter()
            .enumerate()
            .map(|(i, (m, min, max))| match v.scores.get(&m.id) {
                Some(s) => at(i, unit(s.mean, *min, *max)),
                None => {
                    notes.push(format!(
                        "radar: variant `{}` has no score on `{}`; drawn at the scale minimum",
                        v.name, m.id
                    ));
                    at(i, 0.0)
                }
            })
            .collect();
        if pts.is_empty() {
            continue;
        }
        area.draw(&Polygon::new(pts.clone(), color.mix(0.12).filled()))
            .map_err(err)?;
        let mut outline = pts.clone();
        outline.push(pts[0]);
        area.draw(&PathElement::new(outline, color.stroke_width(3)))
            .map_err(err)?;
        for p in pts {
            area.draw(&Circle::new(p, 4, color.filled())).map_err(err)?;
        }
    }

    if !text {
        return Ok(notes);
    }
    let title = TextStyle::from((FAMILY, 26).into_font())
        .color(&INK)
        .pos(Pos::new(HPos::Center, VPos::Top));
    area.draw(&Text::new(
        format!("{}: rubric scores by variant", report.name),
        (centre.0 as i32, 18),
        title,
    ))
    .map_err(err)?;
    let label = |h: HPos, v: VPos| {
        TextStyle::from((FAMILY, 17).into_font())
            .color(&INK)
            .pos(Pos::new(h, v))
    };
    let small = |h: HPos, v: VPos| {
        TextStyle::from((FAMILY, 14).into_font())
            .color(&AXIS)
            .pos(Pos::new(h, v))
    };
    for (i, (m, min, max)) in dims.iter().enumerate() {
        let a = angle(i);
        let (x, y) = at(i, 1.0);
        let (dx, dy) = (a.cos(), a.sin());
        // Anchor the label on the side facing the chart so it never overlaps the rim.
        let h = if dx > 0.25 {
            HPos::Left
        } else if dx < -0.25 {
            HPos::Right
        } else {
            HPos::Center
        };
        let v = if dy > 0.25 {
            VPos::Top
        } else if dy < -0.25 {
            VPos::Bottom
        } else {
            VPos::Center
        };
        let (lx, ly) = (x + (dx * 14.0) as i32, y + (dy * 14.0) as i32);
        let scale = format!("({}–{})", fixed(*min, 0), fixed(*max, 0));
        // Name and scale on two lines; the second line sits below the first.
        let (name_y, scale_y) = match v {
            VPos::Bottom => (ly - 18, ly),
            VPos::Top => (ly, ly + 20),
            VPos::Center => (ly - 10, ly + 10),
        };
        area.draw(&Text::new(m.id.clone(), (lx, name_y), label(h, v)))
            .map_err(err)?;
        area.draw(&Text::new(scale, (lx, scale_y), small(h, v)))
            .map_err(err)?;
    }
    if !dims.is_empty() {
        for ring in RINGS {
            let (x, y) = at(0, ring);
            area.draw(&Text::new(
                format!("{}%", fixed(ring * 100.0, 0)),
                (x + 5, y + 2),
                small(HPos::Left, VPos::Top),
            ))
            .map_err(err)?;
        }
    }

    let caption = "axes normalised to each dimension's scale: centre = minimum, rim = maximum";
    area.draw(&Text::new(
        caption,
        (centre.0 as i32, 56),
        small(HPos::Center, VPos::Top),
    ))
    .map_err(err)?;
    // Legend below the chart.
    let col_w = (w as i32 - 80) / LEGEND_COLUMNS as i32;
    for (vi, v) in report.variants.iter().enumerate() {
        let (col, row) = ((vi % LEGEND_COLUMNS) as i32, (vi / LEGEND_COLUMNS) as i32);
        let (x, y) = (40 + col * col_w, LEGEND_TOP + row * LEGEND_ROW_PX);
        let color = variant_color(vi);
        area.draw(&Rectangle::new(
            [(x, y - 8), (x + 28, y + 8)],
            color.filled(),
        ))
        .map_err(err)?;
        let name = if v.name == report.base {
            format!("{} (base)", v.name)
        } else {
            v.name.clone()
        };
        area.draw(&Text::new(
            name,
            (x + 38, y),
            label(HPos::Left, VPos::Center),
        ))
        .map_err(err)?;
    }
    Ok(notes)
}

fn chart_err(path: &Path) -> impl Fn(String) -> ReportError + '_ {
    move |reason| ReportError::Chart {
        path: path.to_path_buf(),
        reason,
    }
}

/// Writes `radar.png` and `radar.svg` into `dir`; `None` when the report has no rubric
/// dimension (nothing to draw), else the drawing notes.
pub fn write_radar(
    dir: &Path,
    report: &Report,
    text: bool,
) -> Result<Option<Vec<String>>, ReportError> {
    if report.rubric_measures().next().is_none() {
        return Ok(None);
    }
    let png = dir.join("radar.png");
    let notes = {
        let root = BitMapBackend::new(&png, radar_size(report.variants.len())).into_drawing_area();
        let notes = draw_radar(&root, report, text).map_err(chart_err(&png))?;
        root.present().map_err(|e| chart_err(&png)(e.to_string()))?;
        notes
    };
    let svg = dir.join("radar.svg");
    let root = SVGBackend::new(&svg, radar_size(report.variants.len())).into_drawing_area();
    draw_radar(&root, report, text).map_err(chart_err(&svg))?;
    root.present().map_err(|e| chart_err(&svg)(e.to_string()))?;
    Ok(Some(notes))
}
