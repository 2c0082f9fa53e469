//! Text side of the runtime against reference fixtures (see tests/fixtures/PROVENANCE.md):
//! GGUF reading and dequantisation, tokenizers (HF json and GGUF-embedded), chat templates.
//!
//! Tests that need the large assets (real Qwen3 tokenizer, SmolLM2 GGUF) fail with a message
//! pointing at `scripts/setup.sh` rather than skipping.

mod common;

use common::asset;
use std::io::Write;
use std::path::{Path, PathBuf};

use psy_lm::runtime::chat_template::{ChatMessage, ChatTemplate, RenderOptions};
use psy_lm::runtime::gguf::{GgmlDType, GgufError, GgufFile, GgufValue};
use psy_lm::runtime::tokenize_cli::run_tokenize;
use psy_lm::runtime::tokenizer::{Tokenizer, TokenizerError};
use serde_json::Value;

#[path = "common/reference.rs"]
mod reference;
use reference::u32s;

fn fixture(rel: &str) -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

fn qwen_tokenizer() -> Tokenizer {
    Tokenizer::from_path(&asset("qwen3-tokenizer/tokenizer.json")).unwrap()
}

fn smollm_path() -> PathBuf {
    asset("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// Python `tokenizers` reports char offsets; Rust reports byte offsets. A token that ends inside
/// a multi-byte character is counted up to the end of that character, as Python does.
fn byte_to_char_offsets(text: &str, (s, e): (usize, usize)) -> (usize, usize) {
    let char_of = |b: usize| text.char_indices().take_while(|&(i, _)| i <= b).count() - 1;
    if s == e {
        let c = text[..s].chars().count();
        return (c, c);
    }
    (char_of(s), char_of(e - 1) + 1)
}

// ---------------------------------------------------------------------------------- Qwen3

#[test]
fn qwen3_reference_encodings_match() {
    let tok = qwen_tokenizer();
    let refs = fixture("qwen3-tokenizer/reference_encodings.json");
    assert_eq!(
        tok.vocab_size() as u64,
        refs["vocab_size_with_added"].as_u64().unwrap()
    );
    for (name, id) in refs["special_ids"].as_object().unwrap() {
        assert_eq!(
            tok.token_to_id(name),
            Some(id.as_u64().unwrap() as u32),
            "{name}"
        );
    }
    let encodings = refs["encodings"].as_array().unwrap();
    assert_eq!(encodings.len(), 12);
    for e in encodings {
        let text = e["text"].as_str().unwrap();
        let enc = tok.inner().encode(text, false).unwrap();
        assert_eq!(enc.get_ids(), u32s(&e["ids"]).as_slice(), "ids of {text:?}");
        let tokens: Vec<&str> = e["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        assert_eq!(enc.get_tokens(), tokens.as_slice(), "tokens of {text:?}");
        let offsets: Vec<(usize, usize)> = e["offsets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                (
                    o[0].as_u64().unwrap() as usize,
                    o[1].as_u64().unwrap() as usize,
                )
            })
            .collect();
        let ours: Vec<(usize, usize)> = enc
            .get_offsets()
            .iter()
            .map(|&o| byte_to_char_offsets(text, o))
            .collect();
        assert_eq!(ours, offsets, "offsets of {text:?}");
        // Qwen adds no BOS/EOS: add_special_tokens changes nothing.
        assert_eq!(tok.encode(text, true).unwrap(), u32s(&e["ids"]));
        let ids = u32s(&e["ids"]);
        assert_eq!(
            tok.decode(&ids, false).unwrap(),
            e["decoded"].as_str().unwrap(),
            "decode of {text:?}"
        );
        assert_eq!(tok.decode(&ids, false).unwrap(), text);
    }
}

#[test]
fn qwen3_special_tokens_and_think_ids() {
    let tok = qwen_tokenizer();
    assert_eq!(tok.think_token_ids(), Some((151667, 151668)));
    assert_eq!(tok.eos_token_ids(), vec![151645]); // <|im_end|>
    assert_eq!(tok.eos_token(), Some("<|im_end|>"));
    assert_eq!(tok.bos(), None);
    assert_eq!(tok.id_to_token(151644).as_deref(), Some("<|im_start|>"));
    // skip_special drops control tokens but keeps <think> (an added, non-special token).
    let ids = tok
        .encode("<|im_start|>assistant\n<think>\nhi</think>", false)
        .unwrap();
    assert_eq!(
        tok.decode(&ids, true).unwrap(),
        "assistant\n<think>\nhi</think>"
    );
}

#[test]
fn qwen3_chat_template_renderings_match() {
    let tok = qwen_tokenizer();
    let tmpl = ChatTemplate::for_tokenizer(&tok)
        .expect("tokenizer_config.json has a chat_template")
        .unwrap();
    let refs = fixture("qwen3-tokenizer/reference_encodings.json");
    let cases = refs["chat_template_renderings"].as_array().unwrap();
    assert_eq!(cases.len(), 3);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let messages: Vec<ChatMessage> = serde_json::from_value(case["messages"].clone()).unwrap();
        let kw = &case["kwargs"];
        let opts = RenderOptions {
            add_generation_prompt: kw["add_generation_prompt"].as_bool().unwrap_or(false),
            enable_thinking: kw.get("enable_thinking").and_then(Value::as_bool),
            tools: None,
        };
        let rendered = tmpl.render(&messages, &opts).unwrap();
        assert_eq!(rendered, case["rendered"].as_str().unwrap(), "{name}");
        assert_eq!(
            tok.encode(&rendered, false).unwrap(),
            u32s(&case["ids"]),
            "{name}"
        );
    }
}

