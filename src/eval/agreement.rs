//! `psy eval agree A B`: how well two raters agree, measure by measure. A rater is a judged
//! cell (its `verdicts.jsonl`) or a CSV of ratings (e.g. humans). Per measure present on both
//! sides: the paired items, quadratic-weighted Cohen's kappa on scores rounded to integers
//! (over the rubric's whole scale when the measure belongs to a shipped rubric), Krippendorff's
//! alpha at the interval level on the unrounded scores, and the mean absolute difference.
//! Items and measures that only one side rated are counted and listed, never dropped silently.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use psy_eval::rubric::Rubric;
use psy_eval::stats::{cohen_kappa_quadratic, krippendorff_alpha, Level};
use serde::Serialize;

use super::ratings::{Ratings, RatingsError};

/// Agreement of two raters over every measure they share.
#[derive(Clone, Debug, Serialize)]
pub struct AgreementReport {
    pub a: String,
    pub b: String,
    pub measures: Vec<MeasureAgreement>,
    /// Measures only rater A (B) scored.
    pub measures_only_in_a: Vec<String>,
    pub measures_only_in_b: Vec<String>,
    /// Items whose judge calls (partly) failed, per side (empty for a CSV).
    pub failed_items_a: Vec<String>,
    pub failed_items_b: Vec<String>,
}

/// Agreement on one measure.
#[derive(Clone, Debug, Serialize)]
pub struct MeasureAgreement {
    pub measure: String,
    /// Items both raters scored on this measure.
    pub n: usize,
    /// Quadratic-weighted Cohen's kappa of the rounded scores, or why it is undefined.
    pub kappa_quadratic: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kappa_error: Option<String>,
    /// Krippendorff's alpha (interval) of the unrounded scores, or why it is undefined.
    pub alpha_interval: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alpha_error: Option<String>,
    /// Mean of |A - B| over the paired items (`None` with none).
    pub mean_abs_diff: Option<f64>,
    /// The kappa labels and where they come from (`rubric <id>` or `observed`).
    pub labels: Vec<i64>,
    pub labels_from: String,
    /// Item keys only rater A (B) scored on this measure.
    pub only_in_a: Vec<String>,
    pub only_in_b: Vec<String>,
}

/// Reads both raters and compares them.
pub fn agree(a: &Path, b: &Path) -> Result<AgreementReport, RatingsError> {
    Ok(compare(&Ratings::read(a)?, &Ratings::read(b)?))
}

/// Compares two raters' scores measure by measure.
pub fn compare(a: &Ratings, b: &Ratings) -> AgreementReport {
    let measures_a: BTreeSet<&String> = a.scores.keys().collect();
    let measures_b: BTreeSet<&String> = b.scores.keys().collect();
    let measures = measures_a
        .intersection(&measures_b)
        .map(|m| measure_agreement(m, &a.scores[*m], &b.scores[*m]))
        .collect();
    AgreementReport {
        a: a.origin.clone(),
        b: b.origin.clone(),
        measures,
        measures_only_in_a: measures_a
            .difference(&measures_b)
            .map(|m| m.to_string())
            .collect(),
        measures_only_in_b: measures_b
            .difference(&measures_a)
            .map(|m| m.to_string())
            .collect(),
        failed_items_a: a.failed_items.clone(),
        failed_items_b: b.failed_items.clone(),
    }
}

