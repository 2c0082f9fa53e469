//! Decode time per token against the context it attends over: SmolLM2-135M Q4_1 (weights kept
//! quantized, the default path), a prompt of the longest context prefilled once, then for each
//! context the cache truncated to it and one token decoded, many times; prints the median
//! milliseconds per token. For `perf record` on the decode step alone (the criterion bench also
//! prefills) and for A/B of one decode change across contexts.
//!
//! Run: `cargo run --release --example decode_context [-- CONTEXTS [STEPS]]`, e.g.
//! `-- 64,512,1300 200` (the defaults); `PSY_ASSETS` as in the benches.

use std::path::PathBuf;
use std::time::Instant;

/// As in the `psy` binary (src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use psy_lm::runtime::{load_model_with, select_device, DevicePreference, KvCache, WeightFormat};

fn main() {
    psy::keep_freed_memory();
    let mut args = std::env::args().skip(1);
    let mut contexts: Vec<usize> = args
        .next()
        .unwrap_or_else(|| "64,512,1300".into())
        .split(',')
        .map(|c| c.trim().parse().expect("CONTEXTS: e.g. 64,512,1300"))
        .collect();
    // Longest first: truncating only shortens the cache.
    contexts.sort_unstable_by(|a, b| b.cmp(a));
    let steps: usize = args
        .next()
        .map(|s| s.parse().expect("STEPS: a count"))
        .unwrap_or(200);
    let assets = std::env::var_os("PSY_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/psy/assets")
        });
    let path = assets.join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    let device = select_device(DevicePreference::Cpu).expect("CPU device");
    let m = load_model_with(&path, &device, WeightFormat::Quantized).expect("load SmolLM2 GGUF");
    let longest = contexts.iter().copied().max().unwrap_or(64);
    let mut cache = KvCache::new(&m.config, 1, longest + 1, &device);
    let ids: Vec<u32> = (0..longest)
        .map(|i| ((i * 7919 + 13) % m.config.vocab_size) as u32)
        .collect();
    m.model.next_logits(&ids, &mut cache);
    for &context in &contexts {
        let mut times: Vec<f64> = (0..steps)
            .map(|_| {
                cache.truncate(context);
                let t = Instant::now();
                std::hint::black_box(m.model.next_logits(&[42], &mut cache));
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        times.sort_by(f64::total_cmp);
        println!(
            "context {context}: {:.2} ms a token (median of {steps}; min {:.2}, max {:.2})",
            times[steps / 2],
            times[0],
            times[steps - 1]
        );
    }
}