/// The Qwen2.5-Coder GGUF's template (a copy in the fixtures; `the_qwen2_5_gguf_ships_the_fixtures_template`
/// in `tests/session_prompt.rs` compares it with the file) renders as jinja2 set up as
/// transformers does (`scripts/reference/make_qwen25_template_fixture.py`, which first checks
/// jinja2 against transformers' own renderings): a system message, none, a turn's guidance as a
/// second system message, a history without the generation prompt, tools (`tojson` of non-ASCII).
#[test]
fn qwen2_5_chat_template_renderings_match() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen2.5-coder");
    let src = std::fs::read_to_string(dir.join("chat_template.jinja")).unwrap();
    let refs = fixture("qwen2.5-coder/renders.json");
    let digest = format!(
        "{:x}",
        <sha2::Sha256 as sha2::Digest>::digest(src.as_bytes())
    );
    assert_eq!(
        digest,
        refs["template_sha256"].as_str().unwrap(),
        "the renderings' template"
    );
    let tmpl = ChatTemplate::from_source(&src, None, Some("<|im_end|>")).unwrap();
    let cases = refs["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 6);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let messages: Vec<ChatMessage> = serde_json::from_value(case["messages"].clone()).unwrap();
        let opts = RenderOptions {
            add_generation_prompt: case["add_generation_prompt"].as_bool().unwrap(),
            enable_thinking: None,
            tools: case["tools"].as_array().cloned(),
        };
        let rendered = tmpl.render(&messages, &opts).unwrap();
        assert_eq!(rendered, case["rendered"].as_str().unwrap(), "{name}");
    }
}

#[test]
fn qwen3_reasoning_content_is_rendered_for_last_turn() {
    // The template keeps reasoning only after the last user query; `reasoning_content`
    // given separately must be used instead of parsing <think> out of the content.
    let tok = qwen_tokenizer();
    let tmpl = ChatTemplate::for_tokenizer(&tok).unwrap().unwrap();
    let msgs = vec![
        ChatMessage::new("user", "Hi"),
        ChatMessage {
            role: "assistant".into(),
            content: "Hello.".into(),
            reasoning_content: Some("Greet back.".into()),
        },
    ];
    let out = tmpl.render(&msgs, &RenderOptions::default()).unwrap();
    assert_eq!(
        out,
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\nGreet back.\n</think>\n\nHello.<|im_end|>\n"
    );
}

#[test]
fn decode_stream_emits_complete_utf8_only() {
    let tok = qwen_tokenizer();
    let refs = fixture("qwen3-tokenizer/reference_encodings.json");
    for e in refs["encodings"].as_array().unwrap() {
        let ids = u32s(&e["ids"]);
        let mut stream = tok.decode_stream(false);
        let mut text = String::new();
        for &id in &ids {
            if let Some(delta) = stream.step(id).unwrap() {
                assert!(
                    !delta.contains('\u{FFFD}'),
                    "partial character in {delta:?}"
                );
                text.push_str(&delta);
            }
        }
        assert_eq!(text, e["decoded"].as_str().unwrap());
    }
}

#[test]
fn tokenize_command_output() {
    let path = asset("qwen3-tokenizer/tokenizer.json");
    let out = run_tokenize(&path, "Hello, world!", true).unwrap();
    assert_eq!(
        out,
        "{\"ids\":[9707,11,1879,0],\"tokens\":[\"Hello\",\",\",\"Ġworld\",\"!\"]}\n"
    );
    let out = run_tokenize(&path, "Hello, world!", false).unwrap();
    assert_eq!(
        out,
        "9707\t\"Hello\"\n11\t\",\"\n1879\t\"Ġworld\"\n0\t\"!\"\n4 tokens\n"
    );
    // Same command on a directory and on a GGUF file.
    let dir = path.parent().unwrap();
    assert_eq!(
        run_tokenize(dir, "Hello", true).unwrap(),
        "{\"ids\":[9707],\"tokens\":[\"Hello\"]}\n"
    );
    let out = run_tokenize(&smollm_path(), "Hello", true).unwrap();
    assert!(out.starts_with("{\"ids\":["), "{out}");
}

