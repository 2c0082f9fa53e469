//! A weight matrix kept in its GGUF block format, multiplied without an f32 copy of itself.
//!
//! Decoding reads every weight once per token, so it is bandwidth-bound: a 4-bit matrix is a
//! sixth of the bytes of its f32 form. Rows are split across the rayon pool and each row is
//! dotted with the f32 activations straight from its blocks ([`super::dot`]), so the result
//! differs from the dequantised-f32 path only by f32 rounding. Several tokens at once (prefill)
//! dequantise four rows at a time into a scratch and multiply them with register blocking.
//!
//! With [`Activations::Int8`] (the default) the activations are quantized to 8 bits once per
//! product ([`Q8Activations`]) and every row is an integer dot product ([`super::int_dot`]), as
//! in llama.cpp; [`Activations::F32`] keeps the f32-activation kernels above.
//!
//! On CPUs with the 512-bit K-quant kernel a loaded K-quant matrix keeps its rows as panels of
//! 16 ([`QuantMatrix::into_panels`], `k_panels.rs`), which that kernel reads for every integer
//! product; the other paths rebuild the rows they need.

use std::borrow::Cow;

use rayon::prelude::*;

use super::amx_gemm::{self, AmxActivations};
use super::dequant::{block_layout, dequantize_into, QuantError};
use super::dot::{dot_row, group_sums, has_fused_kernel};
use super::gemv_lanes::{self, has_gemv_lanes, GemvLanes};
use super::int_dot::{self, has_int_kernel, IntKernel};
use super::int_gemm;
use super::k_panels::{self, PANEL_ROWS};
use super::lane_gemm::{self, has_lane_kernel, LaneActivations};
use super::q8::{activation_block, Q8Activations, Q8Batch};
use crate::runtime::ggml_type::GgmlDType;
use crate::runtime::kernels;

/// Rows per rayon task (as in the f32 GEMV).
const ROWS_PER_TASK: usize = 64;

/// Rows per task of the integer GEMM (and GEMV) of a `rows`-row matrix with `tokens` tokens. A
/// decoding step's few tokens: two tasks per thread, whole panels of 16 rows (a 576-row matrix
/// was 9 tasks of 64 for 2 threads, and each task's first rows were read before any prefetch;
/// at 8 sequences SmolLM2's batch step was ~10% slower, at 1 ~8%, measured on an AMD EPYC
/// against 32, 64, 128, 256 and one task per thread; the one-request GEMV gained 0-5%, within
/// noise). Prompts keep 64-row tasks.
fn tiled_rows_per_task(rows: usize, tokens: usize) -> usize {
    if tokens > 16 {
        return ROWS_PER_TASK;
    }
    rows.div_ceil(2 * rayon::current_num_threads())
        .next_multiple_of(16)
        .max(16)
}

/// What a quantized matrix multiplies its blocks with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Activations {
    /// Activations quantized per block to 8 bits, integer dot products (llama.cpp's way):
    /// fastest, within the 8-bit rounding of the f32 result.
    #[default]
    Int8,
    /// f32 activations: the dequantised f32 product up to f32 rounding.
    F32,
}

/// The order in which the integer GEMM sums a row's blocks (see [`QuantMatrix::matmul_int_tiled_many`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntOrder {
    /// The GEMV's ([`super::int_gemm`], and [`super::gemv_lanes`] for the 32-value types on
    /// AVX-512 VNNI): a prompt's values equal token-by-token decoding.
    Gemv,
    /// The batch engine's ([`super::lane_gemm`]) for the types and CPUs that have a lane
    /// kernel, the GEMV's for the others: fewer float operations per token from 8 tokens on.
    /// The engine runs every row of every step in this order.
    Lanes,
    /// A single sequence's prompt: the AMX GEMM ([`super::amx_gemm`]) for the types and prompt
    /// lengths it takes on a CPU that has it (the K-quants' values equal [`IntOrder::Gemv`]'s,
    /// the 32-value types' are summed per block), [`IntOrder::Gemv`] elsewhere.
    Amx,
}

/// `[rows, cols]` row-major in ggml blocks; every row is a whole number of blocks. The first
/// `panels` rows may be stored as panels of 16 rows ([`Self::into_panels`]).
#[derive(Clone)]
pub struct QuantMatrix {
    dtype: GgmlDType,
    rows: usize,
    cols: usize,
    row_bytes: usize,
    data: Vec<u8>,
    /// Rows `0..panels` (a multiple of 16) are stored as panels (`k_panels.rs`).
    panels: usize,
}

/// Whether [`QuantMatrix::into_panels`] stores panels in this process: `PSY_NO_PANELS=1` keeps
/// rows (same bits), to measure one layout against the other with one binary.
fn panels_enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("PSY_NO_PANELS").is_none_or(|v| v == "0"))
}

impl std::fmt::Debug for QuantMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "QuantMatrix({} [{}, {}])",
            self.dtype, self.rows, self.cols
        )
    }
}

impl QuantMatrix {
    /// Takes `data` as `rows` rows of `cols` values of `dtype`: `cols` must be a whole number
    /// of blocks and `data` exactly `rows` such rows.
    pub fn new(
        dtype: GgmlDType,
        rows: usize,
        cols: usize,
        data: Vec<u8>,
    ) -> Result<Self, QuantError> {
        let (elems, block) = block_layout(dtype)?;
        if !cols.is_multiple_of(elems) {
            return Err(QuantError::Misaligned {
                dtype,
                values: cols,
                block: elems,
            });
        }
        let row_bytes = cols / elems * block;
        if Some(data.len()) != rows.checked_mul(row_bytes) {
            return Err(QuantError::PartialBlock {
                dtype,
                len: data.len(),
                block: row_bytes,
            });
        }
        Ok(Self {
            dtype,
            rows,
            cols,
            row_bytes,
            data,
            panels: 0,
        })
    }

    /// The matrix with its whole groups of 16 rows stored as panels, the layout the 512-bit
    /// K-quant kernel reads (`k_panels.rs`), when this CPU runs that kernel for `dtype`
    /// (Q4_K, Q5_K, Q6_K with AVX-512 VNNI); else unchanged. The same bytes, rearranged: every
    /// product and every dequantised row stay bit-equal; products by that kernel (every
    /// integer product of the matrix, one token included) read the panels without transposing
    /// them, the others (f32 activations, dequantisation) rebuild the rows they read.
    pub fn into_panels(mut self) -> Self {
        let takes = k_panels::has_panels(self.dtype)
            && int_gemm::has_k512_kernel(IntKernel::detect(), self.dtype)
            && int_gemm::k512_enabled()
            && panels_enabled();
        if takes && self.panels == 0 && self.rows >= PANEL_ROWS {
            k_panels::rows_to_panels(self.dtype, &mut self.data, self.rows, self.row_bytes);
            self.panels = self.rows / PANEL_ROWS * PANEL_ROWS;
        }
        self
    }

