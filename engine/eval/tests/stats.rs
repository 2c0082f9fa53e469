//! Statistics: kappa and alpha match scikit-learn and the `krippendorff` package
//! (tests/fixtures/agreement.json), the bootstrap matches its Python re-implementation with
//! numpy's quantiles (tests/fixtures/bootstrap.json) and is deterministic, and summaries match
//! hand-computed values.

use std::path::Path;

use psy_eval::stats::{
    cohen_kappa_quadratic, krippendorff_alpha, percentile, summarize, AgreementError, Bootstrap,
    BootstrapError, Level, SplitMix64,
};
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn ints(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

/// Measured largest difference from the references: 1.1e-16 (kappa) and 2.2e-16 (alpha), one
/// ulp; the bound leaves room for other summation orders.
const AGREEMENT_TOL: f64 = 1e-12;

#[test]
fn quadratic_kappa_matches_scikit_learn() {
    let f = fixture("agreement.json");
    let mut worst: f64 = 0.0;
    for case in f["kappa"].as_array().unwrap() {
        let (a, b, labels) = (ints(&case["a"]), ints(&case["b"]), ints(&case["labels"]));
        for (got, want) in [
            (
                cohen_kappa_quadratic(&a, &b, None),
                &case["kappa_observed_labels"],
            ),
            (
                cohen_kappa_quadratic(&a, &b, Some(&labels)),
                &case["kappa_full_scale"],
            ),
        ] {
            match want.as_f64() {
                Some(w) => {
                    let g = got.unwrap();
                    worst = worst.max((g - w).abs());
                    assert!((g - w).abs() <= AGREEMENT_TOL, "{a:?} {b:?}: {g} vs {w}");
                }
                None => assert_eq!(got, Err(AgreementError::Undefined)),
            }
        }
    }
    eprintln!("kappa: largest difference from scikit-learn {worst:e}");
}

#[test]
fn krippendorff_alpha_matches_the_krippendorff_package() {
    let f = fixture("agreement.json");
    let mut worst: f64 = 0.0;
    for case in f["alpha"].as_array().unwrap() {
        let ratings: Vec<Vec<Option<f64>>> = case["ratings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row.as_array().unwrap().iter().map(Value::as_f64).collect())
            .collect();
        for (level, key) in [
            (Level::Nominal, "nominal"),
            (Level::Ordinal, "ordinal"),
            (Level::Interval, "interval"),
        ] {
            let got = krippendorff_alpha(&ratings, level).unwrap();
            let want = case[key].as_f64().unwrap();
            worst = worst.max((got - want).abs());
            assert!(
                (got - want).abs() <= AGREEMENT_TOL,
                "{key}: {got} vs {want}"
            );
        }
    }
    eprintln!("alpha: largest difference from krippendorff {worst:e}");
}

#[test]
fn agreement_rejects_what_it_cannot_score() {
    assert_eq!(
        cohen_kappa_quadratic(&[1, 2], &[1], None),
        Err(AgreementError::LengthMismatch(2, 1))
    );
    assert_eq!(
        cohen_kappa_quadratic(&[1, 6], &[1, 2], Some(&[1, 2, 3, 4, 5])),
        Err(AgreementError::UnknownLabel(6))
    );
    let lonely = vec![vec![Some(1.0), None], vec![None, Some(2.0)]];
    assert_eq!(
        krippendorff_alpha(&lonely, Level::Interval),
        Err(AgreementError::NothingPairable)
    );
    let same = vec![vec![Some(3.0), Some(3.0)], vec![Some(3.0), Some(3.0)]];
    assert_eq!(
        krippendorff_alpha(&same, Level::Ordinal),
        Err(AgreementError::OneValue)
    );
}

#[test]
fn splitmix64_reproduces_the_reference_stream() {
    let f = fixture("bootstrap.json");
    let mut rng = SplitMix64::new(1_234_567);
    for want in f["splitmix64_seed_1234567"].as_array().unwrap() {
        assert_eq!(rng.next_u64().to_string(), want.as_str().unwrap());
    }
}

#[test]
fn bootstrap_matches_python_resampling_and_numpy_quantiles() {
    let f = fixture("bootstrap.json");
    for case in f["cases"].as_array().unwrap() {
        let values: Vec<f64> = case["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let b = Bootstrap {
            seed: case["seed"].as_u64().unwrap(),
            resamples: case["resamples"].as_u64().unwrap() as usize,
            confidence: case["confidence"].as_f64().unwrap(),
        };
        let means = b.resampled_means(&values);
        for (g, w) in means.iter().zip(case["first_means"].as_array().unwrap()) {
            assert_eq!(*g, w.as_f64().unwrap(), "resampled mean");
        }
        let iv = b.mean(&values).unwrap();
        assert!((iv.low - case["low"].as_f64().unwrap()).abs() <= 1e-12);
        assert!((iv.high - case["high"].as_f64().unwrap()).abs() <= 1e-12);
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        assert_eq!(iv.estimate, mean);
        assert!(iv.low <= iv.high);
    }
}

#[test]
fn bootstrap_is_byte_identical_for_the_same_seed() {
    let values: Vec<f64> = (0..50).map(|i| f64::from((i * 7 % 5) as u8)).collect();
    let b = Bootstrap::default();
    let x = serde_json::to_string(&b.mean(&values).unwrap()).unwrap();
    let y = serde_json::to_string(&b.mean(&values).unwrap()).unwrap();
    assert_eq!(x, y);
    let other = Bootstrap {
        seed: b.seed + 1,
        ..b
    };
    assert_ne!(b.resampled_means(&values), other.resampled_means(&values));
}

#[test]
fn bootstrap_interval_covers_the_mean_and_shrinks_like_one_over_root_n() {
    // A 0/1 variable with p = 0.5 repeated: the interval's width is about
    // 2 * 1.96 * sqrt(p (1 - p) / n); quadrupling n halves it.
    let b = Bootstrap::default();
    let width = |n: usize| {
        let values: Vec<f64> = (0..n).map(|i| (i % 2) as f64).collect();
        let iv = b.mean(&values).unwrap();
        assert!(iv.low < 0.5 && 0.5 < iv.high);
        iv.high - iv.low
    };
    let (w100, w400) = (width(100), width(400));
    let expected = 2.0 * 1.959964 * (0.25f64 / 100.0).sqrt();
    assert!(
        (w100 - expected).abs() < 0.15 * expected,
        "{w100} vs {expected}"
    );
    assert!((w100 / w400 - 2.0).abs() < 0.25, "{w100} / {w400}");
}

#[test]
fn paired_difference_keeps_pairs_together() {
    // Variant is base + 1 everywhere: every resample's difference is exactly 1, however
    // spread the scores are (an unpaired bootstrap would give a wide interval).
    let base: Vec<f64> = (0..40).map(|i| f64::from(i % 5)).collect();
    let variant: Vec<f64> = base.iter().map(|v| v + 1.0).collect();
    let iv = Bootstrap::default()
        .paired_difference(&base, &variant)
        .unwrap();
    assert_eq!((iv.estimate, iv.low, iv.high, iv.n), (1.0, 1.0, 1.0, 40));
    assert_eq!(
        Bootstrap::default().paired_difference(&base, &variant[1..]),
        Err(BootstrapError::Unpaired {
            base: 40,
            variant: 39
        })
    );
    assert_eq!(Bootstrap::default().mean(&[]), Err(BootstrapError::Empty));
}

#[test]
fn percentile_is_numpys_linear_method() {
    // numpy.percentile([1, 2, 4, 8], [0, 25, 50, 90, 100]) = [1, 1.75, 3, 6.8, 8]
    let v = [1.0, 2.0, 4.0, 8.0];
    for (q, want) in [(0.0, 1.0), (0.25, 1.75), (0.5, 3.0), (0.9, 6.8), (1.0, 8.0)] {
        assert!((percentile(&v, q) - want).abs() < 1e-12, "{q}");
    }
}

#[test]
fn repeated_scores_summarise_by_hand() {
    // 2, 4, 4, 4, 5, 5, 7, 9: mean 5, sum of squared deviations 32, sample sd sqrt(32/7).
    let s = summarize(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
    assert_eq!((s.n, s.mean), (8, 5.0));
    assert!((s.sd.unwrap() - (32.0f64 / 7.0).sqrt()).abs() < 1e-15);
    assert_eq!(summarize(&[3.0]).sd, None);
    assert_eq!(summarize(&[]).n, 0);
}