// ---------------------------------------------------------------------------------- SmolLM2

#[test]
fn smollm2_gguf_header_matches_reference() {
    let g = GgufFile::open(&smollm_path()).unwrap();
    let h = fixture("smollm2/gguf_header.json");
    assert_eq!(g.version() as u64, h["version"].as_u64().unwrap());
    assert_eq!(g.metadata().len() as u64, h["n_kv"].as_u64().unwrap());
    assert_eq!(g.tensors().len() as u64, h["n_tensors"].as_u64().unwrap());
    assert_eq!(g.data_start(), h["header_bytes"].as_u64().unwrap());
    assert_eq!(g.architecture(), Some("llama"));
    for (key, want) in h["kv"].as_object().unwrap() {
        let got = g
            .metadata()
            .get(key)
            .unwrap_or_else(|| panic!("missing key {key}"));
        check_value(key, got, want);
    }
    let tensors = h["tensors"].as_array().unwrap();
    for (t, want) in g.tensors().iter().zip(tensors) {
        assert_eq!(t.name, want["name"].as_str().unwrap());
        let dims: Vec<u64> = want["dims_ggml_order"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap())
            .collect();
        assert_eq!(t.dims, dims, "{}", t.name);
        assert_eq!(
            t.dtype.to_string(),
            want["type"].as_str().unwrap(),
            "{}",
            t.name
        );
        assert_eq!(t.offset, want["offset"].as_u64().unwrap(), "{}", t.name);
        assert_eq!(g.tensor_info(&t.name), Some(t));
    }
    assert_eq!(g.get_u64("llama.block_count"), Some(30));
    assert_eq!(g.get_f64("llama.rope.freq_base"), Some(100000.0));
    assert_eq!(g.get_u64("llama.rope.freq_base"), None);
}

/// Compares a GGUF value with the fixture's JSON (arrays as {array_len, first, last}).
fn check_value(key: &str, got: &GgufValue, want: &Value) {
    match (got, want) {
        (GgufValue::Array(items), Value::Object(o)) => {
            assert_eq!(
                items.len() as u64,
                o["array_len"].as_u64().unwrap(),
                "{key}"
            );
            let first = o["first"].as_array().unwrap();
            for (g, w) in items.iter().zip(first) {
                check_value(key, g, w);
            }
            let last = o["last"].as_array().unwrap();
            for (g, w) in items[items.len() - last.len()..].iter().zip(last) {
                check_value(key, g, w);
            }
        }
        (GgufValue::Array(items), Value::Array(w)) => {
            assert_eq!(items.len(), w.len(), "{key}");
            for (g, w) in items.iter().zip(w) {
                check_value(key, g, w);
            }
        }
        (GgufValue::String(s), Value::String(w)) => assert_eq!(s, w, "{key}"),
        (GgufValue::Bool(b), Value::Bool(w)) => assert_eq!(b, w, "{key}"),
        (GgufValue::F32(_) | GgufValue::F64(_), Value::Number(n)) => {
            assert_eq!(got.as_f64(), n.as_f64(), "{key}")
        }
        (_, Value::Number(n)) => assert_eq!(got.as_u64(), n.as_u64(), "{key}"),
        _ => panic!("{key}: {got:?} vs {want}"),
    }
}

