//! Decode and prefill throughput of the Burn runtime, batch 1, on the CPU (flex) backend.
//!
//! - SmolLM2-135M-Instruct from its Q4_1 GGUF, dequantised to f32 (`smollm2-135m-gguf`) and with
//!   its weights kept quantized, multiplied with 8-bit activations (`smollm2-135m-gguf-q`, the
//!   default) and with f32 activations (`smollm2-135m-gguf-q-f32act`, the path before integer
//!   kernels); run `scripts/setup.sh` first.
//! - Qwen2.5-Coder-1.5B-Instruct Q4_K_M with quantized weights (`qwen2.5-1.5b-q4km-q`, and
//!   `qwen2.5-1.5b-q4km-q-f32act`), and Qwen2.5-Coder-0.5B-Instruct AWQ Q4_K_M, mostly Q5_0
//!   (`qwen2.5-0.5b-q4km-q`, `qwen2.5-0.5b-q4km-q-f32act`), when `scripts/setup.sh --qwen` has
//!   fetched them (each skipped otherwise).
//! - A random Qwen3 with the Qwen3-0.6B shape (hidden 1024, 28 layers, 16/8 heads, head_dim 128,
//!   intermediate 3072, vocab 151936, tied embeddings), in f32 (`qwen3-0.6b-shape-random`) and
//!   with its matrices quantized to Q8_0 as `PSY_WEIGHTS=q8_0` loads a checkpoint
//!   (`qwen3-0.6b-shape-random-q8_0`); each prints the bytes a decode step reads, the measured
//!   read bandwidth and the share of the bandwidth limit the decode reaches.
//!
//! Criterion reports elements/s = tokens/s. Run: `cargo bench --bench decode`.
//!
//! On a shared, overloaded machine wall time mostly measures the other processes: with
//! `PSY_BENCH_CLOCK=cpu` the model benches report the CPU time of all of this process's threads
//! instead (Linux `/proc/self/task/*/schedstat`), which the load barely moves; it counts rayon's
//! idle spinning too, so it is an upper bound on the work and is not comparable with other
//! engines' wall-clock figures.

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The `psy` binary's allocator (src/main.rs), so that the figures are the binary's: with
/// glibc's, freed prefill buffers went back to the kernel and came back as fresh pages (9% of
/// a 512-token prefill of Qwen2.5-1.5B in page faults under perf). Each model bench also calls
/// `psy::keep_freed_memory()` as `main` does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "common/bandwidth.rs"]
mod bandwidth;
mod common;

use common::{qwen3_0_6b_shape, wanted};
use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use psy_lm::runtime::quantize_model::quantize_q8_0_in_place;
use psy_lm::runtime::{
    load_model_on, load_model_with, select_device, CausalLm, DevicePreference, KvCache,
    ModelConfig, WeightFormat,
};

const PREFILL: usize = 64;

fn assets() -> PathBuf {
    std::env::var_os("PSY_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/psy/assets")
        })
}

fn smollm2_path() -> PathBuf {
    let p = assets().join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(p.is_file(), "{} missing: run scripts/setup.sh", p.display());
    p
}

fn prompt(vocab: usize, len: usize) -> Vec<u32> {
    (0..len).map(|i| ((i * 7919 + 13) % vocab) as u32).collect()
}

/// CPU time of every thread of this process so far (`/proc/self/task/*/schedstat`, ns).
fn process_cpu_time() -> Duration {
    let ns: u64 = std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task (PSY_BENCH_CLOCK=cpu needs Linux)")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(ns)
}

/// The time `f` takes: wall clock, or process CPU time with `PSY_BENCH_CLOCK=cpu`.
fn timed(f: impl FnOnce()) -> Duration {
    if std::env::var("PSY_BENCH_CLOCK").as_deref() == Ok("cpu") {
        let t = process_cpu_time();
        f();
        process_cpu_time() - t
    } else {
        let t = Instant::now();
        f();
        t.elapsed()
    }
}

