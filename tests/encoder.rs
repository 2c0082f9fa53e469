//! Sentence encoder: all-MiniLM-L6-v2 in the Burn runtime gives sentence-transformers'
//! embeddings (tests/fixtures/minilm, see tests/fixtures/PROVENANCE.md), and a broken encoder
//! directory is reported by file and field or tensor.
//!
//! Tests on the real model need `scripts/setup.sh`; they fail with that hint rather than skip.
//! The error tests build a tiny random BERT (hidden 8) next to the real tokenizer.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use psy_core::semantic::{on_this_thread, SentenceEmbedder};
use psy_lm::encoder::pooling::l2_normalize;
use psy_lm::encoder::{cosine, shared, CachedEmbedder, Encoder, EncoderError, EncoderPrecision};
use psy_lm::runtime::RuntimeError;
use safetensors::tensor::{Dtype, TensorView};
use serde_json::{json, Value};

#[path = "common/reference.rs"]
mod reference;
use reference::max_abs_diff;

fn reference() -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/minilm/reference.json");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

fn minilm_dir() -> PathBuf {
    let assets = std::env::var_os("PSY_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is not set"))
                .join(".cache/psy/assets")
        });
    let dir = assets.join("minilm");
    assert!(
        dir.join("model.safetensors").is_file(),
        "missing encoder {}: run scripts/setup.sh",
        dir.display()
    );
    dir
}

fn minilm() -> Arc<Encoder> {
    shared(Some(&minilm_dir())).unwrap()
}

