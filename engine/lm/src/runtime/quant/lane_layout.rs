//! The lane GEMM's data layout (`lane_gemm.rs` and its AVX-512 VNNI kernel `lane_gemm_x86.rs`
//! share it): each 32-value block's weights as unsigned bytes, and the activations of 8 tokens
//! regrouped so that one vector load gives the 8 tokens' values side by side.

use rayon::prelude::*;

use super::q8::Q8Batch;
use crate::runtime::ggml_type::GgmlDType;

/// Bytes of one block and the constant that the unsigned weights carry (`u = w + c`).
pub(super) fn block_form(dtype: GgmlDType) -> (usize, i32) {
    match dtype {
        GgmlDType::Q4_0 => (18, 8),
        GgmlDType::Q4_1 => (20, 0),
        GgmlDType::Q8_0 => (34, 128),
        other => unreachable!("no lane kernel for {other}"),
    }
}

/// The 32 weights of one block as unsigned bytes `u = w + c` (`c` of [`block_form`]): Q4's
/// nibbles as they are, Q8_0's bytes plus 128, so that one unsigned-by-signed product serves
/// all three and `isum = dot(u, x) - c * sum(x)` exactly.
pub(super) fn unsigned_block(dtype: GgmlDType, blk: &[u8]) -> [u8; 32] {
    let mut u = [0u8; 32];
    match dtype {
        GgmlDType::Q4_0 | GgmlDType::Q4_1 => {
            let qs = &blk[blk.len() - 16..];
            for (j, &q) in qs.iter().enumerate() {
                u[j] = q & 0x0f;
                u[j + 16] = q >> 4;
            }
        }
        GgmlDType::Q8_0 => {
            for (u, &q) in u.iter_mut().zip(&blk[2..34]) {
                *u = q ^ 0x80;
            }
        }
        other => unreachable!("no lane kernel for {other}"),
    }
    u
}

/// The fewest tokens past the whole groups of 8 that are regrouped as a padded group. On the
/// AVX2 Zen 3 host (one thread, a 576 x 1536 Q4_1 product, three rounds) a group's pass took
/// 205-250 us whatever its tokens, one token at a time 52-75 us each: 4 tokens 196-305 us
/// (a draw), 5 tokens 250-376 us, 7 tokens 342-512 us.
pub const PADDED_GROUP_MIN: usize = 5;

/// Regrouped bytes from which [`LaneActivations::new`] copies across the rayon pool.
const PARALLEL_BYTES: usize = 1 << 18;

/// The quantized activations of groups of 8 tokens, regrouped so that one vector load gives
/// the 8 tokens' values `4g..4g + 4` of a block: group `q`, block `b`, 4-value piece `g`,
/// token `l` at `((q * blocks + b) * 8 + g) * 32 + 4 * l`. At least [`PADDED_GROUP_MIN`] tokens
/// past the whole groups are group `groups` too, its missing tokens zeros.
pub struct LaneActivations {
    qs: Vec<i8>,
    /// 32-value blocks per token.
    pub(super) blocks: usize,
    /// Whole groups of 8 tokens.
    pub groups: usize,
    /// Tokens in the zero-padded group `groups` (0 when there is none).
    pub tail: usize,
}

impl LaneActivations {
    /// Regroups the tokens of `batch` in pieces of 32 values (a 256-value block is 8 of them):
    /// the whole groups of 8, and the rest as a padded group if there are enough of them.
    pub fn new(batch: &Q8Batch) -> Self {
        Self::padding_from(batch, PADDED_GROUP_MIN)
    }

    /// [`Self::new`] with the tokens past the whole groups padded into a group from `min` of them.
    pub(super) fn padding_from(batch: &Q8Batch, min: usize) -> Self {
        let blocks = batch.cols() / 32;
        let tokens = batch.tokens.len();
        let groups = tokens / 8;
        let tail = if tokens % 8 >= min { tokens % 8 } else { 0 };
        let mut qs = vec![0i8; (groups + usize::from(tail > 0)) * blocks * 256];
        // Token `l`'s piece `i` (values `4i..4i + 4`, block `i / 8`, piece `i % 8` of it) goes
        // to `i * 32 + 4 * l` of its group.
        let regroup = |(q, out): (usize, &mut [i8])| {
            for l in 0..8.min(tokens - q * 8) {
                let x = &batch.tokens[q * 8 + l].qs;
                for (i, piece) in x.chunks_exact(4).enumerate() {
                    out[i * 32 + 4 * l..i * 32 + 4 * l + 4].copy_from_slice(piece);
                }
            }
        };
        // One group per task for long prompts: on one thread this copy was ~3% of a 512-token
        // prefill of the 1.5B (4.6 MB for a 8960-wide product) while the other thread waited.
        let group_bytes = blocks * 256;
        if qs.len() >= PARALLEL_BYTES {
            qs.par_chunks_mut(group_bytes.max(1))
                .enumerate()
                .for_each(regroup);
        } else {
            qs.chunks_mut(group_bytes.max(1))
                .enumerate()
                .for_each(regroup);
        }
        Self {
            qs,
            blocks,
            groups,
            tail,
        }
    }

    /// The start of group `q`'s block `b` (`q` up to `groups`, the padded one if `tail > 0`):
    /// its 8 pieces of 32 bytes, one after another.
    pub(super) fn block_ptr(&self, q: usize, b: usize) -> *const i8 {
        self.qs[(q * self.blocks + b) * 256..].as_ptr()
    }
}
