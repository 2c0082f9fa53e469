//! Dequantisation of every block type the runtime reads, bit-exact against gguf-py, with the
//! block layouts and the errors of malformed data.

use half::{bf16, f16};

use super::kquants;
use super::legacy;
use crate::runtime::ggml_type::GgmlDType;

/// Why a run of bytes cannot be dequantised as a given type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantError {
    #[error("unsupported tensor type {0}")]
    Unsupported(GgmlDType),
    #[error("{len} bytes is not a whole number of {dtype} blocks of {block} bytes")]
    PartialBlock {
        dtype: GgmlDType,
        len: usize,
        block: usize,
    },
    #[error("{values} values is not a whole number of {dtype} blocks of {block} elements")]
    Misaligned {
        dtype: GgmlDType,
        values: usize,
        block: usize,
    },
}

/// Whether [`dequantize_into`] handles this type.
pub fn is_supported(dtype: GgmlDType) -> bool {
    dtype.is_supported()
}

/// (elements, bytes) of one block of a supported type.
pub fn block_layout(dtype: GgmlDType) -> Result<(usize, usize), QuantError> {
    if !is_supported(dtype) {
        return Err(QuantError::Unsupported(dtype));
    }
    let (e, b) = dtype.block_layout().ok_or(QuantError::Unsupported(dtype))?;
    Ok((e as usize, b as usize))
}

/// Dequantises `bytes` (whole blocks of `dtype`) into `out`, which must hold exactly as many
/// values as the blocks encode; anything else is an error, never a partial read.
///
/// Inlined so that a caller compiled for AVX2 (see `matrix.rs`) gets the block loops
/// vectorised for it; the arithmetic, and so the result, is the same either way.
#[inline(always)]
pub fn dequantize_into(dtype: GgmlDType, bytes: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
    let (elems, block) = block_layout(dtype)?;
    if !bytes.len().is_multiple_of(block) {
        return Err(QuantError::PartialBlock {
            dtype,
            len: bytes.len(),
            block,
        });
    }
    if out.len() != bytes.len() / block * elems {
        return Err(QuantError::Misaligned {
            dtype,
            values: out.len(),
            block: elems,
        });
    }
    /// Runs `f` over matching (input block, output block) pairs as fixed-size arrays.
    #[inline(always)]
    fn each<const B: usize, const E: usize>(
        bytes: &[u8],
        out: &mut [f32],
        f: impl Fn(&[u8; B], &mut [f32; E]),
    ) {
        for (blk, o) in bytes.chunks_exact(B).zip(out.chunks_exact_mut(E)) {
            f(
                blk.try_into().expect("whole block"),
                o.try_into().expect("whole block"),
            );
        }
    }
    use GgmlDType::*;
    match dtype {
        F32 => each::<4, 1>(bytes, out, |b, o| o[0] = f32::from_le_bytes(*b)),
        F16 => each::<2, 1>(bytes, out, |b, o| o[0] = f16::from_le_bytes(*b).to_f32()),
        BF16 => each::<2, 1>(bytes, out, |b, o| o[0] = bf16::from_le_bytes(*b).to_f32()),
        Q4_0 => each(bytes, out, legacy::q4_0),
        Q4_1 => each(bytes, out, legacy::q4_1),
        Q5_0 => each(bytes, out, legacy::q5_0),
        Q5_1 => each(bytes, out, legacy::q5_1),
        Q8_0 => each(bytes, out, legacy::q8_0),
        Q2K => each(bytes, out, kquants::q2_k),
        Q3K => each(bytes, out, kquants::q3_k),
        Q4K => each(bytes, out, kquants::q4_k),
        Q5K => each(bytes, out, kquants::q5_k),
        Q6K => each(bytes, out, kquants::q6_k),
        other => return Err(QuantError::Unsupported(other)),
    }
    Ok(())
}

/// [`dequantize_into`] a new vector.
pub fn dequantize(dtype: GgmlDType, bytes: &[u8]) -> Result<Vec<f32>, QuantError> {
    let (elems, block) = block_layout(dtype)?;
    let mut out = vec![0.0f32; bytes.len() / block * elems];
    dequantize_into(dtype, bytes, &mut out)?;
    Ok(out)
}
