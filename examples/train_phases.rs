//! Where a training step's time goes: the LoRA step of `benches/train.rs` (Qwen3-0.6B shape,
//! r16 all-linear, dropout 0.05, 1 x 512 tokens) timed phase by phase — body forward, fused
//! head + loss, backward, clipping + AdamW — for a few steps (the first includes page faults).
//!
//! Run: `cargo run --release --example train_phases [-- STEPS]`; `DROPOUT=0` disables the
//! adapter dropout; `STEP_ON=caller` runs each step on the main thread, outside the kernels' pool
//! (as psy did before `compute_pool::on_pool`), for an A/B on one host. The README's per-phase
//! figures come from this.

use std::time::Instant;

/// As in the `psy` binary (src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use psy_lm::compute_pool::on_pool;
use psy_lm::runtime::burn::tensor::Device;
use psy_lm::runtime::lora::with_dropout;
use psy_lm::runtime::model::ids_tensor;
use psy_lm::runtime::{Architecture, CausalLm, LoraConfig, ModelConfig};
use psy_lm::training::optim::{accumulate_grads, clip_global_norm};
use psy_lm::training::{head_loss, AdamW, AdamWConfig, Batch, NamedGrads};

fn main() {
    psy::keep_freed_memory();
    let steps: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    let dropout: f64 = std::env::var("DROPOUT")
        .ok()
        .and_then(|x| x.parse().ok())
        .unwrap_or(0.05);
    // Qwen3-0.6B's shape, as benches/common/mod.rs.
    let mut c = ModelConfig::new(Architecture::Qwen3, 151936, 1024, 3072, 28, 16, 8, 128);
    c.rope_theta = 1_000_000.0;
    c.tie_word_embeddings = true;
    c.qk_norm = true;
    c.max_position_embeddings = 4096;
    let lora = LoraConfig {
        enabled: true,
        rank: 16,
        alpha: 32.0,
        dropout,
        target_modules: vec!["all-linear".into()],
    };
    let d = Device::flex().autodiff();
    let mut model = CausalLm::random(&c, &d)
        .attach_lora(&lora, 0)
        .expect("LoRA config");
    let len = 512;
    // The bench's token ids (row 0).
    let ids: Vec<u32> = (0..len)
        .map(|i| ((i * 7919 + 13) % c.vocab_size) as u32)
        .collect();
    let b = Batch {
        labels: vec![ids.iter().map(|&x| i64::from(x)).collect()],
        input_ids: vec![ids],
        weights: None,
    };
    let mut opt = AdamW::new(AdamWConfig::default());
    let on_caller = std::env::var("STEP_ON").is_ok_and(|v| v == "caller");
    for step in 0..steps {
        let (b, opt) = (&b, &mut opt);
        model = if on_caller {
            timed_step(model, opt, b, step)
        } else {
            on_pool(|| timed_step(model, opt, b, step))
        };
    }
}

/// One LoRA step with each phase timed and printed; returns the updated model.
fn timed_step(mut model: CausalLm, opt: &mut AdamW, b: &Batch, step: u64) -> CausalLm {
    let d = model.device();
    let t0 = Instant::now();
    let hidden = with_dropout(step, || model.forward_hidden(ids_tensor(&b.input_ids, &d)));
    let t1 = Instant::now();
    let loss = head_loss(hidden, model.head_weight(), b) / b.target_count() as f64;
    let value: f32 = loss.clone().inner().into_scalar();
    let t2 = Instant::now();
    let mut g = loss.backward();
    let t3 = Instant::now();
    let mut grads = NamedGrads::new();
    accumulate_grads(&model, &mut g, &mut grads, 1.0);
    clip_global_norm(&mut grads, 1.0);
    model = opt.step(model, &mut grads, 1e-4);
    let t4 = Instant::now();
    let s = |a: Instant, b: Instant| (b - a).as_secs_f64();
    println!(
        "step {step}: loss {value:.4} | body forward {:.2} s, head + loss {:.2} s, backward {:.2} s, optimizer {:.2} s, total {:.2} s",
        s(t0, t1),
        s(t1, t2),
        s(t2, t3),
        s(t3, t4),
        s(t0, t4)
    );
    model
}
