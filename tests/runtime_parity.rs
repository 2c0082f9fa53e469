//! Parity of the Burn model runtime against references made with HF transformers
//! (see `tests/fixtures/PROVENANCE.md`), plus error handling of corrupt checkpoints.
//!
//! Run with `cargo test --release --test runtime_parity`.

use std::path::{Path, PathBuf};

use psy_lm::runtime::generate::TextCodec;
use psy_lm::runtime::model::KvCache;
use psy_lm::runtime::{
    generate, generate_cached, load_model_on, select_device, DevicePreference, GenerationConfig,
    LoadedModel, PromptCache, RuntimeError, SamplingConfig,
};
use serde_json::Value;

#[path = "common/gguf.rs"]
mod gguf;
use gguf::{write_gguf, GgufTensor};

#[path = "common/reference.rs"]
mod reference;
use reference::max_abs_diff;

const QWEN3_DIRS: [&str; 4] = [
    "tiny-qwen3",
    "tiny-qwen3-untied",
    "tiny-qwen3-bf16",
    "tiny-qwen3-wideattn",
];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn reference(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("reference.json")).expect("reference.json");
    serde_json::from_str(&text).expect("valid json")
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn floats(v: &Value) -> Vec<f32> {
    let mut out = Vec::new();
    fn walk(v: &Value, out: &mut Vec<f32>) {
        match v {
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            Value::Number(n) => out.push(n.as_f64().unwrap() as f32),
            _ => panic!("not a number: {v}"),
        }
    }
    walk(v, &mut out);
    out
}

fn load(dir: &Path) -> LoadedModel {
    let device = select_device(DevicePreference::Cpu).unwrap();
    load_model_on(dir, &device).unwrap_or_else(|e| panic!("loading {}: {e}", dir.display()))
}

fn greedy(max_new_tokens: usize) -> GenerationConfig {
    GenerationConfig {
        max_new_tokens,
        use_model_eos: false,
        ..Default::default()
    }
}

