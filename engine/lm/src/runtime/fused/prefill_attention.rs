//! Causal attention of a prompt for inference (no autodiff), on host memory: one rayon task per
//! (sequence, KV group, block of queries), each running its two products with `gemm` on its own
//! thread and the scale, mask and softmax ([`softmax_row`]) between them.
//!
//! The Burn-op blocks (`attention::forward`) run one product per query block for all groups at
//! once; at SmolLM2's sizes (3 groups of 3 heads, head_dim 64, blocks of 64 queries) every such
//! product is below gemm's threading threshold, so the attention's products ran on one thread
//! while the other core waited, and each block's scores and outputs were new tensors, copied
//! again by the final `cat`. Here the tasks share the pool, the scores live in a per-thread
//! buffer, and each task writes its rows of the output in place.
//!
//! Row values do not depend on the block a query falls in: a row's scores past its position are
//! zero probabilities, which add nothing to its output, as in the Burn-op blocks.

use burn::backend::flex::FlexTensor;
use rayon::prelude::*;

use super::host::{contiguous, dims, tensor, values};
use super::softmax_row::softmax_row;

/// Where the queries sit and how they are split (as `attention::Geometry`, which this file
/// does not import: that module calls this one).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    /// Position of the first query (the keys start at 0).
    pub(crate) first: usize,
    /// Multiplier of the scores.
    pub(crate) scale: f64,
    /// Query heads per KV head.
    pub(crate) n_rep: usize,
    /// Query rows per task.
    pub(crate) block: usize,
}

