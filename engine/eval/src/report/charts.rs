//! Draws both charts of a report and records what was drawn, for `report.md`.

use std::path::Path;

use super::deltas::write_deltas;
use super::error::ReportError;
use super::font::ChartFont;
use super::model::Report;
use super::radar::write_radar;

/// Which chart files were written and what a reader should know about them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChartNotes {
    /// File names written into the report directory, in order.
    pub files: Vec<String>,
    /// Caveats: no font, a chart skipped and why, a missing score drawn at the minimum.
    pub notes: Vec<String>,
}

/// Draws `radar.png/.svg` (when the report has rubric dimensions) and `deltas.png/.svg` (when
/// it has more than one variant) into `dir`, with text when `font` was found.
pub fn draw_charts(
    dir: &Path,
    report: &Report,
    font: &ChartFont,
) -> Result<ChartNotes, ReportError> {
    let mut out = ChartNotes::default();
    if !font.has_text() {
        out.notes.push(font.describe());
    }
    match write_radar(dir, report, font.has_text())? {
        Some(notes) => {
            out.files.extend(["radar.png".into(), "radar.svg".into()]);
            out.notes.extend(notes);
        }
        None => out
            .notes
            .push("no radar chart: the report has no rubric dimension".into()),
    }
    if write_deltas(dir, report, font.has_text())? {
        out.files.extend(["deltas.png".into(), "deltas.svg".into()]);
    } else {
        out.notes
            .push("no deltas chart: no variant has a difference from the base".into());
    }
    Ok(out)
}