#[test]
fn smollm2_tokenizer_and_template_from_gguf() {
    let tok = Tokenizer::from_path(&smollm_path()).unwrap();
    let r = fixture("smollm2/reference.json");
    assert_eq!(tok.bos(), Some(1));
    assert_eq!(tok.eos_token_ids(), vec![2]);
    assert_eq!(tok.vocab_size(), 49152);

    let tmpl = ChatTemplate::for_tokenizer(&tok).unwrap().unwrap();
    let msgs = [
        ChatMessage::new(
            "system",
            "You are a helpful AI assistant named SmolLM, trained by Hugging Face",
        ),
        ChatMessage::new("user", "I feel stressed about my exams. Any advice?"),
    ];
    let prompt = tmpl
        .render(
            &msgs,
            &RenderOptions {
                add_generation_prompt: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(prompt, r["prompt"].as_str().unwrap());
    // The template's default system message gives the same prompt without one.
    assert_eq!(
        tmpl.render(
            &msgs[1..],
            &RenderOptions {
                add_generation_prompt: true,
                ..Default::default()
            }
        )
        .unwrap(),
        prompt
    );

    let ids = tok.encode(&prompt, false).unwrap();
    assert_eq!(ids, u32s(&r["input_ids"]));
    // add_bos_token is false in this GGUF.
    assert_eq!(tok.encode(&prompt, true).unwrap(), ids);
    let greedy = u32s(&r["greedy_ids_30"]);
    assert_eq!(
        tok.decode(&greedy, true).unwrap(),
        r["greedy_text"].as_str().unwrap()
    );
    // Round trip on text with digits (SmolLM splits digits individually).
    let ids = tok.encode("In 2025 I scored 97.5%", false).unwrap();
    let toks: Vec<String> = ids.iter().map(|&i| tok.id_to_token(i).unwrap()).collect();
    assert!(
        toks.contains(&"2".to_string()) && toks.contains(&"9".to_string()),
        "{toks:?}"
    );
    assert_eq!(tok.decode(&ids, false).unwrap(), "In 2025 I scored 97.5%");
}

#[test]
fn smollm2_tensors_dequantise() {
    let path = smollm_path();
    let g = GgufFile::open(&path).unwrap();
    let raw = std::fs::read(&path).unwrap();

    // F32: the bytes as stored.
    let info = g.tensor_info("output_norm.weight").unwrap().clone();
    let (v, shape) = g.tensor_f32("output_norm.weight").unwrap();
    assert_eq!(shape, vec![576]);
    let start = (g.data_start() + info.offset) as usize;
    let want: Vec<f32> = raw[start..start + 576 * 4]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(v, want);

    // Q8_0 embedding: shape reversed, first block checked by hand from the raw bytes.
    let info = g.tensor_info("token_embd.weight").unwrap().clone();
    assert_eq!(info.dtype, GgmlDType::Q8_0);
    let (v, shape) = g.tensor_f32("token_embd.weight").unwrap();
    assert_eq!(shape, vec![49152, 576]);
    assert_eq!(v.len(), 49152 * 576);
    let b = (g.data_start() + info.offset) as usize;
    let d = f16_to_f32([raw[b], raw[b + 1]]);
    for j in 0..32 {
        assert_eq!(v[j], (raw[b + 2 + j] as i8) as f32 * d);
    }

    // Q4_1: second block of the first row, by hand.
    let info = g.tensor_info("blk.0.ffn_gate.weight").unwrap().clone();
    assert_eq!(info.dtype, GgmlDType::Q4_1);
    let (v, shape) = g.tensor_f32("blk.0.ffn_gate.weight").unwrap();
    assert_eq!(shape, vec![1536, 576]);
    let b = (g.data_start() + info.offset) as usize + 20;
    let d = f16_to_f32([raw[b], raw[b + 1]]);
    let m = f16_to_f32([raw[b + 2], raw[b + 3]]);
    for j in 0..16 {
        let q = raw[b + 4 + j];
        assert_eq!(v[32 + j], (q & 15) as f32 * d + m);
        assert_eq!(v[32 + j + 16], (q >> 4) as f32 * d + m);
    }
    assert!(v.iter().all(|x| x.is_finite()));
    let mean_abs = v.iter().map(|x| x.abs()).sum::<f32>() / v.len() as f32;
    assert!(mean_abs > 1e-3 && mean_abs < 1.0, "{mean_abs}");
}

// ---------------------------------------------------------------------------------- synthetic GGUF

/// Writes GGUF files with chosen metadata and tensors, to test the reader exactly.
struct GgufWriter {
    version: u32,
    alignment: Option<u32>,
    kv: Vec<(String, Vec<u8>)>,
    tensors: Vec<(String, Vec<u64>, u32, Vec<u8>)>,
}

fn gguf_str(s: &str) -> Vec<u8> {
    let mut v = (s.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(s.as_bytes());
    v
}

impl GgufWriter {
    fn new() -> Self {
        GgufWriter {
            version: 3,
            alignment: None,
            kv: Vec::new(),
            tensors: Vec::new(),
        }
    }
    /// `value` is the encoded type id + payload.
    fn kv(&mut self, key: &str, ty: u32, payload: &[u8]) -> &mut Self {
        let mut v = ty.to_le_bytes().to_vec();
        v.extend_from_slice(payload);
        self.kv.push((key.to_string(), v));
        self
    }
    fn tensor(&mut self, name: &str, dims: &[u64], ty: u32, data: Vec<u8>) -> &mut Self {
        self.tensors
            .push((name.to_string(), dims.to_vec(), ty, data));
        self
    }
    fn bytes(&self) -> Vec<u8> {
        let align = self.alignment.unwrap_or(32) as usize;
        let mut kv = self.kv.clone();
        if let Some(a) = self.alignment {
            let mut v = 4u32.to_le_bytes().to_vec();
            v.extend_from_slice(&a.to_le_bytes());
            kv.push(("general.alignment".into(), v));
        }
        let mut out = b"GGUF".to_vec();
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(kv.len() as u64).to_le_bytes());
        for (k, v) in &kv {
            out.extend(gguf_str(k));
            out.extend_from_slice(v);
        }
        let mut offset = 0usize;
        let mut offsets = Vec::new();
        for (name, dims, ty, data) in &self.tensors {
            out.extend(gguf_str(name));
            out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            for d in dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&ty.to_le_bytes());
            out.extend_from_slice(&(offset as u64).to_le_bytes());
            offsets.push(offset);
            offset = (offset + data.len()).div_ceil(align) * align;
        }
        out.resize(out.len().div_ceil(align) * align, 0);
        let data_start = out.len();
        for ((_, _, _, data), off) in self.tensors.iter().zip(offsets) {
            out.resize(data_start + off, 0);
            out.extend_from_slice(data);
        }
        out
    }
    fn write(&self, dir: &Path, name: &str) -> PathBuf {
        write_file(dir, name, &self.bytes())
    }
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::File::create(&p).unwrap().write_all(bytes).unwrap();
    p
}

/// f16 bits of the few values the tests use (written out, to not trust the code under test).
fn f16b(x: f32) -> [u8; 2] {
    let bits: u16 = match x {
        0.25 => 0x3400,
        0.5 => 0x3800,
        -1.0 => 0xbc00,
        2.0 => 0x4000,
        65504.0 => 0x7bff,
        x if x == 2.0f32.powi(-24) => 0x0001,
        _ => panic!("no f16 bits for {x}"),
    };
    bits.to_le_bytes()
}

/// IEEE half to f32, independent of the reader's `half` crate.
fn f16_to_f32(b: [u8; 2]) -> f32 {
    let h = u16::from_le_bytes(b);
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let frac = (h & 0x3ff) as f32;
    sign * match exp {
        0 => frac * 2.0f32.powi(-24),
        31 => f32::INFINITY,
        e => (1.0 + frac / 1024.0) * 2.0f32.powi(e - 15),
    }
}

#[test]
fn synthetic_gguf_every_value_type_and_dtype() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = GgufWriter::new();
    w.alignment = Some(64);
    w.kv("u8", 0, &[200])
        .kv("i8", 1, &[(-5i8) as u8])
        .kv("u16", 2, &60000u16.to_le_bytes())
        .kv("i16", 3, &(-300i16).to_le_bytes())
        .kv("u32", 4, &4_000_000_000u32.to_le_bytes())
        .kv("i32", 5, &(-7i32).to_le_bytes())
        .kv("f32", 6, &0.25f32.to_le_bytes())
        .kv("bool", 7, &[1])
        .kv("str", 8, &gguf_str("héllo"))
        .kv("u64", 10, &u64::MAX.to_le_bytes())
        .kv("i64", 11, &i64::MIN.to_le_bytes())
        .kv("f64", 12, &(-1.5f64).to_le_bytes());
    // array<array<i32>> = [[1, 2], []]
    let mut nested = 9u32.to_le_bytes().to_vec();
    nested.extend_from_slice(&2u64.to_le_bytes());
    nested.extend_from_slice(&5u32.to_le_bytes());
    nested.extend_from_slice(&2u64.to_le_bytes());
    nested.extend_from_slice(&1i32.to_le_bytes());
    nested.extend_from_slice(&2i32.to_le_bytes());
    nested.extend_from_slice(&5u32.to_le_bytes());
    nested.extend_from_slice(&0u64.to_le_bytes());
    w.kv("nested", 9, &nested);

    // Tensor values chosen so every dequantised value is exact in f32.
    let f32_vals = [1.0f32, -2.5, 3.25, 0.0, 1e-3, -7.0];
    let f32_data: Vec<u8> = f32_vals.iter().flat_map(|x| x.to_le_bytes()).collect();
    let f16_data: Vec<u8> = [0.5f32, -1.0, 65504.0, 2.0f32.powi(-24)]
        .iter()
        .flat_map(|&x| f16b(x))
        .collect();
    // bf16 = the high half of the f32 bits (these values are exact in bf16).
    let bf16_vals = [1.0f32, -3.0, 2.0f32.powi(100)];
    let bf16_data: Vec<u8> = bf16_vals
        .iter()
        .flat_map(|&x| ((x.to_bits() >> 16) as u16).to_le_bytes())
        .collect();
    // Q8_0: two blocks, d = 0.5 and 2, q = j - 16 and -(j).
    let mut q8 = Vec::new();
    q8.extend_from_slice(&f16b(0.5));
    q8.extend((0..32).map(|j| (j as i8 - 16) as u8));
    q8.extend_from_slice(&f16b(2.0));
    q8.extend((0..32).map(|j| (-(j as i8)) as u8));
    // Q4_0: d = 0.25; qs[j] = lo j, hi 15 - j.
    let mut q40 = f16b(0.25).to_vec();
    q40.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    // Q4_1: d = 0.5, m = -1; qs[j] = lo 15 - j, hi j.
    let mut q41 = f16b(0.5).to_vec();
    q41.extend_from_slice(&f16b(-1.0));
    q41.extend((0..16u8).map(|j| (15 - j) | (j << 4)));
    w.tensor("f32", &[3, 2], 0, f32_data)
        .tensor("f16", &[4], 1, f16_data)
        .tensor("bf16", &[3], 30, bf16_data)
        .tensor("q8_0", &[32, 2], 8, q8)
        .tensor("q4_0", &[32], 2, q40)
        .tensor("q4_1", &[32, 1], 3, q41);
    for version in [2, 3] {
        w.version = version;
        let p = w.write(dir.path(), &format!("v{version}.gguf"));
        let g = GgufFile::open(&p).unwrap();
        assert_eq!(g.version(), version);
        assert_eq!(g.alignment(), 64);
        assert_eq!(g.data_start() % 64, 0);
        let md = g.metadata();
        assert_eq!(md["u8"], GgufValue::U8(200));
        assert_eq!(md["i8"], GgufValue::I8(-5));
        assert_eq!(md["u16"], GgufValue::U16(60000));
        assert_eq!(md["i16"], GgufValue::I16(-300));
        assert_eq!(md["u32"], GgufValue::U32(4_000_000_000));
        assert_eq!(md["i32"], GgufValue::I32(-7));
        assert_eq!(md["f32"], GgufValue::F32(0.25));
        assert_eq!(md["bool"], GgufValue::Bool(true));
        assert_eq!(g.get_str("str"), Some("héllo"));
        assert_eq!(g.get_u64("u64"), Some(u64::MAX));
        assert_eq!(md["i64"], GgufValue::I64(i64::MIN));
        assert_eq!(g.get_f64("f64"), Some(-1.5));
        assert_eq!(g.get_f64("i16"), Some(-300.0));
        assert_eq!(g.get_u64("i32"), None);
        assert_eq!(
            md["nested"],
            GgufValue::Array(vec![
                GgufValue::Array(vec![GgufValue::I32(1), GgufValue::I32(2)]),
                GgufValue::Array(vec![]),
            ])
        );

        let (v, s) = g.tensor_f32("f32").unwrap();
        assert_eq!((v, s), (f32_vals.to_vec(), vec![2, 3]));
        let (v, s) = g.tensor_f32("f16").unwrap();
        assert_eq!(
            (v, s),
            (vec![0.5, -1.0, 65504.0, 2.0f32.powi(-24)], vec![4])
        );
        let (v, _) = g.tensor_f32("bf16").unwrap();
        assert_eq!(v, bf16_vals.to_vec());
        let (v, s) = g.tensor_f32("q8_0").unwrap();
        assert_eq!(s, vec![2, 32]);
        for j in 0..32 {
            assert_eq!(v[j], (j as f32 - 16.0) * 0.5);
            assert_eq!(v[32 + j], -(j as f32) * 2.0);
        }
        let (v, _) = g.tensor_f32("q4_0").unwrap();
        for j in 0..16 {
            assert_eq!(v[j], (j as f32 - 8.0) * 0.25);
            assert_eq!(v[16 + j], ((15 - j) as f32 - 8.0) * 0.25);
        }
        let (v, s) = g.tensor_f32("q4_1").unwrap();
        assert_eq!(s, vec![1, 32]);
        for j in 0..16 {
            assert_eq!(v[j], (15 - j) as f32 * 0.5 - 1.0);
            assert_eq!(v[16 + j], j as f32 * 0.5 - 1.0);
        }
    }
}

