//! Broken or hostile model files fail with an error that names the file and the field, tensor or
//! template at fault, before anything is allocated from the bad value: zero or absurd sizes in
//! `config.json` or GGUF metadata, shapes that disagree, 0-dimensional tensors, GGUF tensor data
//! past the end of the file, and chat templates that loop or recurse.
//!
//! Every bad file is built in a temp dir from the tiny-qwen3 fixture. The last tests need the
//! real Qwen3 tokenizer asset (scripts/setup.sh).
//!
//! Run with `cargo test --release --test model_files`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use psy_lm::runtime::chat_template::{
    ChatMessage, ChatTemplate, ChatTemplateError, RenderOptions, RENDER_FUEL,
};
use psy_lm::runtime::tokenizer::Tokenizer;
use psy_lm::runtime::{load_model_on, select_device, DevicePreference, RuntimeError};
use serde_json::{json, Map, Value};

#[path = "common/gguf.rs"]
mod gguf;
use gguf::{write_gguf, GgufTensor};

#[path = "common/safetensors.rs"]
mod safetensors_file;
use safetensors_file::{read_safetensors, write_safetensors};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn tiny_qwen3() -> PathBuf {
    fixtures().join("qwen3/tiny-qwen3")
}

fn asset(rel: &str) -> PathBuf {
    let root = std::env::var_os("PSY_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/psy/assets")
        });
    let path = root.join(rel);
    assert!(
        path.exists(),
        "missing asset {}: run scripts/setup.sh",
        path.display()
    );
    path
}

fn load_err(path: &Path) -> RuntimeError {
    let device = select_device(DevicePreference::Cpu).unwrap();
    match load_model_on(path, &device) {
        Ok(_) => panic!("{} loaded but is broken", path.display()),
        Err(e) => e,
    }
}

/// The fixture's safetensors as `(name, shape, f32 values)`, in file order.
fn fixture_tensors() -> Vec<(String, Vec<usize>, Vec<f32>)> {
    read_safetensors(&tiny_qwen3().join("model.safetensors"))
}

/// An HF directory: the fixture's config.json with `edit` applied, and the given tensors.
fn hf_dir(
    root: &Path,
    name: &str,
    edit: impl FnOnce(&mut Map<String, Value>),
    tensors: &[(String, Vec<usize>, Vec<f32>)],
) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let text = std::fs::read_to_string(tiny_qwen3().join("config.json")).unwrap();
    let mut config: Map<String, Value> = serde_json::from_str(&text).unwrap();
    edit(&mut config);
    std::fs::write(dir.join("config.json"), Value::Object(config).to_string()).unwrap();
    write_safetensors(&dir.join("model.safetensors"), tensors);
    dir
}

