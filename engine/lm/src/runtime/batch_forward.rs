//! One forward pass for several sequences at once. Decoding one token reads every weight of
//! the model for a handful of multiply-adds per weight, so it is bound by memory bandwidth and
//! fixed costs; stepping B sequences together reads the weights once for B tokens. Each
//! sequence feeds one token (decoding) or a piece of its prompt (prefilling): the projections,
//! MLPs and the head run over all the rows; RoPE and attention run per sequence, each over its
//! own KV cache at its own positions, so sequences of any lengths join and leave between steps
//! and a joining prompt rides along with the decoding tokens.

use burn::tensor::{Tensor, TensorData};

use super::batch_attention::feed_attention;
use super::host_attention::{Heads, RopeTables};
use super::model::{append, attend, ids_tensor, CausalLm, KvCache};
use super::projection::{quant_products, Projection, SequenceRows};

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
        let mut x = hidden.reshape([b, 1, width]);
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
        // The last row of every feed that wants logits.
        let mut picks = Vec::new();
        let mut end = 0;
        for (n, &w) in counts.iter().zip(&wanted) {
            end += n;
            if w {
                picks.push(end - 1);
            }
        }
        let mut out: Vec<Option<Vec<f32>>> = vec![None; feeds.len()];
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
        for (o, &w) in out.iter_mut().zip(&wanted) {
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

    /// Whether a lone token's row here equals the single-sequence decode step's
    /// ([`Projection::one_row_is_the_decode_steps`] for every matrix, the head included).
    fn one_row_is_the_decode_steps(&self) -> bool {
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
