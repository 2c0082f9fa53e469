//! Masked causal-LM loss in the Hugging Face convention: the logits at position `t` predict the
//! label at `t + 1`; labels equal to [`IGNORE_INDEX`] (prompt, padding) contribute nothing.

use burn::backend::Flex;
use burn::tensor::{activation, Device, Int, Tensor, TensorData};

use super::cast::in_f32;
use crate::runtime::fused::gradient_carrier::carry;
use crate::runtime::fused::linear::matmul;
use crate::runtime::kernels::xent_columns;
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
///
/// This is the plain formulation on full logits, kept as the reference that [`lm_loss`] is
/// tested against; training uses [`lm_loss`].
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

/// Most trained positions whose logits [`head_loss`] computes at once. Each chunk reads the
/// whole `[vocab, hidden]` head once per product (GEMM packs it again for every chunk), so the
/// chunk must be long against that read: on the Qwen3-0.6B-shape LoRA step at 511 positions,
/// chunks of 138 rows (the former 80 MiB budget) took 1.9 s for the head + loss and one chunk
/// 1.2 s. The `[vocab, rows]` buffer is then at most the head's own size when `hidden >= 512`
/// (297 MiB at a 151,936-token vocabulary).
pub const LOGIT_CHUNK_ROWS: usize = 512;

/// Rows per chunk for `n` trained positions: as few chunks as [`LOGIT_CHUNK_ROWS`] allows, of
/// equal size (each chunk reads the whole head once per product, so a short last chunk costs
/// as much as a full one).
fn balanced_chunk_rows(n: usize) -> usize {
    let chunks = n.div_ceil(LOGIT_CHUNK_ROWS).max(1);
    n.div_ceil(chunks)
}

/// The same value and gradients as `masked_lm_loss(forward_logits(..))`, computed with the LM
/// head fused into the loss (see [`head_loss`]).
///
/// The body runs without a KV cache, in the dtype of `model`'s weights (a bf16 compute copy
/// computes in bf16); `_config` is the model's, kept so every loss entry point reads alike.
pub fn lm_loss(
    model: &CausalLm,
    _config: &ModelConfig,
    batch: &Batch,
    device: &Device,
) -> Tensor<1> {
    let hidden = model.forward_hidden(ids_tensor(&batch.input_ids, device));
    if !model.head_is_plain() {
        return masked_lm_loss(in_f32(model.head_forward(hidden)), batch);
    }
    head_loss(hidden, model.head_weight(), batch)
}

/// Weighted cross-entropy of `hidden` `[batch, seq, hidden]` through the head `[vocab, hidden]`,
/// as [`masked_lm_loss`] defines it, without building the logits as one autodiff tensor.
///
/// Only trained positions get logits, a chunk of rows at a time, on the backend without
/// autodiff; each chunk's gradient `weight * (softmax - onehot)` is formed in place and
/// multiplied straight back into `d loss / d hidden` (and `d loss / d head` when the head
/// trains). The returned tensor carries those gradients into the autodiff graph through
/// [`carry`] (`sum((x - detach(x)) * g)` as one op), whose value is exactly zero and whose
/// gradient with respect to `x` is `g`; the loss value itself is added as a constant. On a 151,936-token vocabulary this
/// replaces a dozen passes over a `[seq, vocab]` tensor (log-softmax, gather and their backward,
/// mostly single-threaded) by one threaded pass per chunk, and bounds that buffer's memory.
pub fn head_loss(hidden: Tensor<3>, head: Tensor<2>, batch: &Batch) -> Tensor<1> {
    // Mixed precision: the logits and the loss are formed in f32 whatever the body computed in
    // (`cast` is differentiable, so the gradients go back in the body's dtype).
    let (hidden, head) = (in_f32(hidden), in_f32(head));
    let [b, s, h] = hidden.dims();
    let [v, _] = head.dims();
    assert!(s >= 2, "a training row needs at least two tokens");
    let (mut rows, mut targets, mut weights) = (Vec::new(), Vec::new(), Vec::new());
    for (r, labels) in batch.labels.iter().enumerate() {
        for t in 1..s {
            let l = labels[t];
            if l == IGNORE_INDEX {
                continue;
            }
            assert!(
                (0..v as i64).contains(&l),
                "label {l} outside the vocabulary ({v})"
            );
            let w = batch.weights.as_ref().map_or(1.0, |w| w[r][t]);
            if w != 0.0 {
                rows.push((r * s + t - 1) as i64);
                targets.push(l as usize);
                weights.push(w);
            }
        }
    }
    let device = hidden.device();
    let grad_h = hidden.is_tracked();
    let grad_w = head.is_tracked();
    let grads = grad_h || grad_w;
    let n = rows.len();
    if n == 0 {
        // Nothing trained: a zero that still reaches the graph, so `backward` works.
        return hidden.sum() * 0.0;
    }
    let rows: Tensor<1, Int> = Tensor::from_data(TensorData::new(rows, [n]), &device);
    // Trained rows of the hidden states, in the graph (`x`) and as plain values.
    let x = hidden.reshape([b * s, h]).select(0, rows);
    let xv = x.clone().inner();
    let wv = head.clone().inner();
    let chunk = balanced_chunk_rows(n);
    let mut loss = 0.0f64;
    let mut dx: Vec<Tensor<2>> = Vec::new();
    let mut dw: Option<Tensor<2>> = None;
    for c0 in (0..n).step_by(chunk) {
        let c = chunk.min(n - c0);
        let xc = xv.clone().narrow(0, c0, c);
        // Logits as `[vocab, rows]` = W x^T: the head weight is GEMM's left operand, which it
        // packs across threads (a right operand is packed on the calling thread alone).
        let zt = matmul(wv.clone(), xc.clone().transpose());
        let (l, gt) = xent(zt, &targets[c0..c0 + c], &weights[c0..c0 + c], grads);
        loss += l;
        if grad_h {
            // d loss / d x = G W, computed as (W^T G^T)^T for the same reason.
            dx.push(matmul(wv.clone().transpose(), gt.clone()).transpose());
        }
        if grad_w {
            let d = matmul(gt, xc);
            dw = Some(match dw {
                Some(acc) => acc + d,
                None => d,
            });
        }
    }
    let mut out: Tensor<1> = Tensor::from_data(TensorData::new(vec![loss as f32], [1]), &device);
    if grad_h {
        let g = Tensor::cat(dx, 0);
        out = out + carry(x, g);
    }
    if let Some(g) = dw {
        out = out + carry(head, g);
    }
    out
}