/// The fixture's metadata as a `qwen3` GGUF.
fn qwen3_kv() -> Vec<(String, Value)> {
    [
        ("general.architecture", json!("qwen3")),
        ("qwen3.vocab_size", json!(1000)),
        ("qwen3.embedding_length", json!(64)),
        ("qwen3.feed_forward_length", json!(128)),
        ("qwen3.block_count", json!(2)),
        ("qwen3.attention.head_count", json!(4)),
        ("qwen3.attention.head_count_kv", json!(2)),
        ("qwen3.attention.key_length", json!(16)),
        ("qwen3.context_length", json!(4096)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The fixture's tensors under llama.cpp names.
fn qwen3_gguf_tensors() -> Vec<GgufTensor> {
    fixture_tensors()
        .into_iter()
        .map(|(name, shape, data)| {
            let g = match name.as_str() {
                "model.embed_tokens.weight" => "token_embd.weight".to_string(),
                "model.norm.weight" => "output_norm.weight".to_string(),
                other => {
                    let rest = other.strip_prefix("model.layers.").unwrap();
                    let (layer, tail) = rest.split_once('.').unwrap();
                    let short = match tail.strip_suffix(".weight").unwrap() {
                        "self_attn.q_proj" => "attn_q",
                        "self_attn.k_proj" => "attn_k",
                        "self_attn.v_proj" => "attn_v",
                        "self_attn.o_proj" => "attn_output",
                        "self_attn.q_norm" => "attn_q_norm",
                        "self_attn.k_norm" => "attn_k_norm",
                        "mlp.gate_proj" => "ffn_gate",
                        "mlp.up_proj" => "ffn_up",
                        "mlp.down_proj" => "ffn_down",
                        "input_layernorm" => "attn_norm",
                        "post_attention_layernorm" => "ffn_norm",
                        t => panic!("unexpected {t}"),
                    };
                    format!("blk.{layer}.{short}.weight")
                }
            };
            GgufTensor::f32(&g, &shape, data)
        })
        .collect()
}

fn assert_config_error(e: &RuntimeError, file: &str, needles: &[&str]) {
    let text = e.to_string();
    assert!(
        matches!(e, RuntimeError::Config { .. } | RuntimeError::Gguf { .. }),
        "{e:?}"
    );
    assert!(text.contains(file), "`{text}` does not name {file}");
    for needle in needles {
        assert!(text.contains(needle), "`{text}` does not say `{needle}`");
    }
}

#[test]
fn the_unmodified_fixtures_load() {
    // The builders below are faithful: without an edit, both formats load.
    let tmp = tempfile::tempdir().unwrap();
    let dir = hf_dir(tmp.path(), "ok", |_| {}, &fixture_tensors());
    let device = select_device(DevicePreference::Cpu).unwrap();
    load_model_on(&dir, &device).unwrap();
    let gguf = tmp.path().join("ok.gguf");
    write_gguf(&gguf, &qwen3_kv(), &qwen3_gguf_tensors());
    load_model_on(&gguf, &device).unwrap();
}

#[test]
fn config_json_with_zero_absurd_or_inconsistent_sizes_names_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    // (field, value, what the message must say). Absurd values would otherwise size the layer
    // list, the RoPE table or a weight matrix: the error must come first.
    let cases: [(&str, Value, &[&str]); 14] = [
        ("hidden_size", json!(0), &["`hidden_size` is 0"]),
        (
            "num_attention_heads",
            json!(0),
            &["`num_attention_heads` is 0"],
        ),
        ("head_dim", json!(0), &["`head_dim` is 0"]),
        ("num_hidden_layers", json!(0), &["`num_hidden_layers` is 0"]),
        ("vocab_size", json!(0), &["`vocab_size` is 0"]),
        ("intermediate_size", json!(0), &["`intermediate_size` is 0"]),
        (
            "num_key_value_heads",
            json!(0),
            &["`num_key_value_heads` is 0"],
        ),
        (
            "num_hidden_layers",
            json!(1u64 << 40),
            &["`num_hidden_layers` is 1099511627776", "maximum"],
        ),
        ("vocab_size", json!(u64::MAX), &["`vocab_size`", "maximum"]),
        (
            "hidden_size",
            json!(1u64 << 33),
            &["`hidden_size`", "maximum"],
        ),
        ("head_dim", json!(1u64 << 30), &["`head_dim`", "maximum"]),
        (
            "num_key_value_heads",
            json!(3),
            &["`num_key_value_heads` (3) does not divide `num_attention_heads` (4)"],
        ),
        ("head_dim", json!(15), &["`head_dim` is 15", "even"]),
        (
            "hidden_size",
            json!(-64),
            &["`hidden_size` must be a non-negative integer"],
        ),
    ];
    for (i, (field, value, needles)) in cases.into_iter().enumerate() {
        let dir = hf_dir(
            tmp.path(),
            &format!("case{i}"),
            |c| {
                c.insert(field.to_string(), value);
            },
            &fixture_tensors(),
        );
        let e = load_err(&dir);
        assert_config_error(&e, "config.json", needles);
    }
    // Without `head_dim`, hidden_size must split evenly into the heads.
    let dir = hf_dir(
        tmp.path(),
        "indivisible",
        |c| {
            c.remove("head_dim");
            c.insert("hidden_size".into(), json!(66));
        },
        &fixture_tensors(),
    );
    assert_config_error(
        &load_err(&dir),
        "config.json",
        &["`hidden_size` (66) is not a multiple of `num_attention_heads` (4)"],
    );
}

#[test]
fn gguf_metadata_with_zero_absurd_or_inconsistent_sizes_names_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    // Only the embedding is needed: metadata is checked before any tensor is read.
    let embed = || {
        vec![GgufTensor::f32(
            "token_embd.weight",
            &[4, 64],
            vec![0.0; 256],
        )]
    };
    let cases: [(&str, u64, &str); 10] = [
        ("qwen3.embedding_length", 0, "metadata `qwen3.embedding_length` is 0"),
        ("qwen3.attention.head_count", 0, "metadata `qwen3.attention.head_count` is 0"),
        ("qwen3.attention.key_length", 0, "metadata `qwen3.attention.key_length` is 0"),
        ("qwen3.block_count", 0, "metadata `qwen3.block_count` is 0"),
        ("qwen3.vocab_size", 0, "metadata `qwen3.vocab_size` is 0"),
        ("qwen3.feed_forward_length", 0, "metadata `qwen3.feed_forward_length` is 0"),
        ("qwen3.block_count", 1 << 40, "metadata `qwen3.block_count` is 1099511627776, above the supported maximum"),
        ("qwen3.vocab_size", u64::MAX, "metadata `qwen3.vocab_size` is 18446744073709551615, above the supported maximum"),
        (
            "qwen3.attention.head_count_kv",
            3,
            "metadata `qwen3.attention.head_count_kv` (3) does not divide metadata `qwen3.attention.head_count` (4)",
        ),
        ("qwen3.attention.key_length", 15, "metadata `qwen3.attention.key_length` is 15; rotary embeddings need an even head dimension"),
    ];
    for (i, (key, value, needle)) in cases.into_iter().enumerate() {
        let mut kv = qwen3_kv();
        kv.iter_mut().find(|(k, _)| k == key).unwrap().1 = json!(value);
        let path = tmp.path().join(format!("case{i}.gguf"));
        write_gguf(&path, &kv, &embed());
        assert_config_error(&load_err(&path), &format!("case{i}.gguf"), &[needle]);
    }
}

#[test]
fn an_embedding_that_disagrees_with_the_vocabulary_names_the_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = hf_dir(
        tmp.path(),
        "hf",
        |c| {
            c.insert("vocab_size".into(), json!(1001));
        },
        &fixture_tensors(),
    );
    let e = load_err(&dir);
    assert!(
        matches!(&e, RuntimeError::ShapeMismatch { name, expected, found, .. }
            if name == "model.embed_tokens.weight" && expected == &[1001, 64] && found == &[1000, 64]),
        "{e:?}"
    );
    let mut kv = qwen3_kv();
    kv.iter_mut()
        .find(|(k, _)| k == "qwen3.vocab_size")
        .unwrap()
        .1 = json!(1001);
    let path = tmp.path().join("vocab.gguf");
    write_gguf(&path, &kv, &qwen3_gguf_tensors());
    let e = load_err(&path);
    assert!(
        matches!(&e, RuntimeError::ShapeMismatch { name, .. } if name == "token_embd.weight"),
        "{e:?}"
    );
    assert!(e.to_string().contains("vocab.gguf"), "{e}");
}

