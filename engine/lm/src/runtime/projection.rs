//! The decoder's weight matrices, held either as f32 Burn parameters or in their GGUF block
//! format ([`QuantMatrix`]): projections (with optional bias and LoRA adapter) and the token
//! embedding table, which a tied LM head reuses.
//!
//! Kept apart from the encoder's f32-only [`super::model::Linear`]: a quantized matrix is not a
//! Burn parameter (it is not trained and has no tensor form), so it sits in a `#[module(skip)]`
//! field and the parameter is `None`; record paths (`q_proj.weight`, `q_proj.lora.*`) are those
//! of the f32 form.

use std::cell::Cell;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use burn::backend::Flex;
use burn::module::{Module, Param};
use burn::tensor::{DType, Device, Distribution, Int, Tensor, TensorData};
use rayon::prelude::*;

use super::dense::{linear, load};
use super::error::Result;
use super::fused::linear::matmul;
use super::fused::transpose::transpose_contiguous;
use super::ggml_type::GgmlDType;
use super::lora::LoraAdapter;
use super::quant::{amx_gemm, gemv_lanes, lane_gemm};
use super::quant::{has_int_kernel, Activations, IntKernel, IntOrder, QuantMatrix};
use super::silu_mul::silu_mul;
use super::weights::TensorSource;

/// Tokens from which a quantized projection with f32 activations runs Burn's GEMM on
/// dequantised tiles of rows (as llama.cpp hands large batches to BLAS): measured faster than
/// [`QuantMatrix::matmul`]'s register-blocked kernel at 64 tokens, which in turn beats per-token
/// GEMVs from 4 tokens.
pub const QUANT_GEMM_MIN_TOKENS: usize = 16;

/// How a quantized projection with 8-bit activations ([`Activations::Int8`]) multiplies a
/// prompt of several tokens. The default is [`QuantPrefill::IntTiled`]; the others stay for
/// comparison (`cargo bench --bench decode`) and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum QuantPrefill {
    /// The integer GEMM ([`QuantMatrix::matmul_int_tiled`]: activations quantized once, each
    /// weight block decoded once per tile of 8 tokens) up to [`int_gemm_max_tokens`], Burn's
    /// GEMM on dequantised tiles above.
    IntTiled,
    /// Integer dot products token by token ([`QuantMatrix::matmul_int`]) up to
    /// [`QUANT_INT_MAX_TOKENS`], Burn's GEMM on dequantised tiles above (the path before the
    /// integer GEMM).
    GemmAbove4,
}

/// With [`QuantPrefill::IntTiled`], the largest prompt the integer GEMM takes for `dtype`;
/// longer ones go to Burn's GEMM on dequantised tiles. Measured (`PSY_BENCH_CLOCK=cpu
/// RAYON_NUM_THREADS=1 cargo bench --bench decode -- prefill-q`, 8960 x 1536, CPU time, one
/// run under load ~10, tiles of 8 tokens): the K-quants' integer GEMM is faster at every length
/// (Q4_K 14.1 vs 25.3 ms at 64 tokens, 131.6 vs 224.4 at 512); the 32-value types' (one scale
/// product per 32 values and token) wins at 16 tokens (Q4_1 6.8 vs 9.8 ms) and ties or loses
/// from 64 (29.9 vs 28.6, 259.6 vs 222.1 at 512). Q5_0 likewise: Qwen2.5-0.5B's prefill (133 of
/// 170 matrices Q5_0) with its prompts above 16 tokens in the tiles fell from 171 to 168 tok/s
/// at 64 tokens and from 272 to 177 at 512 (Intel host, one window). Q5_K takes Q4_K's tiles
/// (with its fifth bit), and Q2_K and Q3_K Q6_K's 16-value groups, so all their prompts too.
/// On AVX-512 VNNI hosts the 32-value types' prompts take 16 tokens per vector
/// ([`gemv_lanes`], the GEMV's bits), faster than the dequantising GEMM (8960 x 1536, 2
/// threads, AMD host, one window: Q4_0/Q4_1/Q8_0 3.4-4.7 vs 9.1-13.2 ms at 64 tokens, 22-24 vs
/// 50-62 ms at 512), so all of them too.
pub fn int_gemm_max_tokens(dtype: GgmlDType) -> usize {
    use GgmlDType::*;
    match dtype {
        Q2K | Q3K | Q4K | Q5K | Q6K => usize::MAX,
        _ if gemv_lanes::has_gemv_lanes(IntKernel::detect(), dtype) => usize::MAX,
        _ => 16,
    }
}

