//! Resident memory of a GGUF model loaded with quantized weights: at most 1.15 x the file
//! (before any KV cache). Alone in its test binary so that nothing else in the process
//! allocates while it measures.
//!
//! Run with `cargo test --release --test quant_memory -- --nocapture`.

use std::path::PathBuf;

use psy_lm::runtime::burn::tensor::Device;
use psy_lm::runtime::{load_model_with, WeightFormat};

/// Resident set size of this process (Linux `/proc/self/status`, VmRSS).
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line");
    kb * 1024
}

fn asset(rel: &str) -> PathBuf {
    let assets = std::env::var_os("PSY_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/psy/assets")
        });
    assets.join(rel)
}

fn check(rel: &str, how: &str) {
    let path = asset(rel);
    assert!(path.is_file(), "{} is missing: run `{how}`", path.display());
    let file = std::fs::metadata(&path).unwrap().len();
    let before = rss_bytes();
    let m = load_model_with(&path, &Device::flex(), WeightFormat::Quantized).unwrap();
    let grown = rss_bytes().saturating_sub(before);
    let ratio = grown as f64 / file as f64;
    println!(
        "{rel}: file {:.1} MB, resident growth after loading {:.1} MB ({ratio:.3}x)",
        file as f64 / 1e6,
        grown as f64 / 1e6
    );
    assert!(ratio <= 1.15, "{rel}: {ratio:.3}x the file size");
    drop(m);
}

#[test]
fn smollm2_quantized_model_fits_in_1_15x_its_file() {
    check(
        "smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        "scripts/setup.sh",
    );
}

#[test]
#[ignore = "needs the Qwen2.5-Coder GGUFs: scripts/setup.sh --qwen"]
fn qwen2_5_coder_1_5b_quantized_model_fits_in_1_15x_its_file() {
    check(
        "qwen2.5-coder/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        "scripts/setup.sh --qwen",
    );
}
