//! Training throughput on the CPU (flex) backend: one optimizer step = forward over the batch,
//! masked loss, backward, gradient collection, global-norm clipping and an AdamW step.
//!
//! - `full-ft-tiny-qwen3`: full fine-tuning of a random Qwen3 with hidden 256, 4 layers, 4/2 heads,
//!   head_dim 64, intermediate 768 and vocab 32,000 (a 151,936-id LM head would dominate a model
//!   this small), batch 4 x 128 tokens.
//! - `lora-qwen3-0.6b-seq512`: LoRA r16, alpha 32, dropout 0.05 on all seven projections of a
//!   random Qwen3 with the Qwen3-0.6B shape, batch 1 x 512 tokens (tens of seconds a step).
//!
//! - `...-checkpointing`, `...-memory-efficient`, `...-both`: the same steps with gradient
//!   checkpointing per layer, memory-efficient attention, or both (`[train]` keys of those names).
//!
//! Elements/s = trained tokens/s. Run: `cargo bench --bench train` (or `-- tiny`, `-- lora`);
//! `scripts/compare_train_speed.py` runs the same steps in PyTorch.

use std::time::Duration;

/// As in the `psy` binary (src/main.rs): with glibc's allocator a fifth of a step went to page
/// faults and kernel locks.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod common;

use common::{qwen3_0_6b_shape, wanted};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use psy_core::train_spec::TrainAttention;
use psy_lm::compute_pool::on_pool;
use psy_lm::runtime::burn::tensor::Device;
use psy_lm::runtime::lora::with_dropout;
use psy_lm::runtime::{Architecture, CausalLm, LoraConfig, ModelConfig};
use psy_lm::training::checkpointing::loss_and_grads;
use psy_lm::training::optim::{accumulate_grads, clip_global_norm};
use psy_lm::training::{lm_loss, AdamW, AdamWConfig, Batch, NamedGrads, TrainMemory};

/// Shapes shared with `scripts/compare_train_speed.py`.
pub const TINY: (usize, usize) = (4, 128);
pub const LORA: (usize, usize) = (1, 512);

fn tiny_qwen3() -> ModelConfig {
    let mut c = ModelConfig::new(Architecture::Qwen3, 32000, 256, 768, 4, 4, 2, 64);
    c.rope_theta = 1_000_000.0;
    c.qk_norm = true;
    c.tie_word_embeddings = true;
    c.max_position_embeddings = 1024;
    c
}

/// Deterministic token ids (the same formula as the comparison script); every label trained.
fn batch(rows: usize, len: usize, vocab: usize) -> Batch {
    let ids: Vec<Vec<u32>> = (0..rows)
        .map(|r| {
            (0..len)
                .map(|i| ((r * 1_000_003 + i * 7919 + 13) % vocab) as u32)
                .collect()
        })
        .collect();
    Batch {
        labels: ids
            .iter()
            .map(|r| r.iter().map(|&x| i64::from(x)).collect())
            .collect(),
        input_ids: ids,
        weights: None,
    }
}

/// One optimizer step; returns the updated model.
fn step(
    model: CausalLm,
    config: &ModelConfig,
    b: &Batch,
    opt: &mut AdamW,
    step_no: u64,
    mem: &TrainMemory,
) -> CausalLm {
    let d = model.device();
    let scale = 1.0 / b.target_count() as f64;
    let mut grads = NamedGrads::new();
    if mem.is_plain() {
        let loss = with_dropout(step_no, || lm_loss(&model, config, b, &d)) * scale;
        let mut g = loss.backward();
        accumulate_grads(&model, &mut g, &mut grads, 1.0);
    } else {
        grads = with_dropout(step_no, || loss_and_grads(&model, b, scale, mem)).1;
    }
    clip_global_norm(&mut grads, 1.0);
    opt.step(model, &mut grads, 1e-4)
}

fn bench_steps(
    c: &mut Criterion,
    group_name: &str,
    model: CausalLm,
    config: &ModelConfig,
    (rows, len): (usize, usize),
    measure: Duration,
    mem: TrainMemory,
) {
    let b = batch(rows, len, config.vocab_size);
    let mut opt = AdamW::new(AdamWConfig::default());
    let mut model = Some(model);
    let mut n = 0u64;
    let mut group = c.benchmark_group(group_name);
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(measure);
    group.throughput(Throughput::Elements((rows * len) as u64));
    group.bench_function(BenchmarkId::new("step", format!("{rows}x{len}")), |bch| {
        bch.iter(|| {
            n += 1;
            let m = model.take().expect("model");
            // On a worker of the kernels' pool, as `psy train` runs a step.
            let (b, opt, mem) = (&b, &mut opt, &mem);
            model = Some(on_pool(|| step(m, config, b, opt, n, mem)));
        })
    });
    group.finish();
}

/// Whether the group `name` with memory `suffix` runs: the plain groups as before; a variant
/// only when a filter names it (e.g. `-- checkpointing`), so `-- lora` stays one group.
fn wanted_mode(name: &str, suffix: &str) -> bool {
    wanted(name)
        && (suffix.is_empty()
            || std::env::args()
                .skip(1)
                .any(|a| !a.starts_with('-') && a.contains(suffix.trim_start_matches('-'))))
}

/// The plain step and the three memory-saving variants, with their group-name suffixes.
fn memory_modes() -> [(&'static str, TrainMemory); 4] {
    let mode = |gradient_checkpointing, attention| TrainMemory {
        gradient_checkpointing,
        attention,
        ..Default::default()
    };
    [
        ("", mode(false, TrainAttention::Eager)),
        ("-checkpointing", mode(true, TrainAttention::Eager)),
        (
            "-memory-efficient",
            mode(false, TrainAttention::MemoryEfficient),
        ),
        ("-both", mode(true, TrainAttention::MemoryEfficient)),
    ]
}

fn full_ft_tiny(c: &mut Criterion) {
    psy::keep_freed_memory();
    for (suffix, mem) in memory_modes() {
        let name = format!("full-ft-tiny-qwen3{suffix}");
        if !wanted_mode(&name, suffix) {
            continue;
        }
        let config = tiny_qwen3();
        let model = CausalLm::random(&config, &Device::flex().autodiff());
        bench_steps(c, &name, model, &config, TINY, Duration::from_secs(10), mem);
    }
}

fn lora_0_6b(c: &mut Criterion) {
    psy::keep_freed_memory();
    for (suffix, mem) in memory_modes() {
        let name = format!("lora-qwen3-0.6b-seq512{suffix}");
        if !wanted_mode(&name, suffix) {
            continue;
        }
        let config = qwen3_0_6b_shape();
        let lora = LoraConfig {
            enabled: true,
            rank: 16,
            alpha: 32.0,
            dropout: 0.05,
            target_modules: vec!["all-linear".into()],
        };
        let model = CausalLm::random(&config, &Device::flex().autodiff())
            .attach_lora(&lora, 0)
            .expect("LoRA config");
        bench_steps(c, &name, model, &config, LORA, Duration::from_secs(60), mem);
    }
}

criterion_group!(benches, full_ft_tiny, lora_0_6b);
criterion_main!(benches);