/// With [`QuantPrefill::GemmAbove4`], the largest prompt the integer kernels take token by
/// token; longer ones go to Burn's GEMM (measured faster from 8 tokens before the integer GEMM).
pub const QUANT_INT_MAX_TOKENS: usize = 4;

static QUANT_PREFILL: AtomicU8 = AtomicU8::new(QuantPrefill::IntTiled as u8);

/// Selects the prefill path of every quantized projection in this process (benches compare
/// the paths in one run; inference keeps the default).
pub fn set_quant_prefill(path: QuantPrefill) {
    QUANT_PREFILL.store(path as u8, Ordering::Relaxed);
}

/// The selected prefill path.
pub fn quant_prefill() -> QuantPrefill {
    match QUANT_PREFILL.load(Ordering::Relaxed) {
        x if x == QuantPrefill::GemmAbove4 as u8 => QuantPrefill::GemmAbove4,
        _ => QuantPrefill::IntTiled,
    }
}

thread_local! {
    /// Set while a batched decode step runs on this thread (see [`SequenceRows`]).
    static ROWS_ARE_SEQUENCES: Cell<bool> = const { Cell::new(false) };
}

/// While alive, the rows of quantized projections on this thread are tokens of different
/// sequences (a continuous-batching step), so every row runs the integer GEMM, one row or
/// hundreds: each row's result is then the same bits whatever the batch (the single-token GEMV
/// sums in another order, the dequantising GEMM of long prompts rounds differently), and a
/// request decodes the same text alone or beside others.
pub(crate) struct SequenceRows {
    before: bool,
}

impl SequenceRows {
    pub(crate) fn begin() -> SequenceRows {
        SequenceRows {
            before: ROWS_ARE_SEQUENCES.with(|f| f.replace(true)),
        }
    }
}

impl Drop for SequenceRows {
    fn drop(&mut self) {
        ROWS_ARE_SEQUENCES.with(|f| f.set(self.before));
    }
}

/// f32 bytes of one dequantised tile: small enough to stay below the allocator's mmap threshold
/// (so tiles reuse heap memory instead of faulting fresh pages in on every call) and in cache.
const TILE_BYTES: usize = 4 << 20;

/// `f` of `x`'s host f32 values, row-major (borrowed, not copied, on the flex backend).
pub(crate) fn with_host_f32<R>(x: &Tensor<3>, f: impl FnOnce(&[f32]) -> R) -> R {
    if let Ok(p) = x.clone().try_into_primitive::<Flex>() {
        if let Some(s) = p.to_contiguous().as_slice::<f32>() {
            return f(s);
        }
    }
    let v = x
        .clone()
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 activations");
    f(&v)
}

/// Whether a product of `w` with `tokens` rows of activations `acts` runs Burn's GEMM on
/// dequantised tiles ([`quant_gemm`]) rather than the host kernels ([`host_product`]).
fn takes_gemm(w: &QuantMatrix, tokens: usize, acts: Activations) -> bool {
    if acts == Activations::Int8 && has_int_kernel(w.dtype()) {
        if ROWS_ARE_SEQUENCES.with(Cell::get) {
            // A batched step: however many rows (prompts included), each through the integer
            // kernels, so that a row's values do not depend on the others.
            return false;
        }
        match quant_prefill() {
            // On AMX hosts the AMX GEMM takes the long prompts of its types.
            QuantPrefill::IntTiled => {
                tokens > int_gemm_max_tokens(w.dtype()) && !amx_gemm::takes(w.dtype(), tokens)
            }
            QuantPrefill::GemmAbove4 => tokens > QUANT_INT_MAX_TOKENS,
        }
    } else {
        tokens >= QUANT_GEMM_MIN_TOKENS
    }
}

/// Whether [`host_product`] of `w` with `tokens` rows runs the integer GEMM
/// ([`QuantMatrix::matmul_int_tiled`]).
fn runs_int_gemm(w: &QuantMatrix, tokens: usize, acts: Activations) -> bool {
    acts == Activations::Int8
        && has_int_kernel(w.dtype())
        && (tokens > 1 || ROWS_ARE_SEQUENCES.with(Cell::get) || decodes_in_lanes(w.dtype()))
        && quant_prefill() == QuantPrefill::IntTiled
}

