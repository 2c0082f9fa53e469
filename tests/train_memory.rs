//! Training memory on one device: gradient checkpointing per decoder layer and memory-efficient
//! attention give the plain path's loss and gradients, and the `--dry-run` estimate matches the
//! measured peak.
//!
//! Peak memory is measured with a counting global allocator (this test binary's own: bytes
//! live at the high-water mark of one forward + backward, minus those live before the model was
//! loaded). The tests of this file hold one lock so that no other test allocates meanwhile.
//!
//! Run with `cargo test --release -p psy --test train_memory`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use psy_core::train_spec::TrainAttention;
use psy_core::train_spec::TrainPrecision;
use psy_lm::runtime::burn::tensor::{DType, Device};
use psy_lm::runtime::lora::with_dropout;
use psy_lm::runtime::{load_model_on, CausalLm, LoraConfig, ModelConfig};
use psy_lm::training::cast::{compute_dtype, in_dtype};
use psy_lm::training::checkpointing::loss_and_grads;
use psy_lm::training::optim::accumulate_grads;
use psy_lm::training::{lm_loss, Batch, NamedGrads, TrainMemory, IGNORE_INDEX};

#[path = "common/training.rs"]
mod training;

/// `System` with a count of live bytes and their high-water mark.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            let now = LIVE.fetch_add(new_size, Ordering::Relaxed) + new_size;
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Serialises the tests of this binary (the allocator count is process-wide).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn device() -> Device {
    Device::flex().autodiff()
}

fn load(dir: &str) -> (CausalLm, ModelConfig) {
    let m = load_model_on(&training::fixtures().join("qwen3").join(dir), &device()).unwrap();
    (m.model, m.config)
}

fn lora(dropout: f64) -> LoraConfig {
    LoraConfig {
        enabled: true,
        rank: 4,
        alpha: 8.0,
        dropout,
        target_modules: vec!["all-linear".into()],
    }
}

/// Rows of the given lengths, right-padded, deterministic ids below `vocab`; the first 3
/// labels of each row are masked (a prompt), padding is masked by `Batch::pad`.
fn batch(lens: &[usize], vocab: u32) -> Batch {
    let rows: Vec<_> = lens
        .iter()
        .enumerate()
        .map(|(r, &n)| {
            let ids: Vec<u32> = (0..n as u32)
                .map(|i| (i * 7919 + r as u32 * 104_729 + 13) % vocab)
                .collect();
            let labels: Vec<i64> = ids
                .iter()
                .enumerate()
                .map(|(i, &t)| if i < 3 { IGNORE_INDEX } else { i64::from(t) })
                .collect();
            (ids, labels, vec![1.0; n])
        })
        .collect();
    Batch::pad(&rows, 0)
}

/// The plain path: one graph, `lm_loss * scale`, `backward`.
fn plain(model: &CausalLm, config: &ModelConfig, b: &Batch, scale: f64) -> (f64, NamedGrads) {
    plain_in(DType::F32, model, config, b, scale)
}

/// [`plain`] computing on the copy of `model` in `dtype` (the masters' gradients collected).
fn plain_in(
    dtype: DType,
    model: &CausalLm,
    config: &ModelConfig,
    b: &Batch,
    scale: f64,
) -> (f64, NamedGrads) {
    let loss = lm_loss(&in_dtype(model, dtype), config, b, &model.device()) * scale;
    let value = f64::from(loss.clone().inner().into_scalar::<f32>());
    let mut g = loss.backward();
    let mut named = NamedGrads::new();
    accumulate_grads(model, &mut g, &mut named, 1.0);
    (value, named)
}

fn to_vec(t: &psy_lm::runtime::burn::tensor::Tensor<1>) -> Vec<f32> {
    t.clone().into_data().try_into_vec::<f32>().unwrap()
}