/// Prompt lengths of the prefill benches: `PSY_BENCH_PREFILL=64,512` (default 64); a decode
/// step is measured after each of them and after 64 tokens.
fn prefill_lengths() -> Vec<usize> {
    std::env::var("PSY_BENCH_PREFILL")
        .ok()
        .map(|v| {
            v.split(',')
                .map(|n| {
                    n.trim()
                        .parse()
                        .unwrap_or_else(|_| panic!("PSY_BENCH_PREFILL={v}: expected e.g. 64,512"))
                })
                .collect()
        })
        .unwrap_or_else(|| vec![PREFILL])
}

/// Prefill of each prompt length, then one decode step after each (and after 64 tokens). With `compare_paths`, the prefill is
/// also run by the path before the integer GEMM (`prefill-gemm`: integer dots up to 4 tokens,
/// Burn's GEMM on dequantised tiles above), in the same run.
fn bench_model(
    c: &mut Criterion,
    name: &str,
    model: &CausalLm,
    config: &ModelConfig,
    compare_paths: bool,
) {
    use psy_lm::runtime::projection::{set_quant_prefill, QuantPrefill};
    psy::keep_freed_memory();
    let device = model.device();
    let lengths = prefill_lengths();
    let longest = lengths
        .iter()
        .copied()
        .max()
        .unwrap_or(PREFILL)
        .max(PREFILL);
    let mut cache = KvCache::new(config, 1, longest + 1, &device);
    let mut group = c.benchmark_group(name);
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(8));

    let paths: &[(&str, QuantPrefill)] = if compare_paths {
        &[
            ("prefill", QuantPrefill::IntTiled),
            ("prefill-gemm", QuantPrefill::GemmAbove4),
        ]
    } else {
        &[("prefill", QuantPrefill::IntTiled)]
    };
    for &len in &lengths {
        let ids = prompt(config.vocab_size, len);
        group.throughput(Throughput::Elements(len as u64));
        for &(bench, path) in paths {
            set_quant_prefill(path);
            group.bench_function(BenchmarkId::new(bench, len), |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| {
                            cache.reset();
                            timed(|| {
                                std::hint::black_box(model.next_logits(&ids, &mut cache));
                            })
                        })
                        .sum()
                })
            });
        }
        set_quant_prefill(QuantPrefill::IntTiled);
    }

    // One decode step after each prompt length (64 always), with the prompt already cached:
    // decode at 512 tokens of context pays for attention over the longer cache.
    let mut contexts = lengths.clone();
    contexts.push(PREFILL);
    contexts.sort_unstable();
    contexts.dedup();
    group.throughput(Throughput::Elements(1));
    for context in contexts {
        let ids = prompt(config.vocab_size, context);
        cache.reset();
        model.next_logits(&ids, &mut cache);
        group.bench_function(BenchmarkId::new("decode", context), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        cache.truncate(context);
                        timed(|| {
                            std::hint::black_box(model.next_logits(&[42], &mut cache));
                        })
                    })
                    .sum()
            })
        });
    }
    group.finish();
}

fn smollm2(c: &mut Criterion) {
    if !wanted("smollm2-135m-gguf") {
        return;
    }
    let device = select_device(DevicePreference::Cpu).unwrap();
    let m = load_model_on(&smollm2_path(), &device).expect("load SmolLM2 GGUF");
    bench_model(c, "smollm2-135m-gguf", &m.model, &m.config, false);
}

/// The quantized weight formats, named by bench-group suffix.
const QUANT_FORMATS: [(&str, WeightFormat); 2] = [
    ("", WeightFormat::Quantized),
    ("-f32act", WeightFormat::QuantizedF32Act),
];

fn smollm2_quantized(c: &mut Criterion) {
    for (suffix, format) in QUANT_FORMATS {
        let name = format!("smollm2-135m-gguf-q{suffix}");
        // The base name too, so that one regex filter selects both formats.
        if !wanted(&name) && !wanted("smollm2-135m-gguf-q") {
            continue;
        }
        let device = select_device(DevicePreference::Cpu).unwrap();
        let m = load_model_with(&smollm2_path(), &device, format).expect("load SmolLM2 GGUF");
        bench_model(
            c,
            &name,
            &m.model,
            &m.config,
            format == WeightFormat::Quantized,
        );
    }
}

