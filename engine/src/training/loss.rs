//! Masked causal-LM loss in the Hugging Face convention: the logits at position `t` predict the
//! label at `t + 1`; labels equal to [`IGNORE_INDEX`] (prompt, padding) contribute nothing.

use burn::tensor::{activation, Device, Int, Tensor, TensorData};

use crate::runtime::model::ids_tensor;
use crate::runtime::{CausalLm, KvCache, ModelConfig};

/// Label value of positions that are not trained (PyTorch's `ignore_index`).
pub const IGNORE_INDEX: i64 = -100;

/// A right-padded batch: equal-length rows of input ids, labels and optional per-label weights.
///
/// Right padding needs no attention mask beyond the causal one: a real token only attends to
/// earlier positions, which are never padding, and the padded positions carry `IGNORE_INDEX`.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub input_ids: Vec<Vec<u32>>,
    pub labels: Vec<Vec<i64>>,
    /// Weight of each label (e.g. reasoning vs reply); `None` = 1 for every trained label.
    pub weights: Option<Vec<Vec<f32>>>,
}

impl Batch {
    /// Pads `rows` of `(ids, labels, weights)` on the right to the longest row.
    pub fn pad(rows: &[(Vec<u32>, Vec<i64>, Vec<f32>)], pad_id: u32) -> Batch {
        let len = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
        let mut b = Batch {
            input_ids: Vec::with_capacity(rows.len()),
            labels: Vec::with_capacity(rows.len()),
            weights: Some(Vec::with_capacity(rows.len())),
        };
        for (ids, labels, weights) in rows {
            let mut i = ids.clone();
            i.resize(len, pad_id);
            let mut l = labels.clone();
            l.resize(len, IGNORE_INDEX);
            let mut w = weights.clone();
            w.resize(len, 0.0);
            b.input_ids.push(i);
            b.labels.push(l);
            if let Some(ws) = b.weights.as_mut() {
                ws.push(w);
            }
        }
        b
    }

    /// `[batch, seq]`.
    pub fn dims(&self) -> (usize, usize) {
        (
            self.input_ids.len(),
            self.input_ids.first().map_or(0, Vec::len),
        )
    }

    /// Number of trained targets after the shift (labels `1..` that are not ignored): the
    /// denominator of the mean loss.
    pub fn target_count(&self) -> usize {
        self.labels
            .iter()
            .map(|r| r.iter().skip(1).filter(|&&l| l != IGNORE_INDEX).count())
            .sum()
    }
}

/// Logits `[batch, seq, vocab]` of every position, without a persistent KV cache.
///
/// The cache is sized exactly to the batch so the attention runs over the sequence once; on an
/// autodiff device the whole pass (including the cache write) is recorded for backward.
pub fn forward_logits(
    model: &CausalLm,
    config: &ModelConfig,
    input_ids: &[Vec<u32>],
    device: &Device,
) -> Tensor<3> {
    let b = input_ids.len();
    let s = input_ids.first().map_or(0, Vec::len);
    let mut cache = KvCache::new(config, b, s, device);
    model.forward(ids_tensor(input_ids, device), &mut cache, true)
}

/// Sum over the batch of `weight * -log p(label)` for the shifted, unmasked targets: a scalar
/// tensor. Divide by the target count of the (accumulated) batch for the HF mean.
pub fn masked_lm_loss(logits: Tensor<3>, batch: &Batch) -> Tensor<1> {
    let [b, s, v] = logits.dims();
    assert!(s >= 2, "a training row needs at least two tokens");
    let n = s - 1;
    let mut targets = Vec::with_capacity(b * n);
    let mut weights = Vec::with_capacity(b * n);
    for (r, labels) in batch.labels.iter().enumerate() {
        for t in 1..s {
            let l = labels[t];
            if l == IGNORE_INDEX {
                targets.push(0i64);
                weights.push(0.0f32);
            } else {
                assert!(
                    (0..v as i64).contains(&l),
                    "label {l} outside the vocabulary ({v})"
                );
                targets.push(l);
                weights.push(batch.weights.as_ref().map_or(1.0, |w| w[r][t]));
            }
        }
    }
    let device = logits.device();
    let targets: Tensor<3, Int> = Tensor::from_data(TensorData::new(targets, [b, n, 1]), &device);
    let weights: Tensor<2> = Tensor::from_data(TensorData::new(weights, [b, n]), &device);
    let logp = activation::log_softmax(logits.narrow(1, 0, n), 2);
    let picked = logp.gather(2, targets).reshape([b, n]);
    (picked * weights).sum().neg()
}
