//! `report.json`: the whole [`Report`] as pretty JSON (serde_json prints floats with the
//! shortest round-trip text, so output is deterministic).

use std::path::Path;

use super::error::{io, ReportError};
use super::model::Report;

/// The report as pretty JSON with a trailing newline.
pub fn render_json(report: &Report) -> String {
    // Serialising plain structs, `BTreeMap`s with string keys and finite floats cannot fail.
    let mut s = serde_json::to_string_pretty(report).expect("a report always serialises");
    s.push('\n');
    s
}

/// Writes [`render_json`] to `path`.
pub fn write_json(path: &Path, report: &Report) -> Result<(), ReportError> {
    std::fs::write(path, render_json(report)).map_err(io(path))
}
