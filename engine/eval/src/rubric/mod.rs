//! Rubrics as manifests: dimensions with scales and level texts, the verdict JSON schema
//! derived from them, verdict validation and the judge prompt.

mod merge;
mod modality;
mod prompt;
mod schema;
mod shipped;
mod spec;
mod verdict;

pub use crate::judge::ChatMessage;
pub use crate::think::strip_think;
pub use schema::REASON_MAX_CHARS;
pub use shipped::shipped_ids;
pub use spec::{Dimension, Rubric, MAX_LEVELS, RUBRIC_SCHEMA};
pub use verdict::{DimensionScore, Verdict, VerdictError};
