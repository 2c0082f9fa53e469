//! A tensor source that hands out its f32 (or f16/bf16) matrices as Q8_0 blocks
//! (`PSY_WEIGHTS=q8_0`): a Hugging Face checkpoint then loads at ~1.06 bytes a weight instead of
//! 4 and decodes through the integer kernels, without an f32 copy of the model in between
//! (each matrix is quantized as it is read).

use std::path::Path;

use super::error::{Result, RuntimeError};
use super::quant::{q8_0_matrix, QuantMatrix};
use super::weights::TensorSource;

/// Wraps `inner`: matrices it keeps in a block format (a GGUF's quantized or f16 ones) stay
/// so; other matrices whose rows are
/// whole Q8_0 blocks (32 values) are quantized; vectors (norms, biases) and matrices of other
/// widths stay f32.
pub struct QuantizeOnLoad<'a> {
    inner: &'a mut dyn TensorSource,
}

impl<'a> QuantizeOnLoad<'a> {
    pub fn new(inner: &'a mut dyn TensorSource) -> Self {
        Self { inner }
    }
}

impl TensorSource for QuantizeOnLoad<'_> {
    fn contains(&self, name: &str) -> bool {
        self.inner.contains(name)
    }

    fn take(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        self.inner.take(name, shape)
    }

    fn take_quant(&mut self, name: &str, shape: &[usize]) -> Result<Option<QuantMatrix>> {
        if let Some(m) = self.inner.take_quant(name, shape)? {
            return Ok(Some(m));
        }
        let &[rows, cols] = shape else {
            return Ok(None);
        };
        if cols % 32 != 0 {
            return Ok(None);
        }
        let values = self.inner.take(name, shape)?;
        q8_0_matrix(&values, rows, cols)
            .map(Some)
            .map_err(|e| RuntimeError::Quantize {
                name: name.to_string(),
                path: self.inner.origin().to_path_buf(),
                msg: e.to_string(),
            })
    }

    fn finish(&self) -> Result<()> {
        self.inner.finish()
    }

    fn origin(&self) -> &Path {
        self.inner.origin()
    }
}
