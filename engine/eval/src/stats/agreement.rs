//! Agreement between raters (two judges, a judge and humans): quadratic-weighted Cohen's
//! kappa as scikit-learn computes it, and Krippendorff's alpha (nominal, ordinal, interval)
//! with missing ratings and any number of raters, as the `krippendorff` package computes it.

/// Why an agreement coefficient cannot be computed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum AgreementError {
    #[error("the two raters rated different numbers of items ({0} and {1})")]
    LengthMismatch(usize, usize),
    #[error("no items to compare")]
    Empty,
    #[error("rating {0} is not one of the labels given")]
    UnknownLabel(i64),
    #[error("rater {rater} has {got} ratings, rater 0 has {want}")]
    Ragged {
        rater: usize,
        got: usize,
        want: usize,
    },
    #[error("rating {0} is not a finite number")]
    NotFinite(f64),
    #[error("there has to be more than one distinct value among the ratings")]
    OneValue,
    #[error("no item was rated by at least two raters")]
    NothingPairable,
    #[error("agreement is undefined: the ratings leave no room for chance disagreement")]
    Undefined,
}

/// Quadratic-weighted Cohen's kappa of two raters (scikit-learn's
/// `cohen_kappa_score(a, b, labels=labels, weights="quadratic")`). The weights are squared
/// distances between label positions: pass the whole scale as `labels` (e.g. `1..=5`) so that
/// a score nobody used still counts; without it the labels are the scores that occur.
pub fn cohen_kappa_quadratic(
    a: &[i64],
    b: &[i64],
    labels: Option<&[i64]>,
) -> Result<f64, AgreementError> {
    if a.len() != b.len() {
        return Err(AgreementError::LengthMismatch(a.len(), b.len()));
    }
    if a.is_empty() {
        return Err(AgreementError::Empty);
    }
    let mut labels: Vec<i64> = match labels {
        Some(l) => l.to_vec(),
        None => a.iter().chain(b).copied().collect(),
    };
    labels.sort_unstable();
    labels.dedup();
    let k = labels.len();
    let index = |x: i64| {
        labels
            .binary_search(&x)
            .map_err(|_| AgreementError::UnknownLabel(x))
    };
    let mut confusion = vec![vec![0.0f64; k]; k];
    for (&x, &y) in a.iter().zip(b) {
        confusion[index(x)?][index(y)?] += 1.0;
    }
    let rows: Vec<f64> = confusion.iter().map(|r| r.iter().sum()).collect();
    let cols: Vec<f64> = (0..k)
        .map(|j| confusion.iter().map(|r| r[j]).sum())
        .collect();
    let total: f64 = rows.iter().sum();
    let (mut observed, mut expected) = (0.0, 0.0);
    for i in 0..k {
        for j in 0..k {
            let w = ((i as f64) - (j as f64)).powi(2);
            observed += w * confusion[i][j];
            // scikit-learn: outer(column sums, row sums) / total.
            expected += w * cols[i] * rows[j] / total;
        }
    }
    if expected == 0.0 {
        return Err(AgreementError::Undefined);
    }
    Ok(1.0 - observed / expected)
}

/// Level of measurement for Krippendorff's alpha.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Nominal,
    Ordinal,
    Interval,
}

/// Krippendorff's alpha. `ratings[r][u]` is rater `r`'s rating of unit `u`, `None` when
/// missing; all raters list the same units. The value domain is the distinct ratings
/// present (as the `krippendorff` package does when no domain is given).
pub fn krippendorff_alpha(
    ratings: &[Vec<Option<f64>>],
    level: Level,
) -> Result<f64, AgreementError> {
    let units = ratings.first().map(Vec::len).unwrap_or(0);
    for (r, row) in ratings.iter().enumerate() {
        if row.len() != units {
            return Err(AgreementError::Ragged {
                rater: r,
                got: row.len(),
                want: units,
            });
        }
    }
    let mut domain: Vec<f64> = Vec::new();
    for &v in ratings.iter().flatten().flatten() {
        if !v.is_finite() {
            return Err(AgreementError::NotFinite(v));
        }
        domain.push(v);
    }
    domain.sort_by(f64::total_cmp);
    domain.dedup();
    if domain.len() <= 1 {
        return Err(AgreementError::OneValue);
    }
    let v = domain.len();
    let index = |x: f64| domain.partition_point(|d| *d < x);
    // Coincidences: within each unit, every ordered pair of ratings by different raters,
    // weighted 1 / (m_u - 1).
    let mut o = vec![vec![0.0f64; v]; v];
    let mut pairable = false;
    for u in 0..units {
        let mut counts = vec![0.0f64; v];
        let mut m = 0usize;
        for row in ratings {
            if let Some(x) = row[u] {
                counts[index(x)] += 1.0;
                m += 1;
            }
        }
        if m < 2 {
            continue;
        }
        pairable = true;
        let denom = (m - 1) as f64;
        for c in 0..v {
            for k in 0..v {
                let pairs = counts[c] * counts[k] - if c == k { counts[c] } else { 0.0 };
                o[c][k] += pairs / denom;
            }
        }
    }
    if !pairable {
        return Err(AgreementError::NothingPairable);
    }
    let n_v: Vec<f64> = (0..v).map(|k| o.iter().map(|row| row[k]).sum()).collect();
    let n: f64 = n_v.iter().sum();
    let distance = |c: usize, k: usize| -> f64 {
        match level {
            Level::Nominal => f64::from(u8::from(c != k)),
            Level::Interval => (domain[c] - domain[k]).powi(2),
            Level::Ordinal => {
                let (lo, hi) = (c.min(k), c.max(k));
                let between: f64 = n_v[lo..=hi].iter().sum();
                (between - (n_v[lo] + n_v[hi]) / 2.0).powi(2)
            }
        }
    };
    let (mut observed, mut expected) = (0.0, 0.0);
    for c in 0..v {
        for k in 0..v {
            let d = distance(c, k);
            observed += o[c][k] * d;
            let e = (n_v[c] * n_v[k] - if c == k { n_v[c] } else { 0.0 }) / (n - 1.0);
            expected += e * d;
        }
    }
    if expected == 0.0 {
        return Err(AgreementError::Undefined);
    }
    Ok(1.0 - observed / expected)
}
