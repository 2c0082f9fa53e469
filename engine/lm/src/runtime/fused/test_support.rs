//! Inputs and comparisons shared by the fused kernels' tests.

use burn::tensor::{Tensor, TensorData};

/// Deterministic values in `[-scale, scale)` of `shape` (a hash of `seed` and the index).
pub(crate) fn random<const D: usize>(shape: [usize; D], seed: u64, scale: f32) -> TensorData {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n as u64)
        .map(|i| {
            let mut z = (seed << 32 ^ i).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 29)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z ^= z >> 32;
            ((z >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect();
    TensorData::new(v, shape)
}

/// Asserts that `a` and `b` differ by at most `tol` times the largest magnitude of `b`, and
/// prints the measured relative difference (`cargo test -- --nocapture` shows it).
pub(crate) fn assert_close<const D: usize>(what: &str, a: Tensor<D>, b: Tensor<D>, tol: f32) {
    assert_eq!(a.dims(), b.dims(), "{what}: shapes");
    let a = a.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
    let b = b.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
    let scale = b
        .iter()
        .fold(0.0f32, |m, x| m.max(x.abs()))
        .max(f32::MIN_POSITIVE);
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    println!(
        "{what}: max |diff| / max |reference| = {:.2e}",
        worst / scale
    );
    assert!(
        worst <= tol * scale,
        "{what}: max diff {worst} over reference scale {scale}"
    );
}
