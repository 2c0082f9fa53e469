//! Count histograms (a data set's distributions, e.g. `psy data stats`, the paper's Figure 3):
//! one panel per distribution, one horizontal bar per category labelled with its count, panels
//! stacked in one PNG and one SVG.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::error::ReportError;
use super::font::FAMILY;
use super::palette::{variant_color, AXIS, INK};

/// One distribution: a title and `(category, count)` bars, drawn in the given order.
#[derive(Debug, Clone, PartialEq)]
pub struct CountPanel {
    pub title: String,
    pub bars: Vec<(String, u64)>,
}

const WIDTH: u32 = 900;
const ROW_PX: u32 = 26;
const PANEL_HEAD_PX: u32 = 44;
const PANEL_GAP_PX: u32 = 16;
const TITLE_PX: u32 = 50;
const LABEL_PX: i32 = 230;
const COUNT_PX: i32 = 80;

fn panel_height(p: &CountPanel) -> u32 {
    PANEL_HEAD_PX + ROW_PX * p.bars.len().max(1) as u32 + PANEL_GAP_PX
}

/// Draws the panels on `area`; `text` is false when no font is available.
pub fn draw_histograms<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    panels: &[CountPanel],
    text: bool,
) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    area.fill(&WHITE).map_err(err)?;
    let (w, _) = area.dim_in_pixel();
    let style = |size: u32, h: HPos| {
        TextStyle::from((FAMILY, size).into_font())
            .color(&INK)
            .pos(Pos::new(h, VPos::Center))
    };
    if text {
        area.draw(&Text::new(
            title.to_string(),
            (w as i32 / 2, 24),
            style(24, HPos::Center),
        ))
        .map_err(err)?;
    }
    let bar_max = w as i32 - LABEL_PX - COUNT_PX - 20;
    let mut y = TITLE_PX as i32;
    for (pi, p) in panels.iter().enumerate() {
        if text {
            area.draw(&Text::new(
                p.title.clone(),
                (20, y + 18),
                style(18, HPos::Left),
            ))
            .map_err(err)?;
        }
        let top = y + PANEL_HEAD_PX as i32;
        let max = p.bars.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
        for (bi, (label, n)) in p.bars.iter().enumerate() {
            let row = top + bi as i32 * ROW_PX as i32;
            let len = (*n as f64 / max as f64 * bar_max as f64).round() as i32;
            area.draw(&Rectangle::new(
                [
                    (LABEL_PX, row + 4),
                    (LABEL_PX + len.max(1), row + ROW_PX as i32 - 4),
                ],
                variant_color(pi).filled(),
            ))
            .map_err(err)?;
            if text {
                let mid = row + ROW_PX as i32 / 2;
                area.draw(&Text::new(
                    label.clone(),
                    (LABEL_PX - 8, mid),
                    style(15, HPos::Right),
                ))
                .map_err(err)?;
                area.draw(&Text::new(
                    n.to_string(),
                    (LABEL_PX + len.max(1) + 8, mid),
                    style(15, HPos::Left),
                ))
                .map_err(err)?;
            }
        }
        let bottom = top + ROW_PX as i32 * p.bars.len().max(1) as i32;
        area.draw(&PathElement::new(
            vec![(LABEL_PX, top), (LABEL_PX, bottom)],
            AXIS.stroke_width(1),
        ))
        .map_err(err)?;
        y += panel_height(p) as i32;
    }
    Ok(())
}

/// Writes `<stem>.png` and `<stem>.svg` into `dir`.
pub fn write_histograms(
    dir: &Path,
    stem: &str,
    title: &str,
    panels: &[CountPanel],
    text: bool,
) -> Result<(), ReportError> {
    let height = TITLE_PX + panels.iter().map(panel_height).sum::<u32>();
    let size = (WIDTH, height.max(TITLE_PX + 40));
    let chart = |path: &Path| {
        let path = path.to_path_buf();
        move |reason: String| ReportError::Chart {
            path: path.clone(),
            reason,
        }
    };
    let png = dir.join(format!("{stem}.png"));
    {
        let root = BitMapBackend::new(&png, size).into_drawing_area();
        draw_histograms(&root, title, panels, text).map_err(chart(&png))?;
        root.present().map_err(|e| chart(&png)(e.to_string()))?;
    }
    let svg = dir.join(format!("{stem}.svg"));
    let root = SVGBackend::new(&svg, size).into_drawing_area();
    draw_histograms(&root, title, panels, text).map_err(chart(&svg))?;
    root.present().map_err(|e| chart(&svg)(e.to_string()))?;
    Ok(())
}