/// Largest absolute difference over every gradient, and the loss difference; asserts the same
/// tensors were trained.
fn worst_diff(a: &(f64, NamedGrads), b: &(f64, NamedGrads)) -> (f64, f32) {
    assert_eq!(
        a.1.keys().collect::<Vec<_>>(),
        b.1.keys().collect::<Vec<_>>(),
        "trained tensors differ"
    );
    let mut worst = 0.0f32;
    for (name, g) in &a.1 {
        let (x, y) = (to_vec(g), to_vec(&b.1[name]));
        for (p, q) in x.iter().zip(&y) {
            worst = worst.max((p - q).abs());
        }
    }
    ((a.0 - b.0).abs(), worst)
}

/// A model as the test cases want it: full fine-tuning, or LoRA after one AdamW step (so B is
/// not zero and A's gradient is not trivially zero).
fn model_for(dir: &str, with_lora: Option<f64>) -> (CausalLm, ModelConfig) {
    let (mut model, config) = load(dir);
    if let Some(dropout) = with_lora {
        model = model.attach_lora(&lora(dropout), 7).unwrap();
        let b = batch(&[9, 6], config.vocab_size as u32);
        let (_, mut g) = plain(&model, &config, &b, 1.0);
        model = psy_lm::training::AdamW::new(Default::default()).step(model, &mut g, 1e-2);
    }
    (model, config)
}

/// Gradient checkpointing per layer (forward without autodiff, each layer recomputed in
/// backward) gives the plain path's loss and every gradient: full fine-tuning with tied and
/// untied heads, and LoRA with dropout (the recomputed layers replay the same masks).
#[test]
fn checkpointing_gives_the_plain_loss_and_every_gradient() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mem = TrainMemory {
        gradient_checkpointing: true,
        ..Default::default()
    };
    for (dir, with_lora) in [
        ("tiny-qwen3", None),
        ("tiny-qwen3-untied", None),
        ("tiny-qwen3", Some(0.1)),
    ] {
        let (model, config) = model_for(dir, with_lora);
        let b = batch(&[23, 17], config.vocab_size as u32);
        let scale = 1.0 / b.target_count() as f64;
        let want = with_dropout(5, || plain(&model, &config, &b, scale));
        let got = with_dropout(5, || loss_and_grads(&model, &b, scale, &mem));
        let (dl, dg) = worst_diff(&got, &want);
        eprintln!(
            "{dir} lora={with_lora:?}: loss {} vs {}, {} gradients, worst diff {dg:.1e}",
            got.0,
            want.0,
            want.1.len()
        );
        // Measured: loss diff 0; worst gradient diff 2.2e-7 (tied), 1.8e-7 (untied), 1.4e-7
        // (LoRA): summation order of the residual branches only.
        assert!(dl <= 1e-6, "{dir}: loss {} vs {}", got.0, want.0);
        assert!(dg <= 1e-6, "{dir}: worst gradient diff {dg}");
    }
}

/// The memory-efficient attention (online softmax forward, FlashAttention-2 backward, tiles of
/// 32) gives the eager attention's loss and every gradient at lengths below one tile, at one
/// tile exactly and across five tiles with a partial last one; with grouped-query attention
/// (4 query heads over 2 KV heads), right padding and the causal mask; with and without
/// checkpointing; full fine-tuning and LoRA.
#[test]
fn memory_efficient_attention_gives_the_eager_loss_and_every_gradient() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    for (dir, with_lora) in [("tiny-qwen3", None), ("tiny-qwen3", Some(0.1))] {
        let (model, config) = model_for(dir, with_lora);
        for lens in [&[7usize, 5][..], &[64, 40], &[130, 97]] {
            let b = batch(lens, config.vocab_size as u32);
            let scale = 1.0 / b.target_count() as f64;
            let want = with_dropout(3, || plain(&model, &config, &b, scale));
            for checkpointing in [false, true] {
                let mem = TrainMemory {
                    gradient_checkpointing: checkpointing,
                    attention: TrainAttention::MemoryEfficient,
                    block: 32,
                    ..Default::default()
                };
                let got = with_dropout(3, || loss_and_grads(&model, &b, scale, &mem));
                let (dl, dg) = worst_diff(&got, &want);
                eprintln!(
                    "{dir} lora={with_lora:?} lens {lens:?} checkpointing={checkpointing}: loss diff {dl:.1e}, worst gradient diff {dg:.1e}"
                );
                // Measured: loss diff 0 (below the f32 ulp of ~7.4); worst gradient diff 6.6e-7
                // (lengths 7/5), 1.7e-7 (64/40), 7.4e-8 (130/97), LoRA 1.8e-7 at most.
                assert!(dl <= 1e-5, "{lens:?}: loss {} vs {}", got.0, want.0);
                assert!(dg <= 1e-5, "{lens:?}: worst gradient diff {dg}");
            }
        }
    }
}

