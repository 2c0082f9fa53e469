//! One decoder-only transformer (Qwen3, Qwen2, Llama/SmolLM2) as a Burn module.
//!
//! Struct and field names follow the Hugging Face checkpoints (`model.layers.N.self_attn.q_proj`,
//! ...), so weights load by name. Projections keep the HF `[out, in]` layout: it makes tied
//! embeddings free (the LM head *is* `embed_tokens.weight`) and lets batch-1 decoding run the
//! row-parallel GEMV of [`super::kernels`] straight on the f32 weight data, or on the GGUF
//! blocks of a quantized weight ([`super::projection`]).

use burn::module::{Module, Param};
use burn::tensor::{activation, DType, Device, Int, Tensor, TensorData};

use super::config::ModelConfig;
use super::dense::{linear, load};
use super::error::{Result, RuntimeError};
use super::fused::attention::{causal_attention, Geometry};
use super::fused::rms_norm::rms_norm;
use super::fused::rope::rope_heads_first;
use super::fused::swiglu::swiglu;
use super::host_attention::{decode_attention, Heads, RopeTables};
use super::host_decode::{decode_layers, HostLayer, Norm};
use super::lora::LoraAdapter;
use super::projection::{quant_products, quant_swiglu, Projection, TokenEmbedding};
use super::weights::TensorSource;
use crate::compute_pool::on_pool;

/// Token ids of equal-length rows as a `[batch, seq]` Int tensor.
pub fn ids_tensor(rows: &[Vec<u32>], device: &Device) -> Tensor<2, Int> {
    let seq = rows.first().map_or(0, Vec::len);
    assert!(
        rows.iter().all(|r| r.len() == seq),
        "rows must have equal length"
    );
    let data: Vec<i64> = rows.iter().flatten().map(|&i| i64::from(i)).collect();
    Tensor::from_data(TensorData::new(data, [rows.len(), seq]), device)
}

/// A bias-optional f32 linear layer with HF field names (`weight` `[out, in]`, `bias` `[out]`),
/// used by the sentence encoder; the decoder's projections are [`Projection`]s, which may also
/// hold a quantized weight.
#[derive(Module, Debug)]
pub struct Linear {
    pub weight: Param<Tensor<2>>,
    pub bias: Option<Param<Tensor<1>>>,
    /// Low-rank trainable update (LoRA fine-tuning); `None` for plain inference and full SFT.
    pub lora: Option<LoraAdapter>,
}

impl Linear {
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let bias = self.bias.as_ref().map(|b| b.val());
        match &self.lora {
            Some(adapter) => linear(self.weight.val(), bias, x.clone()) + adapter.forward(x),
            None => linear(self.weight.val(), bias, x),
        }
    }
}

/// Root-mean-square norm over the last axis, computed in f32 as transformers does.
#[derive(Module, Debug)]
pub struct RmsNorm {
    pub weight: Param<Tensor<1>>,
    pub eps: f64,
}

impl RmsNorm {
    fn load(
        src: &mut dyn TensorSource,
        name: &str,
        dim: usize,
        eps: f64,
        d: &Device,
    ) -> Result<Self> {
        Ok(Self {
            weight: load(src, &format!("{name}.weight"), [dim], d)?,
            eps,
        })
    }

    fn ones(dim: usize, eps: f64, device: &Device) -> Self {
        Self {
            weight: Param::from_tensor(Tensor::ones([dim], device)),
            eps,
        }
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let dtype = x.dtype();
        if dtype != DType::F32 {
            // Mixed precision (training in bf16): normalise in f32 and scale in the input's
            // dtype, as transformers' `Qwen3RMSNorm` does (`weight * x.to(input_dtype)`).
            let x = x.cast(DType::F32);
            let ms = (x.clone() * x.clone()).mean_dim(D - 1);
            let normed = (x * (ms + self.eps).sqrt().recip()).cast(dtype);
            return normed * self.weight.val().unsqueeze::<D>();
        }
        let weight = self.weight.val();
        if let Some(y) = rms_norm(&x, &weight, self.eps) {
            return y;
        }
        let ms = (x.clone() * x.clone()).mean_dim(D - 1);
        x * (ms + self.eps).sqrt().recip() * weight.unsqueeze::<D>()
    }
}

/// Rotary position embedding in the half-split layout of transformers (`rotate_half`), not the
/// interleaved pairs of Burn's `RotaryEncoding`.
#[derive(Module, Debug)]
pub struct Rotary {
    /// `[positions, head_dim]`, each frequency repeated for both halves.
    cos: Tensor<2>,
    sin: Tensor<2>,
}

impl Rotary {
    fn new(head_dim: usize, theta: f64, positions: usize, device: &Device) -> Self {
        let half = head_dim / 2;
        // Angles in f32 as transformers computes them (inv_freq is f32 there too).
        let inv: Vec<f32> = (0..half)
            .map(|i| 1.0 / (theta.powf((2 * i) as f64 / head_dim as f64)) as f32)
            .collect();
        let mut cos = Vec::with_capacity(positions * head_dim);
        let mut sin = Vec::with_capacity(positions * head_dim);
        for p in 0..positions {
            // Both halves of a head use the same frequencies (`cat(freqs, freqs)`).
            for _half in 0..2 {
                for f in &inv {
                    let a = p as f32 * f;
                    cos.push(a.cos());
                    sin.push(a.sin());
                }
            }
        }
        Self {
            cos: Tensor::from_data(TensorData::new(cos, [positions, head_dim]), device),
            sin: Tensor::from_data(TensorData::new(sin, [positions, head_dim]), device),
        }
    }