fn measure_agreement(
    measure: &str,
    a: &BTreeMap<String, f64>,
    b: &BTreeMap<String, f64>,
) -> MeasureAgreement {
    let paired: Vec<(f64, f64)> = a
        .iter()
        .filter_map(|(k, x)| b.get(k).map(|y| (*x, *y)))
        .collect();
    let only = |x: &BTreeMap<String, f64>, y: &BTreeMap<String, f64>| {
        x.keys().filter(|k| !y.contains_key(*k)).cloned().collect()
    };
    // Kappa compares categories: a mean over repeats such as 2.5 is rounded half away from zero.
    let ra: Vec<i64> = paired.iter().map(|p| p.0.round() as i64).collect();
    let rb: Vec<i64> = paired.iter().map(|p| p.1.round() as i64).collect();
    let (labels, labels_from): (Vec<i64>, String) = match scale_of(measure) {
        Some((rubric, min, max)) => ((min..=max).collect(), format!("rubric {rubric}")),
        None => {
            let observed: BTreeSet<i64> = ra.iter().chain(&rb).copied().collect();
            (observed.into_iter().collect(), "observed".to_string())
        }
    };
    let (kappa_quadratic, kappa_error) = split(cohen_kappa_quadratic(&ra, &rb, Some(&labels)));
    let ratings = vec![
        paired.iter().map(|p| Some(p.0)).collect(),
        paired.iter().map(|p| Some(p.1)).collect(),
    ];
    let (alpha_interval, alpha_error) = if paired.is_empty() {
        (None, Some("no items to compare".to_string()))
    } else {
        split(krippendorff_alpha(&ratings, Level::Interval))
    };
    let mean_abs_diff = (!paired.is_empty())
        .then(|| paired.iter().map(|(x, y)| (x - y).abs()).sum::<f64>() / paired.len() as f64);
    MeasureAgreement {
        measure: measure.to_string(),
        n: paired.len(),
        kappa_quadratic,
        kappa_error,
        alpha_interval,
        alpha_error,
        mean_abs_diff,
        labels,
        labels_from,
        only_in_a: only(a, b),
        only_in_b: only(b, a),
    }
}

/// The scale of a measure `rubric.dimension` whose rubric ships with psy.
fn scale_of(measure: &str) -> Option<(String, i64, i64)> {
    let (rubric, dimension) = measure.split_once('.')?;
    let rubric = Rubric::shipped(rubric)?.ok()?;
    let d = rubric.dimension(dimension)?;
    Some((rubric.id.clone(), d.min, d.max))
}

fn split<E: std::fmt::Display>(r: Result<f64, E>) -> (Option<f64>, Option<String>) {
    match r {
        Ok(v) => (Some(v), None),
        Err(e) => (None, Some(e.to_string())),
    }
}

impl AgreementReport {
    /// The report as a plain-text table, one row per shared measure, then what only one side
    /// rated.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "A: {}", self.a);
        let _ = writeln!(s, "B: {}", self.b);
        let width = self
            .measures
            .iter()
            .map(|m| m.measure.len())
            .max()
            .unwrap_or(0)
            .max("measure".len());
        let _ = writeln!(
            s,
            "{:<width$}  {:>4}  {:>8}  {:>8}  {:>8}  {:>6}  {:>6}  kappa labels",
            "measure", "n", "kappa_q", "alpha_i", "mean|d|", "only A", "only B"
        );
        let num = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
        for m in &self.measures {
            let labels = match (m.labels.first(), m.labels.last()) {
                (Some(lo), Some(hi)) => format!("{lo}..{hi} ({})", m.labels_from),
                _ => "-".to_string(),
            };
            let _ = writeln!(
                s,
                "{:<width$}  {:>4}  {:>8}  {:>8}  {:>8}  {:>6}  {:>6}  {labels}",
                m.measure,
                m.n,
                num(m.kappa_quadratic),
                num(m.alpha_interval),
                num(m.mean_abs_diff),
                m.only_in_a.len(),
                m.only_in_b.len(),
            );
        }
        for m in &self.measures {
            if let Some(e) = &m.kappa_error {
                let _ = writeln!(s, "{}: kappa undefined: {e}", m.measure);
            }
            if let Some(e) = &m.alpha_error {
                let _ = writeln!(s, "{}: alpha undefined: {e}", m.measure);
            }
        }
        let list = |v: &[String]| v.join(", ");
        if self.measures.is_empty() {
            let _ = writeln!(s, "no measure is rated on both sides");
        }
        if !self.measures_only_in_a.is_empty() {
            let _ = writeln!(s, "measures only in A: {}", list(&self.measures_only_in_a));
        }
        if !self.measures_only_in_b.is_empty() {
            let _ = writeln!(s, "measures only in B: {}", list(&self.measures_only_in_b));
        }
        if !self.failed_items_a.is_empty() {
            let _ = writeln!(
                s,
                "items with failed judge calls in A: {}",
                list(&self.failed_items_a)
            );
        }
        if !self.failed_items_b.is_empty() {
            let _ = writeln!(
                s,
                "items with failed judge calls in B: {}",
                list(&self.failed_items_b)
            );
        }
        s
    }
}