/// The Qwen2.5-Coder GGUFs `scripts/setup.sh --qwen` fetches, by bench-group base name: the
/// 1.5B (Q4_K and Q6_K matrices) and the 0.5B AWQ (hidden size 896, not a multiple of 256, so
/// most of its matrices are Q5_0).
const QWEN25_MODELS: [(&str, &str); 2] = [
    (
        "qwen2.5-1.5b-q4km-q",
        "qwen2.5-coder/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    ),
    (
        "qwen2.5-0.5b-q4km-q",
        "qwen2.5-coder/qwen2.5-coder-0.5b-instruct-awq-q4_k_m.gguf",
    ),
];

fn qwen25_quantized(c: &mut Criterion) {
    for (base, file) in QWEN25_MODELS {
        let path = assets().join(file);
        for (suffix, format) in QUANT_FORMATS {
            let name = format!("{base}{suffix}");
            if (!wanted(&name) && !wanted(base)) || !path.is_file() {
                continue;
            }
            let device = select_device(DevicePreference::Cpu).unwrap();
            let m = load_model_with(&path, &device, format).expect("load Qwen2.5 GGUF");
            bench_model(
                c,
                &name,
                &m.model,
                &m.config,
                format == WeightFormat::Quantized,
            );
        }
    }
}

fn qwen3(c: &mut Criterion) {
    // One bandwidth reading for both groups of the run.
    let mut bandwidth = None;
    for (name, q8_0) in [
        ("qwen3-0.6b-shape-random", false),
        ("qwen3-0.6b-shape-random-q8_0", true),
    ] {
        // The f32 group's name is a prefix of the other's: a filter naming the Q8_0 group
        // alone (it matches "q8_0" but not "shape-random/") leaves the f32 one out.
        let selected = if q8_0 {
            wanted(name)
        } else {
            wanted(name) && (!wanted("q8_0") || wanted("shape-random/"))
        };
        if !selected {
            continue;
        }
        let device = select_device(DevicePreference::Cpu).unwrap();
        let config = qwen3_0_6b_shape();
        let mut model = CausalLm::random(&config, &device);
        if q8_0 {
            // What `PSY_WEIGHTS=q8_0` does to a safetensors checkpoint while loading it.
            quantize_q8_0_in_place(&mut model).expect("random weights are finite");
        }
        bench_model(c, name, &model, &config, false);
        let bw = *bandwidth.get_or_insert_with(bandwidth::read_bandwidth);
        let tok_s = decode_rate(&model, &config);
        bandwidth::report(
            name,
            bandwidth::decode_bytes(&model, &config, PREFILL),
            bw,
            tok_s,
        );
    }
}

/// Decode tokens/s at position [`PREFILL`] (the decode bench's step), the median of 9 steps:
/// for the bandwidth line, beside criterion's own estimate.
fn decode_rate(model: &CausalLm, config: &ModelConfig) -> f64 {
    let device = model.device();
    let mut cache = KvCache::new(config, 1, PREFILL + 1, &device);
    model.next_logits(&prompt(config.vocab_size, PREFILL), &mut cache);
    let mut secs: Vec<f64> = (0..9)
        .map(|_| {
            cache.truncate(PREFILL);
            let t = Instant::now();
            std::hint::black_box(model.next_logits(&[42], &mut cache));
            t.elapsed().as_secs_f64()
        })
        .collect();
    secs.sort_by(f64::total_cmp);
    1.0 / secs[4]
}

/// The batch-1 GEMV alone on SmolLM2's LM head shape; throughput in bytes of weights read.
fn gemv(c: &mut Criterion) {
    if !wanted("gemv") {
        return;
    }
    let (rows, k) = (49152, 576);
    let w: Vec<f32> = (0..rows * k).map(|i| (i % 1000) as f32 * 1e-3).collect();
    let x: Vec<f32> = (0..k).map(|i| i as f32 * 1e-3).collect();
    let mut y = vec![0.0f32; rows];
    let mut group = c.benchmark_group("gemv");
    group.sample_size(20);
    group.throughput(Throughput::Bytes((rows * k * 4) as u64));
    group.bench_function("lm_head_49152x576", |b| {
        b.iter(|| psy_lm::runtime::kernels::gemv_rows(&w, &x, &mut y))
    });
    group.finish();
}

/// The quantized GEMV alone, for the block types of SmolLM2 and Qwen2.5 Q4_K_M and the other
/// K-quants (Q2_K, Q3_K, Q5_K: Q2_K, Q3_K_M and Q5_K_M files), beside the f32 GEMV of the same shape: with f32 activations (`gemv`), and with 8-bit activations and each
/// integer kernel this CPU runs (`_int_Avx2`, `_int_Vnni`; the activation quantization is
/// included). Throughput in bytes of weights read.
fn gemv_quantized(c: &mut Criterion) {
    use psy_lm::runtime::gguf::GgmlDType;
    use psy_lm::runtime::quant::{IntKernel, QuantMatrix};
    if !wanted("gemv-q") {
        return;
    }
    // Qwen2.5-1.5B's gate/up projection shape (a whole number of K-quant super-blocks).
    let (rows, k) = (8960, 1536);
    let x: Vec<f32> = (0..k).map(|i| i as f32 * 1e-3).collect();
    let mut y = vec![0.0f32; rows];
    let mut group = c.benchmark_group("gemv-q");
    let w: Vec<f32> = (0..rows * k).map(|i| (i % 1000) as f32 * 1e-3).collect();
    group.throughput(Throughput::Bytes((rows * k * 4) as u64));
    group.bench_function(format!("F32_{rows}x{k}"), |b| {
        b.iter(|| psy_lm::runtime::kernels::gemv_rows(&w, &x, &mut y))
    });
    group.sample_size(20);
    for (dtype, scales) in [
        (GgmlDType::Q8_0, &[0usize][..]),
        (GgmlDType::Q4_0, &[0][..]),
        (GgmlDType::Q4_1, &[0, 2][..]),
        (GgmlDType::Q2K, &[80, 82][..]),
        (GgmlDType::Q3K, &[108][..]),
        (GgmlDType::Q4K, &[0, 2][..]),
        (GgmlDType::Q5K, &[0, 2][..]),
        (GgmlDType::Q6K, &[208][..]),
    ] {
        let (elems, block) = dtype.block_layout().unwrap();
        let (elems, block) = (elems as usize, block as usize);
        let mut data: Vec<u8> = (0..rows * k / elems * block)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        // Finite f16 scales (0.01) in every block.
        for blk in data.chunks_exact_mut(block) {
            for &at in scales {
                blk[at..at + 2].copy_from_slice(&0x211Eu16.to_le_bytes());
            }
        }
        let m = QuantMatrix::new(dtype, rows, k, data).unwrap();
        group.throughput(Throughput::Bytes(m.size_bytes() as u64));
        group.bench_function(format!("{dtype}_{rows}x{k}"), |b| {
            b.iter(|| m.gemv(&x, &mut y))
        });
        for kernel in IntKernel::available().into_iter().skip(1) {
            group.bench_function(format!("{dtype}_{rows}x{k}_int_{kernel:?}"), |b| {
                b.iter(|| m.matmul_int(&x, 1, &mut y, kernel))
            });
        }
        // Dequantising the whole matrix, as prefill does before Burn's GEMM.
        group.bench_function(format!("{dtype}_{rows}x{k}_to_f32"), |b| {
            b.iter(|| m.to_f32())
        });
    }
    group.finish();
}

/// Qwen2.5-1.5B's projections (gate/up 8960 x 1536 over 2 to 512 tokens; q/o 1536 x 1536,
/// down 1536 x 8960 and k/v 256 x 1536 over 16, 64 and 512 tokens), Q4_0, Q4_1, Q8_0 and the
/// K-quants (Q2_K to Q6_K), by each path: Burn's GEMM on dequantised 4 MB tiles of rows (`gemm`, f32
/// activations), the 4 x 4 register-blocked kernel on dequantised rows (`f32act`), integer
/// dot products with 8-bit activations token by token (`int`, each row's blocks read once for
/// all tokens but decoded per token), and the integer GEMM (`int-tiled`, each block decoded once per 8 tokens; the
/// default prefill). `f32act` and `int` stop at 64 tokens (seconds per call above).
fn prefill_quantized(c: &mut Criterion) {
    use psy_lm::runtime::burn::tensor::{Tensor, TensorData};
    use psy_lm::runtime::gguf::GgmlDType;
    use psy_lm::runtime::projection::quant_gemm;
    use psy_lm::runtime::quant::{IntKernel, QuantMatrix};
    if !wanted("prefill-q") {
        return;
    }
    psy::keep_freed_memory();
    let device = select_device(DevicePreference::Cpu).unwrap();
    let mut group = c.benchmark_group("prefill-q");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    let shapes: [(usize, usize, &[usize]); 4] = [
        (8960, 1536, &[1, 2, 4, 8, 16, 32, 64, 512]),
        (1536, 1536, &[16, 64, 512]),
        (1536, 8960, &[16, 64, 512]),
        (256, 1536, &[16, 64, 512]),
    ];
    for ((rows, k, lengths), (dtype, scales)) in shapes.into_iter().flat_map(|s| {
        [
            (GgmlDType::Q4_0, &[0usize][..]),
            (GgmlDType::Q4_1, &[0, 2][..]),
            (GgmlDType::Q8_0, &[0][..]),
            (GgmlDType::Q2K, &[80, 82][..]),
            (GgmlDType::Q3K, &[108][..]),
            (GgmlDType::Q4K, &[0, 2][..]),
            (GgmlDType::Q5K, &[0, 2][..]),
            (GgmlDType::Q6K, &[208][..]),
        ]
        .map(|t| (s, t))
    }) {
        let (elems, block) = dtype.block_layout().unwrap();
        let (elems, block) = (elems as usize, block as usize);
        let mut data: Vec<u8> = (0..rows * k / elems * block)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        for blk in data.chunks_exact_mut(block) {
            for &at in scales {
                blk[at..at + 2].copy_from_slice(&0x211Eu16.to_le_bytes());
            }
        }
        let m = QuantMatrix::new(dtype, rows, k, data).unwrap();
        let panels = m.clone().into_panels();
        for &tokens in lengths {
            group.throughput(Throughput::Elements(tokens as u64));
            let x: Vec<f32> = (0..tokens * k)
                .map(|i| ((i % 97) as f32 - 48.0) * 1e-2)
                .collect();
            let xt = Tensor::<3>::from_data(TensorData::new(x.clone(), [1, tokens, k]), &device);
            let mut y = vec![0.0f32; tokens * rows];
            let id = |path: &str| BenchmarkId::new(format!("{dtype}_{rows}x{k}_{path}"), tokens);
            // Timed by `timed` (`PSY_BENCH_CLOCK=cpu`: this process's CPU time).
            let each = |b: &mut criterion::Bencher, f: &mut dyn FnMut()| {
                b.iter_custom(|iters| (0..iters).map(|_| timed(&mut *f)).sum())
            };
            group.bench_function(id("gemm"), |b| {
                each(b, &mut || {
                    drop(std::hint::black_box(quant_gemm(&m, xt.clone())))
                })
            });
            if tokens <= 64 {
                group.bench_function(id("f32act"), |b| {
                    each(b, &mut || m.matmul(&x, tokens, &mut y))
                });
                group.bench_function(id("int"), |b| {
                    each(b, &mut || {
                        m.matmul_int(&x, tokens, &mut y, IntKernel::detect())
                    })
                });
            }
            group.bench_function(id("int-tiled"), |b| {
                each(b, &mut || {
                    m.matmul_int_tiled(&x, tokens, &mut y, IntKernel::detect())
                })
            });
            if panels.panel_rows() > 0 {
                // The same matrix stored as panels (what a GGUF load keeps on this CPU).
                group.bench_function(id("int-panels"), |b| {
                    each(b, &mut || {
                        panels.matmul_int_tiled(&x, tokens, &mut y, IntKernel::detect())
                    })
                });
            }
        }
    }
    group.finish();
}

criterion_group!(
    benches,
    smollm2,
    smollm2_quantized,
    qwen25_quantized,
    qwen3,
    gemv,
    gemv_quantized,
    prefill_quantized
);
criterion_main!(benches);