    /// Rotates `x` `[batch, heads, seq, head_dim]` whose first row sits at position `start`.
    pub(crate) fn apply(&self, x: Tensor<4>, start: usize) -> Tensor<4> {
        let [_, _, s, d] = x.dims();
        let cos = self.cos.clone().narrow(0, start, s).reshape([1, 1, s, d]);
        let sin = self.sin.clone().narrow(0, start, s).reshape([1, 1, s, d]);
        // The tables are f32; a bf16 training forward rotates in its own dtype.
        let (cos, sin) = match x.dtype() {
            DType::F32 => (cos, sin),
            dtype => (cos.cast(dtype), sin.cast(dtype)),
        };
        let x1 = x.clone().narrow(3, 0, d / 2);
        let x2 = x.clone().narrow(3, d / 2, d / 2);
        let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
        x * cos + rotated * sin
    }

    /// Rotates `x` `[batch, seq, heads, head_dim]` like [`Self::apply`] and returns it heads
    /// first, `[batch, heads, seq, head_dim]`: one fused pass on f32 flex tensors.
    pub(crate) fn apply_heads_first(&self, x: Tensor<4>, start: usize) -> Tensor<4> {
        rope_heads_first(&x, &self.cos, &self.sin, start)
            .unwrap_or_else(|| self.apply(x.swap_dims(1, 2), start))
    }

    /// Number of positions the tables cover.
    pub fn positions(&self) -> usize {
        self.cos.dims()[0]
    }

    /// The cosine and sine tables, `[positions, head_dim]` (host kernels read them).
    pub(crate) fn tables(&self) -> (&Tensor<2>, &Tensor<2>) {
        (&self.cos, &self.sin)
    }
}

/// SwiGLU feed-forward: `down(silu(gate(x)) * up(x))`.
#[derive(Module, Debug)]
pub struct Mlp {
    pub gate_proj: Projection,
    pub up_proj: Projection,
    pub down_proj: Projection,
}

impl Mlp {
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        if let Some(hidden) = quant_swiglu(&self.gate_proj, &self.up_proj, &x) {
            return self.down_proj.forward(hidden);
        }
        let hidden = swiglu(self.gate_proj.forward(x.clone()), self.up_proj.forward(x));
        self.down_proj.forward(hidden)
    }
}

/// Pre-allocated key/value cache of one layer, `[batch, kv_heads, capacity, head_dim]`.
#[derive(Debug, Clone)]
pub(crate) struct LayerCache {
    pub(crate) k: Option<Tensor<4>>,
    pub(crate) v: Option<Tensor<4>>,
}

/// Key/value cache of all layers, allocated once for `capacity` positions.
#[derive(Debug, Clone)]
pub struct KvCache {
    pub(crate) layers: Vec<LayerCache>,
    pub(crate) len: usize,
    pub(crate) capacity: usize,
}

impl KvCache {
    pub fn new(config: &ModelConfig, batch: usize, capacity: usize, device: &Device) -> Self {
        let shape = [batch, config.num_key_value_heads, capacity, config.head_dim];
        let layers = (0..config.num_hidden_layers)
            .map(|_| LayerCache {
                k: Some(Tensor::zeros(shape, device)),
                v: Some(Tensor::zeros(shape, device)),
            })
            .collect();
        Self {
            layers,
            len: 0,
            capacity,
        }
    }

    /// Positions filled so far (the position of the next token).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Forgets the cached positions; the buffers are reused.
    pub fn reset(&mut self) {
        self.len = 0;
    }

    /// Keeps only the first `len` positions (e.g. to re-run decoding from a shared prefix).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Every layer's keys and values of the first `len` positions (at most [`Self::len`]),
    /// each `[batch, kv_heads, len, head_dim]` in row-major order: what the on-disk prompt
    /// cache stores.
    pub fn export(&self, len: usize) -> Vec<[Vec<f32>; 2]> {
        let len = len.min(self.len);
        let host = |t: &Option<Tensor<4>>| -> Vec<f32> {
            let t = t.as_ref().expect("cache buffer present");
            t.clone()
                .narrow(2, 0, len)
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .expect("f32 data")
        };
        self.layers
            .iter()
            .map(|l| [host(&l.k), host(&l.v)])
            .collect()
    }

    /// Fills the first `len` positions with [`Self::export`]'s output and forgets the rest;
    /// `None` when the layer count or a layer's size does not match this cache.
    pub fn import(&mut self, layers: &[[Vec<f32>; 2]], len: usize) -> Option<()> {
        if layers.len() != self.layers.len() || len > self.capacity {
            return None;
        }
        for (slot, kv) in self.layers.iter_mut().zip(layers) {
            for (buf, values) in [&mut slot.k, &mut slot.v].into_iter().zip(kv) {
                let [b, h, _, d] = buf.as_ref().expect("cache buffer present").dims();
                if values.len() != b * h * len * d {
                    return None;
                }
                let device = buf.as_ref().expect("cache buffer present").device();
                let new =
                    Tensor::from_data(TensorData::new(values.clone(), [b, h, len, d]), &device);
                append(buf, new, 0);
            }
        }
        self.len = len;
        Some(())
    }

    /// Copies the first `n` positions of `from` (a cache of the same model) into this one,
    /// which then holds exactly them; `None` (nothing changed) when `from` holds fewer or this
    /// cache has no room.
    pub fn copy_prefix(&mut self, from: &KvCache, n: usize) -> Option<()> {
        if from.layers.len() != self.layers.len() || n > from.len || n > self.capacity {
            return None;
        }
        for (slot, src) in self.layers.iter_mut().zip(&from.layers) {
            for (buf, values) in [(&mut slot.k, &src.k), (&mut slot.v, &src.v)] {
                let values = values.as_ref().expect("cache buffer present");
                append(buf, values.clone().narrow(2, 0, n), 0);
            }
        }
        self.len = n;
        Some(())
    }
}