/// Whether one decoded token of `dtype` takes the engine's lane order rather than the GEMV's:
/// where the 32-value types have their lane kernel, whose sums are not the GEMV's, so that a
/// sequence decoded alone has the bits of its row beside others (`psy serve --max-batch 1` and
/// `N` give the same text). The K-quants' lanes are the GEMV's bits, so they keep the GEMV.
pub(crate) fn decodes_in_lanes(dtype: GgmlDType) -> bool {
    lane_gemm::has_lane_kernel(IntKernel::detect(), dtype)
        && quant_prefill() == QuantPrefill::IntTiled
}

/// Whether [`host_product`] of `w` with `tokens` rows runs the integer GEMV of one token
/// ([`QuantMatrix::matmul_int`]): a single sequence's decode step.
fn runs_int_gemv(w: &QuantMatrix, tokens: usize, acts: Activations) -> bool {
    acts == Activations::Int8
        && has_int_kernel(w.dtype())
        && tokens == 1
        && !runs_int_gemm(w, tokens, acts)
}

/// The order of the integer GEMM on this thread: the engine's lanes during a batched step
/// (every row of every step in one order) and for one decoded token of the types that take
/// them ([`decodes_in_lanes`]); elsewhere the GEMV's (a prompt's values equal to
/// token-by-token decoding, which the single-sequence path mixes with prefill), or the AMX
/// GEMM's for the prompts it takes (above 16 tokens for the 32-value types, summed per block;
/// the K-quants' values are the GEMV's). `IntOrder::Gemv` here would give a batched step the
/// GEMV's bits too (the 32-value types through `gemv_lanes`), at ~10-15% of the engine's
/// throughput with 8 SmolLM2 requests on the AMD host (242-286 vs 283-306 tok/s, alternating
/// runs): the GEMV's 8 float steps per block against the engine order's one.
fn int_order(tokens: usize) -> IntOrder {
    if ROWS_ARE_SEQUENCES.with(Cell::get) || tokens == 1 {
        IntOrder::Lanes
    } else {
        IntOrder::Amx
    }
}

/// `xs W^T`, `xs` `[tokens, k]` host values, by the quantized kernels: `[tokens, n]`.
fn host_product(w: &QuantMatrix, xs: &[f32], tokens: usize, acts: Activations) -> Vec<f32> {
    let mut y = vec![0.0f32; tokens * w.rows()];
    if runs_int_gemm(w, tokens, acts) {
        let kernel = IntKernel::detect();
        QuantMatrix::matmul_int_tiled_many(
            &[w],
            xs,
            tokens,
            &mut [&mut y],
            kernel,
            int_order(tokens),
        );
    } else {
        w.matmul_with(xs, tokens, &mut y, acts);
    }
    y
}

