//! The activations of the 32-value types' GEMV lanes (`gemv_lanes.rs`): a batch's tokens
//! regrouped 16 to a group, as the AVX-512 kernel (`gemv_lanes_x86.rs`) reads them.

use rayon::prelude::*;

use super::q8::Q8Batch;

/// Tokens per lane group (one 512-bit vector of f32).
pub(super) const LANES: usize = 16;

/// The fewest tokens left after the whole groups that take a group of lanes of their own (the
/// rest of it padded); fewer go through the tiles. Below it the tiles' per-token work (a
/// block's 8 pieces for one token in 256 bits, about 8 vector operations per block) costs less
/// than a padded group's (about 33 per block for the 16 lanes): counted, not measured.
pub(super) const PADDED_GROUP_MIN: usize = 5;

/// A batch's tokens regrouped for the lanes: group `q` holds tokens `16q..16q + 16` (the last
/// group padded with zeros); the tokens past the groups are re-batched for the tiles.
pub struct GemvLanes {
    /// Group `q`, block `b`, piece `g` (values `4g..4g + 4`), token `l`'s 4 values plus 128 at
    /// `((q * blocks + b) * 8 + g) * 64 + 4 * l`.
    pub(super) x: Vec<u8>,
    /// Token `16q + l`'s scale of block `b` at `(q * blocks + b) * 16 + l`.
    pub(super) d: Vec<f32>,
    /// Its sum of block `b` as f32 (exact: at most 32 * 127), at the same place.
    pub(super) sums: Vec<f32>,
    /// 32-value blocks per token.
    pub(super) blocks: usize,
    /// Lane groups.
    pub(super) groups: usize,
    /// Tokens in the lanes: the batch's first ones.
    pub(super) tokens: usize,
    /// The tokens after them, for the tiles.
    pub(super) tail: Option<Q8Batch>,
}

/// One group's activations, scales and sums in [`GemvLanes`], as the copy fills them.
type GroupSlices<'a> = ((&'a mut [u8], &'a mut [f32]), &'a mut [f32]);

/// Regrouped bytes from which [`GemvLanes::new`] copies across the rayon pool.
const PARALLEL_BYTES: usize = 1 << 18;

impl GemvLanes {
    /// `batch` (32-value blocks) regrouped, or `None` when it has too few tokens for a group.
    pub fn new(batch: &Q8Batch) -> Option<Self> {
        assert_eq!(batch.block(), 32, "32-value activation blocks");
        let all = batch.tokens.len();
        let whole = all / LANES;
        let groups = whole + usize::from(all % LANES >= PADDED_GROUP_MIN);
        if groups == 0 {
            return None;
        }
        let tokens = all.min(groups * LANES);
        let blocks = batch.cols() / 32;
        let mut x = vec![0x80u8; groups * blocks * 512];
        let mut d = vec![0.0f32; groups * blocks * LANES];
        let mut sums = vec![0.0f32; groups * blocks * LANES];
        let regroup = |(q, ((x, d), sums)): (usize, GroupSlices<'_>)| {
            for (l, a) in batch.tokens[q * LANES..tokens.min(q * LANES + LANES)]
                .iter()
                .enumerate()
            {
                for b in 0..blocks {
                    for g in 0..8 {
                        let at = (b * 8 + g) * 64 + 4 * l;
                        for (o, &v) in x[at..at + 4].iter_mut().zip(&a.qs[b * 32 + 4 * g..]) {
                            *o = v as u8 ^ 0x80;
                        }
                    }
                    d[b * LANES + l] = a.d[b];
                    sums[b * LANES + l] = a.sums[b] as f32;
                }
            }
        };
        // A long prompt's copy across the pool (as `LaneActivations::new`): one thread would
        // copy while the other waits.
        if groups * blocks * 512 >= PARALLEL_BYTES {
            x.par_chunks_mut(blocks * 512)
                .zip(d.par_chunks_mut(blocks * LANES))
                .zip(sums.par_chunks_mut(blocks * LANES))
                .enumerate()
                .for_each(regroup);
        } else {
            x.chunks_mut(blocks * 512)
                .zip(d.chunks_mut(blocks * LANES))
                .zip(sums.chunks_mut(blocks * LANES))
                .enumerate()
                .for_each(regroup);
        }
        let tail = (tokens < all).then(|| Q8Batch::from_tokens(batch.tokens[tokens..].to_vec()));
        Some(Self {
            x,
            d,
            sums,
            blocks,
            groups,
            tokens,
            tail,
        })
    }
}