/// Writes `new` at `start` into a cache buffer and returns the filled prefix `[.., 0..end, ..]`.
pub(crate) fn append(slot: &mut Option<Tensor<4>>, new: Tensor<4>, start: usize) -> Tensor<4> {
    let [b, h, s, d] = new.dims();
    // Taking the buffer out keeps its storage uniquely owned, so flex writes in place.
    let buf = slot.take().expect("cache buffer present");
    let buf = buf.slice_assign([0..b, 0..h, start..start + s, 0..d], new);
    let prefix = buf.clone().narrow(2, 0, start + s);
    *slot = Some(buf);
    prefix
}

/// Grouped-query self-attention.
#[derive(Module, Debug)]
pub struct Attention {
    pub q_proj: Projection,
    pub k_proj: Projection,
    pub v_proj: Projection,
    pub o_proj: Projection,
    pub q_norm: Option<RmsNorm>,
    pub k_norm: Option<RmsNorm>,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
}

impl Attention {
    fn forward(
        &self,
        x: Tensor<3>,
        rotary: &Rotary,
        cache: &mut LayerCache,
        start: usize,
    ) -> Tensor<3> {
        if let Some(out) = self.decode_step(&x, rotary, cache, start) {
            return self.output(out);
        }
        let (q, k, v) = self.qkv(x, rotary, start);
        // 5. Append to the KV cache; attend over every cached position.
        let k = append(&mut cache.k, k, start);
        let v = append(&mut cache.v, v, start);
        let out = self.causal_blocks(q, k, v, start);
        self.output(out)
    }

    /// One decoded token of one sequence (`x` `[1, 1, hidden]`, f32 on the flex backend, no
    /// autodiff): projections and q/k norms as [`Self::qkv`], then RoPE, the cache write and
    /// the attention on host memory ([`decode_attention`]); the heads `[1, heads, 1, d]`, or
    /// `None` for every other case.
    fn decode_step(
        &self,
        x: &Tensor<3>,
        rotary: &Rotary,
        cache: &mut LayerCache,
        start: usize,
    ) -> Option<Tensor<4>> {
        let [b, s, _] = x.dims();
        if b != 1 || s != 1 || x.is_autodiff() || x.dtype() != DType::F32 {
            return None;
        }
        let rope = RopeTables::read(rotary.tables())?;
        let (h, kvh, d) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let (q, k, v) = self.heads(x.clone());
        let host = |t: Tensor<4>| -> Option<Vec<f32>> {
            t.into_data().convert::<f32>().try_into_vec::<f32>().ok()
        };
        let (mut qh, mut kh, vh) = (host(q)?, host(k)?, host(v)?);
        let heads = Heads {
            query: h,
            kv: kvh,
            dim: d,
        };
        let out = decode_attention(
            &mut qh,
            &mut kh,
            &vh,
            &mut cache.k,
            &mut cache.v,
            start,
            heads,
            &rope,
        );
        Some(Tensor::from_data(
            TensorData::new(out, [1, h, 1, d]),
            &x.device(),
        ))
    }

    /// Steps 1-3 of the attention: `x` `[b, s, hidden]` projected, split into heads
    /// `[b, s, heads, d]` (queries) and `[b, s, kv_heads, d]` (keys, values), q and k normed per
    /// head (Qwen3 only).
    fn heads(&self, x: Tensor<3>) -> (Tensor<4>, Tensor<4>, Tensor<4>) {
        let [b, s, _] = x.dims();
        let (h, kvh, d) = (self.num_heads, self.num_kv_heads, self.head_dim);
        // 1. Project (quantized ones in one pass over the thread pool where they can).
        let (q, k, v) =
            match quant_products(&[&self.q_proj, &self.k_proj, &self.v_proj], &x).as_deref() {
                Some([q, k, v]) => (q.clone(), k.clone(), v.clone()),
                _ => (
                    self.q_proj.forward(x.clone()),
                    self.k_proj.forward(x.clone()),
                    self.v_proj.forward(x),
                ),
            };
        // 2. Split heads: [b, s, heads, d].
        let q = q.reshape([b, s, h, d]);
        let k = k.reshape([b, s, kvh, d]);
        let v = v.reshape([b, s, kvh, d]);
        // 3. Per-head RMSNorm of q and k (Qwen3 only).
        let q = match &self.q_norm {
            Some(n) => n.forward(q),
            None => q,
        };
        let k = match &self.k_norm {
            Some(n) => n.forward(k),
            None => k,
        };
        (q, k, v)
    }

    /// Steps 1-4 of the attention: queries `[b, heads, s, d]`, keys and values
    /// `[b, kv_heads, s, d]`, projected, split into heads, normed (Qwen3) and rotated to the
    /// absolute positions `start..start+s`.
    pub(crate) fn qkv(
        &self,
        x: Tensor<3>,
        rotary: &Rotary,
        start: usize,
    ) -> (Tensor<4>, Tensor<4>, Tensor<4>) {
        let (q, k, v) = self.heads(x);
        // 4. Heads first, then RoPE at absolute positions start..start+s.
        let q = rotary.apply_heads_first(q, start);
        let k = rotary.apply_heads_first(k, start);
        (q, k, v.swap_dims(1, 2))
    }