/// Bytes live at the high-water mark of `f`, above those live when it started.
fn peak_of<R>(f: impl FnOnce() -> R) -> (usize, R) {
    let base = LIVE.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    let out = f();
    (PEAK.load(Ordering::SeqCst) - base, out)
}

/// One case of the estimate check: a model loaded, one forward + backward of `rows x len`.
struct Case {
    name: &'static str,
    lora: bool,
    rows: usize,
    len: usize,
    mem: TrainMemory,
}

fn measure(case: &Case) -> (u64, psy_lm::training::memory_estimate::MemoryEstimate) {
    let dir = training::fixtures().join("qwen3").join("tiny-qwen3");
    let config = ModelConfig::from_hf_file(&dir.join("config.json")).unwrap();
    let lora_cfg = lora(0.0);
    let adapters = if case.lora {
        psy_lm::runtime::lora::trainable_params(&lora_cfg, &config).unwrap()
    } else {
        0
    };
    let params = config.num_params() + adapters;
    let trainable = if case.lora { adapters } else { params };
    let estimate = psy_lm::training::memory_estimate::estimate_memory(
        &config, params, trainable, case.rows, case.len, "none", 0, &case.mem,
    );
    let lens = vec![case.len; case.rows];
    let b = batch(&lens, config.vocab_size as u32);
    let (peak, _) = peak_of(|| {
        let mut model = load_model_on(&dir, &device()).unwrap().model;
        if case.lora {
            model = model.attach_lora(&lora_cfg, 7).unwrap();
        }
        let scale = 1.0 / b.target_count() as f64;
        if case.mem.is_plain() {
            plain_in(
                compute_dtype(case.mem.precision),
                &model,
                &config,
                &b,
                scale,
            )
        } else {
            loss_and_grads(&model, &b, scale, &case.mem)
        }
    });
    (peak as u64, estimate)
}