    /// How many rows (from the first) are stored as panels.
    pub fn panel_rows(&self) -> usize {
        self.panels
    }

    pub fn dtype(&self) -> GgmlDType {
        self.dtype
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes held (the file's size of this tensor).
    pub fn size_bytes(&self) -> usize {
        self.data.len()
    }

    /// The matrix whose row `i` is row `src_of(i)` of `self` (whole rows of blocks move as
    /// they are; `src_of` must be a permutation of `0..rows`).
    pub fn permute_rows(self, src_of: impl Fn(usize) -> usize) -> Self {
        let mut data = vec![0u8; self.data.len()];
        for (dst, row) in data.chunks_exact_mut(self.row_bytes).enumerate() {
            row.copy_from_slice(&self.rows_bytes(src_of(dst), 1));
        }
        Self {
            data,
            panels: 0,
            ..self
        }
    }

    /// Stored bytes of rows `r..r + n` (panels where rows are stored as panels).
    fn row_span(&self, r: usize, n: usize) -> &[u8] {
        &self.data[r * self.row_bytes..(r + n) * self.row_bytes]
    }

    /// Rows `r..r + n` as rows of blocks: borrowed where they are stored as rows, rebuilt from
    /// their panels where not.
    fn rows_bytes(&self, r: usize, n: usize) -> Cow<'_, [u8]> {
        if r >= self.panels {
            return Cow::Borrowed(self.row_span(r, n));
        }
        let mut out = vec![0u8; n * self.row_bytes];
        for (i, row) in out.chunks_exact_mut(self.row_bytes).enumerate() {
            k_panels::panel_row(
                self.dtype,
                &self.data,
                self.panels,
                self.row_bytes,
                r + i,
                row,
            );
        }
        Cow::Owned(out)
    }

    /// How many of rows `base..base + m` the 512-bit kernel with `kernel` reads from panels,
    /// when this product runs on it (the matrix keeps panels and `base` starts one); `None`
    /// when the rows must be read as rows.
    fn panels_in(&self, kernel: IntKernel, base: usize, m: usize) -> Option<usize> {
        (self.panels > 0
            && int_gemm::has_k512_kernel(kernel, self.dtype)
            && (base >= self.panels || base.is_multiple_of(PANEL_ROWS)))
        .then(|| self.panels.saturating_sub(base).min(m))
    }

    /// `out[t * m + i] = dot(row base + i, token t)` for the rows of one task of an integer
    /// product: from the panels by the 512-bit kernel where the matrix keeps them, else by
    /// `batches`' kernel for this product.
    fn gemm_task(
        &self,
        batches: &Q8Batches,
        kernel: IntKernel,
        base: usize,
        m: usize,
        out: &mut [f32],
    ) {
        match self.panels_in(kernel, base, m) {
            Some(panels) => int_gemm::gemm_rows_512(
                kernel,
                self.dtype,
                self.row_span(base, m),
                panels,
                batches.batch(self.dtype),
                out,
            ),
            None => batches.gemm_rows(kernel, self.dtype, &self.rows_bytes(base, m), out),
        }
    }

    /// `out[i] = dot(row base + i, a)` for one token: the GEMV, or the 512-bit kernel on the
    /// panels (`batch`: `a` as a batch of one, when the matrix keeps panels).
    fn gemv_task(
        &self,
        kernel: IntKernel,
        base: usize,
        a: &Q8Activations,
        batch: Option<&Q8Batch>,
        out: &mut [f32],
    ) {
        let m = out.len();
        match (self.panels_in(kernel, base, m), batch) {
            (Some(panels), Some(batch)) => int_gemm::gemm_rows_512(
                kernel,
                self.dtype,
                self.row_span(base, m),
                panels,
                batch,
                out,
            ),
            _ => int_dot::dot_rows(kernel, self.dtype, &self.rows_bytes(base, m), a, out),
        }
    }

    /// Dequantises rows `r..r + out.len() / cols` into `out`.
    pub fn dequantize_rows(&self, r: usize, out: &mut [f32]) {
        let n = out.len() / self.cols;
        let bytes = &*self.rows_bytes(r, n);
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
                && std::arch::is_x86_feature_detected!("f16c")
            {
                // SAFETY: the features were just detected at run time.
                return unsafe { dequantize_avx2(self.dtype, bytes, out) };
            }
        }
        dequantize_into(self.dtype, bytes, out).expect("rows are whole blocks by construction");
    }

    /// The whole matrix as f32, row-major (training, and the f32 view of a quantized model).
    pub fn to_f32(&self) -> Vec<f32> {
        self.rows_f32(0, self.rows)
    }

    /// Rows `r..r + n` as f32, row-major, dequantised across the rayon pool.
    pub fn rows_f32(&self, r: usize, n: usize) -> Vec<f32> {
        let mut out = vec![0.0f32; n * self.cols];
        out.par_chunks_mut(ROWS_PER_TASK * self.cols)
            .enumerate()
            .for_each(|(i, o)| self.dequantize_rows(r + i * ROWS_PER_TASK, o));
        out
    }

    /// `y[t * rows + r] = dot(row r, x[t * cols ..])` for `tokens` rows of activations `x`
    /// (row-major `[tokens, cols]`); `y` is `[tokens, rows]`.
    ///
    /// Each task dequantises four rows at a time into a small scratch (bit-exact) and runs the
    /// 4 x 4 register-blocked kernel of [`kernels::dot4x4`] over every group of four tokens: the
    /// weights are read and decoded once per call, never materialised as a whole f32 matrix.
    pub fn matmul(&self, x: &[f32], tokens: usize, y: &mut [f32]) {
        let (k, n) = (self.cols, self.rows);
        assert_eq!(x.len(), tokens * k, "activations are not [tokens, cols]");
        assert_eq!(y.len(), tokens * n, "output is not [tokens, rows]");
        if tokens < 4 {
            // Too few tokens to fill the 4 x 4 kernel: one fused GEMV per token.
            for (xt, yt) in x.chunks_exact(k).zip(y.chunks_exact_mut(n)) {
                self.gemv(xt, yt);
            }
            return;
        }
        let xrow = |t: usize| &x[t * k..(t + 1) * k];
        // Transposed result [rows, tokens], so that each task owns one contiguous piece.
        let mut yt = vec![0.0f32; n * tokens];
        yt.par_chunks_mut(ROWS_PER_TASK * tokens)
            .enumerate()
            .for_each_init(
                || vec![0.0f32; 4 * k],
                |w, (chunk, out)| {
                    let base = chunk * ROWS_PER_TASK;
                    let rows = out.len() / tokens;
                    for r in (0..rows).step_by(4) {
                        let m = (rows - r).min(4);
                        self.dequantize_rows(base + r, &mut w[..m * k]);
                        // A short last group repeats its last row (its results are dropped).
                        for i in m..4 {
                            w.copy_within((m - 1) * k..m * k, i * k);
                        }
                        for t in (0..tokens).step_by(4) {
                            let tn = (tokens - t).min(4);
                            let xs = [0, 1, 2, 3].map(|j| xrow(t + j.min(tn - 1)));
                            let d = kernels::dot4x4(w, xs);
                            for (i, di) in d.iter().enumerate().take(m) {
                                for (j, v) in di.iter().enumerate().take(tn) {
                                    out[(r + i) * tokens + t + j] = *v;
                                }
                            }
                        }
                    }
                },
            );
        untranspose(&yt, n, tokens, y);
    }

