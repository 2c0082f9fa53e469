//! f32 weights to Q8_0 blocks at load time (`PSY_WEIGHTS=q8_0`), so a Hugging Face checkpoint
//! decodes from a quarter of its f32 bytes, as a GGUF made by llama.cpp's `quantize` would.
//!
//! Rounding follows ggml-quants.c (and gguf-py, which reproduces it bit for bit): the block
//! scale is `max|x| / 127`, each value is `x * (1 / scale)` rounded half away from zero, and the
//! scale is stored as f16. `tests/quantize.rs` checks the bytes against gguf-py's.

use half::f16;
use rayon::prelude::*;

use super::matrix::QuantMatrix;
use crate::runtime::ggml_type::GgmlDType;

/// Values per Q8_0 block.
const BLOCK: usize = 32;
/// Bytes per Q8_0 block: an f16 scale and 32 signed bytes.
const BLOCK_BYTES: usize = 2 + BLOCK;

/// Why a matrix cannot be held as Q8_0.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum QuantizeError {
    #[error("{cols} columns is not a whole number of Q8_0 blocks of {BLOCK}")]
    Misaligned { cols: usize },
    #[error("{values} values do not fill {rows} rows of {cols}")]
    Shape {
        values: usize,
        rows: usize,
        cols: usize,
    },
    #[error("value {value} at row {row}, column {col} is not finite")]
    NotFinite { value: f32, row: usize, col: usize },
    #[error(
        "values up to {max} in row {row} (from column {col}) need a Q8_0 scale above f16's \
         largest (65504)"
    )]
    ScaleOverflow { max: f32, row: usize, col: usize },
}

/// Rounds half away from zero, as ggml's `roundf` and gguf-py's `np_roundf` do, for the
/// values a block produces (|v| <= ~127.5). Truncation and an exact fraction instead of a
/// `roundf` call, so that the loop vectorises (`a - trunc(a)` is exact in f32).
fn round_half_away(v: f32) -> i32 {
    let a = v.abs();
    let t = a as i32;
    let r = t + i32::from(a - t as f32 >= 0.5);
    if v < 0.0 {
        -r
    } else {
        r
    }
}

/// One block of 32 values into `out` (34 bytes); `Err(max)` when its scale overflows f16.
fn quantize_block(x: &[f32], out: &mut [u8]) -> Result<(), f32> {
    let max = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = max / 127.0;
    let scale = f16::from_f32(d);
    if scale.is_infinite() {
        return Err(max);
    }
    let id = if d == 0.0 { 0.0 } else { 1.0 / d };
    out[..2].copy_from_slice(&scale.to_le_bytes());
    for (q, &v) in out[2..].iter_mut().zip(x) {
        *q = (round_half_away(v * id) as i8) as u8;
    }
    Ok(())
}

/// `values` (`rows` x `cols`, row-major) as Q8_0 blocks, rows in parallel. Every value must be
/// finite and `cols` a multiple of 32.
pub fn quantize_q8_0(values: &[f32], rows: usize, cols: usize) -> Result<Vec<u8>, QuantizeError> {
    if !cols.is_multiple_of(BLOCK) {
        return Err(QuantizeError::Misaligned { cols });
    }
    if values.len() != rows * cols {
        return Err(QuantizeError::Shape {
            values: values.len(),
            rows,
            cols,
        });
    }
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(QuantizeError::NotFinite {
            value: values[i],
            row: i / cols,
            col: i % cols,
        });
    }
    let row_bytes = cols / BLOCK * BLOCK_BYTES;
    let mut out = vec![0u8; rows * row_bytes];
    out.par_chunks_mut(row_bytes.max(1))
        .zip(values.par_chunks(cols.max(1)))
        .enumerate()
        .try_for_each(|(row, (dst, src))| {
            for (b, (o, x)) in dst
                .chunks_exact_mut(BLOCK_BYTES)
                .zip(src.chunks_exact(BLOCK))
                .enumerate()
            {
                quantize_block(x, o).map_err(|max| QuantizeError::ScaleOverflow {
                    max,
                    row,
                    col: b * BLOCK,
                })?;
            }
            Ok(())
        })?;
    Ok(out)
}

/// A `[rows, cols]` f32 matrix held as Q8_0 (see [`quantize_q8_0`]).
pub fn q8_0_matrix(values: &[f32], rows: usize, cols: usize) -> Result<QuantMatrix, QuantizeError> {
    let data = quantize_q8_0(values, rows, cols)?;
    Ok(QuantMatrix::new(GgmlDType::Q8_0, rows, cols, data)
        .expect("whole Q8_0 rows by construction"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_goes_half_away_from_zero() {
        assert_eq!(round_half_away(2.5), 3);
        assert_eq!(round_half_away(-2.5), -3);
        assert_eq!(round_half_away(2.4999998), 2);
        assert_eq!(round_half_away(0.49999997), 0);
        assert_eq!(round_half_away(-0.2), 0);
        assert_eq!(round_half_away(127.0), 127);
        assert_eq!(round_half_away(-126.5), -127);
    }

    #[test]
    fn a_hand_computed_block() {
        // max |x| = 63.5 -> d = 0.5, 1/d = 2: x / d = 127, -2.5 (a tie: away from zero), 1.48, 0.
        let mut x = [0.0f32; 32];
        x[0] = 63.5;
        x[1] = -1.25;
        x[2] = 0.74;
        let data = quantize_q8_0(&x, 1, 32).unwrap();
        assert_eq!(f16::from_le_bytes([data[0], data[1]]), f16::from_f32(0.5));
        let q: Vec<i8> = data[2..].iter().map(|&b| b as i8).collect();
        assert_eq!(&q[..4], &[127, -3, 1, 0]);
        assert!(q[4..].iter().all(|&v| v == 0));
    }

    #[test]
    fn bad_input_is_refused_with_its_place() {
        assert_eq!(
            quantize_q8_0(&[0.0; 48], 1, 48),
            Err(QuantizeError::Misaligned { cols: 48 })
        );
        assert_eq!(
            quantize_q8_0(&[0.0; 32], 2, 32),
            Err(QuantizeError::Shape {
                values: 32,
                rows: 2,
                cols: 32
            })
        );
        let mut x = vec![0.0f32; 64];
        x[40] = f32::NAN;
        assert!(matches!(
            quantize_q8_0(&x, 2, 32),
            Err(QuantizeError::NotFinite { row: 1, col: 8, .. })
        ));
        x[40] = 0.0;
        x[33] = 1.0e7;
        assert!(matches!(
            quantize_q8_0(&x, 2, 32),
            Err(QuantizeError::ScaleOverflow { row: 1, col: 0, .. })
        ));
    }
}
