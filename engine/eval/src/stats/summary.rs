//! Mean and spread of repeated scores (a judge asked `repeats = n` times about one item).

/// Mean and sample standard deviation of some values.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Summary {
    pub n: usize,
    /// 0 when there are no values.
    pub mean: f64,
    /// Sample standard deviation (divisor n - 1); `None` with fewer than two values.
    pub sd: Option<f64>,
}

/// Mean and sample standard deviation.
pub fn summarize(values: &[f64]) -> Summary {
    let n = values.len();
    if n == 0 {
        return Summary {
            n,
            mean: 0.0,
            sd: None,
        };
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    // Two passes: deviations from the mean, which is more accurate than sum of squares.
    let sd = (n >= 2).then(|| {
        let ss: f64 = values.iter().map(|v| (v - mean).powi(2)).sum();
        (ss / (n - 1) as f64).sqrt()
    });
    Summary { n, mean, sd }
}
