//! Evaluation for psy: rubrics declared in TOML manifests, judges (a local psy model or any
//! OpenAI-compatible endpoint) whose verdicts validate against the rubric's JSON schema and are
//! cached in SQLite, automatic metrics that need no judge, agreement and bootstrap statistics,
//! and the reports and charts of `psy eval` and `psy ablate`.
//!
//! Nothing here loads a model: the runner in the `psy` crate decodes and hands replies over.

pub mod dataset;
pub mod judge;
pub mod metrics;
pub mod report;
pub mod rubric;
pub mod stats;
pub mod think;
