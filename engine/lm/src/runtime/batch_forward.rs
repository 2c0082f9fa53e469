//! One forward pass for several sequences at once. Decoding one token reads every weight of
//! the model for a handful of multiply-adds per weight, so it is bound by memory bandwidth and
//! fixed costs; stepping B sequences together reads the weights once for B tokens. Each
//! sequence feeds one token (decoding) or a piece of its prompt (prefilling): the projections,
//! MLPs and the head run over all the rows; RoPE and attention run per sequence, each over its
//! own KV cache at its own positions, so sequences of any lengths join and leave between steps
//! and a joining prompt rides along with the decoding tokens.

use std::cell::Cell;

use burn::tensor::{DType, Tensor, TensorData};

use super::batch_attention::feed_attention;
use super::host_attention::{Heads, RopeTables};
use super::host_decode::HostLayer;
use super::host_feeds::feed_layers;
use super::model::{append, attend, ids_tensor, CausalLm, KvCache};
use super::projection::{quant_prefill, quant_products, Projection, QuantPrefill, SequenceRows};
use crate::compute_pool::on_pool;

/// Prompt tokens fed per step at most, over all prefilling sequences (first come first):
/// enough that a typical prompt (or several) prefills in one step, where each weight block
/// decoded serves many rows; few enough that a long prompt, fed in pieces, delays the
/// decoding sequences' next tokens by a bounded step. A lone prompt is fed in the same pieces
/// ([`CausalLm::prefill_logits`]).
pub const PREFILL_ROWS_PER_STEP: usize = 256;

thread_local! {
    /// Whether a step may take the host layers (`host_feeds.rs`); the tests turn it off on
    /// their thread to compare with the tensor path.
    static HOST_FEEDS: Cell<bool> = const { Cell::new(true) };
}

