//! Attention scores of one query against many keys, 16 keys at a time, bit for bit what
//! [`psy_core::semantic::dot`] gives for each key alone.
//!
//! `dot` sums a head's 32 products in 16 lanes (lane `l` holds `q[l] k[l] + q[l+16] k[l+16]`)
//! and then adds the lanes in order: one short dot product per key, most of it shuffling the
//! lanes together. With the keys stored transposed (`[d][keys]`, one row per component) the
//! same lanes are formed for 16 keys side by side, and the same additions in the same order
//! give the same bits; the query's products are computed, not fused (no FMA), as in `dot`.

/// Keys per vector.
const KEYS: usize = 16;

/// `dot`'s lanes (psy_core::semantic::LANES).
const LANES: usize = 16;

/// The keys of one text and head, transposed: component `c` of key `j` at `c * stride + j`.
pub struct KeyMajor {
    values: Vec<f32>,
    stride: usize,
    keys: usize,
    dim: usize,
}

impl KeyMajor {
    /// Transposes `keys` keys of `dim` components, key `j` at `row(j)`.
    pub fn new<'a>(keys: usize, dim: usize, row: impl Fn(usize) -> &'a [f32]) -> KeyMajor {
        let stride = keys.div_ceil(KEYS) * KEYS;
        let mut values = vec![0.0f32; dim * stride];
        for j in 0..keys {
            for (c, &v) in row(j)[..dim].iter().enumerate() {
                values[c * stride + j] = v;
            }
        }
        KeyMajor {
            values,
            stride,
            keys,
            dim,
        }
    }

    /// `scores[j] = dot(q, key j)` for every key.
    pub fn scores(&self, q: &[f32], scores: &mut [f32]) {
        debug_assert_eq!(q.len(), self.dim);
        debug_assert_eq!(scores.len(), self.keys);
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the feature was just detected.
            return unsafe { self.scores_avx512(q, scores) };
        }
        self.scores_lanes(q, scores)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn scores_avx512(&self, q: &[f32], scores: &mut [f32]) {
        self.scores_lanes(q, scores)
    }

    #[inline(always)]
    fn scores_lanes(&self, q: &[f32], scores: &mut [f32]) {
        let chunks = self.dim / LANES;
        let tail_from = chunks * LANES;
        // What `Iterator::sum` starts from (its sign decides an all-zero sum's).
        let start: f32 = std::iter::empty::<f32>().sum();
        for (b, out) in scores.chunks_mut(KEYS).enumerate() {
            let col = b * KEYS;
            let comp = |c: usize| -> &[f32; KEYS] {
                self.values[c * self.stride + col..][..KEYS]
                    .try_into()
                    .expect("rows are padded to whole vectors")
            };
            let mut total = [start; KEYS];
            for l in 0..LANES {
                // Lane l: the products of components l, l + 16, ... added in order from 0.
                let mut lane = [0.0f32; KEYS];
                for c in (0..chunks).map(|c| c * LANES + l) {
                    let (k, qc) = (comp(c), q[c]);
                    for (s, k) in lane.iter_mut().zip(k) {
                        *s += qc * k;
                    }
                }
                for (t, s) in total.iter_mut().zip(&lane) {
                    *t += s;
                }
            }
            // The components after the last whole lane, summed on their own and added last.
            let mut tail = [start; KEYS];
            for (c, &qc) in q.iter().enumerate().skip(tail_from) {
                let k = comp(c);
                for (t, k) in tail.iter_mut().zip(k) {
                    *t += qc * k;
                }
            }
            for ((o, t), tail) in out.iter_mut().zip(&total).zip(&tail) {
                *o = t + tail;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use psy_core::semantic::dot;

    #[test]
    fn every_score_has_the_bits_of_dot() {
        // Awkward values (wide exponents, both signs) so that any reordering shows in the bits.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let m = (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            m * f32::powi(2.0, (x % 11) as i32 - 5)
        };
        // Head sizes with and without a tail, key counts across the 16-key vectors.
        for dim in [32, 64, 8, 40, 17] {
            for keys in [1, 15, 16, 17, 78, 130] {
                let k: Vec<Vec<f32>> = (0..keys)
                    .map(|_| (0..dim).map(|_| next()).collect())
                    .collect();
                let q: Vec<f32> = (0..dim).map(|_| next()).collect();
                let km = KeyMajor::new(keys, dim, |j| &k[j]);
                let mut got = vec![0.0f32; keys];
                km.scores(&q, &mut got);
                for (j, g) in got.iter().enumerate() {
                    assert_eq!(
                        g.to_bits(),
                        dot(&q, &k[j]).to_bits(),
                        "dim {dim}, {keys} keys, key {j}"
                    );
                }
            }
        }
    }
}