    /// [`Self::matmul`] or [`Self::matmul_int`] as `acts` says (types without an integer
    /// kernel always take f32 activations).
    pub fn matmul_with(&self, x: &[f32], tokens: usize, y: &mut [f32], acts: Activations) {
        if acts == Activations::Int8 && has_int_kernel(self.dtype) {
            self.matmul_int(x, tokens, y, IntKernel::detect());
        } else {
            self.matmul(x, tokens, y);
        }
    }

    /// [`Self::matmul`] with each token's activations quantized to 8 bits and integer dot
    /// products by `kernel`; `self.dtype()` must be one of [`has_int_kernel`]. Each row's
    /// blocks are read once for all tokens (they stay in L1 between tokens).
    pub fn matmul_int(&self, x: &[f32], tokens: usize, y: &mut [f32], kernel: IntKernel) {
        let (k, n) = (self.cols, self.rows);
        assert_eq!(x.len(), tokens * k, "activations are not [tokens, cols]");
        assert_eq!(y.len(), tokens * n, "output is not [tokens, rows]");
        let block = activation_block(self.dtype);
        if tokens > 1 && self.panels_in(kernel, 0, n).is_some() {
            // Panels are read by the 512-bit kernel, whose values are the GEMV's.
            return self.matmul_int_tiled(x, tokens, y, kernel);
        }
        let acts: Vec<Q8Activations> = x
            .chunks_exact(k)
            .map(|xt| Q8Activations::quantize(xt, block))
            .collect();
        if tokens == 1 {
            let batch = (self.panels > 0).then(|| Q8Batch::from_tokens(acts.clone()));
            let per_task = tiled_rows_per_task(n, 1);
            y.par_chunks_mut(per_task)
                .enumerate()
                .for_each(|(chunk, out)| {
                    self.gemv_task(kernel, chunk * per_task, &acts[0], batch.as_ref(), out);
                });
            return;
        }
        // Transposed result [rows, tokens], so that each task owns one contiguous piece.
        let mut yt = vec![0.0f32; n * tokens];
        yt.par_chunks_mut(ROWS_PER_TASK * tokens)
            .enumerate()
            .for_each(|(chunk, out)| {
                let base = chunk * ROWS_PER_TASK;
                for (i, o) in out.chunks_exact_mut(tokens).enumerate() {
                    let row = self.rows_bytes(base + i, 1);
                    for (o, a) in o.iter_mut().zip(&acts) {
                        *o = int_dot::dot_row(kernel, self.dtype, &row, a);
                    }
                }
            });
        untranspose(&yt, n, tokens, y);
    }

    /// [`Self::matmul_int`] as a GEMM: all tokens quantized once ([`Q8Batch`]), then tiles of
    /// a row times up to 8 tokens ([`int_gemm::gemm_rows`]), so each weight block is decoded
    /// once per 8 tokens; row chunks split across the rayon pool. The same f32 results as
    /// [`Self::matmul_int`], bit for bit.
    pub fn matmul_int_tiled(&self, x: &[f32], tokens: usize, y: &mut [f32], kernel: IntKernel) {
        Self::matmul_int_tiled_many(&[self], x, tokens, &mut [y], kernel, IntOrder::Gemv);
    }

    /// [`Self::matmul_int_tiled`] of several matrices of the same width with the same
    /// activations `x` (`[tokens, cols]`), `ys[i]` `[tokens, mats[i].rows()]`: the activations
    /// quantized once per block size, and one pass over the rayon pool whose tasks are the row
    /// chunks of every matrix (a layer's query, key and value projections: one pool wake-up
    /// instead of three, and a share of tasks that evens out over the threads, where a
    /// 192-row matrix alone is three tasks for two threads). Bit-equal to each matrix's own
    /// product in `order`; every type must be one of [`has_int_kernel`].
    pub fn matmul_int_tiled_many(
        mats: &[&QuantMatrix],
        x: &[f32],
        tokens: usize,
        ys: &mut [&mut [f32]],
        kernel: IntKernel,
        order: IntOrder,
    ) {
        assert_eq!(mats.len(), ys.len(), "one output per matrix");
        let Some(first) = mats.first() else {
            return;
        };
        let k = first.cols;
        assert!(
            mats.iter().all(|m| m.cols == k && has_int_kernel(m.dtype)),
            "matrices of one width with integer kernels"
        );
        assert_eq!(x.len(), tokens * k, "activations are not [tokens, cols]");
        for (m, y) in mats.iter().zip(ys.iter()) {
            assert_eq!(y.len(), tokens * m.rows, "output is not [tokens, rows]");
        }
        if tokens == 0 {
            return;
        }
        let batches = Q8Batches::quantize(mats, x, k, kernel, order);
        let outs: Vec<DisjointRows> = ys
            .iter_mut()
            .map(|y| DisjointRows(y.as_mut_ptr()))
            .collect();
        let tasks: Vec<(usize, usize, usize)> = mats
            .iter()
            .enumerate()
            .flat_map(|(i, m)| {
                let per_task = tiled_rows_per_task(m.rows, tokens);
                (0..m.rows).step_by(per_task).map(move |r| (i, r, per_task))
            })
            .collect();
        // Each task computes its rows for every token into a reused `[tokens, rows]` scratch
        // and copies each token's piece into its output: no `[n, tokens]` buffer and no strided
        // transpose of it (under perf the transpose took 7.5% of a 512-token prefill, and the
        // fresh 18 MB buffer per projection most of the page faults).
        tasks.into_par_iter().for_each_init(
            Vec::new,
            |scratch: &mut Vec<f32>, (i, base, per_task)| {
                let w = mats[i];
                let (n, m) = (w.rows, per_task.min(w.rows - base));
                scratch.resize(m * tokens, 0.0);
                w.gemm_task(&batches, kernel, base, m, scratch);
                for (t, piece) in scratch.chunks_exact(m).enumerate() {
                    // SAFETY: `t * n + base + m <= tokens * n == ys[i].len()`, and rows
                    // `base..base + m` of matrix `i` belong to this task alone.
                    unsafe { outs[i].write(t * n + base, piece) };
                }
            },
        );
    }

