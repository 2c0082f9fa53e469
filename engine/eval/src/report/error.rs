//! Errors writing a report.

use std::path::PathBuf;

/// Why a report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The report's numbers or names are inconsistent (names the variant and measure).
    #[error("invalid report: {0}")]
    Invalid(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Plotters failed drawing a chart (names the file).
    #[error("{path}: drawing failed: {reason}")]
    Chart { path: PathBuf, reason: String },
}

/// Maps an I/O error to [`ReportError::Io`] naming `path`.
pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> ReportError + '_ {
    move |source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    }
}
