//! `psy eval` and `psy ablate`: decode every eval item with a run (or with each variant of an
//! ablation), score the replies with automatic metrics and, when a judge is configured, with
//! rubric judges, and write the comparison (report.json/csv/md, radar and delta charts).
//!
//! A run directory holds one sub-directory per cell (variant) with its decoded replies and
//! verdicts as JSONL, appended item by item: an interrupted run resumes where it stopped and
//! skips finished cells.

mod agreement;
mod cell;
mod cell_store;
mod items;
mod judging;
pub mod local_judge;
mod measures;
mod provenance;
mod ratings;
mod runner;
mod summarize;
mod variant_train;

pub use agreement::{agree, compare, AgreementReport, MeasureAgreement};
pub use ratings::{Ratings, RatingsError, CSV_HEADER};
pub use runner::{ablate, eval_run, EvalOptions, EvalOutcome};
