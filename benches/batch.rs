//! Continuous batching throughput (issue 14: 8 concurrent requests >= 3x one request): 8
//! requests of 48 new tokens each on SmolLM2-135M Q4_1, decoded one after another (batch 1)
//! and together (batch 4 and 8, `runtime/batch.rs`). Criterion reports the time for all 8 and
//! the throughput in generated tokens per second; one extra run per batch size prints each
//! request's latency (start to its last token) as p50 / p95.
//!
//! Run `scripts/setup.sh` first, then `cargo bench --bench batch` (`PSY_BENCH_MODEL=FILE.gguf`
//! for another model; `-- --list` runs only the latency pass). Record
//! `lscpu | grep 'Model name'` and `uptime` beside the figures.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use psy_lm::runtime::burn::tensor::Device;
use psy_lm::runtime::{
    generate_batched, load_model_with, BatchRequest, GenerationConfig, LoadedModel, SamplingConfig,
    WeightFormat,
};

const REQUESTS: usize = 8;
const NEW_TOKENS: usize = 48;

/// Eight different prompts of 20-40 tokens (ids of SmolLM2's vocabulary), generating exactly
/// `NEW_TOKENS` each (no stop token), so every size does the same work.
fn requests() -> Vec<BatchRequest> {
    (0..REQUESTS)
        .map(|i| BatchRequest {
            prompt: (0..20 + 3 * i as u32)
                .map(|j| 1 + (j * 37 + i as u32 * 101) % 20_000)
                .collect(),
            config: GenerationConfig {
                max_new_tokens: NEW_TOKENS,
                use_model_eos: false,
                sampling: SamplingConfig::default(),
                ..Default::default()
            },
        })
        .collect()
}

/// The test model (SmolLM2), or `PSY_BENCH_MODEL` (a GGUF path) to time another one the same
/// way, e.g. the main job's Qwen2.5-Coder 1.5B.
fn model() -> LoadedModel {
    let path = match std::env::var_os("PSY_BENCH_MODEL") {
        Some(path) => std::path::PathBuf::from(path),
        None => psy_lm::runtime::default_model_path().unwrap_or_else(|e| panic!("{e}")),
    };
    load_model_with(&path, &Device::flex(), WeightFormat::from_env().unwrap()).unwrap()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn batch(c: &mut Criterion) {
    let m = model();
    let mut g = c.benchmark_group("batch");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(20))
        .throughput(Throughput::Elements((REQUESTS * NEW_TOKENS) as u64));
    for size in [1usize, 4, 8] {
        // Latency of each request from the start of the wave to its last token.
        let t0 = Instant::now();
        let mut done = vec![0.0f64; REQUESTS];
        let out = generate_batched(&m, None, requests(), size, &mut |e| {
            done[e.prompt_index] = t0.elapsed().as_secs_f64();
        });
        assert!(out.iter().all(|o| o
            .as_ref()
            .is_ok_and(|o| o.generated_ids.len() == NEW_TOKENS)));
        let wall = t0.elapsed().as_secs_f64();
        done.sort_by(f64::total_cmp);
        println!(
            "batch {size}: {REQUESTS} x {NEW_TOKENS} tokens in {wall:.2} s = {:.1} tok/s; \
             request latency p50 {:.2} s, p95 {:.2} s",
            (REQUESTS * NEW_TOKENS) as f64 / wall,
            percentile(&done, 0.5),
            percentile(&done, 0.95)
        );
        g.bench_function(BenchmarkId::new("8-requests", size), |b| {
            b.iter(|| generate_batched(&m, None, requests(), size, &mut |_| {}))
        });
    }
    g.finish();
}

criterion_group!(benches, batch);
criterion_main!(benches);