    /// Step 6: causal attention of `q` (positions `start..start+s`) over every key and value
    /// (positions `0..start+s`), a block of queries at a time: block j only needs the keys up to
    /// its last position, so most scores above the diagonal are never computed (at 512 tokens in
    /// blocks of 64, 56% of the full square, forward and backward).
    pub(crate) fn causal_blocks(
        &self,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        start: usize,
    ) -> Tensor<4> {
        let geometry = Geometry {
            first: start,
            scale: 1.0 / (self.head_dim as f64).sqrt(),
            n_rep: self.num_heads / self.num_kv_heads,
            block: QUERY_BLOCK,
        };
        causal_attention(&q, &k, &v, geometry)
            .unwrap_or_else(|| causal_blocks_ops(q, k, v, geometry))
    }

    /// Step 7: heads `[b, heads, s, d]` merged back, output projection.
    pub(crate) fn output(&self, heads: Tensor<4>) -> Tensor<3> {
        let [b, h, s, d] = heads.dims();
        self.o_proj
            .forward(heads.swap_dims(1, 2).reshape([b, s, h * d]))
    }
}

/// [`Attention::causal_blocks`] as Burn ops: what runs on other dtypes and backends, and what
/// the fused kernel ([`causal_attention`]) is tested against.
pub(crate) fn causal_blocks_ops(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    g: Geometry,
) -> Tensor<4> {
    let s = q.dims()[2];
    let t = k.dims()[2];
    let mut outs = Vec::new();
    let mut q0 = 0;
    while q0 < s {
        let len = g.block.min(s - q0);
        let keys = g.first + q0 + len;
        let qj = if len == s {
            q.clone()
        } else {
            q.clone().narrow(2, q0, len)
        };
        let (kj, vj) = if keys == t {
            (k.clone(), v.clone())
        } else {
            (k.clone().narrow(2, 0, keys), v.clone().narrow(2, 0, keys))
        };
        outs.push(attend(qj, kj, vj, g.first + q0, g.scale, g.n_rep));
        q0 += len;
    }
    if outs.len() == 1 {
        outs.pop().expect("one block")
    } else {
        Tensor::cat(outs, 2)
    }
}

/// Query rows per attention block (see `Attention::forward`, step 6). On the Qwen3-0.6B LoRA
/// step at 512 tokens, 64 took the step from ~7.5 s (unblocked) to ~6.5 s.
const QUERY_BLOCK: usize = 64;

/// Scaled dot-product attention of queries `q` `[b, heads, s, d]` at positions `first..first+s`
/// over keys/values `[b, kv_heads, t, d]` at positions `0..t`, causal: `[b, heads, s, d]`.
pub(crate) fn attend(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    first: usize,
    scale: f64,
    n_rep: usize,
) -> Tensor<4> {
    let [b, h, s, d] = q.dims();
    let t = k.dims()[2];
    let kvh = h / n_rep;
    // Query head i uses KV head i / n_rep (transformers' repeat_kv). Grouping the queries as
    // [b, kvh, n_rep*s, d] gives the same products without copying K and V.
    let q = q.reshape([b, kvh, n_rep * s, d]);
    let dtype = q.dtype();
    let mut scores = (q.matmul(k.transpose()) * scale).reshape([b, h, s, t]);
    if dtype != DType::F32 {
        // Mixed precision: the mask and the softmax in f32 (transformers' eager attention
        // takes the softmax in f32 too), the product with V back in the compute dtype.
        scores = scores.cast(DType::F32);
    }
    // Query i (position first+i) sees keys 0..=first+i.
    if t > first + 1 {
        let mask: Vec<f32> = (0..s)
            .flat_map(|i| {
                (0..t).map(move |j| {
                    if j > first + i {
                        f32::NEG_INFINITY
                    } else {
                        0.0
                    }
                })
            })
            .collect();
        let mask = Tensor::from_data(TensorData::new(mask, [1, 1, s, t]), &scores.device());
        scores = scores + mask;
    }
    let mut probs = activation::softmax(scores, 3).reshape([b, kvh, n_rep * s, t]);
    if dtype != DType::F32 {
        probs = probs.cast(dtype);
    }
    probs.matmul(v).reshape([b, h, s, d])
}

/// Pre-norm residual block: attention then SwiGLU MLP.
#[derive(Module, Debug)]
pub struct DecoderLayer {
    pub self_attn: Attention,
    pub mlp: Mlp,
    pub input_layernorm: RmsNorm,
    pub post_attention_layernorm: RmsNorm,
}