#[test]
fn zero_dimensional_tensors_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let mut tensors = fixture_tensors();
    let norm = tensors
        .iter_mut()
        .find(|t| t.0 == "model.norm.weight")
        .unwrap();
    norm.1 = Vec::new();
    norm.2 = vec![1.0];
    let dir = hf_dir(tmp.path(), "hf", |_| {}, &tensors);
    let e = load_err(&dir);
    assert!(
        matches!(&e, RuntimeError::ShapeMismatch { name, found, .. }
            if name == "model.norm.weight" && found.is_empty()),
        "{e:?}"
    );
    let mut tensors = qwen3_gguf_tensors();
    let norm = tensors
        .iter_mut()
        .find(|t| t.name == "output_norm.weight")
        .unwrap();
    norm.dims = Vec::new();
    norm.data = vec![1.0];
    let path = tmp.path().join("scalar.gguf");
    write_gguf(&path, &qwen3_kv(), &tensors);
    let e = load_err(&path);
    assert!(matches!(e, RuntimeError::Gguf { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains("scalar.gguf") && text.contains("'output_norm.weight' has 0 dimensions"),
        "{text}"
    );
}

#[test]
fn gguf_tensor_data_past_the_end_of_the_file_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    // An offset far beyond the file, and a shape whose data would need 2^40 bytes from offset
    // 0: both are refused while reading the tensor table, without reading or allocating.
    for what in ["offset", "size"] {
        let mut tensors = qwen3_gguf_tensors();
        let last = tensors.last_mut().unwrap();
        let name = last.name.clone();
        match what {
            "offset" => last.offset = Some(1 << 30),
            _ => last.dims = vec![1 << 19, 1 << 19],
        }
        let path = tmp.path().join(format!("{what}.gguf"));
        write_gguf(&path, &qwen3_kv(), &tensors);
        let e = load_err(&path);
        assert!(matches!(e, RuntimeError::Gguf { .. }), "{what}: {e:?}");
        let text = e.to_string();
        assert!(
            text.contains(&format!("{what}.gguf"))
                && text.contains("truncated")
                && text.contains(&format!("tensor data of '{name}'")),
            "{what}: {text}"
        );
    }
}

