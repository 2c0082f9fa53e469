//! Memory-efficient causal attention for training: FlashAttention-2's forward and backward in
//! query/key blocks, on plain (non-autodiff) tensors.
//!
//! The forward keeps, besides its output, only each query row's log-sum-exp of the scores;
//! the backward recomputes every block's scores from Q, K and that statistic
//! (`P = exp(S - lse)`, `D = rowsum(dO * O)`, `dS = P * (dP - D)`). Nothing of size
//! `len x len` outlives one `block x block` tile. [`super::checkpointing`] wires it into the
//! autodiff graph of a decoder layer.
//!
//! Shapes: queries `[b, heads, s, d]`, keys and values `[b, kv_heads, s, d]` (grouped-query
//! attention: query head `i` uses KV head `i / n_rep`); all positions from 0, causal.
//!
//! Under mixed precision (bf16 Q, K, V) the tiles, the running statistics and the
//! accumulators are f32, as FlashAttention keeps them; the output and the gradients come back
//! in the inputs' dtype, the log-sum-exp stays f32.

use burn::tensor::{Tensor, TensorData};

use super::cast::{in_f32, to_dtype};

/// Query and key rows per tile when the manifest does not say otherwise.
pub const DEFAULT_BLOCK: usize = 64;

/// What the forward keeps for backward besides Q, K and V.
#[derive(Debug, Clone)]
pub struct Saved {
    /// Attention output `[b, heads, s, d]`.
    pub out: Tensor<4>,
    /// Log-sum-exp of each query row's scaled scores, `[b, heads, s, 1]`.
    pub lse: Tensor<4>,
}

/// Gradients of the loss with respect to Q, K and V.
#[derive(Debug, Clone)]
pub struct QkvGrads {
    pub q: Tensor<4>,
    pub k: Tensor<4>,
    pub v: Tensor<4>,
}

/// Query rows `q0..q0+len` of `[b, heads, s, d]` grouped per KV head:
/// `[b, kv_heads, n_rep * len, d]` (rows ordered head-major, as `attend` in the runtime does).
fn grouped(x: &Tensor<4>, q0: usize, len: usize, kvh: usize) -> Tensor<4> {
    let [b, h, _, d] = x.dims();
    x.clone()
        .narrow(2, q0, len)
        .reshape([b, kvh, (h / kvh) * len, d])
}

/// Back from [`grouped`] to `[b, heads, len, d]`.
fn ungrouped(x: Tensor<4>, heads: usize) -> Tensor<4> {
    let [b, kvh, rows, d] = x.dims();
    let len = rows * kvh / heads;
    x.reshape([b, heads, len, d])
}