impl DecoderLayer {
    /// The layer's seven projections with their HF names inside the layer.
    pub fn projections(&self) -> [(&'static str, &Projection); 7] {
        let (a, f) = (&self.self_attn, &self.mlp);
        [
            ("self_attn.q_proj", &a.q_proj),
            ("self_attn.k_proj", &a.k_proj),
            ("self_attn.v_proj", &a.v_proj),
            ("self_attn.o_proj", &a.o_proj),
            ("mlp.gate_proj", &f.gate_proj),
            ("mlp.up_proj", &f.up_proj),
            ("mlp.down_proj", &f.down_proj),
        ]
    }

    /// [`Self::projections`], mutable.
    pub fn projections_mut(&mut self) -> [(&'static str, &mut Projection); 7] {
        let (a, f) = (&mut self.self_attn, &mut self.mlp);
        [
            ("self_attn.q_proj", &mut a.q_proj),
            ("self_attn.k_proj", &mut a.k_proj),
            ("self_attn.v_proj", &mut a.v_proj),
            ("self_attn.o_proj", &mut a.o_proj),
            ("mlp.gate_proj", &mut f.gate_proj),
            ("mlp.up_proj", &mut f.up_proj),
            ("mlp.down_proj", &mut f.down_proj),
        ]
    }

    /// Training without a KV cache (positions from 0): the normed input's queries, keys and
    /// values (see [`Attention::qkv`]).
    pub fn attention_input(
        &self,
        x: Tensor<3>,
        rotary: &Rotary,
    ) -> (Tensor<4>, Tensor<4>, Tensor<4>) {
        self.self_attn
            .qkv(self.input_layernorm.forward(x), rotary, 0)
    }

    /// Training: the rest of the layer after the attention core, from the layer input `x`
    /// (the residual) and the attention heads `[b, heads, s, d]`.
    pub fn after_attention(&self, x: Tensor<3>, heads: Tensor<4>) -> Tensor<3> {
        let h = x + self.self_attn.output(heads);
        h.clone() + self.mlp.forward(self.post_attention_layernorm.forward(h))
    }

    /// Training: the whole layer over a full sequence (positions from 0) with the eager
    /// blocked attention and no KV cache; the same values as the cached path.
    pub fn forward_uncached(&self, x: Tensor<3>, rotary: &Rotary) -> Tensor<3> {
        let (q, k, v) = self.attention_input(x.clone(), rotary);
        let heads = self.self_attn.causal_blocks(q, k, v, 0);
        self.after_attention(x, heads)
    }

    /// The layer as [`decode_layers`] reads it.
    pub(crate) fn host_layer(&self) -> HostLayer<'_> {
        let norm = |n: &RmsNorm| Norm {
            weight: n.weight.val(),
            eps: n.eps,
        };
        let a = &self.self_attn;
        HostLayer {
            input_norm: norm(&self.input_layernorm),
            post_norm: norm(&self.post_attention_layernorm),
            q_norm: a.q_norm.as_ref().map(norm),
            k_norm: a.k_norm.as_ref().map(norm),
            projections: self.projections().map(|(_, p)| p),
            heads: Heads {
                query: a.num_heads,
                kv: a.num_kv_heads,
                dim: a.head_dim,
            },
        }
    }

    fn forward(
        &self,
        x: Tensor<3>,
        rotary: &Rotary,
        cache: &mut LayerCache,
        start: usize,
    ) -> Tensor<3> {
        let h = x.clone()
            + self
                .self_attn
                .forward(self.input_layernorm.forward(x), rotary, cache, start);
        h.clone() + self.mlp.forward(self.post_attention_layernorm.forward(h))
    }
}

/// f32 embedding table `[vocab, hidden]` (the sentence encoder's; the decoder's is a
/// [`TokenEmbedding`]).
#[derive(Module, Debug)]
pub struct Embedding {
    pub weight: Param<Tensor<2>>,
}

/// The transformer body (`model.*` in HF checkpoints).
#[derive(Module, Debug)]
pub struct Model {
    pub embed_tokens: TokenEmbedding,
    pub layers: Vec<DecoderLayer>,
    pub norm: RmsNorm,
}

/// Decoder with its language-model head (`*ForCausalLM`).
#[derive(Module, Debug)]
pub struct CausalLm {
    pub model: Model,
    /// `None` when the embeddings are tied: the head reuses `model.embed_tokens.weight`.
    pub lm_head: Option<Projection>,
    pub rotary: Rotary,
}

/// Result of a forward pass that also returns every hidden state.
pub struct ForwardTrace {
    /// `[batch, seq, vocab]`.
    pub logits: Tensor<3>,
    /// 0 = embeddings, i = output of layer i, last = after the final norm.
    pub hidden_states: Vec<Tensor<3>>,
}

/// Largest RoPE table built up front; longer contexts than this are refused.
const MAX_ROPE_POSITIONS: usize = 32768;

impl CausalLm {
    /// Builds the model from named tensors; every tensor of the source must be used. The
    /// config's sizes are checked first, since the layer list and RoPE table are sized by them.
    pub fn load(config: &ModelConfig, src: &mut dyn TensorSource, device: &Device) -> Result<Self> {
        config.check_sizes().map_err(|e| RuntimeError::Config {
            path: src.origin().to_path_buf(),
            msg: e.to_string(),
        })?;
        let c = config;
        let (hd, q_out, kv_out) = (
            c.hidden_size,
            c.num_attention_heads * c.head_dim,
            c.num_key_value_heads * c.head_dim,
        );
        let eps = c.rms_norm_eps;
        let embed =
            TokenEmbedding::load(src, "model.embed_tokens.weight", c.vocab_size, hd, device)?;
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let a = format!("{p}.self_attn");
            let self_attn = Attention {
                q_proj: Projection::load(
                    src,
                    &format!("{a}.q_proj"),
                    q_out,
                    hd,
                    c.qkv_bias,
                    device,
                )?,
                k_proj: Projection::load(
                    src,
                    &format!("{a}.k_proj"),
                    kv_out,
                    hd,
                    c.qkv_bias,
                    device,
                )?,
                v_proj: Projection::load(
                    src,
                    &format!("{a}.v_proj"),
                    kv_out,
                    hd,
                    c.qkv_bias,
                    device,
                )?,
                o_proj: Projection::load(src, &format!("{a}.o_proj"), hd, q_out, c.o_bias, device)?,
                q_norm: if c.qk_norm {
                    Some(RmsNorm::load(
                        src,
                        &format!("{a}.q_norm"),
                        c.head_dim,
                        eps,
                        device,
                    )?)
                } else {
                    None
                },
                k_norm: if c.qk_norm {
                    Some(RmsNorm::load(
                        src,
                        &format!("{a}.k_norm"),
                        c.head_dim,
                        eps,
                        device,
                    )?)
                } else {
                    None
                },
                num_heads: c.num_attention_heads,
                num_kv_heads: c.num_key_value_heads,
                head_dim: c.head_dim,
            };
            let m = format!("{p}.mlp");
            let mlp = Mlp {
                gate_proj: Projection::load(
                    src,
                    &format!("{m}.gate_proj"),
                    c.intermediate_size,
                    hd,
                    false,
                    device,
                )?,
                up_proj: Projection::load(
                    src,
                    &format!("{m}.up_proj"),
                    c.intermediate_size,
                    hd,
                    false,
                    device,
                )?,
                down_proj: Projection::load(
                    src,
                    &format!("{m}.down_proj"),
                    hd,
                    c.intermediate_size,
                    false,
                    device,
                )?,
            };
            layers.push(DecoderLayer {
                self_attn,
                mlp,
                input_layernorm: RmsNorm::load(
                    src,
                    &format!("{p}.input_layernorm"),
                    hd,
                    eps,
                    device,
                )?,
                post_attention_layernorm: RmsNorm::load(
                    src,
                    &format!("{p}.post_attention_layernorm"),
                    hd,
                    eps,
                    device,
                )?,
            });
        }
        let norm = RmsNorm::load(src, "model.norm", hd, eps, device)?;
        // Tied checkpoints lack `lm_head.weight`; an untied one must have it.
        let lm_head = if !c.tie_word_embeddings || src.contains("lm_head.weight") {
            Some(Projection::load(
                src,
                "lm_head",
                c.vocab_size,
                hd,
                false,
                device,
            )?)
        } else {
            None
        };
        src.finish()?;
        tracing::info!(
            arch = ?c.architecture,
            layers = c.num_hidden_layers,
            hidden = hd,
            vocab = c.vocab_size,
            tied = lm_head.is_none(),
            "model loaded"
        );
        Ok(Self {
            model: Model {
                embed_tokens: embed,
                layers,
                norm,
            },
            lm_head,
            rotary: Rotary::new(
                c.head_dim,
                c.rope_theta,
                c.max_position_embeddings.min(MAX_ROPE_POSITIONS),
                device,
            ),
        })
    }

