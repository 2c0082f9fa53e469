//! What decode is bound by: the bytes one token reads (weights and KV cache) against the
//! machine's measured memory read bandwidth, printed beside the decode benches (issue 14: a
//! Qwen3-0.6B-shaped model at >= 70% of the bandwidth limit).

use std::time::Instant;

use psy_lm::runtime::{CausalLm, ModelConfig};
use rayon::prelude::*;

/// Bytes of one weight matrix as held (block format or f32).
fn matrix_bytes(weight_elems: Option<usize>, quant_bytes: Option<usize>) -> usize {
    quant_bytes.unwrap_or(0) + 4 * weight_elems.unwrap_or(0)
}

/// Bytes one decode step at `position` reads: every projection, the LM head (the embedding
/// table when tied), one embedding row, the f32 KV cache up to `position`. Norms are left out
/// (a few KB).
pub fn decode_bytes(model: &CausalLm, config: &ModelConfig, position: usize) -> usize {
    let size = |p: &psy_lm::runtime::projection::Projection| {
        matrix_bytes(
            p.weight.as_ref().map(|w| w.val().dims().iter().product()),
            p.quant.as_ref().map(|q| q.size_bytes()),
        )
    };
    let m = &model.model;
    let layers: usize = m
        .layers
        .iter()
        .map(|l| {
            l.projections()
                .into_iter()
                .map(|(_, p)| size(p))
                .sum::<usize>()
        })
        .sum();
    let table = matrix_bytes(
        m.embed_tokens
            .weight
            .as_ref()
            .map(|w| w.val().dims().iter().product()),
        m.embed_tokens.quant.as_ref().map(|q| q.size_bytes()),
    );
    let head = match &model.lm_head {
        Some(p) => size(p),
        None => table,
    };
    let kv = 2 * config.num_hidden_layers * config.num_key_value_heads * config.head_dim * 4;
    layers + head + table / config.vocab_size + kv * position
}

/// The last-level cache of this machine in bytes, from Linux's sysfs (`None` elsewhere).
fn last_level_cache() -> Option<usize> {
    (1..=4)
        .rev()
        .find_map(|i| {
            std::fs::read_to_string(format!("/sys/devices/system/cpu/cpu0/cache/index{i}/size"))
                .ok()
        })
        .and_then(|s| {
            let s = s.trim();
            let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
            let n: usize = num.parse().ok()?;
            Some(match unit {
                "K" => n << 10,
                "M" => n << 20,
                "G" => n << 30,
                _ => n,
            })
        })
}

/// Bytes the bandwidth buffer holds: at least 512 MiB and four times the last-level cache
/// (STREAM's rule), so a host whose cache nearly holds 512 MiB (480 MiB on the AMX Xeon) is
/// measured from memory, not partly from cache.
pub fn buffer_bytes() -> usize {
    (512usize << 20).max(4 * last_level_cache().unwrap_or(0))
}

/// Read bandwidth of this machine on the rayon pool, bytes/s: the best of 5 sums over a
/// buffer of [`buffer_bytes`].
pub fn read_bandwidth() -> f64 {
    let buf: Vec<u64> = (0..buffer_bytes() / 8).map(|i| i as u64).collect();
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        let sum: u64 = buf
            .par_chunks(1 << 16)
            .map(|c| c.iter().fold(0u64, |a, &v| a.wrapping_add(v)))
            .reduce(|| 0, u64::wrapping_add);
        std::hint::black_box(sum);
        best = best.min(t.elapsed().as_secs_f64());
    }
    (buf.len() * 8) as f64 / best
}

/// Prints bytes per token, the bandwidth and the limit they give, and `tok_s` as a share of it.
pub fn report(name: &str, bytes: usize, bandwidth: f64, tok_s: f64) {
    let limit = bandwidth / bytes as f64;
    println!(
        "{name}: {:.1} MB read per decode token; read bandwidth {:.1} GB/s ({} threads) -> \
         limit {limit:.1} tok/s; decode {tok_s:.1} tok/s = {:.0}% of the limit ({} MiB read \
         for the bandwidth)",
        bytes as f64 / 1e6,
        bandwidth / 1e9,
        rayon::current_num_threads(),
        100.0 * tok_s / limit,
        buffer_bytes() >> 20
    );
}
