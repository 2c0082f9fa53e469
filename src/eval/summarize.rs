//! From per-item scores to the report: per variant and measure the mean with a 95% bootstrap
//! interval and the standard deviation over items; for each variant but the base, the paired
//! difference from the base over the items both scored, with its interval. Corpus measures
//! (distinct-n) are bootstrapped over replies. Seeded: the same scores give the same report.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use psy_eval::metrics::distinct_n;
use psy_eval::report::{Delta, ItemCounts, Measure, MeasureKind, Report, Score, Variant};
use psy_eval::rubric::Rubric;
use psy_eval::stats::{summarize, Bootstrap};

use super::measures::AUTOMATIC;

/// What one cell produced, ready to summarise.
pub struct CellScores {
    pub name: String,
    pub description: String,
    pub provenance: BTreeMap<String, String>,
    pub items: ItemCounts,
    /// Item key -> measure -> value.
    pub values: BTreeMap<String, BTreeMap<String, f64>>,
    /// Item key -> reply (for corpus measures).
    pub replies: BTreeMap<String, String>,
}

fn interval_score(b: &Bootstrap, xs: &[f64]) -> Result<Score> {
    let i = b.mean(xs)?;
    Ok(Score {
        n: xs.len(),
        mean: i.estimate,
        low: i.low,
        high: i.high,
        sd: summarize(xs).sd.unwrap_or(0.0),
        delta: None,
    })
}

/// Builds the report; `cells[0]` is the base of the differences.
pub fn report(
    name: &str,
    cells: &[CellScores],
    rubrics: &[&Rubric],
    bootstrap: &Bootstrap,
) -> Result<Report> {
    let present: BTreeSet<&str> = cells
        .iter()
        .flat_map(|c| c.values.values().flat_map(|m| m.keys().map(String::as_str)))
        .collect();
    // Only what some cell scored: a rubric no judge ran has no row (and no radar axis).
    let mut measures: Vec<Measure> = Vec::new();
    for r in rubrics {
        for d in &r.dimensions {
            let id = format!("{}.{}", r.id, d.id);
            if !present.contains(id.as_str()) {
                continue;
            }
            measures.push(Measure {
                id,
                kind: MeasureKind::Rubric {
                    min: d.min as f64,
                    max: d.max as f64,
                },
            });
        }
    }
    for m in AUTOMATIC {
        let corpus = m.starts_with("distinct");
        if present.contains(m) || (corpus && cells.iter().any(|c| !c.replies.is_empty())) {
            measures.push(Measure {
                id: m.to_string(),
                kind: MeasureKind::Metric,
            });
        }
    }
    let base = &cells[0];
    let mut variants = Vec::new();
    for cell in cells {
        let mut scores = BTreeMap::new();
        for m in &measures {
            let score = if let Some(n) = m.id.strip_prefix("distinct") {
                let n: usize = n.parse().unwrap_or(1);
                corpus_score(bootstrap, n, cell, base, cell.name != base.name)?
            } else {
                let xs: Vec<(&String, f64)> = cell
                    .values
                    .iter()
                    .filter_map(|(k, v)| v.get(&m.id).map(|x| (k, *x)))
                    .collect();
                if xs.is_empty() {
                    None
                } else {
                    let vals: Vec<f64> = xs.iter().map(|(_, x)| *x).collect();
                    let mut s = interval_score(bootstrap, &vals)?;
                    if cell.name != base.name {
                        let pairs: Vec<(f64, f64)> = xs
                            .iter()
                            .filter_map(|(k, x)| {
                                base.values
                                    .get(*k)
                                    .and_then(|b| b.get(&m.id))
                                    .map(|b| (*b, *x))
                            })
                            .collect();
                        if !pairs.is_empty() {
                            let (b, v): (Vec<f64>, Vec<f64>) = pairs.into_iter().unzip();
                            let d = bootstrap.paired_difference(&b, &v)?;
                            s.delta = Some(Delta {
                                n: d.n,
                                mean: d.estimate,
                                low: d.low,
                                high: d.high,
                            });
                        }
                    }
                    Some(s)
                }
            };
            if let Some(s) = score {
                scores.insert(m.id.clone(), s);
            }
        }
        variants.push(Variant {
            name: cell.name.clone(),
            description: cell.description.clone(),
            provenance: cell.provenance.clone(),
            items: cell.items.clone(),
            scores,
        });
    }
    let report = Report {
        name: name.to_string(),
        base: base.name.clone(),
        measures,
        variants,
    };
    report.validate()?;
    Ok(report)
}

/// distinct-n over the cell's replies, with the difference from the base over the replies
/// both have (same resamples).
fn corpus_score(
    b: &Bootstrap,
    n: usize,
    cell: &CellScores,
    base: &CellScores,
    with_delta: bool,
) -> Result<Option<Score>> {
    let keys: Vec<&String> = cell.replies.keys().collect();
    if keys.is_empty() {
        return Ok(None);
    }
    let of = |replies: &BTreeMap<String, String>, keys: &[&String], idx: &[usize]| {
        let picked: Vec<&str> = idx
            .iter()
            .filter_map(|&i| replies.get(keys[i]).map(String::as_str))
            .collect();
        distinct_n(&picked, n).ratio
    };
    let own = |idx: &[usize]| of(&cell.replies, &keys, idx);
    let i = b.statistic(keys.len(), &own)?;
    let mut s = Score {
        n: keys.len(),
        mean: i.estimate,
        low: i.low,
        high: i.high,
        sd: 0.0,
        delta: None,
    };
    if with_delta {
        let shared: Vec<&String> = keys
            .iter()
            .copied()
            .filter(|k| base.replies.contains_key(*k))
            .collect();
        if !shared.is_empty() {
            let bf = |idx: &[usize]| of(&base.replies, &shared, idx);
            let vf = |idx: &[usize]| of(&cell.replies, &shared, idx);
            let d = b.paired_statistic(shared.len(), &bf, &vf)?;
            s.delta = Some(Delta {
                n: d.n,
                mean: d.estimate,
                low: d.low,
                high: d.high,
            });
        }
    }
    Ok(Some(s))
}