    /// A model with random weights, for benchmarks of a given shape.
    pub fn random(config: &ModelConfig, device: &Device) -> Self {
        let c = config;
        let (hd, q_out, kv_out) = (
            c.hidden_size,
            c.num_attention_heads * c.head_dim,
            c.num_key_value_heads * c.head_dim,
        );
        let eps = c.rms_norm_eps;
        let layers = (0..c.num_hidden_layers)
            .map(|_| DecoderLayer {
                self_attn: Attention {
                    q_proj: Projection::random(q_out, hd, c.qkv_bias, device),
                    k_proj: Projection::random(kv_out, hd, c.qkv_bias, device),
                    v_proj: Projection::random(kv_out, hd, c.qkv_bias, device),
                    o_proj: Projection::random(hd, q_out, c.o_bias, device),
                    q_norm: c.qk_norm.then(|| RmsNorm::ones(c.head_dim, eps, device)),
                    k_norm: c.qk_norm.then(|| RmsNorm::ones(c.head_dim, eps, device)),
                    num_heads: c.num_attention_heads,
                    num_kv_heads: c.num_key_value_heads,
                    head_dim: c.head_dim,
                },
                mlp: Mlp {
                    gate_proj: Projection::random(c.intermediate_size, hd, false, device),
                    up_proj: Projection::random(c.intermediate_size, hd, false, device),
                    down_proj: Projection::random(hd, c.intermediate_size, false, device),
                },
                input_layernorm: RmsNorm::ones(hd, eps, device),
                post_attention_layernorm: RmsNorm::ones(hd, eps, device),
            })
            .collect();
        Self {
            model: Model {
                embed_tokens: TokenEmbedding::random(c.vocab_size, hd, device),
                layers,
                norm: RmsNorm::ones(hd, eps, device),
            },
            lm_head: (!c.tie_word_embeddings)
                .then(|| Projection::random(c.vocab_size, hd, false, device)),
            rotary: Rotary::new(
                c.head_dim,
                c.rope_theta,
                c.max_position_embeddings.min(MAX_ROPE_POSITIONS),
                device,
            ),
        }
    }

    /// Longest sequence (prompt + generated) the position tables cover.
    pub fn max_positions(&self) -> usize {
        self.rotary.positions()
    }

    /// Embeddings and decoder layers over `ids` after the cached positions: the last layer's
    /// output, before the final norm. With `trace`, every layer's output is pushed to it.
    fn body(
        &self,
        ids: Tensor<2, Int>,
        cache: &mut KvCache,
        mut trace: Option<&mut Vec<Tensor<3>>>,
    ) -> Tensor<3> {
        let s = ids.dims()[1];
        let start = cache.len;
        assert!(
            start + s <= cache.capacity,
            "KV cache overflow: {} + {s} > {}",
            start,
            cache.capacity
        );
        if trace.is_none() && s == 1 && ids.dims()[0] == 1 {
            if let Some(x) = self.host_decode(ids.clone(), cache, start) {
                cache.len += 1;
                return x;
            }
        }
        let mut x = self.model.embed_tokens.lookup(ids);
        if let Some(t) = trace.as_deref_mut() {
            t.push(x.clone());
        }
        for (layer, lc) in self.model.layers.iter().zip(cache.layers.iter_mut()) {
            x = layer.forward(x, &self.rotary, lc, start);
            if let Some(t) = trace.as_deref_mut() {
                t.push(x.clone());
            }
        }
        cache.len += s;
        x
    }