/// A tokenizer directory with the real Qwen3 vocabulary and `chat_template` as its template.
fn tokenizer_with_template(root: &Path, chat_template: &str) -> Tokenizer {
    let dir = root.join("tokenizer");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        asset("qwen3-tokenizer/tokenizer.json"),
        dir.join("tokenizer.json"),
    )
    .unwrap();
    std::fs::write(
        dir.join("tokenizer_config.json"),
        json!({"chat_template": chat_template, "eos_token": "<|im_end|>"}).to_string(),
    )
    .unwrap();
    Tokenizer::from_path(&dir).unwrap()
}

fn render_error(tok: &Tokenizer) -> (ChatTemplateError, Duration) {
    let template = ChatTemplate::for_tokenizer(tok).unwrap().unwrap();
    let started = Instant::now();
    let e = template
        .render(&[ChatMessage::new("user", "hi")], &RenderOptions::default())
        .unwrap_err();
    (e, started.elapsed())
}

#[test]
fn a_looping_chat_template_stops_with_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    // 10^15 iterations if nothing stopped it.
    let looping = "{% for a in range(100000) %}{% for b in range(100000) %}\
                   {% for c in range(100000) %}x{% endfor %}{% endfor %}{% endfor %}";
    let tok = tokenizer_with_template(tmp.path(), looping);
    let (e, took) = render_error(&tok);
    assert!(matches!(e, ChatTemplateError::Limit { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains("tokenizer.json") && text.contains("out of fuel"),
        "{text}"
    );
    assert!(took < Duration::from_secs(30), "stopping took {took:?}");
}

#[test]
fn a_recursive_chat_template_stops_with_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let recursive =
        "{% macro down(n) %}{{ down(n + 1) }}{% endmacro %}{{ down(0) }}{{ messages[0].content }}";
    let tok = tokenizer_with_template(tmp.path(), recursive);
    let (e, _) = render_error(&tok);
    assert!(matches!(e, ChatTemplateError::Limit { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains("tokenizer.json") && text.contains("nested deeper"),
        "{text}"
    );
}

#[test]
fn the_qwen3_template_renders_a_long_conversation_within_the_limits() {
    let tok = Tokenizer::from_path(&asset("qwen3-tokenizer/tokenizer.json")).unwrap();
    // 400 turns of ~4 kB each, with reasoning on the assistant side, in a tenth of the default
    // budget: far longer than any session or training sample, so the budget leaves room.
    let template = ChatTemplate::for_tokenizer(&tok)
        .unwrap()
        .unwrap()
        .with_fuel(RENDER_FUEL / 10);
    let turn = "I hear how heavy this week has been. ".repeat(100);
    let messages: Vec<ChatMessage> = (0..400)
        .map(|i| {
            if i % 2 == 0 {
                ChatMessage::new("user", turn.clone())
            } else {
                ChatMessage::new("assistant", format!("<think>{turn}</think>{turn}"))
            }
        })
        .collect();
    let opts = RenderOptions {
        add_generation_prompt: true,
        enable_thinking: Some(true),
        tools: Some(vec![
            json!({"type": "function", "function": {"name": "f", "parameters": {}}}),
        ]),
    };
    let text = template.render(&messages, &opts).unwrap();
    assert!(text.len() > 400 * turn.len(), "{}", text.len());
    // Named after its tokenizer.json, the template still renders unescaped, as Jinja2 does.
    assert!(
        text.starts_with("<|im_start|>system\n") && text.contains("\"name\": \"f\""),
        "{}",
        &text[..200]
    );
}
