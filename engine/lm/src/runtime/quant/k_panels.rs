//! K-quant rows stored as panels of 16 rows, the layout the 512-bit K-quant kernel reads
//! (`k_gemm512_x86.rs`; llama.cpp repacks its weights at load for the same reason).
//!
//! In a panel, super-block `sb` of the 16 rows is the dword transpose of their 16 blocks:
//! dword `w` of row `i`'s block at byte `(w * 16 + i) * 4`, so that one 64-byte load is dword `w`
//! of all 16 rows, as the kernel's lanes want them. Q6_K's block (210 bytes) ends in a 2-byte
//! `d`: the rows' 16 `d`s follow its 52 dword vectors as 16 u16. A panel super-block is exactly
//! 16 blocks long, so a panel takes the bytes of its 16 rows and row `r`'s bytes start where they
//! did (`r * row_bytes`) for every row of a matrix: rows past the last whole panel stay rows.
//!
//! Why: read as rows, the kernel transposed every panel's bytes in registers once per product,
//! about a third of a batched decoding step of Qwen2.5-Coder-1.5B Q4_K_M (profile of the
//! seventeenth session); stored as panels, the weights are decoded by plain loads.

use rayon::prelude::*;

use crate::runtime::ggml_type::GgmlDType;

/// Rows per panel: the 16 i32 lanes of a 512-bit vector.
pub const PANEL_ROWS: usize = 16;

/// Whether `dtype` has a panel layout: the types of the 512-bit K-quant kernel.
pub fn has_panels(dtype: GgmlDType) -> bool {
    matches!(dtype, GgmlDType::Q4K | GgmlDType::Q5K | GgmlDType::Q6K)
}

/// Bytes of one block of `dtype` (a panel type).
fn block_bytes(dtype: GgmlDType) -> usize {
    dtype.block_layout().expect("a block type").1 as usize
}

/// Where byte `at` of row `i`'s block lands in its panel super-block (and the other way round).
#[inline]
fn panel_offset(size: usize, i: usize, at: usize) -> usize {
    let words = size / 4;
    if at < words * 4 {
        (at / 4 * PANEL_ROWS + i) * 4 + at % 4
    } else {
        // Q6_K's trailing `d`: 16 u16 after the dword vectors.
        words * 4 * PANEL_ROWS + 2 * i + (at - words * 4)
    }
}

/// Rewrites the whole panels of `data` (`rows` rows of `row_bytes` bytes of `dtype`) from rows
/// to panels, in place; the rows past the last whole panel are left as they are.
pub fn rows_to_panels(dtype: GgmlDType, data: &mut [u8], rows: usize, row_bytes: usize) {
    let size = block_bytes(dtype);
    let words = size / 4;
    let whole = rows / PANEL_ROWS * PANEL_ROWS;
    data[..whole * row_bytes]
        .par_chunks_exact_mut(PANEL_ROWS * row_bytes)
        .for_each_init(Vec::new, |rows_copy: &mut Vec<u8>, group| {
            rows_copy.clear();
            rows_copy.extend_from_slice(group);
            for sb in 0..row_bytes / size {
                let dst = &mut group[sb * PANEL_ROWS * size..][..PANEL_ROWS * size];
                let src = |i: usize| &rows_copy[i * row_bytes + sb * size..][..size];
                // Whole dwords at a time (a byte at a time made a 1.1 GB model's load 2 s
                // longer), then Q6_K's trailing `d`s.
                for (w, out) in dst[..words * 4 * PANEL_ROWS]
                    .chunks_exact_mut(4 * PANEL_ROWS)
                    .enumerate()
                {
                    for (i, dword) in out.chunks_exact_mut(4).enumerate() {
                        dword.copy_from_slice(&src(i)[w * 4..w * 4 + 4]);
                    }
                }
                if size > words * 4 {
                    let tail = size - words * 4;
                    for (i, d) in dst[words * 4 * PANEL_ROWS..]
                        .chunks_exact_mut(tail)
                        .enumerate()
                    {
                        d.copy_from_slice(&src(i)[words * 4..]);
                    }
                }
            }
        });
}

/// Row `r` of a matrix whose first `panel_rows` rows (a multiple of 16) are panels, as its
/// `row_bytes` bytes of blocks, written to `out`.
pub fn panel_row(
    dtype: GgmlDType,
    data: &[u8],
    panel_rows: usize,
    row_bytes: usize,
    r: usize,
    out: &mut [u8],
) {
    if r >= panel_rows {
        out.copy_from_slice(&data[r * row_bytes..][..row_bytes]);
        return;
    }
    let size = block_bytes(dtype);
    let words = size / 4;
    let (group, i) = (r / PANEL_ROWS, r % PANEL_ROWS);
    let panel = &data[group * PANEL_ROWS * row_bytes..][..PANEL_ROWS * row_bytes];
    for (sb, blk) in out.chunks_exact_mut(size).enumerate() {
        let src = &panel[sb * PANEL_ROWS * size..][..PANEL_ROWS * size];
        for (w, dword) in blk[..words * 4].chunks_exact_mut(4).enumerate() {
            let at = panel_offset(size, i, 4 * w);
            dword.copy_from_slice(&src[at..at + 4]);
        }
        for at in words * 4..size {
            blk[at] = src[panel_offset(size, i, at)];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panels_hold_the_rows_bytes_and_give_them_back() {
        for dtype in [GgmlDType::Q4K, GgmlDType::Q5K, GgmlDType::Q6K] {
            let size = block_bytes(dtype);
            for rows in [1, 15, 16, 17, 33, 48] {
                let row_bytes = 3 * size;
                let data: Vec<u8> = (0..rows * row_bytes)
                    .map(|i| (i.wrapping_mul(2654435761) >> 7) as u8)
                    .collect();
                let mut panels = data.clone();
                rows_to_panels(dtype, &mut panels, rows, row_bytes);
                let whole = rows / 16 * 16;
                // The tail rows stay rows; a panel's bytes are a permutation of its rows'.
                assert_eq!(panels[whole * row_bytes..], data[whole * row_bytes..]);
                if whole > 0 {
                    let (mut a, mut b) = (panels[..whole * row_bytes].to_vec(), data.clone());
                    b.truncate(whole * row_bytes);
                    a.sort_unstable();
                    b.sort_unstable();
                    assert_eq!(a, b, "{dtype}: a panel holds its rows' bytes");
                    assert_ne!(panels[..whole * row_bytes], data[..whole * row_bytes]);
                }
                let mut row = vec![0u8; row_bytes];
                for r in 0..rows {
                    panel_row(dtype, &panels, whole, row_bytes, r, &mut row);
                    assert_eq!(row, data[r * row_bytes..][..row_bytes], "{dtype} row {r}");
                }
            }
        }
    }

    #[test]
    fn a_panel_vector_is_one_dword_of_every_row() {
        // Q4_K: dword 5 of row 3's second block is at vector 5, lane 3 of super-block 1.
        let size = 144;
        assert_eq!(panel_offset(size, 3, 20), (5 * 16 + 3) * 4);
        // Q6_K's `d` (bytes 208, 209) of row 7: after the 52 vectors.
        assert_eq!(panel_offset(210, 7, 208), 52 * 64 + 14);
        assert_eq!(panel_offset(210, 7, 209), 52 * 64 + 15);
    }
}