/// `x W_i^T (+ b_i)` for projections that read the same input `x` (a layer's query, key and
/// value projections) in one pass of the integer GEMM over the rayon pool
/// ([`QuantMatrix::matmul_int_tiled_many`], or [`QuantMatrix::gemv_int_many`] for a single
/// sequence's decoded token), when each of them alone would run that GEMM or GEMV
/// (quantized with 8-bit activations, no LoRA, not autodiff, not a long prompt); `None`
/// otherwise, for [`Projection::forward`] on each. The same bits as `forward` on each.
pub(crate) fn quant_products(projs: &[&Projection], x: &Tensor<3>) -> Option<Vec<Tensor<3>>> {
    let [b, s, _] = x.dims();
    let tokens = b * s;
    if x.is_autodiff() {
        return None;
    }
    let mats: Vec<&QuantMatrix> = projs
        .iter()
        .map(|p| match (&p.quant, &p.lora) {
            (Some(q), None)
                if !takes_gemm(q, tokens, p.activations)
                    && (runs_int_gemm(q, tokens, p.activations)
                        || runs_int_gemv(q, tokens, p.activations)) =>
            {
                Some(&**q)
            }
            _ => None,
        })
        .collect::<Option<_>>()?;
    if mats.iter().any(|m| m.cols() != mats[0].cols()) {
        return None;
    }
    let mut ys: Vec<Vec<f32>> = mats.iter().map(|m| vec![0.0; tokens * m.rows()]).collect();
    with_host_f32(x, |xs| {
        let mut outs: Vec<&mut [f32]> = ys.iter_mut().map(Vec::as_mut_slice).collect();
        let kernel = IntKernel::detect();
        // The GEMV only when every matrix takes it: beside one that decodes in the engine's
        // lanes, the others' tiles give the GEMV's bits anyway.
        if mats
            .iter()
            .all(|m| runs_int_gemv(m, tokens, Activations::Int8))
        {
            QuantMatrix::gemv_int_many(&mats, xs, &mut outs, kernel);
        } else {
            QuantMatrix::matmul_int_tiled_many(
                &mats,
                xs,
                tokens,
                &mut outs,
                kernel,
                int_order(tokens),
            );
        }
    });
    let device = x.device();
    Some(
        projs
            .iter()
            .zip(mats.iter().zip(ys))
            .map(|(p, (m, y))| {
                let y = Tensor::from_data(TensorData::new(y, [b, s, m.rows()]), &device);
                match &p.bias {
                    Some(bias) => y + bias.val().unsqueeze::<3>(),
                    None => y,
                }
            })
            .collect(),
    )
}

/// `x W^T` with `W` quantized `[n, k]`, `x` `[b, s, k]`.
fn quant_linear(w: &QuantMatrix, x: Tensor<3>, acts: Activations) -> Tensor<3> {
    let [b, s, k] = x.dims();
    let n = w.rows();
    let device = x.device();
    if x.is_autodiff() {
        // Autodiff needs a tensor op for the gradient of `x`; a bf16 training forward
        // multiplies in bf16.
        let dense: Tensor<2> = Tensor::from_data(TensorData::new(w.to_f32(), [n, k]), &device);
        let dense = match x.dtype() {
            DType::F32 => dense,
            dtype => dense.cast(dtype),
        };
        return linear(dense, None, x);
    }
    let tokens = b * s;
    if takes_gemm(w, tokens, acts) {
        return quant_gemm(w, x);
    }
    let y = with_host_f32(&x, |xs| host_product(w, xs, tokens, acts));
    Tensor::from_data(TensorData::new(y, [b, s, n]), &device)
}

/// `silu(x G^T) * (x U^T)` for quantized gate and up projections `G`, `U` without bias or
/// LoRA, by the host kernels, the element-wise part across the rayon pool; `None` where
/// [`Projection::forward`] and Burn's `silu` must run instead (f32 or autodiff weights, a
/// prompt long enough for the GEMM path). Burn runs `silu` and the product on one thread: under
/// perf they and their allocations were ~5% of a 512-token prefill of Qwen2.5-1.5B while the
/// pool waited. The same f32 operations in the same order as `silu(g) * u`, bit for bit.
pub(crate) fn quant_swiglu(gate: &Projection, up: &Projection, x: &Tensor<3>) -> Option<Tensor<3>> {
    let plain = |p: &Projection| p.bias.is_none() && p.lora.is_none();
    let (Some(g), Some(u)) = (&gate.quant, &up.quant) else {
        return None;
    };
    let [b, s, _] = x.dims();
    let tokens = b * s;
    if !plain(gate)
        || !plain(up)
        || x.is_autodiff()
        || takes_gemm(g, tokens, gate.activations)
        || takes_gemm(u, tokens, up.activations)
        || g.rows() != u.rows()
    {
        return None;
    }
    let hidden = if runs_int_gemv(g, tokens, gate.activations)
        && runs_int_gemv(u, tokens, up.activations)
    {
        // A decoded token: both GEMVs in one pass, the product taken by the task that
        // computed the pair.
        let mut hidden = vec![0.0f32; g.rows()];
        with_host_f32(x, |xs| {
            QuantMatrix::gemv_int_gated(g, u, xs, &mut hidden, IntKernel::detect(), silu_mul)
        });
        hidden
    } else if runs_int_gemm(g, tokens, gate.activations) && runs_int_gemm(u, tokens, up.activations)
    {
        // Both through the integer GEMM: one pass, the product taken by the task that
        // computed the pair.
        let mut hidden = vec![0.0f32; tokens * g.rows()];
        with_host_f32(x, |xs| {
            QuantMatrix::matmul_int_tiled_gated(
                g,
                u,
                xs,
                tokens,
                &mut hidden,
                IntKernel::detect(),
                int_order(tokens),
                silu_mul,
            )
        });
        hidden
    } else {
        let (mut hidden, ups) = with_host_f32(x, |xs| {
            (
                host_product(g, xs, tokens, gate.activations),
                host_product(u, xs, tokens, up.activations),
            )
        });
        hidden
            .par_chunks_mut(SWIGLU_CHUNK)
            .zip(ups.par_chunks(SWIGLU_CHUNK))
            .for_each(|(h, u)| silu_mul(h, u));
        hidden
    };
    Some(Tensor::from_data(
        TensorData::new(hidden, [b, s, g.rows()]),
        &x.device(),
    ))
}

