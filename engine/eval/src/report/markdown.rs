//! `report.md`: the tables a reader looks at first: variants, scores (measures as rows,
//! variants as columns), differences from the base, failed items, charts and provenance.

use std::fmt::Write as _;
use std::path::Path;

use super::charts::ChartNotes;
use super::error::{io, ReportError};
use super::model::{MeasureKind, Report, Score};
use super::number::{fixed, signed};

/// Decimals printed in the tables.
const DIGITS: usize = 3;
/// Failed-item lines listed per variant before "... and N more".
const FAILURES_LISTED: usize = 20;

/// Makes text safe inside a table cell (no pipes, no line breaks).
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

fn mean_cell(s: Option<&Score>) -> String {
    match s {
        Some(s) => format!(
            "{} [{}, {}] (n={})",
            fixed(s.mean, DIGITS),
            fixed(s.low, DIGITS),
            fixed(s.high, DIGITS),
            s.n
        ),
        None => "–".into(),
    }
}

fn delta_cell(s: Option<&Score>) -> String {
    match s.and_then(|s| s.delta) {
        Some(d) => {
            // An interval that excludes zero is marked, so a reader sees which differences hold.
            let mark = if d.low > 0.0 || d.high < 0.0 {
                " *"
            } else {
                ""
            };
            format!(
                "{} [{}, {}]{mark}",
                signed(d.mean, DIGITS),
                signed(d.low, DIGITS),
                signed(d.high, DIGITS)
            )
        }
        None => "–".into(),
    }
}

fn scale(kind: MeasureKind) -> String {
    match kind {
        MeasureKind::Rubric { min, max } => format!("{}–{}", fixed(min, 0), fixed(max, 0)),
        MeasureKind::Metric => "metric".into(),
    }
}

fn table_row(cells: &[String]) -> String {
    format!("| {} |\n", cells.join(" | "))
}

/// The Markdown text; `charts` says which chart files were drawn and any caveat.
pub fn render_markdown(report: &Report, charts: &ChartNotes) -> String {
    let mut md = String::new();
    let base = &report.base;
    let _ = writeln!(md, "# Evaluation report: {}\n", cell(&report.name));
    let _ = writeln!(
        md,
        "Base variant: `{base}`. Scores are `mean [low, high] (n)` with a 95% interval of the \
         mean; differences are paired (variant − base, over the items both scored) with their \
         95% interval, marked `*` when the interval excludes zero.\n"
    );

    md.push_str("## Variants\n\n");
    md.push_str(&table_row(&[
        "variant".into(),
        "description".into(),
        "scored".into(),
        "failed".into(),
    ]));
    md.push_str("|---|---|---:|---:|\n");
    for v in &report.variants {
        let name = if &v.name == base {
            format!("{} (base)", cell(&v.name))
        } else {
            cell(&v.name)
        };
        md.push_str(&table_row(&[
            name,
            cell(&v.description),
            v.items.scored.to_string(),
            v.items.failed_total().to_string(),
        ]));
    }

    md.push_str("\n## Scores\n\n");
    let mut head = vec!["measure".to_string(), "scale".to_string()];
    head.extend(report.variants.iter().map(|v| cell(&v.name)));
    md.push_str(&table_row(&head));
    md.push_str(&format!(
        "|---|---|{}\n",
        "---|".repeat(report.variants.len())
    ));
    for m in &report.measures {
        let mut row = vec![cell(&m.id), scale(m.kind)];
        row.extend(
            report
                .variants
                .iter()
                .map(|v| mean_cell(v.scores.get(&m.id))),
        );
        md.push_str(&table_row(&row));
    }

    let others: Vec<_> = report.variants.iter().filter(|v| &v.name != base).collect();
    if !others.is_empty() {
        let _ = writeln!(md, "\n## Differences from `{base}`\n");
        let mut head = vec!["measure".to_string()];
        head.extend(
            others
                .iter()
                .map(|v| format!("{} − {}", cell(&v.name), cell(base))),
        );
        md.push_str(&table_row(&head));
        md.push_str(&format!("|---|{}\n", "---|".repeat(others.len())));
        for m in &report.measures {
            let mut row = vec![cell(&m.id)];
            row.extend(others.iter().map(|v| delta_cell(v.scores.get(&m.id))));
            md.push_str(&table_row(&row));
        }
    }

    let failing: Vec<_> = report
        .variants
        .iter()
        .filter(|v| v.items.failed_total() > 0)
        .collect();
    if !failing.is_empty() {
        md.push_str("\n## Failed items\n\n");
        for v in failing {
            let reasons: Vec<String> = v
                .items
                .failed
                .iter()
                .map(|(r, n)| format!("{}: {n}", cell(r)))
                .collect();
            let _ = writeln!(
                md,
                "- **{}**: {} failed ({})",
                cell(&v.name),
                v.items.failed_total(),
                reasons.join(", ")
            );
            for f in v.items.failures.iter().take(FAILURES_LISTED) {
                let _ = writeln!(md, "  - `{}`", f.replace('`', "'"));
            }
            if v.items.failures.len() > FAILURES_LISTED {
                let _ = writeln!(
                    md,
                    "  - ... and {} more",
                    v.items.failures.len() - FAILURES_LISTED
                );
            }
        }
    }

    md.push_str("\n## Charts\n\n");
    // One paragraph per file or list, so a list item never swallows the next image.
    let mut paras: Vec<String> = charts
        .files
        .iter()
        .map(|f| {
            if f.ends_with(".png") {
                format!("![{f}]({f})")
            } else {
                format!("Vector version: [{f}]({f})")
            }
        })
        .collect();
    if !charts.notes.is_empty() {
        let notes: Vec<String> = charts.notes.iter().map(|n| format!("- {n}")).collect();
        paras.push(notes.join("\n"));
    }
    if paras.is_empty() {
        paras.push("(none drawn)".into());
    }
    md.push_str(&paras.join("\n\n"));
    md.push('\n');

    md.push_str("\n## Provenance\n");
    for v in &report.variants {
        let _ = writeln!(md, "\n### {}\n", cell(&v.name));
        if v.provenance.is_empty() {
            md.push_str("(none recorded)\n");
            continue;
        }
        md.push_str("| key | value |\n|---|---|\n");
        for (k, val) in &v.provenance {
            md.push_str(&table_row(&[
                cell(k),
                format!("`{}`", val.replace('`', "'")),
            ]));
        }
    }
    md
}

/// Writes [`render_markdown`] to `path`.
pub fn write_markdown(
    path: &Path,
    report: &Report,
    charts: &ChartNotes,
) -> Result<(), ReportError> {
    std::fs::write(path, render_markdown(report, charts)).map_err(io(path))
}