    /// [`Self::body`] for one token of one sequence on host memory ([`decode_layers`]): the
    /// same values as the tensor path, without its Burn ops; `None` (nothing changed) where a
    /// layer's weights or the device do not allow it.
    fn host_decode(
        &self,
        ids: Tensor<2, Int>,
        cache: &mut KvCache,
        start: usize,
    ) -> Option<Tensor<3>> {
        let rope = RopeTables::read(self.rotary.tables())?;
        let x = self.model.embed_tokens.lookup(ids);
        if x.is_autodiff() || x.dtype() != DType::F32 {
            return None;
        }
        let [_, _, hidden] = x.dims();
        let device = x.device();
        let mut h = x.into_data().convert::<f32>().try_into_vec::<f32>().ok()?;
        let mut layers: Vec<_> = self
            .model
            .layers
            .iter()
            .zip(cache.layers.iter_mut())
            .map(|(l, c)| (l.host_layer(), (&mut c.k, &mut c.v)))
            .collect();
        decode_layers(&mut layers, &mut h, start, &rope)?;
        Some(Tensor::from_data(
            TensorData::new(h, [1, 1, hidden]),
            &device,
        ))
    }

    fn run(
        &self,
        ids: Tensor<2, Int>,
        cache: &mut KvCache,
        all_positions: bool,
        trace: bool,
    ) -> ForwardTrace {
        // One hand-off to the thread pool for the whole forward instead of one per parallel
        // kernel (~250 a decoded token of SmolLM2): see `compute_pool`.
        on_pool(|| self.run_here(ids, cache, all_positions, trace))
    }

    /// [`Self::run`] on the calling thread.
    fn run_here(
        &self,
        ids: Tensor<2, Int>,
        cache: &mut KvCache,
        all_positions: bool,
        trace: bool,
    ) -> ForwardTrace {
        let s = ids.dims()[1];
        let mut hidden_states = Vec::new();
        let x = self.body(ids, cache, trace.then_some(&mut hidden_states));
        let x = if all_positions {
            x
        } else {
            x.narrow(1, s - 1, 1)
        };
        let x = self.model.norm.forward(x);
        if trace {
            // transformers reports the final hidden state after the norm.
            hidden_states.pop();
            hidden_states.push(x.clone());
        }
        let logits = self.head_forward(x);
        ForwardTrace {
            logits,
            hidden_states,
        }
    }

    /// Final hidden states `[batch, seq, hidden]` (after the last norm) of every position, without
    /// the LM head: training computes the head and the loss together, a chunk of rows at a time
    /// (see `training::loss::lm_loss`), so the `[batch, seq, vocab]` logits never exist whole.
    ///
    /// The layers run without a KV cache ([`DecoderLayer::forward_uncached`]: the same values
    /// as the cached path), so nothing in the pass is allocated in a fixed dtype and a bf16
    /// copy of the weights computes in bf16 throughout.
    pub fn forward_hidden(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let mut x = self.model.embed_tokens.lookup(ids);
        // A quantized (GGUF) table is not a parameter, so it dequantises to f32 whatever the
        // compute copy's dtype is: follow the norms' weights, which always are parameters.
        let dtype = self.model.norm.weight.val().dtype();
        if x.dtype() != dtype {
            x = x.cast(dtype);
        }
        for layer in &self.model.layers {
            x = layer.forward_uncached(x, &self.rotary);
        }
        self.model.norm.forward(x)
    }

    /// The LM head over final hidden states `x` `[batch, seq, hidden]`: `[batch, seq, vocab]`.
    pub fn head_forward(&self, x: Tensor<3>) -> Tensor<3> {
        match &self.lm_head {
            Some(head) => head.forward(x),
            None => self.model.embed_tokens.as_head(x),
        }
    }

    /// The LM head's weight `[vocab, hidden]`: `lm_head.weight`, or the embeddings when tied.
    pub fn head_weight(&self) -> Tensor<2> {
        let device = self.device();
        match &self.lm_head {
            Some(head) => head.weight_f32(&device),
            None => self.model.embed_tokens.weight_f32(&device),
        }
    }

    /// Whether the LM head has a bias or a LoRA adapter, which [`Self::head_weight`] alone
    /// would miss (neither occurs in the supported checkpoints: LoRA targets the projections).
    pub fn head_is_plain(&self) -> bool {
        self.lm_head
            .as_ref()
            .is_none_or(|h| h.bias.is_none() && h.lora.is_none())
    }

    /// Runs `ids` `[batch, seq]` after the cached positions and returns the logits of every
    /// position (`all_positions`) or of the last one only (`[batch, 1, vocab]`).
    pub fn forward(
        &self,
        ids: Tensor<2, Int>,
        cache: &mut KvCache,
        all_positions: bool,
    ) -> Tensor<3> {
        self.run(ids, cache, all_positions, false).logits
    }

    /// Like [`Self::forward`] over all positions, also returning every hidden state.
    pub fn forward_trace(&self, ids: Tensor<2, Int>, cache: &mut KvCache) -> ForwardTrace {
        self.run(ids, cache, true, true)
    }

