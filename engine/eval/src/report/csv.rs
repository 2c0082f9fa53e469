//! `report.csv`: one row per variant × measure (variants in report order, measures in report
//! order), numbers at full precision; empty cells where a variant has no score or no delta.

use std::path::Path;

use super::error::{io, ReportError};
use super::model::{MeasureKind, Report};
use super::number::exact;

/// Column names of `report.csv`.
pub const CSV_HEADER: &[&str] = &[
    "variant",
    "measure",
    "kind",
    "scale_min",
    "scale_max",
    "n",
    "mean",
    "ci_low",
    "ci_high",
    "sd",
    "delta_n",
    "delta_mean",
    "delta_low",
    "delta_high",
    "scored_items",
    "failed_items",
];

/// Quotes a field when it holds a comma, quote or line break (RFC 4180).
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The CSV text (header + rows, `\n` line ends).
pub fn render_csv(report: &Report) -> String {
    let mut out = CSV_HEADER.join(",");
    out.push('\n');
    for v in &report.variants {
        for m in &report.measures {
            let (kind, lo, hi) = match m.kind {
                MeasureKind::Rubric { min, max } => ("rubric", exact(min), exact(max)),
                MeasureKind::Metric => ("metric", String::new(), String::new()),
            };
            let mut row = vec![field(&v.name), field(&m.id), kind.into(), lo, hi];
            match v.scores.get(&m.id) {
                Some(s) => {
                    row.extend([
                        s.n.to_string(),
                        exact(s.mean),
                        exact(s.low),
                        exact(s.high),
                        exact(s.sd),
                    ]);
                    match s.delta {
                        Some(d) => row.extend([
                            d.n.to_string(),
                            exact(d.mean),
                            exact(d.low),
                            exact(d.high),
                        ]),
                        None => row.extend(std::iter::repeat_n(String::new(), 4)),
                    }
                }
                None => {
                    row.push("0".into());
                    row.extend(std::iter::repeat_n(String::new(), 8));
                }
            }
            row.extend([
                v.items.scored.to_string(),
                v.items.failed_total().to_string(),
            ]);
            out.push_str(&row.join(","));
            out.push('\n');
        }
    }
    out
}

/// Writes [`render_csv`] to `path`.
pub fn write_csv(path: &Path, report: &Report) -> Result<(), ReportError> {
    std::fs::write(path, render_csv(report)).map_err(io(path))
}