    /// `y[t * n + r] = f(gate row r . x_t, up row r . x_t)` for two matrices of the same shape
    /// (a gated MLP's gate and up projections, `f` its activation times the up value), by the
    /// integer GEMM: one quantization, one pass over the pool, and `f` applied by the task that
    /// computed both values, while they are in cache (no `[tokens, n]` up buffer and no second
    /// pass). `f(g, u)` replaces each `g[i]` by its value for the pair `(g[i], u[i])` (slices,
    /// so that it can take them several at a time). Each value pair is bit-equal to
    /// [`Self::matmul_int_tiled_many`]'s in `order`.
    #[allow(clippy::too_many_arguments)]
    pub fn matmul_int_tiled_gated(
        gate: &QuantMatrix,
        up: &QuantMatrix,
        x: &[f32],
        tokens: usize,
        y: &mut [f32],
        kernel: IntKernel,
        order: IntOrder,
        f: impl Fn(&mut [f32], &[f32]) + Sync,
    ) {
        let (k, n) = (gate.cols, gate.rows);
        assert!(
            up.cols == k && up.rows == n,
            "gate and up matrices of one shape"
        );
        assert!(
            has_int_kernel(gate.dtype) && has_int_kernel(up.dtype),
            "integer kernels for both"
        );
        assert_eq!(x.len(), tokens * k, "activations are not [tokens, cols]");
        assert_eq!(y.len(), tokens * n, "output is not [tokens, rows]");
        if tokens == 0 {
            return;
        }
        let batches = Q8Batches::quantize(&[gate, up], x, k, kernel, order);
        let out = DisjointRows(y.as_mut_ptr());
        let per_task = tiled_rows_per_task(n, tokens);
        (0..n.div_ceil(per_task)).into_par_iter().for_each_init(
            || (Vec::new(), Vec::new()),
            |(g, u): &mut (Vec<f32>, Vec<f32>), chunk| {
                let base = chunk * per_task;
                let m = per_task.min(n - base);
                g.resize(m * tokens, 0.0);
                u.resize(m * tokens, 0.0);
                gate.gemm_task(&batches, kernel, base, m, g);
                up.gemm_task(&batches, kernel, base, m, u);
                f(g, u);
                for (t, piece) in g.chunks_exact(m).enumerate() {
                    // SAFETY: as in `matmul_int_tiled_many`: rows `base..base + m` are this
                    // task's.
                    unsafe { out.write(t * n + base, piece) };
                }
            },
        );
    }

    /// [`Self::matmul_int`] of one token for several matrices of the same width (a layer's
    /// query, key and value projections): `x` quantized once per activation block size, and
    /// one pass over the rayon pool whose tasks are the row chunks of every matrix, where the
    /// matrices one at a time hand the pool three jobs (SmolLM2's 192-row key and value
    /// projections are three tasks each for two threads). `ys[i]` is `[mats[i].rows()]`; the
    /// same bits as `matmul_int` of each. Every type must be one of [`has_int_kernel`].
    pub fn gemv_int_many(
        mats: &[&QuantMatrix],
        x: &[f32],
        ys: &mut [&mut [f32]],
        kernel: IntKernel,
    ) {
        assert_eq!(mats.len(), ys.len(), "one output per matrix");
        let acts = Self::one_token_activations(mats, x);
        let mut tasks: Vec<(usize, usize, &mut [f32])> = Vec::new();
        for (i, (m, y)) in mats.iter().zip(ys.iter_mut()).enumerate() {
            assert_eq!(y.len(), m.rows, "output is not [rows]");
            let per_task = tiled_rows_per_task(m.rows, 1);
            for (c, out) in y.chunks_mut(per_task).enumerate() {
                tasks.push((i, c * per_task, out));
            }
        }
        tasks.into_par_iter().for_each(|(i, base, out)| {
            let m = mats[i];
            m.gemv_task(kernel, base, acts.of(m.dtype), acts.batch(m.dtype), out);
        });
    }

    /// `y[r] = f(gate row r . x, up row r . x)` for one token, by the integer GEMV: one
    /// quantization of `x`, one pass over the pool, `f` (on slices, as in
    /// [`Self::matmul_int_tiled_gated`]) applied by the task that computed both values. Each
    /// pair is bit-equal to [`Self::matmul_int`]'s of each matrix.
    pub fn gemv_int_gated(
        gate: &QuantMatrix,
        up: &QuantMatrix,
        x: &[f32],
        y: &mut [f32],
        kernel: IntKernel,
        f: impl Fn(&mut [f32], &[f32]) + Sync,
    ) {
        assert!(
            up.cols == gate.cols && up.rows == gate.rows,
            "gate and up matrices of one shape"
        );
        assert_eq!(y.len(), gate.rows, "output is not [rows]");
        let acts = Self::one_token_activations(&[gate, up], x);
        let per_task = tiled_rows_per_task(gate.rows, 1);
        y.par_chunks_mut(per_task).enumerate().for_each_init(
            Vec::new,
            |u: &mut Vec<f32>, (chunk, out)| {
                let base = chunk * per_task;
                u.resize(out.len(), 0.0);
                let (ga, ua) = (acts.of(gate.dtype), acts.of(up.dtype));
                gate.gemv_task(kernel, base, ga, acts.batch(gate.dtype), out);
                up.gemv_task(kernel, base, ua, acts.batch(up.dtype), u);
                f(out, u);
            },
        );
    }

    /// One token's activations `x` quantized once for each activation block size that `mats`
    /// need, as [`Self::matmul_int`] quantizes them.
    fn one_token_activations(mats: &[&QuantMatrix], x: &[f32]) -> OneToken {
        let mut sizes: Vec<(usize, Q8Activations)> = Vec::new();
        for m in mats {
            assert_eq!(m.cols, x.len(), "activations are not [cols]");
            assert!(has_int_kernel(m.dtype), "{} has no integer kernel", m.dtype);
            let block = activation_block(m.dtype);
            if sizes.iter().all(|(b, _)| *b != block) {
                sizes.push((block, Q8Activations::quantize(x, block)));
            }
        }
        // The K-quants' 256-value blocks as a batch of one, for matrices kept as panels.
        let panels = mats
            .iter()
            .find(|m| m.panels > 0)
            .map(|m| Q8Batch::from_tokens(vec![OneToken::find(&sizes, m.dtype).clone()]));
        OneToken(sizes, panels)
    }