fn tensor_to_vec<const D: usize>(t: psy_lm::runtime::burn::Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

#[test]
fn qwen3_logits_and_hidden_states_match_transformers() {
    for name in QWEN3_DIRS {
        let dir = fixtures().join("qwen3").join(name);
        let r = reference(&dir);
        let m = load(&dir);
        let input = ids(&r["input_ids"]);
        let mut cache = KvCache::new(&m.config, 1, input.len(), &m.device);
        let t = psy_lm::runtime::model::ids_tensor(std::slice::from_ref(&input), &m.device);
        let trace = m.model.forward_trace(t, &mut cache);
        let logits = tensor_to_vec(trace.logits);
        let err = max_abs_diff(&logits, &floats(&r["logits"]));
        println!("{name}: logits max abs err {err:e}");
        // Measured 1.5e-6 to 1.9e-6 across the fixtures.
        assert!(err < 2e-5, "{name}: logits differ by {err}");
        let hs = r["hidden_states"].as_array().unwrap();
        assert_eq!(
            hs.len(),
            trace.hidden_states.len(),
            "{name}: number of hidden states"
        );
        let mut worst: f32 = 0.0;
        for (i, (h, want)) in trace.hidden_states.into_iter().zip(hs).enumerate() {
            let err = max_abs_diff(&tensor_to_vec(h), &floats(want));
            worst = worst.max(err);
            // Measured 1.5e-6 to 1.7e-6.
            assert!(err < 2e-5, "{name}: hidden state {i} differs by {err}");
        }
        println!("{name}: hidden states max abs err {worst:e}");
    }
}

#[test]
fn qwen3_greedy_ids_exact() {
    for name in QWEN3_DIRS {
        let dir = fixtures().join("qwen3").join(name);
        let r = reference(&dir);
        let m = load(&dir);
        let want = ids(&r["greedy_ids"]);
        let out = generate(
            &m,
            None,
            &[ids(&r["input_ids"])],
            &greedy(want.len()),
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(out[0].generated_ids, want, "{name}: greedy ids");
        assert_eq!(out[0].timings.decode_tokens, want.len() - 1);
    }
}

/// A prompt cache kept between generations reuses the shared prefix and still gives the
/// transformers greedy ids: after a prompt sharing 5 tokens, after the same prompt (all but
/// its last two tokens reused: prompt tokens always run through the prompt's attention, never
/// one alone), and after a longer one that contains it.
#[test]
fn prompt_cache_reuses_the_shared_prefix_with_the_same_greedy_ids() {
    let dir = fixtures().join("qwen3").join("tiny-qwen3");
    let r = reference(&dir);
    let m = load(&dir);
    let prompt = ids(&r["input_ids"]);
    let want = ids(&r["greedy_ids"]);
    let cfg = greedy(want.len());
    let mut cache = PromptCache::new();
    let mut run = |p: &[u32]| {
        generate_cached(&m, None, &[p.to_vec()], &cfg, &mut cache, &mut |_| {})
            .unwrap()
            .remove(0)
    };
    let mut other = prompt[..5].to_vec();
    other.extend([7, 8, 9]);
    assert_eq!(run(&other).timings.cached_prompt_tokens, 0);
    let a = run(&prompt);
    assert_eq!(a.timings.cached_prompt_tokens, 5);
    assert_eq!(a.timings.prefill_tokens, prompt.len() - 5);
    assert_eq!(a.generated_ids, want);
    let b = run(&prompt);
    assert_eq!(b.timings.cached_prompt_tokens, prompt.len() - 2);
    assert_eq!(b.generated_ids, want);
    // The prompt plus its first 3 greedy tokens: the cache holds the prompt and 2 generated ids
    // (the last generated id was never fed); all but the last two of `longer` are reused, and
    // the continuation is the reference's.
    let mut longer = prompt.clone();
    longer.extend(&want[..3]);
    let c = run(&longer);
    assert_eq!(c.timings.cached_prompt_tokens, prompt.len() + 1);
    assert_eq!(c.generated_ids[..want.len() - 3], want[3..]);
}

/// Prefill half the prompt, then feed the rest one token at a time through the KV cache: every
/// position's logits must equal the full-recompute reference.
#[test]
fn qwen3_kv_cache_decoding_equals_full_recompute() {
    for name in QWEN3_DIRS {
        let dir = fixtures().join("qwen3").join(name);
        let r = reference(&dir);
        let m = load(&dir);
        let input = ids(&r["input_ids"]);
        let vocab = m.config.vocab_size;
        let reference_logits = floats(&r["logits"]);
        let mut cache = KvCache::new(&m.config, 1, input.len(), &m.device);
        let split = input.len() / 2;
        let first = m.model.next_logits(&input[..split], &mut cache);
        let err = max_abs_diff(
            &first,
            &reference_logits[(split - 1) * vocab..split * vocab],
        );
        assert!(err < 1e-4, "{name}: prefill logits differ by {err}");
        for (pos, &tok) in input.iter().enumerate().skip(split) {
            let step = m.model.next_logits(&[tok], &mut cache);
            let err = max_abs_diff(&step, &reference_logits[pos * vocab..(pos + 1) * vocab]);
            assert!(
                err < 1e-4,
                "{name}: cached decode at position {pos} differs by {err}"
            );
        }
        assert_eq!(cache.len(), input.len());
    }
}

#[test]
fn bf16_checkpoint_loads_and_matches() {
    let dir = fixtures().join("qwen3/tiny-qwen3-bf16");
    let tensors: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("tensors.json")).unwrap()).unwrap();
    assert!(
        tensors.to_string().contains("BF16"),
        "fixture must really be bf16"
    );
    let m = load(&dir);
    let r = reference(&dir);
    let input = ids(&r["input_ids"]);
    let mut cache = KvCache::new(&m.config, 1, input.len(), &m.device);
    let last = m.model.next_logits(&input, &mut cache);
    let all = floats(&r["logits"]);
    let err = max_abs_diff(&last, &all[all.len() - m.config.vocab_size..]);
    assert!(err < 1e-4, "bf16 last logits differ by {err}");
}