/// Summed weighted cross-entropy of logit columns `zt` `[vocab, rows]`, and (with `grad`) its
/// gradient with respect to `zt`. Threaded in place on the CPU backend; tensor ops elsewhere.
fn xent(zt: Tensor<2>, targets: &[usize], weights: &[f32], grad: bool) -> (f64, Tensor<2>) {
    let cols = zt.dims()[1];
    if let Ok(mut p) = zt.clone().try_into_primitive::<Flex>() {
        // `zt` is a fresh matmul output; once it is dropped, `p` owns the buffer alone.
        drop(zt);
        let fresh = p.is_contiguous() && p.layout().start_offset() == 0;
        return match p.try_storage_mut::<f32>().filter(|_| fresh) {
            Some(data) => {
                let losses = xent_columns(data, cols, targets, weights, grad);
                (losses.iter().sum(), Tensor::from_primitive::<Flex>(p))
            }
            None => xent_ops(Tensor::from_primitive::<Flex>(p), targets, weights),
        };
    }
    xent_ops(zt, targets, weights)
}

/// [`xent`] with tensor ops, for backends other than flex.
fn xent_ops(zt: Tensor<2>, targets: &[usize], weights: &[f32]) -> (f64, Tensor<2>) {
    let [_, c] = zt.dims();
    let device = zt.device();
    let ids: Vec<i64> = targets.iter().map(|&t| t as i64).collect();
    let ids: Tensor<2, Int> = Tensor::from_data(TensorData::new(ids, [1, c]), &device);
    let w: Tensor<2> = Tensor::from_data(TensorData::new(weights.to_vec(), [1, c]), &device);
    let max = zt.clone().max_dim(0);
    let e = (zt.clone() - max.clone()).exp();
    let sum = e.clone().sum_dim(0);
    let lse = max + sum.clone().log();
    let picked = zt.gather(0, ids.clone());
    let loss: f32 = ((lse - picked) * w.clone()).sum().into_scalar();
    let g = e * (w.clone() / sum);
    let g = g.scatter(0, ids, w.neg(), burn::tensor::IndexingUpdateOp::Add);
    (f64::from(loss), g)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tensor-op path (what CUDA runs) equals the threaded CPU kernel.
    #[test]
    fn tensor_op_cross_entropy_equals_the_cpu_kernel() {
        let device = Device::flex();
        let (vocab, cols) = (300, 7);
        let z: Vec<f32> = (0..vocab * cols)
            .map(|i| ((i * 7919 % 1009) as f32 / 1009.0 - 0.5) * 12.0)
            .collect();
        let targets = [0, 299, 17, 150, 3, 3, 250];
        let weights = [1.0, 0.5, 2.0, 1.0, 0.0, 1.0, 0.25];
        let zt = || Tensor::<2>::from_data(TensorData::new(z.clone(), [vocab, cols]), &device);
        let (l1, g1) = xent(zt(), &targets, &weights, true);
        let (l2, g2) = xent_ops(zt(), &targets, &weights);
        assert!((l1 - l2).abs() < 1e-4 * l1.abs(), "{l1} vs {l2}");
        let (g1, g2) = (
            g1.into_data().try_to_vec::<f32>().unwrap(),
            g2.into_data().try_to_vec::<f32>().unwrap(),
        );
        for (a, b) in g1.iter().zip(&g2) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }
}
