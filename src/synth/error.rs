//! Errors of `psy synth` and `psy data stats`, each naming the file (and line) involved.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("{}: {message}", path.display())]
    Io { path: PathBuf, message: String },
    #[error("{}:{line}: {message}", path.display())]
    Input {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error(transparent)]
    Manifest(#[from] psy_core::manifest_error::ManifestError),
    #[error("{}:{line}: {message} (the file is damaged before its last line; move it away or fix the line)", path.display())]
    Store {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{} already holds a synth run; pass --resume to finish it, or choose another --output", dir.display())]
    OutputExists { dir: PathBuf },
    #[error("{} was started from another manifest or input ({what} changed); finish it with the original, or choose another --output", dir.display())]
    InputsChanged { dir: PathBuf, what: String },
    #[error("teacher for stage {stage}: {message}")]
    Teacher { stage: String, message: String },
}
