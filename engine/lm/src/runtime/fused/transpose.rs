//! The transpose of a plain (inference) f32 matrix into a new contiguous one, across the rayon
//! pool. A projection's GEMM comes out as `[out, tokens]` (`W xᵀ`, the layout `gemm` computes
//! fastest, see `dense::linear`); Burn's transpose is a view, and the reshape after it copied
//! the values on one thread (burn-flex's `copy_2d_tiled`, ~7% of SmolLM2's 512-token prefill
//! under perf while the other core waited).

use burn::backend::Flex;
use burn::tensor::Tensor;
use rayon::prelude::*;

use super::host::{tensor, FlexF32};

/// Side of the square tiles copied at a time (16 x 16 f32: 16 cache lines in, 16 out).
const TILE: usize = 16;

/// Output rows per rayon task.
const ROWS_PER_TASK: usize = 64;

/// `tᵀ` as a contiguous tensor: flex f32 matrices without autodiff across the pool, anything
/// else as Burn's `t.transpose()` (a view the next op lays out).
pub fn transpose_contiguous(t: Tensor<2>) -> Tensor<2> {
    let Some(FlexF32::Plain(p)) = FlexF32::of(&t) else {
        return t.transpose();
    };
    let Some(src) = p.as_slice::<f32>() else {
        return t.transpose();
    };
    let [rows, cols] = t.dims();
    let mut out = vec![0.0f32; rows * cols];
    if rows > 0 && cols > 0 {
        transpose_into(src, rows, cols, &mut out);
    }
    Tensor::from_primitive::<Flex>(tensor(out, vec![cols, rows]))
}

/// `out[c * rows + r] = src[r * cols + c]`.
fn transpose_into(src: &[f32], rows: usize, cols: usize, out: &mut [f32]) {
    out.par_chunks_mut(ROWS_PER_TASK * rows)
        .enumerate()
        .for_each(|(task, band)| {
            let c0 = task * ROWS_PER_TASK;
            let band_cols = band.len() / rows;
            for r0 in (0..rows).step_by(TILE) {
                let r1 = (r0 + TILE).min(rows);
                for cc0 in (0..band_cols).step_by(TILE) {
                    let cc1 = (cc0 + TILE).min(band_cols);
                    for r in r0..r1 {
                        let from = &src[r * cols + c0..];
                        for cc in cc0..cc1 {
                            band[cc * rows + r] = from[cc];
                        }
                    }
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::fused::test_support::random;
    use burn::tensor::Device;

    /// Equals Burn's transpose laid out contiguously, for shapes around the tiles and tasks.
    #[test]
    fn equals_burn_transpose() {
        let device = Device::flex();
        for (rows, cols) in [(1, 1), (3, 17), (576, 512), (65, 130), (200, 1)] {
            let t = Tensor::<2>::from_data(random([rows, cols], 5, 1.0), &device);
            let got = transpose_contiguous(t.clone());
            assert_eq!(got.dims(), [cols, rows]);
            let want = t.transpose().into_data().try_to_vec::<f32>().unwrap();
            let got = got.into_data().try_to_vec::<f32>().unwrap();
            assert_eq!(got, want, "{rows} x {cols}");
        }
    }
}