    /// `y = W x` for one activation vector, rows split across the rayon pool.
    pub fn gemv(&self, x: &[f32], y: &mut [f32]) {
        let k = self.cols;
        assert_eq!(x.len(), k, "activation length");
        assert_eq!(y.len(), self.rows, "output length");
        let sums = group_sums(x);
        let fused = has_fused_kernel(self.dtype);
        y.par_chunks_mut(ROWS_PER_TASK).enumerate().for_each_init(
            || vec![0.0f32; if fused { 0 } else { k }],
            |scratch, (chunk, out)| {
                let base = chunk * ROWS_PER_TASK;
                for (i, o) in out.iter_mut().enumerate() {
                    let row = self.rows_bytes(base + i, 1);
                    *o = dot_row(self.dtype, &row, x, &sums, scratch, fused);
                }
            },
        );
    }
}

/// One token's activations quantized per activation block size (see
/// [`QuantMatrix::gemv_int_many`]), and the 256-value ones as a batch of one when a matrix
/// keeps panels.
struct OneToken(Vec<(usize, Q8Activations)>, Option<Q8Batch>);

impl OneToken {
    fn find(sizes: &[(usize, Q8Activations)], dtype: GgmlDType) -> &Q8Activations {
        let block = activation_block(dtype);
        &sizes
            .iter()
            .find(|(b, _)| *b == block)
            .expect("quantized for every matrix")
            .1
    }

    fn of(&self, dtype: GgmlDType) -> &Q8Activations {
        Self::find(&self.0, dtype)
    }

    /// The batch of one for the panels' kernel (only the K-quants keep panels).
    fn batch(&self, dtype: GgmlDType) -> Option<&Q8Batch> {
        self.1.as_ref().filter(|_| k_panels::has_panels(dtype))
    }
}

/// `y`'s start, shared by tasks that write disjoint rows of a `[tokens, n]` output (the
/// row-parallel split makes each task's part of every token row its own).
struct DisjointRows(*mut f32);

// SAFETY: only `write` touches the pointer, and its callers write disjoint ranges.
unsafe impl Sync for DisjointRows {}

impl DisjointRows {
    /// Copies `values` to `at..at + values.len()`. SAFETY: inside the output, and no other
    /// task writes that range meanwhile.
    unsafe fn write(&self, at: usize, values: &[f32]) {
        std::ptr::copy_nonoverlapping(values.as_ptr(), self.0.add(at), values.len());
    }
}

/// The activations of one product quantized for each activation block size its matrices
/// need (32 for the legacy types, 256 for the K-quants), each size once, and regrouped for the
/// lane kernels when a matrix takes one: the 32-value types' in the engine's order, or else
/// bit-equal to the tiles from [`GemvLanes::new`]'s lengths on; Q4_K's (bit-equal to the tiles)
/// from 8 tokens on.
struct Q8Batches {
    batches: Vec<(usize, Q8Batch)>,
    lanes: Option<LaneActivations>,
    gemv_lanes: Option<GemvLanes>,
    /// The K-quants' 8-token lanes: only with `PSY_NO_K512=1` (else `int_gemm::gemm_rows_512`).
    k_lanes: Option<LaneActivations>,
    /// With [`IntOrder::Amx`], each block size's activations as the AMX GEMM reads them, for
    /// the matrices it takes.
    amx: Vec<(usize, AmxActivations)>,
}

impl Q8Batches {
    fn quantize(
        mats: &[&QuantMatrix],
        x: &[f32],
        cols: usize,
        kernel: IntKernel,
        order: IntOrder,
    ) -> Self {
        let mut batches: Vec<(usize, Q8Batch)> = Vec::new();
        for m in mats {
            let block = activation_block(m.dtype);
            if !batches.iter().any(|(b, _)| *b == block) {
                batches.push((block, Q8Batch::quantize(x, cols, block)));
            }
        }
        let batch_of = |block: usize| {
            let (_, batch) = batches
                .iter()
                .find(|(b, _)| *b == block)
                .expect("quantized");
            batch
        };
        let regroup = |block: usize| LaneActivations::new(batch_of(block));
        let lanes = mats
            .iter()
            .any(|m| order == IntOrder::Lanes && has_lane_kernel(kernel, m.dtype))
            .then(|| regroup(32));
        let tokens = x.len() / cols;
        // Not for the 32-value matrices the engine's lanes or the AMX GEMM take.
        let gemv_lanes = mats
            .iter()
            .any(|m| {
                has_gemv_lanes(kernel, m.dtype)
                    && !(order == IntOrder::Lanes && has_lane_kernel(kernel, m.dtype))
                    && !(order == IntOrder::Amx && amx_gemm::takes(m.dtype, tokens))
            })
            .then(|| GemvLanes::new(batch_of(32)))
            .flatten();
        let mut amx: Vec<(usize, AmxActivations)> = Vec::new();
        for m in mats {
            let block = activation_block(m.dtype);
            if order == IntOrder::Amx
                && amx_gemm::takes(m.dtype, tokens)
                && !amx.iter().any(|(b, _)| *b == block)
            {
                let (_, batch) = batches
                    .iter()
                    .find(|(b, _)| *b == block)
                    .expect("quantized");
                amx.push((block, AmxActivations::new(batch)));
            }
        }
        // Not for the K-quant matrices the AMX GEMM or the 512-bit kernel takes.
        let k_lanes = (x.len() / cols >= 8
            && mats.iter().any(|m| {
                int_gemm::has_k_lane_kernel(kernel, m.dtype)
                    && !int_gemm::takes_k512(kernel, m.dtype, tokens)
                    && !amx.iter().any(|(b, _)| *b == activation_block(m.dtype))
            }))
        .then(|| regroup(256));
        Q8Batches {
            batches,
            lanes,
            gemv_lanes,
            k_lanes,
            amx,
        }
    }

    /// The activations quantized in `dtype`'s block size.
    fn batch(&self, dtype: GgmlDType) -> &Q8Batch {
        let block = activation_block(dtype);
        &self
            .batches
            .iter()
            .find(|(b, _)| *b == block)
            .expect("quantized for every matrix")
            .1
    }

    /// `out[t * n + r] = dot(row r, token t)` for the `n` rows of `dtype` in `rows`: by a lane
    /// kernel when this product takes one for `dtype`, else by the GEMV-order tiles.
    fn gemm_rows(&self, kernel: IntKernel, dtype: GgmlDType, rows: &[u8], out: &mut [f32]) {
        let block = activation_block(dtype);
        let (_, batch) = self
            .batches
            .iter()
            .find(|(b, _)| *b == block)
            .expect("quantized for every matrix");
        if let Some((_, acts)) = self.amx.iter().find(|(b, _)| *b == block) {
            if amx_gemm::takes(dtype, acts.tokens()) {
                return amx_gemm::gemm_rows(dtype, rows, acts, out);
            }
        }
        if int_gemm::takes_k512(kernel, dtype, batch.tokens.len()) {
            return int_gemm::gemm_rows_512(kernel, dtype, rows, 0, batch, out);
        }
        if let (Some(lanes), true) = (&self.lanes, has_lane_kernel(kernel, dtype)) {
            return lane_gemm::gemm_rows(kernel, dtype, rows, batch, lanes, out);
        }
        match (&self.gemv_lanes, &self.k_lanes) {
            (Some(lanes), _) if has_gemv_lanes(kernel, dtype) => {
                gemv_lanes::gemm_rows(kernel, dtype, rows, batch, lanes, out)
            }
            (_, Some(lanes)) if int_gemm::has_k_lane_kernel(kernel, dtype) => {
                int_gemm::gemm_rows_lanes(kernel, dtype, rows, batch, lanes, out)
            }
            _ => int_gemm::gemm_rows(kernel, dtype, rows, batch, out),
        }
    }
}