/// Scaled scores of the grouped query block at `q0` against keys `k0..k0+kb`, with the causal
/// mask applied where a key lies after a query: `[b, kv_heads, n_rep * len, kb]`.
fn scores(
    qg: &Tensor<4>,
    kj: &Tensor<4>,
    q0: usize,
    k0: usize,
    heads: usize,
    scale: f64,
) -> Tensor<4> {
    let [b, kvh, rows, _] = qg.dims();
    let kb = kj.dims()[2];
    let len = rows * kvh / heads;
    let s = qg.clone().matmul(kj.clone().transpose()) * scale;
    if k0 + kb <= q0 + 1 {
        // Every key of the tile is at or before the first query: nothing to mask.
        return s;
    }
    let mask: Vec<f32> = (0..len)
        .flat_map(|i| {
            (0..kb).map(move |c| {
                if k0 + c > q0 + i {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
        })
        .collect();
    let mask = Tensor::<4>::from_data(TensorData::new(mask, [1, 1, len, kb]), &s.device());
    (s.reshape([b, heads, len, kb]) + mask).reshape([b, kvh, rows, kb])
}

/// Causal attention of `q` over `k`, `v` with online softmax, tiles of `block` rows.
pub fn forward(q: &Tensor<4>, k: &Tensor<4>, v: &Tensor<4>, block: usize) -> Saved {
    let dtype = q.dtype();
    let (q, k, v) = (&in_f32(q.clone()), in_f32(k.clone()), in_f32(v.clone()));
    let [_, h, s, d] = q.dims();
    let kvh = k.dims()[1];
    let block = block.max(1);
    let scale = 1.0 / (d as f64).sqrt();
    let (mut outs, mut lses) = (Vec::new(), Vec::new());
    for q0 in (0..s).step_by(block) {
        let len = block.min(s - q0);
        let qg = grouped(q, q0, len, kvh);
        let [b, _, rows, _] = qg.dims();
        let device = qg.device();
        let mut m: Tensor<4> = Tensor::full([b, kvh, rows, 1], f32::NEG_INFINITY, &device);
        let mut l: Tensor<4> = Tensor::zeros([b, kvh, rows, 1], &device);
        let mut acc: Tensor<4> = Tensor::zeros([b, kvh, rows, d], &device);
        // Keys up to the block's last query; the first tile (key 0) gives every row a finite
        // maximum, so `m - m_new` is never `-inf - -inf`.
        for k0 in (0..q0 + len).step_by(block) {
            let kb = block.min(q0 + len - k0);
            let kj = k.clone().narrow(2, k0, kb);
            let vj = v.clone().narrow(2, k0, kb);
            let sc = scores(&qg, &kj, q0, k0, h, scale);
            let m_new = m.clone().max_pair(sc.clone().max_dim(3));
            let p = (sc - m_new.clone()).exp();
            let alpha = (m - m_new.clone()).exp();
            l = l * alpha.clone() + p.clone().sum_dim(3);
            acc = acc * alpha + p.matmul(vj);
            m = m_new;
        }
        outs.push(ungrouped(acc / l.clone(), h));
        lses.push(ungrouped(m + l.log(), h));
    }
    Saved {
        out: to_dtype(Tensor::cat(outs, 2), dtype),
        lse: Tensor::cat(lses, 2),
    }
}

/// Gradients of Q, K and V from the output gradient `dout` `[b, heads, s, d]`.
pub fn backward(
    q: &Tensor<4>,
    k: &Tensor<4>,
    v: &Tensor<4>,
    saved: &Saved,
    dout: &Tensor<4>,
    block: usize,
) -> QkvGrads {
    let dtype = q.dtype();
    let (q, k, v) = (&in_f32(q.clone()), in_f32(k.clone()), in_f32(v.clone()));
    let dout = &in_f32(dout.clone());
    let out = in_f32(saved.out.clone());
    let [_, h, s, d] = q.dims();
    let kvh = k.dims()[1];
    let block = block.max(1);
    let scale = 1.0 / (d as f64).sqrt();
    // D_i = rowsum(dO_i * O_i): the softmax backward's per-row term.
    let dsum = (dout.clone() * out).sum_dim(3);
    let tiles: Vec<usize> = (0..s).step_by(block).collect();
    let mut dk: Vec<Option<Tensor<4>>> = vec![None; tiles.len()];
    let mut dv: Vec<Option<Tensor<4>>> = vec![None; tiles.len()];
    let mut dqs = Vec::with_capacity(tiles.len());
    for &q0 in &tiles {
        let len = block.min(s - q0);
        let qg = grouped(q, q0, len, kvh);
        let dog = grouped(dout, q0, len, kvh);
        let lse = grouped(&saved.lse, q0, len, kvh);
        let di = grouped(&dsum, q0, len, kvh);
        let mut dq: Option<Tensor<4>> = None;
        for (j, &k0) in tiles
            .iter()
            .enumerate()
            .take_while(|(_, &k0)| k0 < q0 + len)
        {
            let kb = block.min(s - k0);
            let kj = k.clone().narrow(2, k0, kb);
            let vj = v.clone().narrow(2, k0, kb);
            let p = (scores(&qg, &kj, q0, k0, h, scale) - lse.clone()).exp();
            let dvj = p.clone().transpose().matmul(dog.clone());
            let dp = dog.clone().matmul(vj.transpose());
            let ds = p * (dp - di.clone());
            let dqj = ds.clone().matmul(kj) * scale;
            let dkj = ds.transpose().matmul(qg.clone()) * scale;
            dq = Some(match dq {
                Some(a) => a + dqj,
                None => dqj,
            });
            dk[j] = Some(match dk[j].take() {
                Some(a) => a + dkj,
                None => dkj,
            });
            dv[j] = Some(match dv[j].take() {
                Some(a) => a + dvj,
                None => dvj,
            });
        }
        dqs.push(ungrouped(dq.expect("a query tile sees key tile 0"), h));
    }
    // Every key tile is seen by at least its own query tile.
    let collect = |xs: Vec<Option<Tensor<4>>>| -> Tensor<4> {
        Tensor::cat(
            xs.into_iter().map(|x| x.expect("key tile seen")).collect(),
            2,
        )
    };
    QkvGrads {
        q: to_dtype(Tensor::cat(dqs, 2), dtype),
        k: to_dtype(collect(dk), dtype),
        v: to_dtype(collect(dv), dtype),
    }
}
