//! A model that does not fit in memory is refused before loading, by `psy generate`,
//! `psy counsel` and `psy serve`, with the estimate and what is free (here a fake free-memory
//! figure, `PSY_AVAILABLE_MEMORY`).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use psy_lm::runtime::memory_check::estimate_load;

const MODEL: &str = "smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";

fn refused(args: &[&str]) {
    let model = common::asset(MODEL);
    let t0 = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_psy"))
        .args(args)
        .arg("--model")
        .arg(&model)
        .current_dir(common::repo())
        .env("PSY_AVAILABLE_MEMORY", (1u64 << 20).to_string())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} ran: {err}");
    assert!(err.contains("does not fit in memory"), "{err}");
    assert!(err.contains("available 1.0 MiB"), "{err}");
    assert!(err.contains("SmolLM2-135M-Instruct.Q4_1.gguf"), "{err}");
    // Refused from the header, not after loading (a load takes about a second here).
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
}

#[test]
fn generate_refuses_a_model_larger_than_the_free_memory() {
    refused(&["generate", "--prompt", "hi"]);
}

#[test]
fn counsel_refuses_a_model_larger_than_the_free_memory() {
    refused(&["counsel", "--script", "manifests/sessions/demo.txt"]);
}

#[test]
fn serve_refuses_a_model_larger_than_the_free_memory() {
    refused(&["serve", "--addr", "127.0.0.1:0"]);
}

#[test]
fn the_estimate_of_a_quantized_model_is_about_its_file_and_of_f32_four_bytes_a_weight() {
    let model = common::asset(MODEL);
    let file = std::fs::metadata(&model).unwrap().len() as f64;
    let q = estimate_load(&model, true, "cpu").unwrap();
    let f = estimate_load(&model, false, "cpu").unwrap();
    // SmolLM2-135M: 134.5 M parameters (its model card), 4 bytes each in f32.
    let params = f.weights as f64 / 4.0;
    assert!((params - 134.5e6).abs() < 0.5e6, "{params}");
    // Block-format weights are the file's tensor data: the file less its metadata.
    let ratio = q.weights as f64 / file;
    eprintln!("quantized estimate / file size = {ratio:.3}");
    // Measured 0.982 (the tokenizer vocabulary is most of the metadata).
    assert!((0.97..=1.0).contains(&ratio), "{ratio}");
    // 30 layers x K and V x 3 KV heads x 64 x 4096 positions x 4 bytes.
    assert_eq!(q.kv_cache, 30 * 2 * 3 * 64 * 4096 * 4);
}
