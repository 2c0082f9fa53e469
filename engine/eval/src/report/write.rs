//! Writes every file of a report into one directory.

use std::path::Path;

use super::charts::{draw_charts, ChartNotes};
use super::csv::write_csv;
use super::error::{io, ReportError};
use super::font::{chart_font, ChartFont};
use super::json::write_json;
use super::markdown::write_markdown;
use super::model::Report;

/// Validates `report` and writes `report.json`, `report.csv`, the charts and `report.md` into
/// `dir` (created if needed), using the system font ([`chart_font`]) for chart text.
pub fn write_report(dir: &Path, report: &Report) -> Result<ChartNotes, ReportError> {
    write_report_with_font(dir, report, &chart_font())
}

/// [`write_report`] with an explicit font choice (`ChartFont::Missing` draws charts without
/// text and says so in `report.md`).
pub fn write_report_with_font(
    dir: &Path,
    report: &Report,
    font: &ChartFont,
) -> Result<ChartNotes, ReportError> {
    report.validate()?;
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    write_json(&dir.join("report.json"), report)?;
    write_csv(&dir.join("report.csv"), report)?;
    let charts = draw_charts(dir, report, font)?;
    write_markdown(&dir.join("report.md"), report, &charts)?;
    Ok(charts)
}
