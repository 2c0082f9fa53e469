//! Where a rubric named in a run manifest comes from: a `.toml` path, a file beside the
//! manifests, or one of the rubrics psy ships (`manifests/rubrics/*.toml`), compiled in so that
//! a run manifest anywhere can name them by id.

use std::path::Path;

use psy_core::manifest_error::ManifestError;

use super::spec::Rubric;

const SHIPPED: &[(&str, &str)] = &[
    (
        "cpsycoun",
        include_str!("../../../../manifests/rubrics/cpsycoun.toml"),
    ),
    (
        "psyllm-v2",
        include_str!("../../../../manifests/rubrics/psyllm-v2.toml"),
    ),
    (
        "crisis-safety",
        include_str!("../../../../manifests/rubrics/crisis-safety.toml"),
    ),
];

/// Ids of the shipped rubrics.
pub fn shipped_ids() -> Vec<&'static str> {
    SHIPPED.iter().map(|(id, _)| *id).collect()
}

impl Rubric {
    /// A rubric named in a run manifest: a path ending in `.toml` (relative to the manifest's
    /// directory) or the id of a shipped rubric in `rubrics_dir` (`manifests/rubrics`).
    pub fn resolve(
        entry: &str,
        manifest_dir: &Path,
        rubrics_dir: &Path,
    ) -> Result<Rubric, ManifestError> {
        if entry.ends_with(".toml") {
            return Rubric::load(&manifest_dir.join(entry));
        }
        // A rubric file beside the manifests wins (it may be edited); otherwise the copy
        // compiled into psy, so that a manifest anywhere can name a shipped rubric.
        if rubrics_dir.join(format!("{entry}.toml")).exists() {
            return Rubric::load_named(rubrics_dir, entry);
        }
        Rubric::shipped(entry).unwrap_or_else(|| {
            Err(ManifestError::Invalid {
                origin: rubrics_dir.display().to_string(),
                field: "eval.rubrics".into(),
                message: format!(
                    "unknown rubric `{entry}`: psy ships {}; or give a path ending in .toml",
                    shipped_ids().join(", ")
                ),
            })
        })
    }

    /// A shipped rubric by id (`None` for an unknown id).
    pub fn shipped(id: &str) -> Option<Result<Rubric, ManifestError>> {
        SHIPPED
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(i, text)| Rubric::parse(text, &format!("manifests/rubrics/{i}.toml")))
    }
}