/// The four bodies (plain, checkpointing, memory-efficient attention, both) in `precision`.
fn modes(precision: TrainPrecision) -> [(&'static str, TrainMemory); 4] {
    let mode = |gradient_checkpointing, attention| TrainMemory {
        gradient_checkpointing,
        attention,
        precision,
        ..Default::default()
    };
    [
        ("plain", mode(false, TrainAttention::Eager)),
        ("checkpointing", mode(true, TrainAttention::Eager)),
        (
            "memory-efficient",
            mode(false, TrainAttention::MemoryEfficient),
        ),
        ("both", mode(true, TrainAttention::MemoryEfficient)),
    ]
}

/// The `--dry-run` estimate (weights + gradients + activations; no optimizer step is taken)
/// is within 25% of the measured peak of one forward + backward of the tiny Qwen3 (2 layers,
/// hidden 64, 4 heads over 2 KV heads, vocabulary 1000): full fine-tuning at 1,024 and 2,048
/// tokens and LoRA at 2,048, each plain, with checkpointing, with memory-efficient attention
/// and with both. Checkpointing and memory-efficient attention each lower the measured peak.
#[test]
fn the_estimate_is_within_a_quarter_of_the_measured_peak() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let modes = modes(TrainPrecision::F32);
    // Measured (MiB, this machine, counting allocator), estimate / measured in brackets, with
    // the fused f32 kernels and the loss's products on `gemm` (512-row logit chunks):
    //   full 1024: plain 31.4 (1.00), checkpointing 15.3 (1.09), memory-efficient 13.0
    //              (0.98), both 7.0 (1.12)
    //   full 2048: plain 86.5 (1.08), checkpointing 45.1 (1.07), memory-efficient 21.5
    //              (1.13), both 12.7 (1.08)
    //   LoRA 2048: plain 86.3 (1.08), checkpointing 45.1 (1.06), memory-efficient 21.8
    //              (1.10), both 12.7 (1.05)
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    for (lora, len) in [(false, 1024), (false, 2048), (true, 2048)] {
        let mut peaks = Vec::new();
        for (name, mem) in modes {
            let case = Case {
                name,
                lora,
                rows: 1,
                len,
                mem,
            };
            let (measured, e) = measure(&case);
            let est = e.weights + e.grads + e.activations;
            let ratio = est as f64 / measured as f64;
            eprintln!(
                "{} lora={} len {}: measured {:.1} MiB, estimate {:.1} MiB (ratio {ratio:.2})",
                case.name,
                case.lora,
                case.len,
                mib(measured),
                mib(est)
            );
            assert!(
                (0.75..=1.25).contains(&ratio),
                "{name} lora={lora} len {len}: estimate {:.1} MiB vs measured {:.1} MiB",
                mib(est),
                mib(measured)
            );
            peaks.push(measured);
        }
        // Measured: checkpointing 0.43 (1024) and 0.46 (2048) of plain (2 layers: at best one
        // half), memory-efficient 0.48 and 0.34, both 0.28 and 0.19. The fused f32 kernels
        // (`runtime::fused`) halved the plain step's peak, so memory-efficient attention saves
        // less than the 0.17 it did against Burn's ops.
        assert!(peaks[1] < peaks[0] * 6 / 10, "checkpointing: {peaks:?}");
        assert!(
            peaks[2] < peaks[0] * 55 / 100,
            "memory-efficient: {peaks:?}"
        );
        assert!(peaks[3] < peaks[1].min(peaks[2]), "both: {peaks:?}");
    }
}

/// The same check in bf16 (f32 masters and gradients, the bf16 compute copy, activations
/// as the bf16 step keeps them) for full fine-tuning and LoRA at 2,048 tokens.
///
/// Measured (MiB, counting allocator, estimate / measured in brackets; the loss's products on
/// `gemm`, 512-row logit chunks): full: plain 202.1 (1.12), checkpointing 108.9 (1.05),
/// memory-efficient 21.7 (1.14), both 12.1 (1.13); LoRA: 196.1 (1.15), 108.1 (1.05), 19.8
/// (1.23), 11.2 (1.17). bf16 saves less than half here:
/// the eager attention's scores stay f32, and at 2,048 tokens they dominate this tiny model.
/// On an AVX2-only AMD Zen 3 host (512 KiB L2) the memory-efficient steps peak 0.9 MiB lower
/// (full 20.8, LoRA 18.9: ratio 1.29) and the full plain step 2.5-3 MiB lower (199.1-199.6),
/// the other cases equal to 0.1 MiB: the GEMM's packing buffers follow the host's caches, and at
/// ~20 MiB 0.9 MiB is 5%. The bound here is 0.75-1.30 for that reason (f32 keeps ±25%).
#[test]
fn the_bf16_estimate_is_within_0_75_to_1_30_of_the_measured_peak() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let mut bad = Vec::new();
    for lora in [false, true] {
        for (name, mem) in modes(TrainPrecision::Bf16) {
            let case = Case {
                name,
                lora,
                rows: 1,
                len: 2048,
                mem,
            };
            let (measured, e) = measure(&case);
            let est = e.weights + e.grads + e.activations;
            let ratio = est as f64 / measured as f64;
            eprintln!(
                "bf16 {name} lora={lora} len 2048: measured {:.1} MiB, estimate {:.1} MiB (ratio {ratio:.2})",
                mib(measured),
                mib(est)
            );
            if !(0.75..=1.30).contains(&ratio) {
                bad.push(format!("{name} lora={lora}: {ratio:.2}"));
            }
        }
    }
    assert!(bad.is_empty(), "{bad:?}");
}

