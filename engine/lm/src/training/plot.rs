//! The loss curve as a PNG (training loss and validation loss by step).

use std::path::Path;

use plotters::prelude::*;
use psy_eval::report::font::FAMILY;

/// Draws `loss` and `eval_loss` of the metrics rows. Axis labels need a font, found by the
/// report charts' lookup (`psy_eval::report::font`: `$PSY_FONT`, else a system sans-serif);
/// without one the curve is drawn without text.
pub fn loss_png(path: &Path, rows: &[serde_json::Value]) -> Result<(), String> {
    let series = |key: &str| -> Vec<(f64, f64)> {
        rows.iter()
            .filter_map(|r| Some((r["step"].as_f64()?, r[key].as_f64()?)))
            .collect()
    };
    let (train, eval) = (series("loss"), series("eval_loss"));
    if train.is_empty() {
        return Err("no loss rows".into());
    }
    let has_font = psy_eval::report::font::chart_font().has_text();
    let max_x = train.iter().chain(&eval).map(|p| p.0).fold(1.0, f64::max);
    let max_y = train.iter().chain(&eval).map(|p| p.1).fold(0.0, f64::max) * 1.05;
    let root = BitMapBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut b = ChartBuilder::on(&root);
    b.margin(20);
    if has_font {
        b.caption("loss", (FAMILY, 24))
            .x_label_area_size(40)
            .y_label_area_size(50);
    }
    let mut chart = b
        .build_cartesian_2d(0.0..max_x, 0.0..max_y.max(1e-6))
        .map_err(|e| e.to_string())?;
    if has_font {
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc("loss")
            .draw()
            .map_err(|e| e.to_string())?;
    }
    chart
        .draw_series(LineSeries::new(train, &BLUE))
        .map_err(|e| e.to_string())?;
    if !eval.is_empty() {
        chart
            .draw_series(LineSeries::new(eval, &RED))
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())
}