/// Values per rayon task of [`quant_swiglu`]'s element-wise pass.
const SWIGLU_CHUNK: usize = 1 << 14;

/// `x W^T` through Burn's GEMM: `W x^T` a tile of dequantised rows at a time, as the f32 path
/// computes it (see `linear`); f32 activations. Public for the benches that compare it with
/// the integer GEMM.
pub fn quant_gemm(w: &QuantMatrix, x: Tensor<3>) -> Tensor<3> {
    let [b, s, k] = x.dims();
    let n = w.rows();
    let device = x.device();
    let xt = x.reshape([b * s, k]).transpose();
    let tile = (TILE_BYTES / 4 / k).max(1);
    let parts: Vec<Tensor<2>> = (0..n)
        .step_by(tile)
        .map(|r| {
            let rows = tile.min(n - r);
            let wt = Tensor::from_data(TensorData::new(w.rows_f32(r, rows), [rows, k]), &device);
            matmul(wt, xt.clone())
        })
        .collect();
    transpose_contiguous(Tensor::cat(parts, 0)).reshape([b, s, n])
}

/// A weight matrix as (f32 parameter, quantized blocks): exactly one is `Some`.
type Matrix = (Option<Param<Tensor<2>>>, Option<Arc<QuantMatrix>>);

/// Takes `name` `[out, inp]` from `src`, quantized when the source keeps it so.
fn load_matrix(
    src: &mut dyn TensorSource,
    name: &str,
    out: usize,
    inp: usize,
    device: &Device,
) -> Result<Matrix> {
    Ok(match src.take_quant(name, &[out, inp])? {
        Some(q) => (None, Some(Arc::new(q))),
        None => (Some(load(src, name, [out, inp], device)?), None),
    })
}

/// The f32 weight: the parameter, or the quantized matrix dequantised.
fn dense_weight(
    weight: &Option<Param<Tensor<2>>>,
    quant: &Option<Arc<QuantMatrix>>,
    device: &Device,
) -> Tensor<2> {
    match (weight, quant) {
        (Some(w), _) => w.val(),
        (None, Some(q)) => {
            Tensor::from_data(TensorData::new(q.to_f32(), [q.rows(), q.cols()]), device)
        }
        (None, None) => unreachable!("a weight matrix is either f32 or quantized"),
    }
}

/// See [`Projection::one_row_is_the_decode_steps`].
fn one_row_is_the_decode_steps(quant: Option<&QuantMatrix>, acts: Activations) -> bool {
    match quant {
        None => true,
        Some(w) => {
            acts == Activations::Int8
                && has_int_kernel(w.dtype())
                && (decodes_in_lanes(w.dtype())
                    || !lane_gemm::has_lane_kernel(IntKernel::detect(), w.dtype()))
        }
    }
}

/// A decoder projection `y = x W^T + b (+ LoRA)`, `W` `[out, in]` as in PyTorch.
#[derive(Module, Debug)]
pub struct Projection {
    /// f32 weight; `None` when it is held in `quant`.
    pub weight: Option<Param<Tensor<2>>>,
    pub bias: Option<Param<Tensor<1>>>,
    /// Low-rank trainable update (LoRA fine-tuning); `None` for plain inference and full SFT.
    pub lora: Option<LoraAdapter>,
    /// The weight in its file's block format (CPU inference from GGUF).
    #[module(skip)]
    pub quant: Option<Arc<QuantMatrix>>,
    /// How `quant` multiplies: 8-bit integer activations (default) or f32 ones.
    #[module(skip)]
    pub activations: Activations,
}

