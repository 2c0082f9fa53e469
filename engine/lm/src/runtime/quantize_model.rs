//! A model already in memory with f32 matrices (a random benchmark model, a model after a
//! LoRA merge) turned into Q8_0 in place, as [`super::quantize_source::QuantizeOnLoad`] does
//! while loading.

use std::sync::Arc;

use burn::tensor::Tensor;

use super::error::{Result, RuntimeError};
use super::model::CausalLm;
use super::quant::{q8_0_matrix, QuantMatrix};

/// The f32 matrix as Q8_0, or `None` when its rows are not whole 32-value blocks.
fn to_q8_0(name: &str, w: Tensor<2>) -> Result<Option<Arc<QuantMatrix>>> {
    let [rows, cols] = w.dims();
    if cols % 32 != 0 {
        return Ok(None);
    }
    let values = w
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| RuntimeError::Unsupported(format!("{name}: {e:?}")))?;
    let m = q8_0_matrix(&values, rows, cols).map_err(|e| RuntimeError::Quantize {
        name: name.to_string(),
        path: "(model in memory)".into(),
        msg: e.to_string(),
    })?;
    Ok(Some(Arc::new(m)))
}

/// Every f32 matrix of `model` (projections, embedding table, untied head) held as Q8_0
/// instead; matrices already quantized, vectors and LoRA adapters are left as they are.
pub fn quantize_q8_0_in_place(model: &mut CausalLm) -> Result<()> {
    let m = &mut model.model;
    if let Some(w) = m.embed_tokens.weight.as_ref() {
        if let Some(q) = to_q8_0("model.embed_tokens.weight", w.val())? {
            m.embed_tokens.weight = None;
            m.embed_tokens.quant = Some(q);
        }
    }
    let head = model.lm_head.iter_mut().map(|p| ("lm_head".to_string(), p));
    let layers = m.layers.iter_mut().enumerate().flat_map(|(i, l)| {
        l.projections_mut()
            .map(|(n, p)| (format!("model.layers.{i}.{n}"), p))
    });
    for (name, p) in layers.chain(head) {
        let Some(w) = p.weight.as_ref() else {
            continue;
        };
        if let Some(q) = to_q8_0(&format!("{name}.weight"), w.val())? {
            p.weight = None;
            p.quant = Some(q);
        }
    }
    Ok(())
}
