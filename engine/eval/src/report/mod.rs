//! Reports of `psy eval` and `psy ablate`: the [`Report`] data model, and writers for
//! `report.json`, `report.csv`, `report.md`, `radar.png/.svg` and `deltas.png/.svg`.
//! The same report always writes byte-identical files.

pub mod charts;
pub mod csv;
pub mod deltas;
pub mod error;
pub mod font;
pub mod histogram;
pub mod json;
pub mod markdown;
pub mod model;
pub mod number;
pub mod palette;
pub mod radar;
pub mod write;

pub use charts::{draw_charts, ChartNotes};
pub use csv::{render_csv, write_csv, CSV_HEADER};
pub use error::ReportError;
pub use font::{chart_font, ChartFont};
pub use histogram::{write_histograms, CountPanel};
pub use json::{render_json, write_json};
pub use markdown::{render_markdown, write_markdown};
pub use model::{Delta, ItemCounts, Measure, MeasureKind, Report, Score, Variant};
pub use write::{write_report, write_report_with_font};