#[test]
fn sampling_is_reproducible_and_top_k_one_is_greedy() {
    let dir = fixtures().join("qwen3/tiny-qwen3");
    let r = reference(&dir);
    let m = load(&dir);
    let prompt = ids(&r["input_ids"]);
    let sampled = |seed: u64, top_k: usize| {
        let cfg = GenerationConfig {
            max_new_tokens: 20,
            use_model_eos: false,
            sampling: SamplingConfig {
                temperature: 1.0,
                top_k,
                top_p: 0.95,
                min_p: 0.01,
                repetition_penalty: 1.1,
                seed,
            },
            ..Default::default()
        };
        generate(&m, None, std::slice::from_ref(&prompt), &cfg, &mut |_| {}).unwrap()[0]
            .generated_ids
            .clone()
    };
    let a = sampled(7, 0);
    assert_eq!(a, sampled(7, 0), "same seed, same output");
    let others: Vec<Vec<u32>> = (8..12).map(|s| sampled(s, 0)).collect();
    assert!(
        others.iter().any(|o| *o != a),
        "different seeds should sample differently"
    );
    // top-k = 1 leaves only the argmax; without repetition penalty that is greedy decoding.
    let cfg = GenerationConfig {
        max_new_tokens: 20,
        use_model_eos: false,
        sampling: SamplingConfig {
            temperature: 0.8,
            top_k: 1,
            seed: 5,
            ..Default::default()
        },
        ..Default::default()
    };
    let k1 = generate(&m, None, std::slice::from_ref(&prompt), &cfg, &mut |_| {}).unwrap();
    assert_eq!(k1[0].generated_ids, ids(&r["greedy_ids"]));
}

/// A batch of prompts of different lengths gives each prompt the output it gets alone.
#[test]
fn batch_of_uneven_prompts_matches_single_runs() {
    let dir = fixtures().join("qwen3/tiny-qwen3-untied");
    let r = reference(&dir);
    let m = load(&dir);
    let full = ids(&r["input_ids"]);
    let short = full[..5].to_vec();
    let batch = generate(
        &m,
        None,
        &[full.clone(), short.clone()],
        &greedy(8),
        &mut |_| {},
    )
    .unwrap();
    let alone = generate(&m, None, &[short], &greedy(8), &mut |_| {}).unwrap();
    assert_eq!(batch[0].generated_ids, ids(&r["greedy_ids"])[..8].to_vec());
    assert_eq!(batch[1].generated_ids, alone[0].generated_ids);
}

/// A toy codec (one character per id) to exercise streaming, stop strings and the think split.
struct CharCodec;
const THINK: u32 = 900;
const END_THINK: u32 = 901;
impl TextCodec for CharCodec {
    fn decode_text(&self, ids: &[u32]) -> Result<String, RuntimeError> {
        Ok(ids
            .iter()
            .map(|&i| match i {
                THINK => "<think>".to_string(),
                END_THINK => "</think>".to_string(),
                i => char::from(b'a' + (i % 26) as u8).to_string(),
            })
            .collect())
    }
    fn token_id(&self, token: &str) -> Option<u32> {
        match token {
            "<think>" => Some(THINK),
            "</think>" => Some(END_THINK),
            _ => None,
        }
    }
}

#[test]
fn streaming_think_split_and_stop_strings() {
    let dir = fixtures().join("qwen3/tiny-qwen3");
    let r = reference(&dir);
    let m = load(&dir);
    let greedy_ids = ids(&r["greedy_ids"]);
    let expected_text = CharCodec.decode_text(&greedy_ids).unwrap();
    // Prompt opens a think block, so the output starts inside it; the model never closes it.
    let mut prompt = ids(&r["input_ids"]);
    let mut streamed = String::new();
    let mut flags = Vec::new();
    let out = generate(
        &m,
        Some(&CharCodec),
        &[prompt.clone()],
        &greedy(20),
        &mut |e| {
            streamed.push_str(&e.delta);
            flags.push(e.in_think);
        },
    )
    .unwrap();
    assert_eq!(out[0].text, expected_text);
    assert_eq!(streamed, expected_text);
    assert!(flags.iter().all(|f| !f));
    assert_eq!(out[0].content, expected_text);
    assert_eq!(out[0].reasoning, "");
    prompt.push(THINK);
    let out = generate(&m, Some(&CharCodec), &[prompt], &greedy(20), &mut |e| {
        flags.push(e.in_think)
    })
    .unwrap();
    assert!(
        flags[20..].iter().all(|f| *f),
        "inside <think> after the prompt opened it"
    );
    // Stop string: cut at the first occurrence of the text of greedy tokens 3..5.
    let stop = CharCodec.decode_text(&greedy_ids[3..5]).unwrap();
    let cfg = GenerationConfig {
        stop_strings: vec![stop.clone()],
        ..greedy(20)
    };
    let out2 = generate(
        &m,
        Some(&CharCodec),
        &[ids(&r["input_ids"])],
        &cfg,
        &mut |_| {},
    )
    .unwrap();
    let cut = expected_text.find(&stop).unwrap();
    assert_eq!(out2[0].text, expected_text[..cut]);
    assert_eq!(
        out2[0].finish_reason,
        psy_lm::runtime::FinishReason::StopString
    );
    drop(out);
}

