//! The held-out split: a dialogue is held out when the FNV-1a 64-bit hash of its id (UTF-8
//! bytes) is divisible by `k`, i.e. about one dialogue in `k`. The rule depends only on the id,
//! so it is stable across file order, machines and psy versions, and adding dialogues never
//! moves an existing one between the sides.

use std::num::NonZeroU64;

use super::dialogue::EvalDialogue;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;

/// FNV-1a, 64-bit, over the bytes of `s`.
pub fn fnv1a64(s: &str) -> u64 {
    s.bytes().fold(FNV_OFFSET, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(FNV_PRIME)
    })
}

/// Whether the dialogue with this id is in the held-out split: `fnv1a64(id) % k == 0`.
pub fn is_held_out(id: &str, k: NonZeroU64) -> bool {
    fnv1a64(id).is_multiple_of(k.get())
}

/// Splits `dialogues` into `(held_out, rest)` by [`is_held_out`], keeping order.
pub fn held_out_split(
    dialogues: Vec<EvalDialogue>,
    k: NonZeroU64,
) -> (Vec<EvalDialogue>, Vec<EvalDialogue>) {
    dialogues.into_iter().partition(|d| is_held_out(&d.id, k))
}
