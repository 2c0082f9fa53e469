//! One decode step for several sequences at once. Decoding one token reads every weight of
//! the model for a handful of multiply-adds per weight, so it is bound by memory bandwidth;
//! stepping B sequences together reads the weights once for B tokens. The projections, MLPs
//! and the head run over all B rows; RoPE and attention run per sequence, each over its own
//! KV cache at its own position, so sequences of any lengths join and leave between steps.

use burn::tensor::{Tensor, TensorData};

use super::batch_attention::{decode_attention, Heads, RopeTables};
use super::model::{append, attend, ids_tensor, CausalLm, KvCache};
use super::projection::SequenceRows;

impl CausalLm {
    /// Feeds `ids[i]` after what `caches[i]` holds, for every `i`, in one forward pass, and
    /// returns each sequence's next-token logits. Equal to [`CausalLm::next_logits`] on each
    /// sequence alone up to the rounding of the batched matrix products.
    ///
    /// # Panics
    /// When `ids` and `caches` differ in length or a cache is full (callers size caches for
    /// prompt + `max_new_tokens`, as [`super::generate`] does).
    pub fn next_logits_batch(&self, ids: &[u32], caches: &mut [&mut KvCache]) -> Vec<Vec<f32>> {
        assert_eq!(ids.len(), caches.len(), "one cache per sequence");
        let b = ids.len();
        if b == 0 {
            return Vec::new();
        }
        for c in caches.iter() {
            assert!(
                c.len < c.capacity,
                "KV cache overflow: {} + 1 > {}",
                c.len,
                c.capacity
            );
        }
        let device = self.device();
        let rope = RopeTables::read(&self.rotary);
        let _rows = SequenceRows::begin();
        let rows: Vec<Vec<u32>> = ids.iter().map(|&t| vec![t]).collect();
        let mut x = self.model.embed_tokens.lookup(ids_tensor(&rows, &device));
        for (l, layer) in self.model.layers.iter().enumerate() {
            let attn = &layer.self_attn;
            let (h, kvh, d) = (attn.num_heads, attn.num_kv_heads, attn.head_dim);
            let n_rep = h / kvh;
            let scale = 1.0 / (d as f64).sqrt();
            let xn = layer.input_layernorm.forward(x.clone());
            let q = attn.q_proj.forward(xn.clone()).reshape([b, 1, h, d]);
            let k = attn.k_proj.forward(xn.clone()).reshape([b, 1, kvh, d]);
            let v = attn.v_proj.forward(xn).reshape([b, 1, kvh, d]);
            let q = match &attn.q_norm {
                Some(n) => n.forward(q),
                None => q,
            };
            let k = match &attn.k_norm {
                Some(n) => n.forward(k),
                None => k,
            };
            let out = match &rope {
                Some(rope) => {
                    // Host attention: a few slices per sequence instead of ~40 tensor ops.
                    let mut qh = host(q);
                    let mut kh = host(k);
                    let vh = host(v);
                    let heads = Heads {
                        query: h,
                        kv: kvh,
                        dim: d,
                    };
                    let o = decode_attention(&mut qh, &mut kh, &vh, caches, l, heads, rope);
                    Tensor::from_data(TensorData::new(o, [b, 1, h * d]), &device)
                }
                None => self.tensor_attention(q, k, v, caches, l, scale, n_rep),
            };
            let hdn = x + attn.o_proj.forward(out);
            x = hdn.clone()
                + layer
                    .mlp
                    .forward(layer.post_attention_layernorm.forward(hdn));
        }
        for c in caches.iter_mut() {
            c.len += 1;
        }
        let x = self.model.norm.forward(x);
        let logits = match &self.lm_head {
            Some(head) => head.forward(x),
            None => self.model.embed_tokens.as_head(x),
        };
        let vocab = logits.dims()[2];
        let flat = logits.into_data().try_into_vec::<f32>().unwrap_or_default();
        flat.chunks(vocab.max(1)).map(<[f32]>::to_vec).collect()
    }

    /// The same attention as tensor operations, per sequence (off the flex backend).
    #[allow(clippy::too_many_arguments)]
    fn tensor_attention(
        &self,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        caches: &mut [&mut KvCache],
        l: usize,
        scale: f64,
        n_rep: usize,
    ) -> Tensor<3> {
        let [b, _, h, d] = q.dims();
        // [b, heads, 1, d]: one row per sequence, each at its own position.
        let (q, k, v) = (q.swap_dims(1, 2), k.swap_dims(1, 2), v.swap_dims(1, 2));
        let outs: Vec<Tensor<4>> = caches
            .iter_mut()
            .enumerate()
            .map(|(i, cache)| {
                let start = cache.len;
                let qi = self.rotary.apply(q.clone().narrow(0, i, 1), start);
                let ki = self.rotary.apply(k.clone().narrow(0, i, 1), start);
                let vi = v.clone().narrow(0, i, 1);
                let lc = &mut cache.layers[l];
                let keys = append(&mut lc.k, ki, start);
                let values = append(&mut lc.v, vi, start);
                attend(qi, keys, values, start, scale, n_rep)
            })
            .collect();
        Tensor::cat(outs, 0).swap_dims(1, 2).reshape([b, 1, h * d])
    }
}

/// A small activation tensor as host f32 values, row-major.
fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 activations")
}