#[test]
fn think_split_follows_last_end_token() {
    // Reasoning = before the LAST `</think>` minus the tags; content = after it.
    let (reasoning, content) = psy_lm::runtime::generate::split_reasoning(
        &CharCodec,
        &[THINK, 0, 1, END_THINK, 2, END_THINK, 3, 4],
        Some(END_THINK),
    )
    .unwrap();
    assert_eq!(reasoning, "abc");
    assert_eq!(content, "de");
}

// ---- corrupt checkpoints -------------------------------------------------------------------

/// Copies tiny-qwen3 to a temp dir, letting `edit` rewrite the safetensors JSON header.
fn corrupted(
    edit: impl FnOnce(&mut serde_json::Map<String, Value>),
    truncate: usize,
) -> tempfile::TempDir {
    let src = fixtures().join("qwen3/tiny-qwen3");
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(src.join("config.json"), tmp.path().join("config.json")).unwrap();
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Map<String, Value> =
        serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    edit(&mut header);
    let mut text = serde_json::to_string(&header).unwrap();
    assert!(text.len() <= n, "edited header must not grow");
    while text.len() < n {
        text.push(' ');
    }
    let mut out = bytes[..8].to_vec();
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&bytes[8 + n..bytes.len() - truncate]);
    std::fs::write(tmp.path().join("model.safetensors"), out).unwrap();
    tmp
}

fn load_err(dir: &Path) -> RuntimeError {
    let device = select_device(DevicePreference::Cpu).unwrap();
    match load_model_on(dir, &device) {
        Ok(_) => panic!("corrupt checkpoint loaded"),
        Err(e) => e,
    }
}

#[test]
fn truncated_safetensors_is_reported() {
    let tmp = corrupted(|_| {}, 100);
    let e = load_err(tmp.path());
    assert!(matches!(e, RuntimeError::Safetensors { .. }), "{e:?}");
    assert!(e.to_string().contains("model.safetensors"), "{e}");
}

#[test]
fn wrong_dtype_is_reported() {
    let tmp = corrupted(|h| h["model.norm.weight"]["dtype"] = Value::from("I32"), 0);
    let e = load_err(tmp.path());
    assert!(
        matches!(&e, RuntimeError::UnsupportedDtype { name, .. } if name == "model.norm.weight"),
        "{e:?}"
    );
}

#[test]
fn missing_tensor_is_reported() {
    let tmp = corrupted(
        |h| {
            let v = h.remove("model.norm.weight").unwrap();
            h.insert("model.norm.weigh".into(), v);
        },
        0,
    );
    let e = load_err(tmp.path());
    assert!(
        matches!(&e, RuntimeError::MissingTensor { name, .. } if name == "model.norm.weight"),
        "{e:?}"
    );
}

#[test]
fn misshaped_tensor_is_reported() {
    let tmp = corrupted(
        |h| h["model.norm.weight"]["shape"] = serde_json::json!([8, 8]),
        0,
    );
    let e = load_err(tmp.path());
    match &e {
        RuntimeError::ShapeMismatch {
            name,
            expected,
            found,
            ..
        } => {
            assert_eq!(name, "model.norm.weight");
            assert_eq!(expected, &vec![64]);
            assert_eq!(found, &vec![8, 8]);
        }
        other => panic!("{other:?}"),
    }
}

/// Llama has no q/k norms: loading a Qwen3 checkpoint as Llama leaves tensors unused.
#[test]
fn unused_tensors_are_reported() {
    let src = fixtures().join("qwen3/tiny-qwen3-untied");
    let tmp = tempfile::tempdir().unwrap();
    let config = std::fs::read_to_string(src.join("config.json"))
        .unwrap()
        .replace("\"qwen3\"", "\"llama\"");
    std::fs::write(tmp.path().join("config.json"), config).unwrap();
    std::fs::copy(
        src.join("model.safetensors"),
        tmp.path().join("model.safetensors"),
    )
    .unwrap();
    match load_err(tmp.path()) {
        RuntimeError::UnexpectedTensors { names, .. } => {
            assert!(
                names.contains(&"model.layers.0.self_attn.q_norm.weight".to_string()),
                "{names:?}"
            )
        }
        other => panic!("{other:?}"),
    }
}