/// Attention of `q` `[b, heads, s, d]` (contiguous or not) over `k`, `v` `[b, kv_heads, t, d]`
/// whose rows of `d` values are contiguous (a prefix of the KV cache buffers qualifies), laid
/// out `[b, s, heads, d]`: the order the output projection reads, so that merging the heads
/// copies nothing. `None` for other layouts (the caller runs the Burn-op blocks).
pub(crate) fn prefill_attention(
    q: &FlexTensor,
    k: &FlexTensor,
    v: &FlexTensor,
    g: Layout,
) -> Option<FlexTensor> {
    let [b, h, s, d]: [usize; 4] = dims(q).try_into().ok()?;
    let [kb, kvh, t, kd]: [usize; 4] = dims(k).try_into().ok()?;
    if dims(v) != dims(k) || kb != b || kd != d || kvh == 0 || h != kvh * g.n_rep {
        return None;
    }
    if t != g.first + s || s == 0 || d == 0 {
        return None;
    }
    let rows_of = |x: &FlexTensor| -> Option<(isize, isize)> {
        let st = x.layout().strides();
        (st[3] == 1 && st[2] == d as isize).then_some((st[0], st[1]))
    };
    let ((kb_stride, kg_stride), (vb_stride, vg_stride)) = (rows_of(k)?, rows_of(v)?);
    let q = contiguous(q.clone());
    let qv = values(&q);
    let (kv_base, vv_base) = (SharedIn(base(k)?), SharedIn(base(v)?));

    let block = g.block.max(1);
    // Largest tasks (the most keys) first, so that the last ones to run are short.
    let mut tasks: Vec<(usize, usize, usize, usize)> = (0..b)
        .flat_map(|bi| (0..kvh).map(move |gi| (bi, gi)))
        .flat_map(|(bi, gi)| {
            (0..s)
                .step_by(block)
                .map(move |q0| (bi, gi, q0, block.min(s - q0)))
        })
        .collect();
    tasks.sort_by_key(|&(_, _, q0, len)| std::cmp::Reverse(q0 + len));

    let mut out: Vec<f32> = vec![0.0; b * h * s * d];
    let out_ptr = SharedOut(out.as_mut_ptr());
    let scale = g.scale as f32;
    tasks
        .par_iter()
        .for_each_init(Vec::new, |scores: &mut Vec<f32>, &(bi, gi, q0, len)| {
            let keys = g.first + q0 + len;
            scores.resize(len * keys, 0.0);
            // SAFETY: offsets stay inside the tensors (shapes and strides checked above).
            let kp = unsafe {
                kv_base
                    .ptr()
                    .offset(bi as isize * kb_stride + gi as isize * kg_stride)
            };
            let vp = unsafe {
                vv_base
                    .ptr()
                    .offset(bi as isize * vb_stride + gi as isize * vg_stride)
            };
            for r in 0..g.n_rep {
                let head = gi * g.n_rep + r;
                let at = ((bi * h + head) * s + q0) * d;
                let qp = qv[at..at + len * d].as_ptr();
                let out_at = ((bi * s + q0) * h + head) * d;
                // SAFETY: `qp` covers `len` rows of `d`, `kp` `keys` rows of `d` (stride d),
                // `scores` `len * keys` values; one thread.
                unsafe {
                    gemm::gemm(
                        len,
                        keys,
                        d,
                        scores.as_mut_ptr(),
                        1,
                        keys as isize,
                        false,
                        qp,
                        1,
                        d as isize,
                        kp,
                        d as isize,
                        1,
                        0.0f32,
                        1.0f32,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
                for (i, row) in scores.chunks_exact_mut(keys).enumerate() {
                    let (seen, hidden) = row.split_at_mut(g.first + q0 + i + 1);
                    softmax_row(seen, scale);
                    hidden.fill(0.0);
                }
                // SAFETY: this task alone writes the `d` values of `head` at positions
                // q0..q0+len of sequence `bi` (the tasks partition them); `vp` covers `keys`
                // rows of `d`.
                unsafe {
                    gemm::gemm(
                        len,
                        d,
                        keys,
                        out_ptr.at(out_at),
                        1,
                        (h * d) as isize,
                        false,
                        scores.as_ptr(),
                        1,
                        keys as isize,
                        vp,
                        1,
                        d as isize,
                        0.0f32,
                        1.0f32,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
            }
        });
    Some(tensor(out, vec![b, s, h, d]))
}

/// The first value of `x`'s view in its storage.
fn base(x: &FlexTensor) -> Option<*const f32> {
    let storage: &[f32] = x.storage();
    Some(storage.get(x.layout().start_offset()..)?.as_ptr())
}

/// Keys or values, read by every task.
#[derive(Clone, Copy)]
struct SharedIn(*const f32);

// SAFETY: read-only while the tasks run (the tensors outlive them).
unsafe impl Send for SharedIn {}
unsafe impl Sync for SharedIn {}

impl SharedIn {
    // A method, so that closures capture the wrapper rather than its raw pointer field.
    fn ptr(self) -> *const f32 {
        self.0
    }
}

/// The output buffer, written by the tasks at disjoint rows.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);

// SAFETY: each task writes only its own rows (see the call site).
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    fn at(self, offset: usize) -> *mut f32 {
        // SAFETY: callers pass offsets inside the buffer.
        unsafe { self.0.add(offset) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::fused::attention::Geometry;
    use crate::runtime::fused::test_support::{assert_close, random};
    use crate::runtime::model::causal_blocks_ops;

    fn layout(g: Geometry) -> Layout {
        Layout {
            first: g.first,
            scale: g.scale,
            n_rep: g.n_rep,
            block: g.block,
        }
    }
    use burn::backend::Flex;
    use burn::tensor::{Device, Tensor, TensorData};

    /// Naive causal attention in f64: every (head, query) over its visible keys.
    fn naive(q: &[f32], k: &[f32], v: &[f32], dims: [usize; 6], first: usize) -> Vec<f32> {
        let [b, h, kvh, s, t, d] = dims;
        let scale = 1.0 / (d as f64).sqrt();
        let mut out = vec![0.0f32; b * h * s * d];
        for bi in 0..b {
            for head in 0..h {
                let gi = head / (h / kvh);
                for i in 0..s {
                    let qrow = &q[((bi * h + head) * s + i) * d..][..d];
                    let seen = first + i + 1;
                    let scores: Vec<f64> = (0..seen)
                        .map(|j| {
                            let krow = &k[((bi * kvh + gi) * t + j) * d..][..d];
                            qrow.iter()
                                .zip(krow)
                                .map(|(a, b)| *a as f64 * *b as f64)
                                .sum::<f64>()
                                * scale
                        })
                        .collect();
                    let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let sum: f64 = scores.iter().map(|x| (x - max).exp()).sum();
                    for c in 0..d {
                        let o: f64 = (0..seen)
                            .map(|j| {
                                (scores[j] - max).exp() / sum
                                    * v[((bi * kvh + gi) * t + j) * d + c] as f64
                            })
                            .sum();
                        out[((bi * h + head) * s + i) * d + c] = o as f32;
                    }
                }
            }
        }
        out
    }

    fn flex(t: &Tensor<4>) -> FlexTensor {
        t.clone().try_into_primitive::<Flex>().unwrap()
    }

    /// Fresh prompts and prompts after cached positions, with K and V read as a prefix of a
    /// longer cache buffer (strided views), equal the naive f64 attention and the Burn-op blocks.
    #[test]
    fn equals_naive_attention_and_the_burn_op_blocks() {
        let device = Device::flex();
        for (b, h, kvh, s, first, d, block) in [
            (1, 9, 3, 150, 0, 64, 64),
            (2, 4, 2, 37, 0, 16, 16),
            (1, 4, 4, 40, 50, 8, 16),
            (1, 6, 2, 1, 30, 32, 64),
        ] {
            let t = first + s;
            let cap = t + 7;
            let g = Geometry {
                first,
                scale: 1.0 / (d as f64).sqrt(),
                n_rep: h / kvh,
                block,
            };
            let q = Tensor::<4>::from_data(random([b, h, s, d], 31, 2.0), &device);
            let kbuf = Tensor::<4>::from_data(random([b, kvh, cap, d], 32, 2.0), &device);
            let vbuf = Tensor::<4>::from_data(random([b, kvh, cap, d], 33, 1.0), &device);
            let (k, v) = (kbuf.narrow(2, 0, t), vbuf.narrow(2, 0, t));
            let got = prefill_attention(&flex(&q), &flex(&k), &flex(&v), layout(g))
                .expect("rows of the cache are contiguous");
            let got = Tensor::<4>::from_primitive::<Flex>(got).swap_dims(1, 2);
            let host = |x: &Tensor<4>| {
                x.clone()
                    .into_data()
                    .convert::<f32>()
                    .try_to_vec::<f32>()
                    .unwrap()
            };
            let want = naive(&host(&q), &host(&k), &host(&v), [b, h, kvh, s, t, d], first);
            let want = Tensor::<4>::from_data(TensorData::new(want, [b, h, s, d]), &device);
            assert_close("naive", got.clone(), want, 2e-6);
            assert_close("burn ops", got, causal_blocks_ops(q, k, v, g), 2e-6);
        }
    }

    /// A row's values do not depend on how the prompt is split: the last 20 queries computed
    /// after 60 cached positions equal the same rows of the whole 80-token prompt, bit for bit.
    #[test]
    fn rows_do_not_depend_on_the_split() {
        let device = Device::flex();
        let (h, kvh, t, d) = (4, 2, 80, 16);
        let g = |first| Geometry {
            first,
            scale: 0.25,
            n_rep: 2,
            block: 16,
        };
        let q = Tensor::<4>::from_data(random([1, h, t, d], 41, 2.0), &device);
        let k = Tensor::<4>::from_data(random([1, kvh, t, d], 42, 2.0), &device);
        let v = Tensor::<4>::from_data(random([1, kvh, t, d], 43, 1.0), &device);
        let whole = prefill_attention(&flex(&q), &flex(&k), &flex(&v), layout(g(0))).unwrap();
        let tail_q = q.clone().narrow(2, 60, 20);
        let tail = prefill_attention(&flex(&tail_q), &flex(&k), &flex(&v), layout(g(60))).unwrap();
        let whole = Tensor::<4>::from_primitive::<Flex>(whole).narrow(1, 60, 20);
        let bits = |x: Tensor<4>| {
            x.into_data()
                .try_to_vec::<f32>()
                .unwrap()
                .into_iter()
                .map(f32::to_bits)
                .collect::<Vec<_>>()
        };
        assert_eq!(bits(whole), bits(Tensor::<4>::from_primitive::<Flex>(tail)));
    }

    #[test]
    fn mismatched_shapes_are_declined() {
        let device = Device::flex();
        let q = Tensor::<4>::from_data(random([1, 4, 8, 16], 1, 1.0), &device);
        let k = Tensor::<4>::from_data(random([1, 2, 9, 16], 2, 1.0), &device);
        let g = Geometry {
            first: 0,
            scale: 0.25,
            n_rep: 2,
            block: 16,
        };
        // 9 keys for 8 queries from position 0.
        assert!(prefill_attention(&flex(&q), &flex(&k), &flex(&k), layout(g)).is_none());
    }
}
