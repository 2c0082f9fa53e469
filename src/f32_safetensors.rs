//! f32 tensors written as one safetensors file: the screen's head and adapter files and the
//! member cache's entries share this, so what the cache keeps is written as the shipped files are.

use std::collections::HashMap;

use anyhow::Result;
use psy_lm::encoder::adapter::NamedTensor;
use safetensors::tensor::TensorView;

/// Serialises `tensors` (name, shape, values) as little-endian f32, with optional metadata.
pub fn f32_safetensors(
    tensors: &[NamedTensor],
    metadata: Option<HashMap<String, String>>,
) -> Result<Vec<u8>> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((n, s, _), b)| {
            Ok((
                n.clone(),
                TensorView::new(safetensors::Dtype::F32, s.clone(), b)?,
            ))
        })
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()?;
    Ok(safetensors::serialize(views, metadata)?)
}