/// What the estimate says for PsyLLM-sized runs (Qwen3 shapes from `tests/fixtures/
/// qwen3-shapes/`, one row of 1,024 to 8,096 tokens, LoRA r16 all-linear): printed for the
/// README; asserted only in how the features order the totals.
#[test]
fn the_estimate_for_qwen3_up_to_8096_tokens() {
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    let r16 = LoraConfig {
        rank: 16,
        alpha: 32.0,
        ..lora(0.0)
    };
    let modes = [
        ("plain", false, TrainAttention::Eager),
        ("checkpointing", true, TrainAttention::Eager),
        ("memory-efficient", false, TrainAttention::MemoryEfficient),
        ("both", true, TrainAttention::MemoryEfficient),
    ];
    for (model, with_lora) in [
        ("Qwen3-0.6B", false),
        ("Qwen3-0.6B", true),
        ("Qwen3-8B", false),
        ("Qwen3-8B", true),
    ] {
        let dir = training::fixtures().join("qwen3-shapes").join(model);
        let c = ModelConfig::from_hf_file(&dir.join("config.json")).unwrap();
        let adapters = if with_lora {
            psy_lm::runtime::lora::trainable_params(&r16, &c).unwrap()
        } else {
            0
        };
        let params = c.num_params() + adapters;
        let trainable = if with_lora { adapters } else { params };
        let what = if with_lora {
            "LoRA r16 all-linear"
        } else {
            "full SFT"
        };
        for len in [1024, 2048, 4096, 8096] {
            // The estimate for one setting, printed for the README.
            let estimate = |name: &str, mem: &TrainMemory| {
                let e = psy_lm::training::memory_estimate::estimate_memory(
                    &c, params, trainable, 1, len, "none", 0, mem,
                );
                eprintln!(
                    "{model} {what} at {len} tokens, {name}: total {:.1} GiB (weights {:.1}, grads {:.1}, AdamW {:.1}, activations {:.1})",
                    gib(e.total()),
                    gib(e.weights),
                    gib(e.grads),
                    gib(e.optimizer),
                    gib(e.activations)
                );
                e
            };
            let f32s: Vec<_> = modes
                .iter()
                .map(|&(name, gradient_checkpointing, attention)| {
                    let mem = TrainMemory {
                        gradient_checkpointing,
                        attention,
                        ..Default::default()
                    };
                    estimate(name, &mem)
                })
                .collect();
            let totals: Vec<u64> = f32s.iter().map(|e| e.total()).collect();
            // bf16, plain step: the compute copy and layer inputs in 2 bytes, the rest as measured.
            let bf16 = TrainMemory {
                precision: psy_core::train_spec::TrainPrecision::Bf16,
                ..Default::default()
            };
            let e = estimate("plain bf16", &bf16);
            let f32_plain = &f32s[0];
            // bf16 runs Burn's ops, which keep more than the fused f32 CPU kernels: compare
            // with f32 as Burn's ops keep it (on CUDA).
            let f32_burn_ops = psy_lm::training::memory_estimate::estimate_memory(
                &c,
                params,
                trainable,
                1,
                len,
                "cuda:0",
                0,
                &TrainMemory::default(),
            );
            assert!(e.activations < f32_burn_ops.activations, "{model} {len}");
            assert_eq!(e.weights, f32_plain.weights + 2 * params, "{model} {len}");
            assert!(
                totals[1] < totals[0] && totals[2] < totals[0],
                "{model}: {totals:?}"
            );
            assert!(
                totals[3] < totals[1] && totals[3] < totals[2],
                "{model}: {totals:?}"
            );
        }
    }
}