impl Projection {
    /// The fewest rows of a single sequence's prompt whose product takes the path of every
    /// longer prompt's: one more than the rows up to which 8-bit activations multiply the
    /// quantized weight where longer prompts keep f32 ones ([`int_gemm_max_tokens`]); on AMX
    /// hosts, for the types whose AMX GEMM sums each block in its own order (the 32-value
    /// types), the fewest rows it takes; else 1.
    pub fn rows_of_the_long_prompt_path(&self) -> usize {
        let Some(w) = self.quant.as_deref() else {
            return 1;
        };
        if self.activations != Activations::Int8 || !has_int_kernel(w.dtype()) {
            return 1;
        }
        let dtype = w.dtype();
        let (int_rows, amx) = match quant_prefill() {
            QuantPrefill::IntTiled => (
                int_gemm_max_tokens(dtype),
                amx_gemm::takes(dtype, usize::MAX) && !amx_gemm::keeps_gemv_bits(dtype),
            ),
            QuantPrefill::GemmAbove4 => (QUANT_INT_MAX_TOKENS, false),
        };
        let rows = int_rows.checked_add(1).unwrap_or(1);
        if amx {
            rows.max(amx_gemm::min_tokens(dtype))
        } else {
            rows
        }
    }

    /// Whether a row's values in a batched step do not depend on the other rows of the step
    /// (held quantized, 8-bit activations, an integer kernel, no LoRA): then keys and values a
    /// sequence computed for a prompt prefix are the bits another sequence would compute for it.
    pub(crate) fn rows_are_independent(&self) -> bool {
        self.lora.is_none()
            && self.activations == Activations::Int8
            && self
                .quant
                .as_deref()
                .is_some_and(|w| has_int_kernel(w.dtype()))
    }

    /// Whether one token's row of this product in a batched step (the engine's order) has the
    /// bits of the single-sequence decode step's: f32 weights (the same one-row product either
    /// way) and quantized ones with 8-bit activations whose batched kernel keeps the GEMV's
    /// order (every K-quant; not the 32-value types' lanes, which sum in their own order); never
    /// with a LoRA adapter.
    pub(crate) fn one_row_is_the_decode_steps(&self) -> bool {
        self.lora.is_none() && one_row_is_the_decode_steps(self.quant.as_deref(), self.activations)
    }

    pub(crate) fn load(
        src: &mut dyn TensorSource,
        prefix: &str,
        out: usize,
        inp: usize,
        bias: bool,
        device: &Device,
    ) -> Result<Self> {
        let (weight, quant) = load_matrix(src, &format!("{prefix}.weight"), out, inp, device)?;
        Ok(Self {
            weight,
            bias: if bias {
                Some(load(src, &format!("{prefix}.bias"), [out], device)?)
            } else {
                None
            },
            lora: None,
            quant,
            activations: Activations::default(),
        })
    }

    pub(crate) fn random(out: usize, inp: usize, bias: bool, device: &Device) -> Self {
        let std = 1.0 / (inp as f64).sqrt();
        Self {
            weight: Some(Param::from_tensor(Tensor::random(
                [out, inp],
                Distribution::Uniform(-std, std),
                device,
            ))),
            bias: bias.then(|| Param::from_tensor(Tensor::zeros([out], device))),
            lora: None,
            quant: None,
            activations: Activations::default(),
        }
    }

    /// `[out, in]`.
    pub fn dims(&self) -> [usize; 2] {
        match (&self.weight, &self.quant) {
            (Some(w), _) => w.dims(),
            (None, Some(q)) => [q.rows(), q.cols()],
            (None, None) => unreachable!("a weight matrix is either f32 or quantized"),
        }
    }

    /// The weight as an f32 tensor (dequantised when held quantized).
    pub fn weight_f32(&self, device: &Device) -> Tensor<2> {
        dense_weight(&self.weight, &self.quant, device)
    }