// ---- SmolLM2-135M-Instruct from GGUF -------------------------------------------------------

fn smollm2_gguf() -> PathBuf {
    let assets = std::env::var_os("PSY_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/psy/assets")
        });
    let path = assets.join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.is_file(),
        "{} is missing: run `scripts/setup.sh` to download the test assets (or set PSY_ASSETS)",
        path.display()
    );
    path
}

#[test]
fn smollm2_gguf_greedy_and_logits_match_transformers() {
    let path = smollm2_gguf();
    let r: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("smollm2/reference.json")).unwrap(),
    )
    .unwrap();
    let m = load(&path);
    assert_eq!(m.format, psy_lm::runtime::ModelFormat::Gguf);
    assert_eq!(
        (
            m.config.num_attention_heads,
            m.config.num_key_value_heads,
            m.config.num_hidden_layers
        ),
        (9, 3, 30)
    );
    let prompt = ids(&r["input_ids"]);
    let mut cache = KvCache::new(&m.config, 1, prompt.len(), &m.device);
    let logits = m.model.next_logits(&prompt, &mut cache);
    let err = max_abs_diff(&logits[..8], &floats(&r["last_logits_first8"]));
    println!("smollm2: first-8 logits max abs err {err:e}");
    // Measured 2.4e-5 to 4.0e-5 (the GGUF is dequantised; transformers reads the same values).
    assert!(err < 4e-4, "smollm2 logits differ by {err}");
    let tokenizer = psy_lm::runtime::load_tokenizer(&path)
        .unwrap()
        .expect("GGUF vocabulary");
    let want = ids(&r["greedy_ids_30"]);
    let mut streamed = String::new();
    let out = generate(&m, Some(&tokenizer), &[prompt], &greedy(30), &mut |e| {
        assert!(!e.in_think);
        streamed.push_str(&e.delta);
    })
    .unwrap();
    assert_eq!(out[0].generated_ids, want);
    assert_eq!(streamed, out[0].text, "streamed deltas add up to the text");
    assert_eq!(out[0].text, r["greedy_text"].as_str().unwrap());
    assert_eq!(out[0].content, out[0].text.trim());
}

#[test]
fn gguf_bad_magic_and_truncation_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.gguf");
    std::fs::write(&bad, b"GGML\x03\x00\x00\x00 not a gguf file at all").unwrap();
    let e = load_err(&bad);
    assert!(
        matches!(e, RuntimeError::Gguf { .. }) && e.to_string().contains("magic"),
        "{e}"
    );
    // The real file cut after its header: tensor data is missing.
    let bytes = std::fs::read(smollm2_gguf()).unwrap();
    let cut = tmp.path().join("cut.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_err(&cut);
    assert!(matches!(e, RuntimeError::Gguf { .. }), "{e:?}");
    assert!(e.to_string().contains("cut.gguf"), "{e}");
}