// ---------------------------------------------------------------------------------- bad input

fn err_text<T: std::fmt::Debug, E: std::fmt::Display>(r: Result<T, E>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn gguf_bad_magic() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = GgufWriter::new().bytes();
    bytes[..4].copy_from_slice(b"GGML");
    let p = write_file(dir.path(), "bad.gguf", &bytes);
    let e = GgufFile::open(&p).unwrap_err();
    assert!(matches!(e, GgufError::BadMagic { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("bad.gguf") && msg.contains("not a GGUF file"),
        "{msg}"
    );
    // A safetensors/JSON file given by mistake.
    let p = write_file(dir.path(), "x.json", b"{\"a\": 1}");
    assert!(matches!(
        GgufFile::open(&p),
        Err(GgufError::BadMagic { .. })
    ));
}

#[test]
fn gguf_unsupported_version() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = GgufWriter::new();
    w.version = 1;
    let p = w.write(dir.path(), "v1.gguf");
    let e = GgufFile::open(&p).unwrap_err();
    assert!(
        matches!(e, GgufError::UnsupportedVersion { version: 1, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("v1.gguf"));
}

#[test]
fn gguf_truncated_at_each_section() {
    let real = std::fs::read(smollm_path()).unwrap();
    let header = fixture("smollm2/gguf_header.json");
    let data_start = header["header_bytes"].as_u64().unwrap() as usize;
    let dir = tempfile::tempdir().unwrap();
    // (cut length, expected section in the message)
    let cases = [
        (0usize, "header"),
        (6, "header"),
        (20, "header"),
        (500, "metadata"),
        // inside the tensor table: its last entries sit just before the data section.
        (data_start - 40, "tensor table"),
        (data_start + 1000, "tensor data"),
    ];
    for (cut, section) in cases {
        let p = write_file(dir.path(), &format!("cut{cut}.gguf"), &real[..cut]);
        let e = GgufFile::open(&p).unwrap_err();
        assert!(matches!(e, GgufError::Truncated { .. }), "cut {cut}: {e:?}");
        let msg = e.to_string();
        assert!(msg.contains(&format!("cut{cut}.gguf")), "{msg}");
        assert!(
            msg.contains("truncated") && msg.contains(section),
            "cut {cut}: {msg}"
        );
    }
}

#[test]
fn gguf_unsupported_dtype_names_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = GgufWriter::new();
    // Q8_K (id 15) is ggml's activation type: a known layout that weights never use.
    w.tensor("blk.0.q8k", &[256], 15, vec![0u8; 292]);
    w.tensor("weird", &[4], 99, vec![0u8; 16]);
    let p = w.write(dir.path(), "q8k.gguf");
    let g = GgufFile::open(&p).unwrap();
    let e = g.tensor_f32("blk.0.q8k").unwrap_err();
    assert!(
        matches!(&e, GgufError::UnsupportedDtype { dtype: GgmlDType::Q8K, tensor, .. } if tensor == "blk.0.q8k"),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("q8k.gguf") && msg.contains("blk.0.q8k") && msg.contains("Q8_K"),
        "{msg}"
    );
    // Raw bytes of a known layout are still available to custom kernels.
    assert_eq!(g.tensor_bytes("blk.0.q8k").unwrap().len(), 292);
    let e = g.tensor_f32("weird").unwrap_err();
    assert!(
        matches!(
            e,
            GgufError::UnsupportedDtype {
                dtype: GgmlDType::Other(99),
                ..
            }
        ),
        "{e:?}"
    );
    let e = g.tensor_f32("missing").unwrap_err();
    assert!(matches!(e, GgufError::TensorNotFound { .. }), "{e:?}");
}

#[test]
fn gguf_bad_utf8_and_absurd_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = GgufWriter::new();
    w.kv("bad", 8, &[2, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xfe]);
    let p = w.write(dir.path(), "utf8.gguf");
    let e = GgufFile::open(&p).unwrap_err();
    assert!(matches!(e, GgufError::BadUtf8 { .. }), "{e:?}");
    assert!(e.to_string().contains("metadata 'bad'"), "{e}");

    // An array claiming 2^60 elements must fail cleanly, not allocate.
    let mut w = GgufWriter::new();
    let mut arr = 4u32.to_le_bytes().to_vec();
    arr.extend_from_slice(&(1u64 << 60).to_le_bytes());
    w.kv("huge", 9, &arr);
    let p = w.write(dir.path(), "huge.gguf");
    assert!(matches!(
        GgufFile::open(&p),
        Err(GgufError::Truncated { .. })
    ));

    // A tensor whose data lies past the end of the file.
    let mut bytes = {
        let mut w = GgufWriter::new();
        w.tensor("t", &[8], 0, vec![0u8; 32]);
        w.bytes()
    };
    bytes.truncate(bytes.len() - 4);
    let p = write_file(dir.path(), "short.gguf", &bytes);
    let msg = err_text(GgufFile::open(&p));
    assert!(msg.contains("tensor data of 't'"), "{msg}");

    // The same tensor name twice.
    let mut w = GgufWriter::new();
    w.tensor("t", &[8], 0, vec![0u8; 32]);
    w.tensor("t", &[8], 0, vec![0u8; 32]);
    let p = w.write(dir.path(), "dup.gguf");
    let e = GgufFile::open(&p).unwrap_err();
    assert!(
        matches!(e, GgufError::Invalid { .. }) && e.to_string().contains("twice"),
        "{e}"
    );
}

#[test]
fn broken_tokenizer_json_names_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_file(
        dir.path(),
        "tokenizer.json",
        b"{\"model\": {\"type\": \"BPE\", ",
    );
    let e = Tokenizer::from_path(&p).unwrap_err();
    assert!(matches!(e, TokenizerError::Parse { .. }), "{e:?}");
    assert!(e.to_string().contains(&p.display().to_string()), "{e}");
    // Directory without a tokenizer.
    let e = Tokenizer::from_path(&dir.path().join("nothing")).unwrap_err();
    assert!(matches!(e, TokenizerError::NotFound { .. }), "{e:?}");
    // A GGUF without tokenizer metadata.
    let g = GgufWriter::new().write(dir.path(), "empty.gguf");
    let e = Tokenizer::from_path(&g).unwrap_err();
    assert!(
        matches!(&e, TokenizerError::Gguf { msg, .. } if msg.contains("tokenizer.ggml.model")),
        "{e:?}"
    );
    // A broken tokenizer_config.json next to a valid tokenizer.json.
    let real = std::fs::read(asset("qwen3-tokenizer/tokenizer.json")).unwrap();
    write_file(dir.path(), "tokenizer.json", &real);
    write_file(dir.path(), "tokenizer_config.json", b"{oops");
    let e = Tokenizer::from_path(dir.path()).unwrap_err();
    assert!(
        matches!(&e, TokenizerError::Config { path, .. } if path.ends_with("tokenizer_config.json")),
        "{e:?}"
    );
}