    /// Replaces the weight by an f32 one (after merging LoRA).
    pub fn set_weight(&mut self, w: Tensor<2>) {
        self.weight = Some(Param::from_tensor(w));
        self.quant = None;
    }

    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let bias = self.bias.as_ref().map(|b| b.val());
        let y = match (&self.weight, &self.quant) {
            (Some(w), _) => linear(w.val(), bias, x.clone()),
            (None, Some(q)) => {
                let y = quant_linear(q, x.clone(), self.activations);
                match bias {
                    Some(b) => y + b.unsqueeze::<3>(),
                    None => y,
                }
            }
            (None, None) => unreachable!("a weight matrix is either f32 or quantized"),
        };
        match &self.lora {
            Some(adapter) => y + adapter.forward(x),
            None => y,
        }
    }
}

/// Token embedding table `[vocab, hidden]` of the decoder.
#[derive(Module, Debug)]
pub struct TokenEmbedding {
    /// f32 table; `None` when it is held in `quant`.
    pub weight: Option<Param<Tensor<2>>>,
    #[module(skip)]
    pub quant: Option<Arc<QuantMatrix>>,
    /// How a tied head multiplies `quant` (see [`Projection::activations`]).
    #[module(skip)]
    pub activations: Activations,
}

impl TokenEmbedding {
    pub(crate) fn load(
        src: &mut dyn TensorSource,
        name: &str,
        vocab: usize,
        hidden: usize,
        device: &Device,
    ) -> Result<Self> {
        let (weight, quant) = load_matrix(src, name, vocab, hidden, device)?;
        Ok(Self {
            weight,
            quant,
            activations: Activations::default(),
        })
    }

    pub(crate) fn random(vocab: usize, hidden: usize, device: &Device) -> Self {
        Self {
            weight: Some(Param::from_tensor(Tensor::random(
                [vocab, hidden],
                Distribution::Normal(0.0, 0.02),
                device,
            ))),
            quant: None,
            activations: Activations::default(),
        }
    }

    /// The table as an f32 tensor (dequantised when held quantized).
    pub fn weight_f32(&self, device: &Device) -> Tensor<2> {
        dense_weight(&self.weight, &self.quant, device)
    }

    /// [`Projection::one_row_is_the_decode_steps`] for the table as the tied LM head.
    pub(crate) fn one_row_is_the_decode_steps(&self) -> bool {
        one_row_is_the_decode_steps(self.quant.as_deref(), self.activations)
    }

    /// Rows of `ids` `[b, s]`: `[b, s, hidden]`. A quantized table dequantises only those rows.
    pub fn lookup(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let [b, s] = ids.dims();
        match (&self.weight, &self.quant) {
            (Some(w), _) => {
                let w = w.val();
                let hidden = w.dims()[1];
                w.select(0, ids.reshape([b * s])).reshape([b, s, hidden])
            }
            (None, Some(q)) => {
                let device = ids.device();
                let hidden = q.cols();
                let ids = ids
                    .into_data()
                    .convert::<i64>()
                    .try_into_vec::<i64>()
                    .expect("integer ids");
                let mut out = vec![0.0f32; ids.len() * hidden];
                for (row, &id) in out.chunks_exact_mut(hidden).zip(&ids) {
                    let id = usize::try_from(id)
                        .ok()
                        .filter(|&i| i < q.rows())
                        .unwrap_or_else(|| panic!("token id {id} outside the vocabulary"));
                    q.dequantize_rows(id, row);
                }
                Tensor::from_data(TensorData::new(out, [b, s, hidden]), &device)
            }
            (None, None) => unreachable!("a weight matrix is either f32 or quantized"),
        }
    }