/// `y[t * n + r] = yt[r * tokens + t]`: the `[rows, tokens]` result of the row-parallel
/// kernels as `[tokens, rows]`. 8 tokens per rayon task, so that each task reads 8 consecutive
/// values of every row and owns 8 rows of `y` (one strided single-threaded pass took ~10% of
/// a 512-token GEMM).
fn untranspose(yt: &[f32], n: usize, tokens: usize, y: &mut [f32]) {
    y.par_chunks_mut(8 * n).enumerate().for_each(|(c, ys)| {
        let (t0, m) = (c * 8, ys.len() / n);
        for r in 0..n {
            for (j, v) in yt[r * tokens + t0..][..m].iter().enumerate() {
                ys[j * n + r] = *v;
            }
        }
    });
}

/// [`dequantize_into`] compiled with AVX2 enabled, so that LLVM vectorises the block loops
/// 8 lanes wide (the crate is built for baseline x86-64); same operations, same results.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dequantize_avx2(dtype: GgmlDType, bytes: &[u8], out: &mut [f32]) {
    dequantize_into(dtype, bytes, out).expect("rows are whole blocks by construction");
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::f16;

    /// A Q8_0 matrix of `rows` x 64 with known values: row r, column c = (c - 32 + r) * 0.5.
    fn q8_matrix(rows: usize) -> (QuantMatrix, Vec<f32>) {
        let mut data = Vec::new();
        let mut dense = Vec::new();
        for r in 0..rows {
            for b in 0..2 {
                data.extend(f16::from_f32(0.5).to_le_bytes());
                for c in 0..32 {
                    let q = b * 32 + c - 32 + r as i32;
                    data.push(q as i8 as u8);
                    dense.push(q as f32 * 0.5);
                }
            }
        }
        (
            QuantMatrix::new(GgmlDType::Q8_0, rows, 64, data).unwrap(),
            dense,
        )
    }

    #[test]
    fn gemv_and_matmul_match_dense_products() {
        let rows = 70; // one full task, a partial one, and a remainder below four rows
        let (m, dense) = q8_matrix(rows);
        assert_eq!(m.to_f32(), dense);
        let tokens = 3;
        let x: Vec<f32> = (0..tokens * 64)
            .map(|i| ((i % 7) as f32 - 3.0) * 0.25)
            .collect();
        let mut y = vec![0.0; tokens * rows];
        m.matmul(&x, tokens, &mut y);
        let mut y1 = vec![0.0; rows];
        m.gemv(&x[..64], &mut y1);
        for t in 0..tokens {
            for r in 0..rows {
                let want: f32 = (0..64).map(|c| dense[r * 64 + c] * x[t * 64 + c]).sum();
                assert!((y[t * rows + r] - want).abs() < 1e-4, "t {t} r {r}");
                if t == 0 {
                    assert!((y1[r] - want).abs() < 1e-4, "gemv r {r}");
                }
            }
        }
    }

    #[test]
    fn integer_matmul_matches_per_token_dots_and_the_dense_product() {
        let rows = 70;
        let (m, dense) = q8_matrix(rows);
        let tokens = 3;
        let x: Vec<f32> = (0..tokens * 64)
            .map(|i| ((i % 11) as f32 - 5.0) * 0.3)
            .collect();
        for kernel in IntKernel::available() {
            let mut y = vec![0.0; tokens * rows];
            m.matmul_int(&x, tokens, &mut y, kernel);
            let mut tiled = vec![0.0; tokens * rows];
            m.matmul_int_tiled(&x, tokens, &mut tiled, kernel);
            assert_eq!(tiled, y, "{kernel:?}: the tiled GEMM vs token by token");
            for t in 0..tokens {
                let mut y1 = vec![0.0; rows];
                m.matmul_int(&x[t * 64..(t + 1) * 64], 1, &mut y1, kernel);
                let a = Q8Activations::quantize(&x[t * 64..(t + 1) * 64], 32);
                for r in 0..rows {
                    assert_eq!(y[t * rows + r], y1[r], "{kernel:?} t {t} r {r}");
                    let w = &dense[r * 64..(r + 1) * 64];
                    let want: f32 = w.iter().zip(&x[t * 64..]).map(|(w, x)| w * x).sum();
                    // Half a quantization step per activation (1.5 / 127 / 2 here).
                    let bound: f32 = w
                        .iter()
                        .enumerate()
                        .map(|(i, w)| w.abs() * a.d[i / 32] / 2.0)
                        .sum();
                    assert!(
                        (y[t * rows + r] - want).abs() <= bound + 1e-4,
                        "{kernel:?} t {t} r {r}: {} vs {want}",
                        y[t * rows + r]
                    );
                }
            }
        }
    }

    /// A `rows` x `cols` matrix of `dtype` with pseudo-random quants and finite f16 scales
    /// (the scale and min fields of every block written over the random bytes).
    fn random_matrix(dtype: GgmlDType, rows: usize, cols: usize, seed: u32) -> QuantMatrix {
        let (elems, size) = dtype.block_layout().unwrap();
        let (elems, size) = (elems as usize, size as usize);
        let mut state = seed.wrapping_mul(2_654_435_761).max(1);
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state
        };
        let mut data: Vec<u8> = (0..rows * cols / elems * size)
            .map(|_| next() as u8)
            .collect();
        let fields: &[usize] = match dtype {
            GgmlDType::Q4_1 | GgmlDType::Q4K | GgmlDType::Q5K => &[0, 2],
            GgmlDType::Q6K => &[208],
            _ => &[0],
        };
        for blk in data.chunks_exact_mut(size) {
            for &at in fields {
                let v = (next() % 2001) as f32 / 1000.0 - 1.0;
                blk[at..at + 2].copy_from_slice(&f16::from_f32(v * 0.05).to_le_bytes());
            }
        }
        QuantMatrix::new(dtype, rows, cols, data).unwrap()
    }

    /// A matrix kept as panels gives every product and every dequantised row of the same
    /// matrix kept as rows, bit for bit: one token and several, the GEMV's and the engine's
    /// order, fused and gated products, f32 activations, panels whole and a tail of rows. (On
    /// a CPU without the 512-bit K-quant kernel `into_panels` keeps rows and this compares a
    /// matrix with itself; the test says so.)
    #[test]
    fn a_matrix_kept_as_panels_gives_the_rows_bits() {
        let kernel = IntKernel::detect();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for dtype in [GgmlDType::Q4K, GgmlDType::Q5K, GgmlDType::Q6K] {
            for (rows, seed) in [(16, 1), (40, 2), (72, 3)] {
                let k = 512;
                let w = random_matrix(dtype, rows, k, seed);
                let u = random_matrix(dtype, rows, k, seed + 10);
                let (wp, up) = (w.clone().into_panels(), u.clone().into_panels());
                if wp.panel_rows() == 0 {
                    eprintln!("{dtype}: no 512-bit K-quant kernel here, rows kept");
                }
                assert_eq!(wp.size_bytes(), w.size_bytes());
                assert_eq!(bits(&wp.to_f32()), bits(&w.to_f32()), "{dtype} to_f32");
                let mut a = vec![0.0f32; 3 * k];
                let mut b = vec![0.0f32; 3 * k];
                w.dequantize_rows(13, &mut a);
                wp.dequantize_rows(13, &mut b);
                assert_eq!(bits(&a), bits(&b), "{dtype} dequantize_rows");
                for tokens in [1usize, 2, 5, 8, 17] {
                    let x = activations(tokens, k);
                    let n = tokens * rows;
                    for order in [IntOrder::Gemv, IntOrder::Lanes] {
                        let (mut y0, mut y1) = (vec![0.0f32; n], vec![0.0f32; n]);
                        let (mut z0, mut z1) = (vec![0.0f32; n], vec![0.0f32; n]);
                        QuantMatrix::matmul_int_tiled_many(
                            &[&w, &u],
                            &x,
                            tokens,
                            &mut [&mut y0, &mut z0],
                            kernel,
                            order,
                        );
                        QuantMatrix::matmul_int_tiled_many(
                            &[&wp, &up],
                            &x,
                            tokens,
                            &mut [&mut y1, &mut z1],
                            kernel,
                            order,
                        );
                        assert_eq!(bits(&y0), bits(&y1), "{dtype} {rows}x{tokens} {order:?}");
                        assert_eq!(bits(&z0), bits(&z1), "{dtype} {rows}x{tokens} {order:?}");
                        let f = |g: f32, u: f32| g * 0.5 + u;
                        QuantMatrix::matmul_int_tiled_gated(
                            &w,
                            &u,
                            &x,
                            tokens,
                            &mut y0,
                            kernel,
                            order,
                            pairwise(f),
                        );
                        QuantMatrix::matmul_int_tiled_gated(
                            &wp,
                            &up,
                            &x,
                            tokens,
                            &mut y1,
                            kernel,
                            order,
                            pairwise(f),
                        );
                        assert_eq!(bits(&y0), bits(&y1), "{dtype} gated {rows}x{tokens}");
                    }
                    let (mut y0, mut y1) = (vec![0.0f32; n], vec![0.0f32; n]);
                    w.matmul_int(&x, tokens, &mut y0, kernel);
                    wp.matmul_int(&x, tokens, &mut y1, kernel);
                    assert_eq!(bits(&y0), bits(&y1), "{dtype} matmul_int {rows}x{tokens}");
                    w.matmul(&x, tokens, &mut y0);
                    wp.matmul(&x, tokens, &mut y1);
                    assert_eq!(bits(&y0), bits(&y1), "{dtype} f32 matmul {rows}x{tokens}");
                }
                let x = activations(1, k);
                let (mut y0, mut y1) = (vec![0.0f32; rows], vec![0.0f32; rows]);
                let (mut z0, mut z1) = (vec![0.0f32; rows], vec![0.0f32; rows]);
                QuantMatrix::gemv_int_many(&[&w, &u], &x, &mut [&mut y0, &mut z0], kernel);
                QuantMatrix::gemv_int_many(&[&wp, &up], &x, &mut [&mut y1, &mut z1], kernel);
                assert_eq!(bits(&y0), bits(&y1), "{dtype} gemv_int_many");
                assert_eq!(bits(&z0), bits(&z1), "{dtype} gemv_int_many");
                let f = |g: f32, u: f32| g - u;
                QuantMatrix::gemv_int_gated(&w, &u, &x, &mut y0, kernel, pairwise(f));
                QuantMatrix::gemv_int_gated(&wp, &up, &x, &mut y1, kernel, pairwise(f));
                assert_eq!(bits(&y0), bits(&y1), "{dtype} gemv_int_gated");
                // The panels' one-token values are the scalar GEMV's.
                for (r, v) in y1.iter().enumerate().step_by(7) {
                    let g = scalar_dot(&w, r, &x, 0);
                    let u = scalar_dot(&u, r, &x, 0);
                    assert_eq!(v.to_bits(), f(g, u).to_bits(), "{dtype} row {r}");
                }
                w.gemv(&x, &mut y0);
                wp.gemv(&x, &mut y1);
                assert_eq!(bits(&y0), bits(&y1), "{dtype} f32 gemv");
                let perm = |r: usize| rows - 1 - r;
                assert_eq!(
                    bits(&w.clone().permute_rows(perm).to_f32()),
                    bits(&wp.clone().permute_rows(perm).to_f32()),
                    "{dtype} permute_rows"
                );
            }
        }
    }

    /// The gated products' slice function of a function of one pair.
    fn pairwise(f: impl Fn(f32, f32) -> f32 + Sync) -> impl Fn(&mut [f32], &[f32]) + Sync {
        move |g: &mut [f32], u: &[f32]| {
            for (g, u) in g.iter_mut().zip(u) {
                *g = f(*g, *u);
            }
        }
    }

    fn activations(tokens: usize, cols: usize) -> Vec<f32> {
        (0..tokens * cols)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.07 + (i % 3) as f32 * 1e-3)
            .collect()
    }

    /// The scalar kernel's dot product of row `r` of `w` with token `t` of `x`: the
    /// independent reference of the SIMD tiles.
    fn scalar_dot(w: &QuantMatrix, r: usize, x: &[f32], t: usize) -> f32 {
        let k = w.cols();
        let a = Q8Activations::quantize(&x[t * k..(t + 1) * k], activation_block(w.dtype()));
        int_dot::dot_row(IntKernel::Scalar, w.dtype(), w.row_span(r, 1), &a)
    }

    /// Matrices of both activation block sizes (32 and 256), row counts that are and are not
    /// multiples of the task size, tokens below, at and above a tile of 8 and a lane group of
    /// 16 (with and without a padded group), in both orders (the engine's lane order's
    /// reference is `lane_gemm::dot_row`, itself held to the dequantised product in
    /// `lane_gemm`'s tests).
    #[test]
    fn several_matrices_in_one_pass_equal_the_scalar_kernel() {
        let cols = 512;
        let mats = [
            random_matrix(GgmlDType::Q4_1, 70, cols, 1),
            random_matrix(GgmlDType::Q4K, 3, cols, 2),
            random_matrix(GgmlDType::Q8_0, 130, cols, 3),
            random_matrix(GgmlDType::Q6K, 64, cols, 4),
        ];
        let refs: Vec<&QuantMatrix> = mats.iter().collect();
        for (tokens, order) in [1, 5, 8, 19, 37]
            .into_iter()
            .flat_map(|t| [(t, IntOrder::Gemv), (t, IntOrder::Lanes)])
        {
            let x = activations(tokens, cols);
            for kernel in IntKernel::available() {
                let mut ys: Vec<Vec<f32>> = mats
                    .iter()
                    .map(|m| vec![f32::NAN; tokens * m.rows()])
                    .collect();
                let mut outs: Vec<&mut [f32]> = ys.iter_mut().map(Vec::as_mut_slice).collect();
                QuantMatrix::matmul_int_tiled_many(&refs, &x, tokens, &mut outs, kernel, order);
                for (m, y) in mats.iter().zip(&ys) {
                    let lanes = order == IntOrder::Lanes && has_lane_kernel(kernel, m.dtype());
                    for t in 0..tokens {
                        for r in 0..m.rows() {
                            let want = if lanes {
                                let k = m.cols();
                                let a = Q8Activations::quantize(&x[t * k..(t + 1) * k], 32);
                                lane_gemm::dot_row(m.dtype(), m.row_span(r, 1), &a)
                            } else {
                                scalar_dot(m, r, &x, t)
                            };
                            assert_eq!(
                                y[t * m.rows() + r].to_bits(),
                                want.to_bits(),
                                "{kernel:?} {order:?} {} t {t} r {r}",
                                m.dtype()
                            );
                        }
                    }
                }
            }
        }
    }

    /// A decode step's fused GEMVs (a layer's q/k/v; gate and up with their activation)
    /// equal each matrix's own GEMV ([`QuantMatrix::matmul_int`] of one token) bit for bit, and
    /// so the scalar kernel, for every kernel this CPU has and matrices of both activation
    /// block sizes, whole and partial 64-row tasks of even and odd lengths.
    #[test]
    fn one_tokens_fused_gemvs_equal_each_matrixs_gemv() {
        let cols = 512;
        // 69 and 131 rows: tasks of 64 rows and an odd remainder (the two-row kernels of
        // Q4_1 and Q8_0 finish it with one row).
        let mats = [
            random_matrix(GgmlDType::Q4_1, 69, cols, 5),
            random_matrix(GgmlDType::Q4K, 3, cols, 6),
            random_matrix(GgmlDType::Q8_0, 131, cols, 7),
            random_matrix(GgmlDType::Q6K, 64, cols, 8),
        ];
        let refs: Vec<&QuantMatrix> = mats.iter().collect();
        let x = activations(1, cols);
        for kernel in IntKernel::available() {
            let mut ys: Vec<Vec<f32>> = mats.iter().map(|m| vec![f32::NAN; m.rows()]).collect();
            let mut outs: Vec<&mut [f32]> = ys.iter_mut().map(Vec::as_mut_slice).collect();
            QuantMatrix::gemv_int_many(&refs, &x, &mut outs, kernel);
            for (m, y) in mats.iter().zip(&ys) {
                let mut want = vec![0.0f32; m.rows()];
                m.matmul_int(&x, 1, &mut want, kernel);
                for (r, (got, want)) in y.iter().zip(&want).enumerate() {
                    assert_eq!(
                        got.to_bits(),
                        want.to_bits(),
                        "{kernel:?} {} r {r}",
                        m.dtype()
                    );
                    assert_eq!(got.to_bits(), scalar_dot(m, r, &x, 0).to_bits());
                }
            }
            for (gate, up) in [(&mats[0], &mats[2]), (&mats[1], &mats[3])] {
                // Same shapes: the second matrix of each pair cut or padded to the first's.
                let up = random_matrix(up.dtype(), gate.rows(), cols, 9);
                let mut y = vec![f32::NAN; gate.rows()];
                let f = |g: f32, u: f32| g * 0.5 - u;
                QuantMatrix::gemv_int_gated(gate, &up, &x, &mut y, kernel, pairwise(f));
                for (r, got) in y.iter().enumerate() {
                    let want = scalar_dot(gate, r, &x, 0) * 0.5 - scalar_dot(&up, r, &x, 0);
                    assert_eq!(got.to_bits(), want.to_bits(), "{kernel:?} gated r {r}");
                }
            }
        }
    }

    #[test]
    fn the_gated_product_applies_its_function_to_the_scalar_kernels_pair() {
        let cols = 256;
        let gate = random_matrix(GgmlDType::Q4_1, 100, cols, 5);
        let up = random_matrix(GgmlDType::Q4K, 100, cols, 6);
        for tokens in [1, 8, 11] {
            let x = activations(tokens, cols);
            for kernel in IntKernel::available() {
                let mut y = vec![f32::NAN; tokens * 100];
                let f = |g: f32, u: f32| g * 3.0 - u;
                QuantMatrix::matmul_int_tiled_gated(
                    &gate,
                    &up,
                    &x,
                    tokens,
                    &mut y,
                    kernel,
                    IntOrder::Gemv,
                    pairwise(f),
                );
                for t in 0..tokens {
                    for r in 0..100 {
                        let want = f(scalar_dot(&gate, r, &x, t), scalar_dot(&up, r, &x, t));
                        assert_eq!(
                            y[t * 100 + r].to_bits(),
                            want.to_bits(),
                            "{kernel:?} t {t} r {r}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "one width")]
    fn matrices_of_different_widths_are_refused() {
        let (a, b) = (
            random_matrix(GgmlDType::Q8_0, 4, 64, 1),
            random_matrix(GgmlDType::Q8_0, 4, 32, 2),
        );
        let (mut ya, mut yb) = (vec![0.0; 4], vec![0.0; 4]);
        QuantMatrix::matmul_int_tiled_many(
            &[&a, &b],
            &[0.5; 64],
            1,
            &mut [&mut ya, &mut yb],
            IntKernel::detect(),
            IntOrder::Gemv,
        );
    }

    #[test]
    fn rows_must_be_whole_blocks() {
        assert!(matches!(
            QuantMatrix::new(GgmlDType::Q4K, 1, 128, vec![0; 72]),
            Err(QuantError::Misaligned { .. })
        ));
        assert!(matches!(
            QuantMatrix::new(GgmlDType::Q4_0, 2, 32, vec![0; 35]),
            Err(QuantError::PartialBlock { .. })
        ));
    }
}