    /// How many last tokens of a prompt to run again after a prompt-cache hit so that they take
    /// the paths of a cold prefill of the whole prompt. One where rows are independent (the
    /// prompt runs through the engine's pass, [`CausalLm::prefill_logits`]); on the tensor path
    /// at least two (one token alone attends on
    /// the host, `host_attention.rs`, whose sums run in another order than the prompt's
    /// attention), and more where a short prompt multiplies quantized weights with 8-bit
    /// activations and a long one with f32 ones
    /// ([`Projection::rows_of_the_long_prompt_path`]: 17 for Q4_1 and Q8_0). Fewer would give
    /// other logits than a cold prefill and could change a greedy reply.
    pub fn prompt_refeed_rows(&self) -> usize {
        if self.rows_are_independent() {
            // Prefilled through the engine's pass (`prefill_logits`), a prompt's rows are the
            // same bits cached or not: only the last token runs again, for its logits.
            return 1;
        }
        let layers = self.model.layers.iter().flat_map(|l| l.projections());
        layers
            .map(|(_, p)| p.rows_of_the_long_prompt_path())
            .chain(
                self.lm_head
                    .iter()
                    .map(Projection::rows_of_the_long_prompt_path),
            )
            .fold(2, usize::max)
    }

    /// Convenience for batch 1: feeds token ids, returns the last position's logits.
    pub fn next_logits(&self, ids: &[u32], cache: &mut KvCache) -> Vec<f32> {
        let t = ids_tensor(&[ids.to_vec()], &self.device());
        let logits = self.forward(t, cache, false);
        logits.into_data().try_into_vec::<f32>().unwrap_or_default()
    }

    /// Device holding the weights.
    pub fn device(&self) -> Device {
        self.model.norm.weight.val().device()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::config::Architecture;
    use burn::backend::Flex;

    fn buffer_ptr(t: &Tensor<4>) -> usize {
        let p = t.clone().try_into_primitive::<Flex>().unwrap();
        p.as_slice::<f32>().unwrap().as_ptr() as usize
    }

    /// The KV cache must be written in place: a copy per step would cost O(capacity) per layer.
    #[test]
    fn kv_cache_appends_in_place() {
        let device = Device::flex();
        let mut c = ModelConfig::new(Architecture::Qwen3, 50, 16, 32, 2, 2, 1, 8);
        c.qk_norm = true;
        c.max_position_embeddings = 64;
        let model = CausalLm::random(&c, &device);
        let mut cache = KvCache::new(&c, 1, 32, &device);
        model.next_logits(&[1, 2, 3], &mut cache);
        let before = buffer_ptr(cache.layers[1].k.as_ref().unwrap());
        for t in 0..5 {
            model.next_logits(&[t], &mut cache);
        }
        assert_eq!(before, buffer_ptr(cache.layers[1].k.as_ref().unwrap()));
        assert_eq!(cache.len(), 8);
    }

    /// A decoded token of a model whose projections are all quantized takes the host step
    /// (`host_decode.rs`), and its logits equal the tensor path's (which `forward_trace`
    /// keeps) bit for bit: Qwen3 (per-head q/k norms) and Qwen2 (q/k/v biases), several steps.
    #[test]
    fn host_decode_step_equals_the_tensor_path() {
        use crate::runtime::quantize_model::quantize_q8_0_in_place;
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
            let prompt = [3u32, 17, 40, 5, 88];
            let (mut host, mut tensor, mut probe) = (
                KvCache::new(&c, 1, 32, &device),
                KvCache::new(&c, 1, 32, &device),
                KvCache::new(&c, 1, 32, &device),
            );
            for cache in [&mut host, &mut tensor, &mut probe] {
                model.next_logits(&prompt, cache);
            }
            let one = |t: u32| ids_tensor(&[vec![t]], &device);
            assert!(
                model
                    .host_decode(one(7), &mut probe, prompt.len())
                    .is_some(),
                "{arch:?}: the host step runs"
            );
            for t in [7u32, 60, 2, 95] {
                let a = model.forward(one(t), &mut host, false).into_data();
                let b = model.forward_trace(one(t), &mut tensor).logits.into_data();
                let (a, b) = (
                    a.try_to_vec::<f32>().unwrap(),
                    b.try_to_vec::<f32>().unwrap(),
                );
                assert!(a.iter().any(|v| *v != 0.0));
                for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                    assert_eq!(
                        x.to_bits(),
                        y.to_bits(),
                        "{arch:?} token {t}, logit {i}: {x} vs {y}"
                    );
                }
            }
        }
    }

    /// A prompt longer than one query block (three blocks, the last partial) gives the logits
    /// of token-by-token decoding, where every step attends over the whole cache unblocked;
    /// a second prefill after cached positions is checked the same way.
    #[test]
    fn blocked_causal_attention_equals_token_by_token_decoding() {
        let device = Device::flex();
        let mut c = ModelConfig::new(Architecture::Qwen3, 64, 32, 64, 2, 4, 2, 8);
        c.qk_norm = true;
        c.max_position_embeddings = 512;
        let model = CausalLm::random(&c, &device);
        let n = 2 * QUERY_BLOCK + 37;
        let ids: Vec<u32> = (0..n as u32).map(|i| (i * 7 + 3) % 64).collect();
        let logits = |cache: &mut KvCache, part: &[u32]| -> Vec<f32> {
            model
                .forward(ids_tensor(&[part.to_vec()], &device), cache, true)
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
        };
        let mut full_cache = KvCache::new(&c, 1, n, &device);
        let full = logits(&mut full_cache, &ids);
        let mut split_cache = KvCache::new(&c, 1, n, &device);
        let mut split = logits(&mut split_cache, &ids[..50]);
        split.extend(logits(&mut split_cache, &ids[50..]));
        let mut step_cache = KvCache::new(&c, 1, n, &device);
        let mut steps = Vec::new();
        for &t in &ids {
            steps.extend(logits(&mut step_cache, &[t]));
        }
        for (name, other) in [("token by token", &steps), ("two prefills", &split)] {
            let worst = full
                .iter()
                .zip(other)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(worst < 1e-5, "{name}: max diff {worst}");
        }
    }
}