/// One sequence's part of a batched forward pass.
pub struct Feed<'a> {
    /// Tokens to feed after what `cache` holds: the sampled token while decoding, a piece of
    /// the prompt while prefilling. Never empty.
    pub ids: &'a [u32],
    pub cache: &'a mut KvCache,
    /// Whether the logits after its last token are wanted (a piece of a prompt that does not
    /// end it needs none).
    pub logits: bool,
}

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
        let mut feeds: Vec<Feed> = ids
            .iter()
            .zip(caches.iter_mut())
            .map(|(id, cache)| Feed {
                ids: std::slice::from_ref(id),
                cache,
                logits: true,
            })
            .collect();
        self.forward_feeds(&mut feeds)
            .into_iter()
            .map(|l| l.expect("every feed asked for logits"))
            .collect()
    }

    /// Whether [`Self::forward_feeds`] takes feeds of several tokens (prompts prefilled in the
    /// batch): on the flex backend, whose attention runs in host memory.
    pub fn feeds_prompts(&self) -> bool {
        RopeTables::read(self.rotary.tables()).is_some()
    }

    /// One forward pass for every feed: each feed's tokens after what its cache holds, the
    /// tokens of all feeds as the rows of one set of matrix products; RoPE, the KV writes and
    /// causal attention per sequence. Returns, per feed, the logits after its last token when
    /// it asked for them (the head runs on those rows only). With quantized weights a row's
    /// values are the same bits whatever the other rows are (every projection runs the
    /// integer GEMM, whose rows are independent), so a prompt's logits do not depend on
    /// whether it was fed whole or in pieces, alone or beside others.
    ///
    /// # Panics
    /// When a feed is empty, a cache would overflow, or a feed has several tokens and
    /// [`Self::feeds_prompts`] is false.
    pub fn forward_feeds(&self, feeds: &mut [Feed<'_>]) -> Vec<Option<Vec<f32>>> {
        if feeds.is_empty() {
            return Vec::new();
        }
        let counts: Vec<usize> = feeds.iter().map(|f| f.ids.len()).collect();
        for (f, &n) in feeds.iter().zip(&counts) {
            assert!(n > 0, "a feed has at least one token");
            assert!(
                f.cache.len + n <= f.cache.capacity,
                "KV cache overflow: {} + {n} > {}",
                f.cache.len,
                f.cache.capacity
            );
        }
        if let [feed] = feeds {
            if feed.ids.len() == 1 && feed.logits && self.one_row_is_the_decode_steps() {
                // A lone sequence decoding: the single-sequence step (on host memory, one
                // hand-off to the thread pool) gives its row's values bit for bit, ~1.5x faster
                // than this pass's tensor ops around the products.
                return vec![Some(self.next_logits(feed.ids, feed.cache))];
            }
        }
        let rope = RopeTables::read(self.rotary.tables());
        assert!(
            rope.is_some() || counts.iter().all(|&n| n == 1),
            "prompts are prefilled alone off the flex backend"
        );
        let wanted: Vec<bool> = feeds.iter().map(|f| f.logits).collect();
        let ids: Vec<u32> = feeds.iter().flat_map(|f| f.ids.iter().copied()).collect();
        let mut caches: Vec<&mut KvCache> = feeds.iter_mut().map(|f| &mut *f.cache).collect();
        let b = ids.len();
        let device = self.device();
        let _rows = SequenceRows::begin();
        let hidden = self.model.embed_tokens.lookup(ids_tensor(&[ids], &device));
        let width = hidden.dims()[2];
        let x = hidden.reshape([b, 1, width]);
        if let Some(rope) = rope.as_ref().filter(|_| HOST_FEEDS.with(Cell::get)) {
            if let Some(x) = self.host_layers(&x, &mut caches, &counts, rope) {
                for (c, n) in caches.iter_mut().zip(&counts) {
                    c.len += n;
                }
                return self.picked_logits(x, &counts, &wanted);
            }
        }
        let mut x = x;
        for (l, layer) in self.model.layers.iter().enumerate() {
            let attn = &layer.self_attn;
            let (h, kvh, d) = (attn.num_heads, attn.num_kv_heads, attn.head_dim);
            let n_rep = h / kvh;
            let scale = 1.0 / (d as f64).sqrt();
            let xn = layer.input_layernorm.forward(x.clone());
            let (q, k, v) = match quant_products(&[&attn.q_proj, &attn.k_proj, &attn.v_proj], &xn) {
                Some(qkv) => {
                    let [q, k, v]: [Tensor<3>; 3] = qkv.try_into().expect("three products");
                    (q, k, v)
                }
                None => (
                    attn.q_proj.forward(xn.clone()),
                    attn.k_proj.forward(xn.clone()),
                    attn.v_proj.forward(xn),
                ),
            };
            let q = q.reshape([b, 1, h, d]);
            let k = k.reshape([b, 1, kvh, d]);
            let v = v.reshape([b, 1, kvh, d]);
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
                    // Host attention: a few slices per row instead of ~40 tensor ops.
                    let mut qh = host(q);
                    let mut kh = host(k);
                    let vh = host(v);
                    let heads = Heads {
                        query: h,
                        kv: kvh,
                        dim: d,
                    };
                    let o =
                        feed_attention(&mut qh, &mut kh, &vh, &mut caches, &counts, l, heads, rope);
                    Tensor::from_data(TensorData::new(o, [b, 1, h * d]), &device)
                }
                None => self.tensor_attention(q, k, v, &mut caches, l, scale, n_rep),
            };
            let hdn = x + attn.o_proj.forward(out);
            x = hdn.clone()
                + layer
                    .mlp
                    .forward(layer.post_attention_layernorm.forward(hdn));
        }
        for (c, n) in caches.iter_mut().zip(&counts) {
            c.len += n;
        }
        self.picked_logits(x, &counts, &wanted)
    }

    /// The decoder layers of a step on host memory ([`feed_layers`]) from the embedded rows
    /// `x` `[rows, 1, hidden]`, on the pool in one hand-off; `None` (nothing changed) when a
    /// layer's weights do not allow it (f32 or LoRA weights, f32 activations, a prefill path
    /// other than the integer GEMM).
    fn host_layers(
        &self,
        x: &Tensor<3>,
        caches: &mut [&mut KvCache],
        counts: &[usize],
        rope: &RopeTables,
    ) -> Option<Tensor<3>> {
        if x.is_autodiff() || x.dtype() != DType::F32 || quant_prefill() != QuantPrefill::IntTiled {
            return None;
        }
        let dims = x.dims();
        let mut h = x.clone().into_data().try_into_vec::<f32>().ok()?;
        let layers: Vec<HostLayer<'_>> = self.model.layers.iter().map(|l| l.host_layer()).collect();
        on_pool(|| feed_layers(&layers, caches, &mut h, counts, rope))?;
        Some(Tensor::from_data(TensorData::new(h, dims), &x.device()))
    }

    /// The final norm and the head over the last row of every feed that wants logits (`x` the
    /// last layer's `[rows, 1, hidden]`); `None` for the others.
    fn picked_logits(
        &self,
        x: Tensor<3>,
        counts: &[usize],
        wanted: &[bool],
    ) -> Vec<Option<Vec<f32>>> {
        let [b, _, width] = x.dims();
        let device = x.device();
        // The last row of every feed that wants logits.
        let mut picks = Vec::new();
        let mut end = 0;
        for (n, &w) in counts.iter().zip(wanted) {
            end += n;
            if w {
                picks.push(end - 1);
            }
        }
        let mut out: Vec<Option<Vec<f32>>> = vec![None; counts.len()];
        if picks.is_empty() {
            return out;
        }
        let x = if picks.len() == b {
            x
        } else {
            let all = host(x);
            let rows: Vec<f32> = picks
                .iter()
                .flat_map(|&r| all[r * width..(r + 1) * width].iter().copied())
                .collect();
            Tensor::from_data(TensorData::new(rows, [picks.len(), 1, width]), &device)
        };
        let x = self.model.norm.forward(x);
        let logits = match &self.lm_head {
            Some(head) => head.forward(x),
            None => self.model.embed_tokens.as_head(x),
        };
        let vocab = logits.dims()[2];
        let flat = logits.into_data().try_into_vec::<f32>().unwrap_or_default();
        let mut rows = flat.chunks(vocab.max(1)).map(<[f32]>::to_vec);
        for (o, &w) in out.iter_mut().zip(wanted) {
            if w {
                *o = rows.next();
            }
        }
        out
    }

    /// Whether every row of [`Self::forward_feeds`] has the same keys, values and logits
    /// whatever else the step holds and however its prompt was split
    /// ([`Projection::rows_are_independent`] for every decoder matrix; the head does not touch
    /// the cache): a prompt prefix's keys and values may then be copied between sequences.
    pub fn rows_are_independent(&self) -> bool {
        self.feeds_prompts()
            && self
                .model
                .layers
                .iter()
                .flat_map(|l| l.projections())
                .all(|(_, p)| p.rows_are_independent())
    }

    /// The logits after feeding `ids` (a prompt, or what of it is not cached yet) to one
    /// sequence. Where rows are independent ([`Self::rows_are_independent`]) the prompt runs
    /// through [`Self::forward_feeds`] in the engine's pieces, so its keys, values and logits are
    /// the bits continuous batching computes for it, whatever was cached before and however the
    /// prompt is split: a reply then does not depend on `--max-batch`, nor on the request
    /// served before it. Elsewhere (f32 weights) it is [`Self::next_logits`].
    pub fn prefill_logits(&self, ids: &[u32], cache: &mut KvCache) -> Vec<f32> {
        if ids.is_empty() || !self.rows_are_independent() {
            return self.next_logits(ids, cache);
        }
        let pieces = ids.len().div_ceil(PREFILL_ROWS_PER_STEP);
        let mut last = None;
        for (i, piece) in ids.chunks(PREFILL_ROWS_PER_STEP).enumerate() {
            let mut feeds = [Feed {
                ids: piece,
                cache: &mut *cache,
                logits: i + 1 == pieces,
            }];
            last = self.forward_feeds(&mut feeds).pop().flatten();
        }
        last.expect("the last piece asks for logits")
    }

    /// Whether a lone token's row here equals the single-sequence decode step's
    /// ([`Projection::one_row_is_the_decode_steps`] for every matrix, the head included). With
    /// [`Self::rows_are_independent`] too, a request decodes the same bits on the
    /// single-request path (`psy serve --max-batch 1`, `generate`, sessions) as in any batch.
    pub fn one_row_is_the_decode_steps(&self) -> bool {
        let layers = self.model.layers.iter().flat_map(|l| l.projections());
        layers
            .map(|(_, p)| p)
            .all(Projection::one_row_is_the_decode_steps)
            && match &self.lm_head {
                Some(head) => head.one_row_is_the_decode_steps(),
                None => self.model.embed_tokens.one_row_is_the_decode_steps(),
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::config::{Architecture, ModelConfig};
    use crate::runtime::quantize_model::quantize_q8_0_in_place;
    use burn::module::Param;
    use burn::tensor::Device;

    fn cache_bits(cache: &KvCache) -> Vec<u32> {
        cache
            .layers
            .iter()
            .flat_map(|l| [&l.k, &l.v])
            .flat_map(|t| {
                let t = t.as_ref().expect("cache buffers in place").clone();
                t.into_data().try_to_vec::<f32>().unwrap()
            })
            .map(f32::to_bits)
            .collect()
    }

    /// A batched step on host memory (`host_feeds.rs`) gives the tensor path's logits and KV
    /// cache values bit for bit, with a prompt piece, a prompt's last piece and decoding
    /// tokens in one step, then a step of decoding rows only, and a lone row: Qwen3 (per-head
    /// q/k norms) and Qwen2 (q/k/v biases), Q8_0 weights with 8-bit activations.
    #[test]
    fn host_feeds_equal_the_tensor_path() {
        let device = Device::flex();
        for (arch, qk_norm, bias) in [
            (Architecture::Qwen3, true, false),
            (Architecture::Qwen2, false, true),
        ] {
            let mut c = ModelConfig::new(arch, 96, 64, 128, 2, 4, 2, 32);
            c.qk_norm = qk_norm;
            c.qkv_bias = bias;
            c.max_position_embeddings = 64;
            let mut model = CausalLm::random(&c, &device);
            for layer in &mut model.model.layers {
                let a = &mut layer.self_attn;
                for p in [&mut a.q_proj, &mut a.k_proj, &mut a.v_proj] {
                    if let Some(b) = p.bias.as_mut() {
                        let n = b.dims()[0];
                        *b = Param::from_tensor(Tensor::random(
                            [n],
                            burn::tensor::Distribution::Uniform(-0.5, 0.5),
                            &device,
                        ));
                    }
                }
            }
            quantize_q8_0_in_place(&mut model).unwrap();
            let layers: Vec<HostLayer<'_>> =
                model.model.layers.iter().map(|l| l.host_layer()).collect();
            assert!(
                layers.iter().all(|l| l.ready().is_some()),
                "{arch:?}: every layer takes the host step"
            );
            let new = || KvCache::new(&c, 1, 48, &device);
            let mut host: Vec<KvCache> = (0..3).map(|_| new()).collect();
            let mut tensor: Vec<KvCache> = (0..3).map(|_| new()).collect();
            // Two sequences with a few positions cached already, one starting its prompt.
            for caches in [&mut host, &mut tensor] {
                model.next_logits(&[5, 9, 11], &mut caches[0]);
                model.next_logits(&[40, 2], &mut caches[1]);
            }
            let steps: [&[&[u32]]; 4] = [
                &[&[7], &[60, 61, 62, 63, 64], &[3, 4, 80]],
                &[&[12], &[13, 14], &[90]],
                &[&[2], &[33], &[1]],
                &[&[44]],
            ];
            for (s, step) in steps.iter().enumerate() {
                let run = |caches: &mut Vec<KvCache>, on_host: bool| {
                    HOST_FEEDS.with(|f| f.set(on_host));
                    let mut feeds: Vec<Feed> = caches
                        .iter_mut()
                        .zip(step.iter())
                        .enumerate()
                        .map(|(i, (cache, ids))| Feed {
                            ids,
                            cache,
                            // The middle sequence's first piece goes on in the next step.
                            logits: !(s == 0 && i == 1),
                        })
                        .collect();
                    let out = model.forward_feeds(&mut feeds);
                    HOST_FEEDS.with(|f| f.set(true));
                    out
                };
                let a = run(&mut host, true);
                let b = run(&mut tensor, false);
                assert_eq!(a.len(), b.len());
                for (i, (a, b)) in a.iter().zip(&b).enumerate() {
                    assert_eq!(a.is_some(), b.is_some(), "{arch:?} step {s} feed {i}");
                    let (Some(a), Some(b)) = (a, b) else { continue };
                    assert!(a.iter().any(|v| *v != 0.0));
                    for (j, (x, y)) in a.iter().zip(b).enumerate() {
                        assert_eq!(
                            x.to_bits(),
                            y.to_bits(),
                            "{arch:?} step {s} feed {i}, logit {j}: {x} vs {y}"
                        );
                    }
                }
                for (i, (h, t)) in host.iter().zip(&tensor).enumerate() {
                    assert_eq!(h.len, t.len, "{arch:?} step {s} cache {i}");
                    assert!(
                        cache_bits(h) == cache_bits(t),
                        "{arch:?} step {s}: cache {i} differs"
                    );
                }
            }
        }
    }
}
