//! What an evaluation or ablation produced, as numbers ready to write: per variant its
//! provenance, item counts and, per measure, the mean with its 95% interval and the paired
//! difference from the base variant. The statistics are computed elsewhere; this is only the
//! shape every writer and chart reads. Vectors and `BTreeMap`s keep the order deterministic.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::error::ReportError;

/// One evaluation (a single variant) or ablation (several) result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Report name (the ablation manifest's name, or the run's).
    pub name: String,
    /// Name of the variant the differences are taken from.
    pub base: String,
    /// Every measure reported, in display order; variants refer to them by `id`.
    pub measures: Vec<Measure>,
    /// Variants in display order; the base is one of them.
    pub variants: Vec<Variant>,
}

/// A rubric dimension or an automatic metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measure {
    /// `rubric.dimension` (e.g. `cpsycoun.professionalism`) or a metric name (`bleu4`).
    pub id: String,
    pub kind: MeasureKind,
}

/// Whether a measure is a judged rubric dimension (with its scale) or an automatic metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum MeasureKind {
    /// A rubric dimension scored on `min..=max` (radar axes are normalised to this scale).
    Rubric { min: f64, max: f64 },
    /// An automatic metric in its own units.
    Metric,
}

/// One variant (an ablation cell, or the single configuration of `psy eval`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    pub name: String,
    pub description: String,
    /// Hashes and versions that identify what was run: `manifest_sha256`, `model_sha256`,
    /// `eval_data_sha256`, `rubric_sha256`, `judge_prompt_sha256`, `psy_version`,
    /// `git_commit`, ... (free keys).
    pub provenance: BTreeMap<String, String>,
    pub items: ItemCounts,
    /// Scores by measure id; a measure with no scored item is absent.
    pub scores: BTreeMap<String, Score>,
}

/// How many items were scored and why the others failed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemCounts {
    pub scored: usize,
    /// Failed items counted by reason (e.g. `verdict never validated`, `bad eval line`).
    pub failed: BTreeMap<String, usize>,
    /// One line per failed item naming it (`file:line: reason` or `item id: reason`).
    pub failures: Vec<String>,
}

impl ItemCounts {
    /// Total failed items over all reasons.
    pub fn failed_total(&self) -> usize {
        self.failed.values().sum()
    }
}

/// A measure's summary for one variant.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Score {
    pub n: usize,
    pub mean: f64,
    /// 95% interval of the mean.
    pub low: f64,
    pub high: f64,
    pub sd: f64,
    /// Paired difference (this variant minus the base) over the items both scored; `None`
    /// for the base itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<Delta>,
}

/// A paired difference from the base variant with its 95% interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    /// Items scored in both variants.
    pub n: usize,
    pub mean: f64,
    pub low: f64,
    pub high: f64,
}

impl Report {
    /// The base variant.
    pub fn base_variant(&self) -> Option<&Variant> {
        self.variants.iter().find(|v| v.name == self.base)
    }

    /// The measure with this id.
    pub fn measure(&self, id: &str) -> Option<&Measure> {
        self.measures.iter().find(|m| m.id == id)
    }

    /// Rubric dimensions in display order (the radar's axes).
    pub fn rubric_measures(&self) -> impl Iterator<Item = (&Measure, f64, f64)> {
        self.measures.iter().filter_map(|m| match m.kind {
            MeasureKind::Rubric { min, max } => Some((m, min, max)),
            MeasureKind::Metric => None,
        })
    }

    /// Checks what the writers rely on: unique names, a base among the variants, scores only
    /// for declared measures, finite numbers, scales with `min < max`, deltas only off the base.
    pub fn validate(&self) -> Result<(), ReportError> {
        let bad = |what: String| Err(ReportError::Invalid(what));
        let mut seen = std::collections::BTreeSet::new();
        for m in &self.measures {
            if !seen.insert(m.id.as_str()) {
                return bad(format!("measure `{}` is listed twice", m.id));
            }
            if let MeasureKind::Rubric { min, max } = m.kind {
                if !(min.is_finite() && max.is_finite() && min < max) {
                    return bad(format!("measure `{}`: scale {min}..{max} is empty", m.id));
                }
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for v in &self.variants {
            if !names.insert(v.name.as_str()) {
                return bad(format!("variant `{}` is listed twice", v.name));
            }
        }
        if self.base_variant().is_none() {
            return bad(format!(
                "base variant `{}` is not among the variants",
                self.base
            ));
        }
        for v in &self.variants {
            for (id, s) in &v.scores {
                let at = format!("variant `{}`, measure `{id}`", v.name);
                if self.measure(id).is_none() {
                    return bad(format!("{at}: measure is not declared"));
                }
                let mut nums = vec![s.mean, s.low, s.high, s.sd];
                if let Some(d) = s.delta {
                    if v.name == self.base {
                        return bad(format!(
                            "{at}: the base variant has a difference from itself"
                        ));
                    }
                    nums.extend([d.mean, d.low, d.high]);
                }
                if nums.iter().any(|x| !x.is_finite()) {
                    return bad(format!("{at}: a number is not finite"));
                }
            }
        }
        Ok(())
    }
}