    /// `x E^T`: the tied LM head.
    pub fn as_head(&self, x: Tensor<3>) -> Tensor<3> {
        match (&self.weight, &self.quant) {
            (Some(w), _) => linear(w.val(), None, x),
            (None, Some(q)) => quant_linear(q, x, self.activations),
            (None, None) => unreachable!("a weight matrix is either f32 or quantized"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::silu_mul::silu;
    use burn::tensor::activation;
    use half::f16;

    /// A quantized Q8_0 projection `[rows, 64]` whose weights follow `seed`.
    fn q8_projection(rows: usize, seed: i32) -> Projection {
        let mut data = Vec::new();
        for r in 0..rows as i32 {
            for b in 0..2 {
                data.extend(f16::from_f32(0.03 * (1 + b) as f32).to_le_bytes());
                data.extend((0..32).map(|c| ((c * 7 + r * 13 + seed) % 61 - 30) as i8 as u8));
            }
        }
        Projection {
            weight: None,
            bias: None,
            lora: None,
            quant: Some(Arc::new(
                QuantMatrix::new(GgmlDType::Q8_0, rows, 64, data).unwrap(),
            )),
            activations: Activations::Int8,
        }
    }

    /// What `Mlp::forward` relies on: the fused gate and up equal Burn's `silu(gate) * up` of the
    /// same projections bit for bit, for one token (decode) and a prompt (the integer GEMM).
    #[test]
    fn fused_swiglu_equals_burns_silu_times_up() {
        let device = Device::flex();
        let (gate, up) = (q8_projection(40, 3), q8_projection(40, 11));
        for tokens in [1, 5, 16] {
            let x: Vec<f32> = (0..tokens * 64)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.07)
                .collect();
            let x = Tensor::<3>::from_data(TensorData::new(x, [1, tokens, 64]), &device);
            let fused = quant_swiglu(&gate, &up, &x).expect("quantized, no bias or LoRA");
            let want = activation::silu(gate.forward(x.clone())) * up.forward(x);
            let (fused, want) = (fused.into_data(), want.into_data());
            let (fused, want) = (
                fused.as_slice::<f32>().unwrap(),
                want.as_slice::<f32>().unwrap(),
            );
            // The gate's values span both signs and the saturated ends of the sigmoid.
            assert!(want.iter().any(|v| *v < -0.1) && want.iter().any(|v| *v > 10.0));
            for (i, (f, w)) in fused.iter().zip(want).enumerate() {
                assert_eq!(
                    f.to_bits(),
                    w.to_bits(),
                    "{tokens} tokens, value {i}: {f} vs {w}"
                );
            }
        }
    }

    /// What a prompt-cache hit relies on (`generate.rs` re-runs the last
    /// `prompt_refeed_rows` tokens): that many last rows of a long prompt, run alone, have the
    /// bits they have inside the whole prompt. On AMX hosts the 32-value types' long prompts
    /// sum each block in the AMX GEMM's order, so two rows (the GEMV's order) would differ.
    #[test]
    fn the_last_rows_of_a_long_prompt_alone_have_the_whole_prompts_bits() {
        let device = Device::flex();
        let p = q8_projection(48, 5);
        let rows = p.rows_of_the_long_prompt_path().max(2);
        let tokens = 40;
        assert!(rows < tokens, "{rows} rows");
        let x: Vec<f32> = (0..tokens * 64)
            .map(|i| ((i * 53 % 89) as f32 - 44.0) * 0.031)
            .collect();
        let run = |x: Vec<f32>, n: usize| {
            let t = Tensor::<3>::from_data(TensorData::new(x, [1, n, 64]), &device);
            p.forward(t).into_data().try_to_vec::<f32>().unwrap()
        };
        let whole = run(x.clone(), tokens);
        let tail = run(x[(tokens - rows) * 64..].to_vec(), rows);
        let whole_tail = &whole[(tokens - rows) * 48..];
        for (i, (a, b)) in tail.iter().zip(whole_tail).enumerate() {
            assert_eq!(
                a.to_bits(),
                b.to_bits(),
                "{rows} rows, value {i}: {a} vs {b}"
            );
        }
    }

    #[test]
    fn silu_is_burns_at_the_edges() {
        let device = Device::flex();
        let xs = [
            -104.0f32, -88.5, -20.0, -1e-3, -0.0, 0.0, 1e-3, 0.5, 20.0, 88.5, 104.0,
        ];
        let burn = activation::silu(Tensor::<1>::from_floats(xs, &device)).into_data();
        for (x, want) in xs.iter().zip(burn.as_slice::<f32>().unwrap()) {
            assert_eq!(silu(*x).to_bits(), want.to_bits(), "silu({x})");
        }
    }

    #[test]
    fn a_projection_with_a_bias_is_not_fused() {
        let device = Device::flex();
        let mut gate = q8_projection(8, 1);
        gate.bias = Some(Param::from_tensor(Tensor::zeros([8], &device)));
        let x = Tensor::<3>::zeros([1, 2, 64], &device);
        assert!(quant_swiglu(&gate, &q8_projection(8, 2), &x).is_none());
    }
}
