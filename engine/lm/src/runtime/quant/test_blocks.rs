//! Test support shared by the integer kernels' tests: block matrices with finite scales, and the
//! check that a kernel's `[tokens, rows]` output is the scalar GEMV's, bit for bit.

use super::int_dot::{dot_row, IntKernel};
use super::q8::Q8Batch;
use crate::runtime::ggml_type::GgmlDType;
use half::f16;

/// `rows` rows of `dtype` for `k` values from `bytes` (cycled) with finite f16 scales (and
/// mins) from `scales` (cycled) in the f16 fields.
pub fn matrix(dtype: GgmlDType, rows: usize, k: usize, bytes: &[u8], scales: &[f32]) -> Vec<u8> {
    let (elems, size) = dtype.block_layout().unwrap();
    let n = rows * k / elems as usize * size as usize;
    let mut out: Vec<u8> = bytes.iter().copied().cycle().take(n).collect();
    let fields: &[usize] = match dtype {
        GgmlDType::Q4_1 | GgmlDType::Q5_1 | GgmlDType::Q4K | GgmlDType::Q5K => &[0, 2],
        GgmlDType::Q2K => &[80, 82],
        GgmlDType::Q3K => &[108],
        GgmlDType::Q6K => &[208],
        _ => &[0],
    };
    let mut s = scales.iter().cycle();
    for blk in out.chunks_exact_mut(size as usize) {
        for &at in fields {
            blk[at..at + 2].copy_from_slice(&f16::from_f32(*s.next().unwrap()).to_le_bytes());
        }
    }
    out
}

/// Every `out[t * rows + r]` equals the scalar GEMV's dot product of row `r` of `w` and token
/// `t` of `batch`, bit for bit; `label` names the kernel in the message.
pub fn assert_each_is_the_gemv(
    dtype: GgmlDType,
    w: &[u8],
    rows: usize,
    batch: &Q8Batch,
    out: &[f32],
    label: &str,
) {
    let row_bytes = w.len() / rows;
    for r in 0..rows {
        for (t, a) in batch.tokens.iter().enumerate() {
            let want = dot_row(
                IntKernel::Scalar,
                dtype,
                &w[r * row_bytes..][..row_bytes],
                a,
            );
            assert_eq!(
                out[t * rows + r].to_bits(),
                want.to_bits(),
                "{dtype} {label}, row {r} token {t}: {} vs {want}",
                out[t * rows + r]
            );
        }
    }
}
