//! Percentile bootstrap intervals of a mean and of a paired difference, seeded with
//! [`SplitMix64`] so that the same inputs and seed give byte-identical intervals.
//!
//! Each resample draws n indices with replacement (`SplitMix64::below`), in order, and takes
//! the mean of those values summed in draw order. The interval's ends are the percentiles of
//! the resampled means at (1 - confidence) / 2 and (1 + confidence) / 2, interpolated
//! linearly between order statistics (numpy's default `percentile` method).

use super::splitmix::SplitMix64;

/// Resamples drawn by default: enough that the 2.5% and 97.5% percentiles move by well under
/// a tenth of the interval's width between seeds, and cheap (n * 2000 draws).
pub const DEFAULT_RESAMPLES: usize = 2000;

/// Seed used when a run does not set one.
pub const DEFAULT_SEED: u64 = 0x5053_595f_4556_414c; // "PSY_EVAL"

/// Settings of a percentile bootstrap.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Bootstrap {
    pub seed: u64,
    pub resamples: usize,
    /// Coverage of the interval, e.g. 0.95.
    pub confidence: f64,
}

impl Default for Bootstrap {
    fn default() -> Self {
        Bootstrap {
            seed: DEFAULT_SEED,
            resamples: DEFAULT_RESAMPLES,
            confidence: 0.95,
        }
    }
}

/// A point estimate with its bootstrap interval.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Interval {
    /// The statistic on the data as given (not a resample average).
    pub estimate: f64,
    pub low: f64,
    pub high: f64,
    /// Items the statistic is over.
    pub n: usize,
}

/// Why an interval cannot be computed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum BootstrapError {
    #[error("no values to resample")]
    Empty,
    #[error("paired samples differ in length: {base} base values, {variant} variant values")]
    Unpaired { base: usize, variant: usize },
    #[error("value {0} is not a finite number")]
    NotFinite(f64),
    #[error("bootstrap settings: {0}")]
    Settings(String),
}

impl Bootstrap {
    /// The interval of the mean of `values`.
    pub fn mean(&self, values: &[f64]) -> Result<Interval, BootstrapError> {
        self.check(values)?;
        let means = self.resampled_means(values);
        let (low, high) = self.ends(means);
        Ok(Interval {
            estimate: values.iter().sum::<f64>() / values.len() as f64,
            low,
            high,
            n: values.len(),
        })
    }

    /// The interval of the mean paired difference `variant[i] - base[i]` (the same items
    /// scored under two variants; resampling items keeps each pair together).
    pub fn paired_difference(
        &self,
        base: &[f64],
        variant: &[f64],
    ) -> Result<Interval, BootstrapError> {
        if base.len() != variant.len() {
            return Err(BootstrapError::Unpaired {
                base: base.len(),
                variant: variant.len(),
            });
        }
        let diffs: Vec<f64> = variant.iter().zip(base).map(|(v, b)| v - b).collect();
        self.check(base)?;
        self.check(variant)?;
        self.mean(&diffs)
    }

    /// The mean of every resample, in draw order.
    pub fn resampled_means(&self, values: &[f64]) -> Vec<f64> {
        let n = values.len();
        let mut rng = SplitMix64::new(self.seed);
        (0..self.resamples)
            .map(|_| {
                let mut sum = 0.0;
                for _ in 0..n {
                    sum += values[rng.below(n)];
                }
                sum / n as f64
            })
            .collect()
    }

    /// The percentile interval of any statistic of `n` items that is not a mean of per-item
    /// values (distinct-n over a set of replies): `stat` gets the item indices of the sample
    /// (all of them for the estimate, a resample with replacement for each bootstrap round).
    pub fn statistic(
        &self,
        n: usize,
        stat: &dyn Fn(&[usize]) -> f64,
    ) -> Result<Interval, BootstrapError> {
        self.paired_statistic(n, &|_| 0.0, stat)
    }

    /// [`Bootstrap::statistic`] of `variant(idx) - base(idx)` over the same resamples of `n`
    /// paired items.
    pub fn paired_statistic(
        &self,
        n: usize,
        base: &dyn Fn(&[usize]) -> f64,
        variant: &dyn Fn(&[usize]) -> f64,
    ) -> Result<Interval, BootstrapError> {
        self.check(&[0.0])?;
        if n == 0 {
            return Err(BootstrapError::Empty);
        }
        let all: Vec<usize> = (0..n).collect();
        let estimate = variant(&all) - base(&all);
        if !estimate.is_finite() {
            return Err(BootstrapError::NotFinite(estimate));
        }
        let mut rng = SplitMix64::new(self.seed);
        let mut idx = vec![0; n];
        let stats: Vec<f64> = (0..self.resamples)
            .map(|_| {
                for slot in idx.iter_mut() {
                    *slot = rng.below(n);
                }
                variant(&idx) - base(&idx)
            })
            .collect();
        let (low, high) = self.ends(stats);
        Ok(Interval {
            estimate,
            low,
            high,
            n,
        })
    }

    fn ends(&self, mut means: Vec<f64>) -> (f64, f64) {
        means.sort_by(f64::total_cmp);
        let tail = (1.0 - self.confidence) / 2.0;
        (percentile(&means, tail), percentile(&means, 1.0 - tail))
    }

    fn check(&self, values: &[f64]) -> Result<(), BootstrapError> {
        if self.resamples == 0 {
            return Err(BootstrapError::Settings(
                "resamples must be at least 1".into(),
            ));
        }
        if !(self.confidence > 0.0 && self.confidence < 1.0) {
            return Err(BootstrapError::Settings(format!(
                "confidence {} must lie strictly between 0 and 1",
                self.confidence
            )));
        }
        if values.is_empty() {
            return Err(BootstrapError::Empty);
        }
        if let Some(v) = values.iter().find(|v| !v.is_finite()) {
            return Err(BootstrapError::NotFinite(*v));
        }
        Ok(())
    }
}

/// The `q` quantile (0..=1) of sorted values, interpolating linearly between order
/// statistics as numpy's `percentile(..., method="linear")`.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    let t = pos - lo as f64;
    let (a, b) = (sorted[lo], sorted[hi]);
    // numpy's `_lerp`: from the nearer end, so that t = 1 gives b exactly.
    if t >= 0.5 {
        b - (b - a) * (1.0 - t)
    } else {
        a + (b - a) * t
    }
}