/// Packs the real Qwen3 `tokenizer.json` into GGUF tokenizer metadata the way llama.cpp's
/// converter does (tokens by id, "a b" merges, type 3 = special added, 4 = other added,
/// pre = "qwen2"), then checks the GGUF path reproduces every reference encoding. This covers
/// the Split-regex + NFC branch that SmolLM2 does not use.
#[test]
fn qwen3_tokenizer_rebuilt_from_gguf_metadata_matches_reference() {
    let json: Value =
        serde_json::from_slice(&std::fs::read(asset("qwen3-tokenizer/tokenizer.json")).unwrap())
            .unwrap();
    let vocab = json["model"]["vocab"].as_object().unwrap();
    let added = json["added_tokens"].as_array().unwrap();
    let n = vocab.len() + added.len();
    let mut tokens = vec![String::new(); n];
    let mut types = vec![1i32; n];
    for (t, id) in vocab {
        tokens[id.as_u64().unwrap() as usize] = t.clone();
    }
    for a in added {
        let id = a["id"].as_u64().unwrap() as usize;
        tokens[id] = a["content"].as_str().unwrap().to_string();
        types[id] = if a["special"].as_bool().unwrap() {
            3
        } else {
            4
        };
    }
    let merges: Vec<String> = json["model"]["merges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| match m {
            Value::String(s) => s.clone(),
            Value::Array(p) => format!("{} {}", p[0].as_str().unwrap(), p[1].as_str().unwrap()),
            _ => panic!("merge {m}"),
        })
        .collect();
    let str_array = |items: &[String]| {
        let mut v = 8u32.to_le_bytes().to_vec();
        v.extend_from_slice(&(items.len() as u64).to_le_bytes());
        for s in items {
            v.extend(gguf_str(s));
        }
        v
    };
    let mut type_arr = 5u32.to_le_bytes().to_vec();
    type_arr.extend_from_slice(&(types.len() as u64).to_le_bytes());
    for t in &types {
        type_arr.extend_from_slice(&t.to_le_bytes());
    }
    let mut w = GgufWriter::new();
    w.kv("tokenizer.ggml.model", 8, &gguf_str("gpt2"))
        .kv("tokenizer.ggml.pre", 8, &gguf_str("qwen2"))
        .kv("tokenizer.ggml.tokens", 9, &str_array(&tokens))
        .kv("tokenizer.ggml.merges", 9, &str_array(&merges))
        .kv("tokenizer.ggml.token_type", 9, &type_arr)
        .kv("tokenizer.ggml.eos_token_id", 4, &151645u32.to_le_bytes())
        .kv("tokenizer.ggml.add_bos_token", 7, &[0]);
    let dir = tempfile::tempdir().unwrap();
    let p = w.write(dir.path(), "qwen3-tok.gguf");
    let tok = Tokenizer::from_path(&p).unwrap();
    assert_eq!(tok.vocab_size(), n);
    assert_eq!(tok.think_token_ids(), Some((151667, 151668)));
    assert_eq!(tok.eos_token_ids(), vec![151645]);
    let refs = fixture("qwen3-tokenizer/reference_encodings.json");
    for e in refs["encodings"].as_array().unwrap() {
        let text = e["text"].as_str().unwrap();
        let ids = u32s(&e["ids"]);
        assert_eq!(tok.encode(text, true).unwrap(), ids, "{text:?}");
        assert_eq!(tok.decode(&ids, false).unwrap(), text);
    }
    for case in refs["chat_template_renderings"].as_array().unwrap() {
        let rendered = case["rendered"].as_str().unwrap();
        assert_eq!(tok.encode(rendered, false).unwrap(), u32s(&case["ids"]));
    }
}