fn texts(r: &Value) -> Vec<String> {
    r["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

// ------------------------------------------------------------------- parity with the reference

#[test]
fn minilm_tokenises_as_sentence_transformers() {
    let r = reference();
    let enc = minilm();
    for (text, ids) in texts(&r).iter().zip(r["input_ids"].as_array().unwrap()) {
        let want: Vec<u32> = ids
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(enc.token_ids(text).unwrap(), want, "{text}");
    }
}

#[test]
fn minilm_embeddings_match_sentence_transformers_within_1e_4() {
    let r = reference();
    let enc = minilm();
    let texts = texts(&r);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let got = enc.embed(&refs).unwrap();
    assert_eq!(enc.dim(), r["embedding_dim"].as_u64().unwrap() as usize);
    let mut worst = 0.0f32;
    for (g, want) in got.iter().zip(r["embeddings"].as_array().unwrap()) {
        worst = worst.max(max_abs_diff(g, &floats(want)));
        let norm: f32 = g.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    }
    eprintln!("max |psy - sentence-transformers| over 3 x 384 values: {worst:.3e}");
    assert!(worst < 1e-4, "max abs error {worst}");
}

#[test]
fn similar_worries_are_closer_than_an_unrelated_sentence() {
    let r = reference();
    let texts = texts(&r);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let e = minilm().embed(&refs).unwrap();
    let (c01, c02, c12) = (
        cosine(&e[0], &e[1]),
        cosine(&e[0], &e[2]),
        cosine(&e[1], &e[2]),
    );
    assert!(c01 > c12 && c01 > c02 && c12 > c02, "{c01} {c02} {c12}");
    for (got, key) in [
        (c01, "cosine_0_1"),
        (c02, "cosine_0_2"),
        (c12, "cosine_1_2"),
    ] {
        let want = r[key].as_f64().unwrap() as f32;
        assert!((got - want).abs() < 1e-4, "{key}: {got} vs {want}");
    }
}

#[test]
fn a_text_packed_with_others_embeds_exactly_as_alone() {
    let enc = minilm();
    let short = "I can't sleep.";
    let long = "Ever since the move I have felt alone, and most nights I lie awake going over \
                everything I said during the day.";
    let alone = enc.embed(&[short]).unwrap();
    let packed = enc.embed(&[long, short, long]).unwrap();
    assert_eq!(alone[0], packed[1]);
    assert_eq!(packed[0], packed[2]);
}

/// The screen's members read side by side, each on one thread (`on_this_thread`): their
/// products, attention, norms and GELU must give the bits the pool-split kernels give, or a
/// member's reading would depend on how it was scheduled.
#[test]
fn a_text_embedded_on_one_thread_has_the_bits_of_the_split_kernels() {
    // Long enough that every kernel splits over the pool outside `on_this_thread`: 100+ rows
    // for the products and norms, a 60-token text for attention.
    let long = "Ever since the move I have felt alone, and most nights I lie awake going over \
                everything I said during the day, every conversation at work, every message I \
                did not answer, and by the time the birds start I have decided that nobody \
                would notice if I stopped turning up at all.";
    let texts = [long, "I can't sleep.", "Work has been a lot this month."];
    // A fresh copy: the adapted one below keeps lower states on it.
    let enc = Encoder::load_with(&minilm_dir(), EncoderPrecision::F32).unwrap();
    let tokens = enc.encode(&[long]).unwrap()[0].len();
    // host_forward's PARALLEL_ATTENTION: tokens² x hidden from 2^20.
    assert!(tokens * tokens * 384 >= 1 << 20, "{tokens} tokens");
    let split = enc.embed(&texts).unwrap();
    let alone = on_this_thread(|| enc.embed(&texts).unwrap());
    let adapted = enc.with_adapter(&screen_adapter(), "screen").unwrap();
    let adapted_split = adapted.embed(&texts).unwrap();
    let adapted_alone = on_this_thread(|| adapted.embed(&texts).unwrap());
    for (a, b) in split
        .iter()
        .chain(&adapted_split)
        .zip(alone.iter().chain(&adapted_alone))
    {
        let a: Vec<u32> = a.iter().map(|v| v.to_bits()).collect();
        let b: Vec<u32> = b.iter().map(|v| v.to_bits()).collect();
        assert_eq!(a, b);
    }
}

/// The screen reads its members in turn, not side by side, when every member remembers the
/// texts: `knows` must say so only for texts already embedded.
#[test]
fn the_cache_knows_a_text_once_it_has_embedded_it() {
    let cache = CachedEmbedder::new(minilm());
    let text = ["a sentence only this test embeds"];
    assert!(!cache.knows(&text));
    cache.embed(&text).unwrap();
    assert!(cache.knows(&text));
    assert!(!cache.knows(&[text[0], "and one it never saw"]));
}

#[test]
fn the_host_forward_matches_the_burn_model() {
    let r = reference();
    let texts = texts(&r);
    let mut refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    refs.push("Short one.");
    let enc = minilm();
    let host = enc.embed(&refs).unwrap();
    let encodings = enc.encode(&refs).unwrap();
    let batch: Vec<_> = encodings.iter().collect();
    let (ids, types, mask) = enc.padded(&batch);
    let (pooling, _) = enc.pooling();
    let hidden = enc.model().forward(ids, types, mask.clone());
    let burn = l2_normalize(pooling.pool(hidden, mask))
        .into_data()
        .try_into_vec::<f32>()
        .unwrap();
    for (h, b) in host.iter().zip(burn.chunks(enc.dim())) {
        let diff = max_abs_diff(h, b);
        assert!(diff < 1e-5, "host and Burn forwards differ by {diff}");
    }
}

/// The first member's adapter of the shipped screen (its file holds every member's tensors).
fn screen_adapter() -> Vec<u8> {
    psy_safety::screen::builtin().unwrap().members[0]
        .adapter
        .clone()
}

#[test]
fn an_adapted_copy_starting_from_the_shared_lower_states_embeds_as_on_its_own() {
    let text = "I have been counting the pills I saved. Tonight feels different.";
    let adapter = screen_adapter();
    // Cold: the adapted copy runs every block itself (and keeps the lower states); the base
    // encoder then starts from them.
    let base = Encoder::load_with(&minilm_dir(), EncoderPrecision::F32).unwrap();
    let adapted = base.with_adapter(&adapter, "screen").unwrap();
    let cold = adapted.embed(&[text]).unwrap();
    let base_from_states = base.embed(&[text]).unwrap();
    // Warm: the base encoder reads the text first; the adapted copy starts from its states.
    let base2 = Encoder::load_with(&minilm_dir(), EncoderPrecision::F32).unwrap();
    let adapted2 = base2.with_adapter(&adapter, "screen").unwrap();
    let base_alone = base2.embed(&[text]).unwrap();
    let warm = adapted2.embed(&[text]).unwrap();
    assert_eq!(cold, warm);
    assert_eq!(base_from_states, base_alone);
    // The base encoder without any adapted copy gives the same vector too.
    assert_eq!(base_alone, minilm().embed(&[text]).unwrap());
    assert!(
        max_abs_diff(&cold[0], &base_alone[0]) > 1e-2,
        "the adapter changes the vector"
    );
}

#[test]
fn q8_weights_stay_within_their_tolerance_of_f32() {
    let r = reference();
    let texts = texts(&r);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let q8 = Encoder::load_with(&minilm_dir(), EncoderPrecision::Q8).unwrap();
    assert_eq!(q8.precision(), EncoderPrecision::Q8);
    let exact = minilm().embed(&refs).unwrap();
    let approx = q8.embed(&refs).unwrap();
    let worst = exact
        .iter()
        .zip(&approx)
        .map(|(a, b)| max_abs_diff(a, b))
        .fold(0.0f32, f32::max);
    eprintln!("max |q8_0 - f32| over the reference texts: {worst:.3e}");
    assert!(worst > 0.0, "8-bit weights round");
    assert!(worst < EncoderPrecision::Q8.tolerance(), "{worst}");
    let adapted = q8.with_adapter(&screen_adapter(), "screen").unwrap();
    assert_eq!(adapted.precision(), EncoderPrecision::Q8);
}

#[test]
fn split_bf16_products_stay_within_their_tolerance_of_f32_and_the_reference() {
    let r = reference();
    let texts = texts(&r);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let split = Encoder::load_with(&minilm_dir(), EncoderPrecision::SplitBf16).unwrap();
    let exact = minilm().embed(&refs).unwrap();
    let approx = split.embed(&refs).unwrap();
    let worst = exact
        .iter()
        .zip(&approx)
        .map(|(a, b)| max_abs_diff(a, b))
        .fold(0.0f32, f32::max);
    eprintln!("max |bf16x3 - f32| over the reference texts: {worst:.3e}");
    assert!(worst < EncoderPrecision::SplitBf16.tolerance(), "{worst}");
    // And against sentence-transformers' own vectors, as the f32 encoder is held.
    for (v, want) in approx.iter().zip(r["embeddings"].as_array().unwrap()) {
        let d = max_abs_diff(v, &floats(want));
        assert!(d < 1e-4, "{d}");
    }
}

#[test]
fn batches_larger_than_max_batch_keep_the_input_order() {
    let enc = minilm();
    let texts: Vec<String> = (0..psy_lm::encoder::MAX_BATCH + 7)
        .map(|i| format!("message number {i} {}", "and more words ".repeat(i % 5)))
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let all = enc.embed(&refs).unwrap();
    for i in [0, 13, psy_lm::encoder::MAX_BATCH + 6] {
        let one = enc.embed(&refs[i..=i]).unwrap();
        assert!(max_abs_diff(&all[i], &one[0]) < 1e-5, "text {i}");
    }
    assert!(enc.embed(&[]).unwrap().is_empty());
}

#[test]
fn text_beyond_max_seq_length_is_cut_off() {
    let enc = minilm();
    assert_eq!(enc.max_seq_length(), 256);
    let long = "worried ".repeat(300);
    assert_eq!(enc.token_ids(&long).unwrap().len(), 256);
    let longer = format!("{long} but the weather is lovely today");
    let e = enc.embed(&[&long, &longer]).unwrap();
    assert!(max_abs_diff(&e[0], &e[1]) < 1e-6);
}

#[test]
fn the_process_loads_each_encoder_directory_once() {
    let a = minilm();
    let b = shared(Some(&minilm_dir().join("1_Pooling/.."))).unwrap();
    assert!(Arc::ptr_eq(&a, &b));
}

/// A copy of the MiniLM directory (weights linked) whose module list and pooling are replaced.
fn minilm_variant(modules: Value, pooling: Value) -> tempfile::TempDir {
    let src = minilm_dir();
    let dir = tempfile::tempdir().unwrap();
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "sentence_bert_config.json",
    ] {
        std::os::unix::fs::symlink(src.join(f), dir.path().join(f)).unwrap();
    }
    std::fs::write(dir.path().join("modules.json"), modules.to_string()).unwrap();
    std::fs::create_dir(dir.path().join("1_Pooling")).unwrap();
    std::fs::write(
        dir.path().join("1_Pooling/config.json"),
        pooling.to_string(),
    )
    .unwrap();
    dir
}

fn module(path: &str, class: &str) -> Value {
    json!({"path": path, "type": format!("sentence_transformers.models.{class}")})
}

/// The reference also recorded the raw mean pool and the `[CLS]` state: a directory without
/// `Normalize`, or with CLS pooling, must give those.
#[test]
fn module_list_and_pooling_mode_are_read_from_the_directory() {
    let r = reference();
    let texts = texts(&r);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let mean = |on: bool| {
        json!({"word_embedding_dimension": 384, "pooling_mode_mean_tokens": on,
        "pooling_mode_cls_token": !on})
    };
    let pipeline = json!([module("", "Transformer"), module("1_Pooling", "Pooling")]);
    for (pooling, key) in [
        (mean(true), "unnormalized_mean_pool_first5"),
        (mean(false), "cls_last_hidden_first5"),
    ] {
        let dir = minilm_variant(pipeline.clone(), pooling);
        let got = Encoder::load(dir.path()).unwrap().embed(&refs).unwrap();
        for (g, want) in got.iter().zip(r[key].as_array().unwrap()) {
            let diff = max_abs_diff(&g[..5], &floats(want));
            assert!(diff < 1e-4, "{key}: {diff}");
        }
    }
}

#[test]
fn an_unsupported_pooling_mode_or_module_is_named() {
    let pipeline = json!([module("", "Transformer"), module("1_Pooling", "Pooling")]);
    let max = json!({"word_embedding_dimension": 384, "pooling_mode_max_tokens": true});
    let dir = minilm_variant(pipeline, max);
    let e = Encoder::load(dir.path()).unwrap_err();
    assert!(
        matches!(e, EncoderError::UnsupportedPooling { .. }),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("pooling_mode_max_tokens") && msg.contains("1_Pooling/config.json"),
        "{msg}"
    );
    let with_dense = json!([
        module("", "Transformer"),
        module("1_Pooling", "Pooling"),
        module("2_Dense", "Dense")
    ]);
    let mean = json!({"word_embedding_dimension": 384, "pooling_mode_mean_tokens": true});
    let dir = minilm_variant(with_dense, mean);
    let msg = Encoder::load(dir.path()).unwrap_err().to_string();
    assert!(
        msg.contains("sentence_transformers.models.Dense") && msg.contains("modules.json"),
        "{msg}"
    );
}

// ------------------------------------------------------------ broken directories (tiny model)

const HIDDEN: usize = 8;
const INTER: usize = 16;
const POSITIONS: usize = 64;

fn tiny_config() -> Value {
    json!({"model_type": "bert", "vocab_size": 30522, "hidden_size": HIDDEN,
        "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": INTER,
        "max_position_embeddings": POSITIONS, "type_vocab_size": 2, "layer_norm_eps": 1e-12,
        "hidden_act": "gelu"})
}

/// Every tensor of a one-layer BERT with hidden 8, as `(name, shape)`.
fn tiny_tensors() -> Vec<(String, Vec<usize>)> {
    let mut t: Vec<(String, Vec<usize>)> = vec![
        (
            "embeddings.word_embeddings.weight".into(),
            vec![30522, HIDDEN],
        ),
        (
            "embeddings.position_embeddings.weight".into(),
            vec![POSITIONS, HIDDEN],
        ),
        (
            "embeddings.token_type_embeddings.weight".into(),
            vec![2, HIDDEN],
        ),
    ];
    let mut norm = |p: &str| {
        t.push((format!("{p}.LayerNorm.weight"), vec![HIDDEN]));
        t.push((format!("{p}.LayerNorm.bias"), vec![HIDDEN]));
    };
    norm("embeddings");
    norm("encoder.layer.0.attention.output");
    norm("encoder.layer.0.output");
    for (p, out, inp) in [
        ("attention.self.query", HIDDEN, HIDDEN),
        ("attention.self.key", HIDDEN, HIDDEN),
        ("attention.self.value", HIDDEN, HIDDEN),
        ("attention.output.dense", HIDDEN, HIDDEN),
        ("intermediate.dense", INTER, HIDDEN),
        ("output.dense", HIDDEN, INTER),
    ] {
        t.push((format!("encoder.layer.0.{p}.weight"), vec![out, inp]));
        t.push((format!("encoder.layer.0.{p}.bias"), vec![out]));
    }
    t
}

/// A tiny BERT directory with the real tokenizer; `edit` may drop or reshape tensors first.
fn tiny_dir(edit: impl FnOnce(&mut Vec<(String, Vec<usize>)>), config: Value) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut tensors = tiny_tensors();
    edit(&mut tensors);
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, shape)| {
            let n: usize = shape.iter().product();
            (0..n)
                .flat_map(|i| (((i * 37 % 101) as f32 - 50.0) * 0.01).to_le_bytes())
                .collect()
        })
        .collect();
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape), b)| {
            (
                name.clone(),
                TensorView::new(Dtype::F32, shape.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &dir.path().join("model.safetensors")).unwrap();
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    std::os::unix::fs::symlink(
        minilm_dir().join("tokenizer.json"),
        dir.path().join("tokenizer.json"),
    )
    .unwrap();
    let modules = json!([
        module("", "Transformer"),
        module("1_Pooling", "Pooling"),
        module("2_Normalize", "Normalize")
    ]);
    std::fs::write(dir.path().join("modules.json"), modules.to_string()).unwrap();
    std::fs::create_dir(dir.path().join("1_Pooling")).unwrap();
    let pooling = json!({"word_embedding_dimension": HIDDEN, "pooling_mode_mean_tokens": true});
    std::fs::write(
        dir.path().join("1_Pooling/config.json"),
        pooling.to_string(),
    )
    .unwrap();
    dir
}

#[test]
fn a_complete_tiny_directory_loads_and_truncates_at_its_position_count() {
    let dir = tiny_dir(|_| {}, tiny_config());
    let enc = Encoder::load(dir.path()).unwrap();
    // No sentence_bert_config.json: the model's 64 positions bound the length.
    assert_eq!(enc.max_seq_length(), POSITIONS);
    let e = enc.embed(&["hello there", &"word ".repeat(100)]).unwrap();
    for v in &e {
        assert_eq!(v.len(), HIDDEN);
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    }
}

#[test]
fn a_missing_tensor_is_named_with_its_file() {
    let name = "encoder.layer.0.attention.self.key.weight";
    let dir = tiny_dir(|t| t.retain(|(n, _)| n != name), tiny_config());
    let e = Encoder::load(dir.path()).unwrap_err();
    assert!(
        matches!(&e, EncoderError::Weights(RuntimeError::MissingTensor { name: n, .. }) if n == name),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains(name) && msg.contains("model.safetensors"),
        "{msg}"
    );
}

#[test]
fn a_mis_shaped_tensor_is_named_with_both_shapes() {
    let name = "encoder.layer.0.intermediate.dense.weight";
    let dir = tiny_dir(
        |t| {
            for (n, shape) in t.iter_mut() {
                if n == name {
                    *shape = vec![HIDDEN, INTER];
                }
            }
        },
        tiny_config(),
    );
    let msg = Encoder::load(dir.path()).unwrap_err().to_string();
    assert!(
        msg.contains(name) && msg.contains("model.safetensors") && msg.contains("[16, 8]"),
        "{msg}"
    );
}

#[test]
fn a_missing_config_field_is_named_with_its_file() {
    let mut config = tiny_config();
    config
        .as_object_mut()
        .unwrap()
        .remove("num_attention_heads");
    let dir = tiny_dir(|_| {}, config);
    let e = Encoder::load(dir.path()).unwrap_err();
    assert!(matches!(e, EncoderError::Parse { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("num_attention_heads") && msg.contains("config.json"),
        "{msg}"
    );
}

// ------------------------------------------------------------------------------------ CLI

#[test]
fn psy_embed_prints_embeddings_and_their_cosine() {
    let r = reference();
    let texts = texts(&r);
    let dir = minilm_dir();
    let out = psy::embed(&texts[..2], Some(&dir), true).unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["dim"], 384);
    assert_eq!(v["embeddings"].as_array().unwrap().len(), 2);
    assert_eq!(v["embeddings"][1]["text"], texts[1].as_str());
    let want = r["cosine_0_1"].as_f64().unwrap();
    assert!((v["cosine"].as_f64().unwrap() - want).abs() < 1e-4, "{v}");
    let text = psy::embed(&texts[..2], Some(&dir), false).unwrap();
    assert!(text.contains("cosine similarity: 0.665"), "{text}");
    let single = psy::embed(&texts[..1], Some(&dir), true).unwrap();
    assert!(serde_json::from_str::<Value>(&single).unwrap()["cosine"].is_null());
}