/// Splits tiny-qwen3-untied into two shards with a `model.safetensors.index.json`; the sharded
/// checkpoint must load and give the reference logits.
#[test]
fn sharded_safetensors_load() {
    let src = fixtures().join("qwen3/tiny-qwen3-untied");
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Map<String, Value> = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    let mut names: Vec<&String> = header.keys().filter(|k| *k != "__metadata__").collect();
    names.sort();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(src.join("config.json"), tmp.path().join("config.json")).unwrap();
    let mut weight_map = serde_json::Map::new();
    for (shard, part) in names.chunks(names.len().div_ceil(2)).enumerate() {
        let file = format!("model-{:05}-of-00002.safetensors", shard + 1);
        let mut h = serde_json::Map::new();
        let mut body = Vec::new();
        for name in part {
            let info = &header[name.as_str()];
            let off = info["data_offsets"].as_array().unwrap();
            let (a, b) = (
                off[0].as_u64().unwrap() as usize,
                off[1].as_u64().unwrap() as usize,
            );
            let start = body.len();
            body.extend_from_slice(&data[a..b]);
            let mut e = info.clone();
            e["data_offsets"] = serde_json::json!([start, body.len()]);
            h.insert((*name).clone(), e);
            weight_map.insert((*name).clone(), Value::from(file.clone()));
        }
        let mut text = serde_json::to_string(&h).unwrap();
        while !text.len().is_multiple_of(8) {
            text.push(' ');
        }
        let mut out = (text.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(text.as_bytes());
        out.extend_from_slice(&body);
        std::fs::write(tmp.path().join(file), out).unwrap();
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(
        tmp.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    let m = load(tmp.path());
    let r = reference(&src);
    let input = ids(&r["input_ids"]);
    let mut cache = KvCache::new(&m.config, 1, input.len(), &m.device);
    let last = m.model.next_logits(&input, &mut cache);
    let all = floats(&r["logits"]);
    let err = max_abs_diff(&last, &all[all.len() - m.config.vocab_size..]);
    assert!(err < 1e-4, "sharded logits differ by {err}");
}

/// tiny-qwen3 re-packed as a `qwen3` GGUF (llama.cpp names and metadata) gives the reference
/// logits: exercises the GGUF name map, q/k norms and metadata config without a permutation.
#[test]
fn qwen3_gguf_round_trip_matches_reference() {
    let dir = fixtures().join("qwen3/tiny-qwen3");
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Map<String, Value> = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let mut tensors = Vec::new();
    for (name, info) in header.iter().filter(|(k, _)| *k != "__metadata__") {
        assert_eq!(info["dtype"], "F32");
        let off = info["data_offsets"].as_array().unwrap();
        let (a, b) = (
            off[0].as_u64().unwrap() as usize,
            off[1].as_u64().unwrap() as usize,
        );
        let data: Vec<f32> = bytes[8 + n + a..8 + n + b]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let shape: Vec<usize> = info["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        let g = match name.as_str() {
            "model.embed_tokens.weight" => "token_embd.weight".to_string(),
            "model.norm.weight" => "output_norm.weight".to_string(),
            other => {
                let rest = other.strip_prefix("model.layers.").unwrap();
                let (layer, tail) = rest.split_once('.').unwrap();
                let short = match tail {
                    "self_attn.q_proj.weight" => "attn_q",
                    "self_attn.k_proj.weight" => "attn_k",
                    "self_attn.v_proj.weight" => "attn_v",
                    "self_attn.o_proj.weight" => "attn_output",
                    "self_attn.q_norm.weight" => "attn_q_norm",
                    "self_attn.k_norm.weight" => "attn_k_norm",
                    "mlp.gate_proj.weight" => "ffn_gate",
                    "mlp.up_proj.weight" => "ffn_up",
                    "mlp.down_proj.weight" => "ffn_down",
                    "input_layernorm.weight" => "attn_norm",
                    "post_attention_layernorm.weight" => "ffn_norm",
                    t => panic!("unexpected {t}"),
                };
                format!("blk.{layer}.{short}.weight")
            }
        };
        tensors.push((g, shape, data));
    }
    let kv = [
        ("general.architecture", Value::from("qwen3")),
        ("qwen3.embedding_length", Value::from(64u64)),
        ("qwen3.feed_forward_length", Value::from(128u64)),
        ("qwen3.block_count", Value::from(2u64)),
        ("qwen3.attention.head_count", Value::from(4u64)),
        ("qwen3.attention.head_count_kv", Value::from(2u64)),
        ("qwen3.attention.key_length", Value::from(16u64)),
        ("qwen3.context_length", Value::from(4096u64)),
        ("qwen3.rope.freq_base", Value::from(1_000_000.0f64)),
        (
            "qwen3.attention.layer_norm_rms_epsilon",
            Value::from(1e-6f64),
        ),
    ];
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("tiny-qwen3.gguf");
    let kv: Vec<(String, Value)> = kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    let tensors: Vec<GgufTensor> = tensors
        .into_iter()
        .map(|(name, shape, data)| GgufTensor::f32(&name, &shape, data))
        .collect();
    write_gguf(&path, &kv, &tensors);
    let m = load(&path);
    assert!(m.config.qk_norm && m.config.tie_word_embeddings);
    let r = reference(&dir);
    let input = ids(&r["input_ids"]);
    let out = generate(&m, None, &[input], &greedy(20), &mut |_| {}).unwrap();
    assert_eq!(out[0].generated_ids, ids(&r["greedy_ids"]));
}
