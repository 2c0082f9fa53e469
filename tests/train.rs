//! Supervised fine-tuning against an independent PyTorch reference
//! (`tests/fixtures/qwen3-train/`, see `tests/fixtures/PROVENANCE.md`): loss, gradients, one
//! AdamW step and a 10-step loss curve; plus masking and padding invariants.
//!
//! Run with `cargo test --release -p psy --test train`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use psy_lm::compute_pool::{is_pool_worker, on_pool};
use psy_lm::runtime::burn::tensor::Device;
use psy_lm::runtime::LoraConfig;
use psy_lm::runtime::{load_model_on, CausalLm, ModelConfig};
use psy_lm::training::optim::accumulate_grads;
use psy_lm::training::optim::{clip_global_norm, global_norm};
use psy_lm::training::params::named_tensors;
use psy_lm::training::{
    forward_logits, lm_loss, masked_lm_loss, AdamW, AdamWConfig, Batch, NamedGrads,
};
use serde_json::Value;

#[path = "common/training.rs"]
mod training;

use training::{
    demo_manifest, fixtures, loss_and_grads, max_diff, options, reference_batch, tensors,
};

fn reference() -> Value {
    training::step_reference()
}

fn device() -> Device {
    Device::flex().autodiff()
}

fn load(dir: &str, device: &Device) -> (CausalLm, ModelConfig) {
    let m = load_model_on(&fixtures().join("qwen3").join(dir), device).unwrap();
    (m.model, m.config)
}

fn to_vec(t: &psy_lm::runtime::burn::tensor::Tensor<1>) -> Vec<f32> {
    t.clone().into_data().try_into_vec::<f32>().unwrap()
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-12)
}

/// Compares a tensor against the reference summary (first 16 values, sum, L2 norm).
/// Returns the worst error seen, as a fraction of the allowance (`abs_tol + rel_tol * |want|`).
fn check_summary(name: &str, values: &[f32], want: &Value, rel_tol: f64, abs_tol: f64) -> f64 {
    let mut worst: f64 = 0.0;
    let first: Vec<f64> = want["first16"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    for (i, (&a, &b)) in values.iter().zip(&first).enumerate() {
        let err = (f64::from(a) - b).abs();
        worst = worst.max(err / (abs_tol + rel_tol * b.abs()));
        assert!(
            err <= abs_tol + rel_tol * b.abs(),
            "{name}[{i}]: {a} vs {b}"
        );
    }
    let sum: f64 = values.iter().map(|&x| f64::from(x)).sum();
    let l2: f64 = values
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    let want_l2 = want["l2"].as_f64().unwrap();
    assert!(rel(l2, want_l2) < rel_tol, "{name} l2 {l2} vs {want_l2}");
    let want_sum = want["sum"].as_f64().unwrap();
    // Sums can cancel to ~0: compare them on the scale of the L1-ish magnitude (l2 * sqrt(n)).
    let scale = want_l2 * (values.len() as f64).sqrt();
    assert!(
        (sum - want_sum).abs() <= rel_tol * scale.max(want_sum.abs()),
        "{name} sum {sum} vs {want_sum}"
    );
    worst
        .max(rel(l2, want_l2) / rel_tol)
        .max((sum - want_sum).abs() / (rel_tol * scale.max(want_sum.abs())))
}

#[test]
fn sft_loss_and_gradients_match_pytorch() {
    let r = reference();
    let d = device();
    let (model, config) = load("tiny-qwen3-untied", &d);
    let batch = reference_batch(&r);
    let (loss, grads) = loss_and_grads(&model, &config, &batch);
    let want = r["loss"].as_f64().unwrap();
    eprintln!(
        "loss {loss} vs {want} (abs err {:.2e})",
        (loss - want).abs()
    );
    // Measured: equal to the last bit (0.0); f32 spacing at 7.5 is 4.8e-7.
    assert!((loss - want).abs() < 1e-6);
    let norm = global_norm(&grads);
    let want_norm = r["grad_total_l2"].as_f64().unwrap();
    eprintln!(
        "grad norm {norm} vs {want_norm} (rel err {:.2e})",
        rel(norm, want_norm)
    );
    // Measured 4.3e-8 relative.
    assert!(rel(norm, want_norm) < 5e-7);
    let mut worst: f64 = 0.0;
    for (name, want) in r["grads"].as_object().unwrap() {
        let g = grads
            .get(name)
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        worst = worst.max(check_summary(name, &to_vec(g), want, 1e-4, 1e-7));
    }
    eprintln!("gradients: worst error {worst:.2e} of the allowance");
}

/// `psy train` runs each step on a worker of the kernels' pool (`compute_pool::on_pool`): the
/// loss and every gradient there are those of the same step on the calling thread, bit for bit
/// (the kernels split their work by the pool's size, not by the thread that calls them).
#[test]
fn a_step_on_the_kernels_pool_equals_the_step_on_the_calling_thread() {
    let r = reference();
    let d = device();
    let (model, config) = load("tiny-qwen3-untied", &d);
    let batch = reference_batch(&r);
    assert!(!is_pool_worker(), "the test thread is not a pool worker");
    let (loss_here, grads_here) = loss_and_grads(&model, &config, &batch);
    let (ran_on_worker, (loss_pool, grads_pool)) =
        on_pool(|| (is_pool_worker(), loss_and_grads(&model, &config, &batch)));
    assert!(ran_on_worker, "on_pool ran the step outside the pool");
    // Measured: identical (difference 0); the PyTorch loss is matched to 1e-6 above.
    assert_eq!(loss_pool, loss_here);
    assert_eq!(grads_pool.len(), grads_here.len());
    for (name, g) in &grads_here {
        assert_eq!(
            to_vec(&grads_pool[name]),
            to_vec(g),
            "gradient of {name} differs on the pool"
        );
    }
}

#[test]
fn one_adamw_step_matches_torch_optim_adamw() {
    let r = reference();
    let d = device();
    let (model, config) = load("tiny-qwen3-untied", &d);
    let batch = reference_batch(&r);
    let (_, mut grads) = loss_and_grads(&model, &config, &batch);
    let a = &r["adamw"];
    let mut opt = AdamW::new(AdamWConfig {
        beta1: a["betas"][0].as_f64().unwrap(),
        beta2: a["betas"][1].as_f64().unwrap(),
        eps: a["eps"].as_f64().unwrap(),
        weight_decay: a["weight_decay"].as_f64().unwrap(),
    });
    let model = opt.step(model, &mut grads, a["lr"].as_f64().unwrap());
    let mut worst: f64 = 0.0;
    let params: BTreeMap<String, Vec<f32>> = named_tensors(&model)
        .into_iter()
        .map(|t| (t.name, t.data))
        .collect();
    for (name, want) in r["params_after_1_step"].as_object().unwrap() {
        let p = &params[name];
        assert_eq!(
            p.len(),
            want["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as usize)
                .product::<usize>()
        );
        worst = worst.max(check_summary(name, p, want, 1e-8, 1e-8));
    }
    eprintln!("parameters after one AdamW step: worst error {worst:.2e} of the allowance");
}

#[test]
fn ten_step_loss_curve_matches_pytorch() {
    let r = reference();
    let d = device();
    let (mut model, config) = load("tiny-qwen3-untied", &d);
    let batch = reference_batch(&r);
    let mut opt = AdamW::new(AdamWConfig::default());
    let want: Vec<f64> = r["losses_10_steps_same_batch"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    let mut worst: f64 = 0.0;
    for (step, w) in want.iter().enumerate() {
        let (loss, mut grads) = loss_and_grads(&model, &config, &batch);
        worst = worst.max((loss - w).abs());
        // Measured worst 4.8e-7.
        assert!((loss - w).abs() < 5e-6, "step {step}: {loss} vs {w}");
        model = opt.step(model, &mut grads, 1e-3);
    }
    eprintln!("10-step loss curve: worst abs err {worst:.2e}");
}

#[test]
fn masked_and_padded_tokens_change_neither_loss_nor_gradients() {
    let r = reference();
    let d = device();
    let (model, config) = load("tiny-qwen3-untied", &d);
    let batch = reference_batch(&r);
    let (loss, grads) = loss_and_grads(&model, &config, &batch);
    // Different ids under the masked prompt labels would change the context: change only the
    // ignored *padding* ids and the (ignored) label slots instead.
    let mut other = batch.clone();
    for t in 9..12 {
        other.input_ids[1][t] = 999 - t as u32;
    }
    let (loss2, grads2) = loss_and_grads(&model, &config, &other);
    assert!((loss - loss2).abs() < 1e-6, "{loss} vs {loss2}");
    for (name, g) in &grads {
        let (a, b) = (to_vec(g), to_vec(&grads2[name]));
        let diff = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        // Embedding rows of the swapped pad ids get zero gradient either way.
        assert!(diff < 1e-6, "{name}: max diff {diff}");
    }
    // A padded row gives the same loss sum as the row alone, unpadded.
    let alone = Batch {
        input_ids: vec![batch.input_ids[1][..9].to_vec()],
        labels: vec![batch.labels[1][..9].to_vec()],
        weights: None,
    };
    let sum_row = |b: &Batch| -> f32 {
        let logits = forward_logits(&model, &config, &b.input_ids, &d);
        masked_lm_loss(logits, b).inner().into_scalar()
    };
    let padded = Batch {
        input_ids: vec![batch.input_ids[1].clone()],
        labels: vec![batch.labels[1].clone()],
        weights: None,
    };
    let (a, b) = (sum_row(&alone), sum_row(&padded));
    assert!((a - b).abs() < 1e-5, "padded {b} vs alone {a}");
}

/// Loss and gradients by name through `loss` (summed, not averaged).
fn grads_of(model: &CausalLm, loss: psy_lm::runtime::burn::tensor::Tensor<1>) -> (f32, NamedGrads) {
    let value: f32 = loss.clone().inner().into_scalar();
    let mut g = loss.backward();
    let mut named = NamedGrads::new();
    accumulate_grads(model, &mut g, &mut named, 1.0);
    (value, named)
}

/// The fused head + loss that training uses (`lm_loss`, logits a chunk of trained rows at a
/// time, gradients injected into the graph) equals the plain log-softmax over full logits
/// (`masked_lm_loss`) in value and in every gradient: untied and tied heads, full fine-tuning
/// and LoRA, with masked labels and per-label weights (zero included).
#[test]
fn fused_head_loss_equals_the_loss_on_full_logits() {
    let r = reference();
    let d = device();
    let mut batch = reference_batch(&r);
    let (rows, len) = batch.dims();
    // Weights like reasoning 0.5 / reply 1.0, one trained label at weight zero.
    let mut w: Vec<Vec<f32>> = (0..rows)
        .map(|r| {
            (0..len)
                .map(|t| if (r + t) % 3 == 0 { 0.5 } else { 1.0 })
                .collect()
        })
        .collect();
    w[0][3] = 0.0;
    batch.weights = Some(w);
    let lora = LoraConfig {
        enabled: true,
        rank: 4,
        alpha: 8.0,
        dropout: 0.0,
        target_modules: vec!["all-linear".into()],
    };
    for (dir, with_lora) in [
        ("tiny-qwen3-untied", false),
        ("tiny-qwen3", false),
        ("tiny-qwen3", true),
    ] {
        let (mut model, config) = load(dir, &d);
        if with_lora {
            // One step first, so that B is no longer zero and A's gradient is not trivially 0.
            model = model.attach_lora(&lora, 7).unwrap();
            let (_, mut g) = grads_of(&model, lm_loss(&model, &config, &batch, &d));
            model = AdamW::new(AdamWConfig::default()).step(model, &mut g, 1e-2);
        }
        let reference = masked_lm_loss(
            forward_logits(&model, &config, &batch.input_ids, &d),
            &batch,
        );
        let (want, want_g) = grads_of(&model, reference);
        let (got, got_g) = grads_of(&model, lm_loss(&model, &config, &batch, &d));
        assert!(
            (got - want).abs() <= 1e-5 * want.abs(),
            "{dir} lora={with_lora}: loss {got} vs {want}"
        );
        assert_eq!(
            got_g.keys().collect::<Vec<_>>(),
            want_g.keys().collect::<Vec<_>>(),
            "{dir} lora={with_lora}: trained tensors differ"
        );
        let mut worst = 0.0f64;
        for (name, g) in &want_g {
            let (a, b) = (to_vec(&got_g[name]), to_vec(g));
            let scale = b.iter().fold(0.0f32, |m, x| m.max(x.abs())).max(1e-12);
            let diff = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0f32, f32::max);
            worst = worst.max(f64::from(diff / scale));
            assert!(
                diff <= 1e-4 * scale,
                "{dir} lora={with_lora} {name}: max diff {diff} (max |g| {scale})"
            );
        }
        eprintln!(
            "{dir} lora={with_lora}: loss {got} vs {want}, {} gradients, worst diff {worst:.1e} of max |g|",
            want_g.len()
        );
    }
}

#[test]
fn clipping_scales_to_the_max_norm() {
    let r = reference();
    let d = device();
    let (model, config) = load("tiny-qwen3-untied", &d);
    let (_, mut grads) = loss_and_grads(&model, &config, &reference_batch(&r));
    let before = clip_global_norm(&mut grads, 1.0);
    assert!(before > 1.0);
    assert!((global_norm(&grads) - 1.0).abs() < 1e-5);
}

// ---------------------------------------------------------------------------------------------
// Data: samples and loss masks from the inference chat template.

use psy_lm::runtime::chat_template::{ChatMessage, ChatTemplate, RenderOptions};
use psy_lm::runtime::tokenizer::Tokenizer;
use psy_lm::training::data::{read_dataset, Conversation, DataFormat, DataReport, OnBadRecord};
use psy_lm::training::render::{
    RenderConfig, Sample, SampleRenderer, TracePlacement, CHATML_TEMPLATE,
};

fn asset(rel: &str) -> PathBuf {
    let dir = std::env::var_os("PSY_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/psy/assets")
        });
    let p = dir.join(rel);
    assert!(
        p.exists(),
        "missing asset {}: run scripts/setup.sh",
        p.display()
    );
    p
}

fn qwen3() -> (Tokenizer, ChatTemplate) {
    let tok = Tokenizer::from_path(&asset("qwen3-tokenizer/tokenizer.json")).unwrap();
    let tmpl = ChatTemplate::for_tokenizer(&tok).unwrap().unwrap();
    (tok, tmpl)
}

fn three_turns() -> Conversation {
    let a = |r: &str, u: &str| ChatMessage {
        role: "assistant".into(),
        content: u.into(),
        reasoning_content: Some(r.into()),
    };
    Conversation {
        origin: "golden".into(),
        id: "g1".into(),
        messages: vec![
            ChatMessage::new("user", "I can't sleep."),
            a("Emotion: worry.", "That sounds hard."),
            ChatMessage::new("user", "Work stress."),
            a("Pattern: rumination.", "What goes through your mind?"),
            ChatMessage::new("user", "That I'll fail."),
            a("Risk: none stated.", "Let's look at that thought."),
        ],
    }
}

/// Token strings of a sample, trained ones marked with `*`.
fn marked(tok: &Tokenizer, s: &Sample) -> Vec<String> {
    s.ids
        .iter()
        .zip(&s.labels)
        .map(|(&id, &l)| {
            let t = tok.decode(&[id], false).unwrap();
            if l == -100 {
                t
            } else {
                format!("*{t}")
            }
        })
        .collect()
}

fn trained_text(tok: &Tokenizer, s: &Sample) -> Vec<String> {
    // Contiguous trained runs, decoded.
    let mut runs = Vec::new();
    let mut cur = Vec::new();
    for (&id, &l) in s.ids.iter().zip(&s.labels) {
        if l != -100 {
            cur.push(id);
        } else if !cur.is_empty() {
            runs.push(tok.decode(&cur, false).unwrap());
            cur.clear();
        }
    }
    if !cur.is_empty() {
        runs.push(tok.decode(&cur, false).unwrap());
    }
    runs
}

#[test]
fn template_placement_trains_each_turn_after_the_inference_prompt() {
    let (tok, tmpl) = qwen3();
    let conv = three_turns();
    let r = SampleRenderer {
        template: &tmpl,
        tokenizer: &tok,
        config: RenderConfig::default(),
        system_for_turn: None,
        review: None,
    };
    let samples = r.samples(&conv, &mut DataReport::default()).unwrap();
    assert_eq!(samples.len(), 3);
    let replies = [
        ("Emotion: worry.", "That sounds hard."),
        ("Pattern: rumination.", "What goes through your mind?"),
        ("Risk: none stated.", "Let's look at that thought."),
    ];
    for (k, s) in samples.iter().enumerate() {
        let (rsn, reply) = replies[k];
        assert_eq!(
            trained_text(&tok, s),
            vec![format!("<think>\n{rsn}\n</think>\n\n{reply}<|im_end|>")],
            "sample {k}"
        );
        // The untrained prefix is exactly what inference renders for the same history (history
        // replies without traces) with the generation prompt.
        let i = 2 * k + 1;
        let history: Vec<ChatMessage> = conv.messages[..i]
            .iter()
            .map(|m| ChatMessage::new(m.role.clone(), m.content.clone()))
            .collect();
        let prompt = tmpl
            .render(
                &history,
                &RenderOptions {
                    add_generation_prompt: true,
                    ..Default::default()
                },
            )
            .unwrap();
        let first_trained = s.labels.iter().position(|&l| l != -100).unwrap();
        assert_eq!(
            s.ids[..first_trained],
            tok.encode(&prompt, false).unwrap()[..],
            "sample {k}"
        );
        assert!(
            s.ids.len() == s.labels.len() && s.labels[first_trained..].iter().all(|&l| l != -100)
        );
    }
    // Token by token, the last sample: prompt untrained, trace + reply + <|im_end|> trained.
    let m = marked(&tok, &samples[2]);
    eprintln!("template placement, sample 3: {m:?}");
    let first = m.iter().position(|t| t.starts_with('*')).unwrap();
    assert_eq!(
        m[first - 3..],
        [
            "<|im_start|>",
            "assistant",
            "\n",
            "*<think>",
            "*\n",
            "*Risk",
            "*:",
            "* none",
            "* stated",
            "*.\n",
            "*</think>",
            "*\n\n",
            "*Let",
            "*'s",
            "* look",
            "* at",
            "* that",
            "* thought",
            "*.",
            "*<|im_end|>"
        ]
    );
}

#[test]
fn inline_placement_trains_every_trace_in_one_chatml_sample() {
    let (tok, _) = qwen3();
    let chatml = ChatTemplate::from_source(CHATML_TEMPLATE, None, Some("<|im_end|>")).unwrap();
    let conv = three_turns();
    let cfg = RenderConfig {
        placement: TracePlacement::Inline,
        ..RenderConfig::default()
    };
    let r = SampleRenderer {
        template: &chatml,
        tokenizer: &tok,
        config: cfg.clone(),
        system_for_turn: None,
        review: None,
    };
    let samples = r.samples(&conv, &mut DataReport::default()).unwrap();
    assert_eq!(
        samples.len(),
        1,
        "ChatML renders history unchanged: one sample"
    );
    assert_eq!(
        trained_text(&tok, &samples[0]),
        vec![
            "<think>\nEmotion: worry.\n</think>\n\nThat sounds hard.<|im_end|>",
            "<think>\nPattern: rumination.\n</think>\n\nWhat goes through your mind?<|im_end|>",
            "<think>\nRisk: none stated.\n</think>\n\nLet's look at that thought.<|im_end|>",
        ]
    );
    eprintln!("inline placement (ChatML): {:?}", marked(&tok, &samples[0]));
    // Qwen3's own template drops traces from history, so inline falls back to one sample per
    // turn; each still trains its own trace.
    let (_, qwen_tmpl) = qwen3();
    let r = SampleRenderer {
        template: &qwen_tmpl,
        tokenizer: &tok,
        config: cfg,
        system_for_turn: None,
        review: None,
    };
    let samples = r.samples(&conv, &mut DataReport::default()).unwrap();
    assert_eq!(samples.len(), 3);
    assert_eq!(
        trained_text(&tok, &samples[1]),
        vec!["<think>\nPattern: rumination.\n</think>\n\nWhat goes through your mind?<|im_end|>"]
    );
}

#[test]
fn a_rejected_turn_is_counted_and_not_trained() {
    let (tok, tmpl) = qwen3();
    let chatml = ChatTemplate::from_source(CHATML_TEMPLATE, None, Some("<|im_end|>")).unwrap();
    let conv = three_turns();
    // Rejects the reply to "Work stress." (a stand-in for a module's verdict).
    let review = |turn: &[ChatMessage]| -> Result<(), (String, String)> {
        match turn.last() {
            Some(m) if m.content.contains("mind") => {
                Err(("test-module".into(), "asks too much".into()))
            }
            _ => Ok(()),
        }
    };
    for (template, placement) in [
        (&tmpl, TracePlacement::Template),
        (&chatml, TracePlacement::Inline),
    ] {
        let r = SampleRenderer {
            template,
            tokenizer: &tok,
            config: RenderConfig {
                placement,
                ..RenderConfig::default()
            },
            system_for_turn: None,
            review: Some(&review),
        };
        let mut report = DataReport::default();
        let samples = r.samples(&conv, &mut report).unwrap();
        assert_eq!(report.reviewed, 3, "{placement:?}");
        assert_eq!(
            report.skipped["rejected by test-module"], 1,
            "{placement:?}"
        );
        assert!(
            report.problems[0].contains("asks too much"),
            "{:?}",
            report.problems
        );
        // The other two turns still train, each in its own sample.
        let trained: Vec<String> = samples.iter().flat_map(|s| trained_text(&tok, s)).collect();
        assert_eq!(trained.len(), 2, "{placement:?}: {trained:?}");
        assert!(trained.iter().all(|t| !t.contains("mind")), "{trained:?}");
    }
}

#[test]
fn reasoning_and_reply_weights_and_last_turn_only() {
    let (tok, tmpl) = qwen3();
    let cfg = RenderConfig {
        reasoning_weight: 0.5,
        reply_weight: 2.0,
        last_turn_only: true,
        ..RenderConfig::default()
    };
    let r = SampleRenderer {
        template: &tmpl,
        tokenizer: &tok,
        config: cfg,
        system_for_turn: None,
        review: None,
    };
    let samples = r
        .samples(&three_turns(), &mut DataReport::default())
        .unwrap();
    assert_eq!(samples.len(), 1);
    let s = &samples[0];
    let close = tok.token_to_id("</think>").unwrap();
    let at = s.ids.iter().position(|&t| t == close).unwrap();
    assert_eq!(s.weights[at], 0.5);
    assert_eq!(s.weights[at + 1], 2.0);
    assert_eq!(*s.weights.last().unwrap(), 2.0);
    // Plan conditioning puts the per-turn system prompt first.
    let sys = |h: &[ChatMessage]| format!("plan for {} messages", h.len());
    let r = SampleRenderer {
        template: &tmpl,
        tokenizer: &tok,
        config: RenderConfig::default(),
        system_for_turn: Some(&sys),
        review: None,
    };
    let samples = r
        .samples(&three_turns(), &mut DataReport::default())
        .unwrap();
    let text = tok.decode(&samples[1].ids, false).unwrap();
    assert!(
        text.starts_with("<|im_start|>system\nplan for 3 messages<|im_end|>"),
        "{text}"
    );
}

#[test]
fn readers_accept_three_formats_and_report_bad_records_by_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("mixed.jsonl");
    let lines = [
        r#"{"post_id": 7, "conversation": [{"round": 1, "patient": "hi", "counselor_think": "R1", "counselor_content": "hello"}]}"#,
        r#"{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "<think>\nR\n</think>\n\nU"}]}"#,
        r#"{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "U", "reasoning_content": "R"}]}"#,
        r#"{"messages": [{"role": "user", "content": "only a question"}]}"#,
        r#"not json"#,
        r#"{"conversation": [{"round": 1, "patient": "hi"}]}"#,
    ];
    std::fs::write(&p, lines.join("\n")).unwrap();
    let mut report = DataReport::default();
    let convs = read_dataset(&p, DataFormat::Auto, OnBadRecord::Skip, &mut report).unwrap();
    assert_eq!(
        (report.read, report.kept, report.skipped_total()),
        (6, 3, 3)
    );
    assert_eq!(report.skipped["no assistant turn"], 1);
    assert_eq!(report.skipped["invalid JSON"], 1);
    assert_eq!(report.skipped["missing field"], 1);
    assert!(
        report.problems[2].ends_with("mixed.jsonl:6: missing field `counselor_content`"),
        "{:?}",
        report.problems
    );
    assert_eq!(
        convs[0].messages[1].reasoning_content.as_deref(),
        Some("R1")
    );
    assert_eq!(convs[1].messages[1].reasoning_content.as_deref(), Some("R"));
    assert_eq!(convs[1].messages[1].content, "U");
    assert_eq!(convs[2].origin, format!("{}:3", p.display()));
    let err = read_dataset(
        &p,
        DataFormat::Auto,
        OnBadRecord::Fail,
        &mut DataReport::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("mixed.jsonl:4:"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// The loop: tiny demo, resume equivalence, export round trip.

use psy_lm::training::{run_with, RunOptions};

fn weights(dir: &Path) -> BTreeMap<String, Vec<f32>> {
    tensors(&dir.join("model.safetensors"))
}

#[test]
fn tiny_demo_overfits_the_illustrative_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let m = demo_manifest(dir.path(), "");
    let out = dir.path().join("out");
    let s = run_with(&options(&m, &out)).unwrap();
    eprintln!(
        "tiny demo: {} steps, loss {:.3} -> {:.3}, eval {:?}, {:.0} tok/s, {:.1}s",
        s.steps, s.first_loss, s.last_loss, s.eval_loss, s.tokens_per_s, s.wall_secs
    );
    assert!(
        s.last_loss <= 0.2 * s.first_loss,
        "loss {} -> {}",
        s.first_loss,
        s.last_loss
    );
    assert!(out.join("metrics.jsonl").is_file() && out.join("loss.png").is_file());
    let rows = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert!(rows.lines().any(|l| l.contains("eval_loss")));
    // The export reloads in psy with the same logits as the final checkpoint.
    let d = Device::flex();
    let a = load_model_on(&out.join("export"), &d).unwrap();
    let last = psy_lm::training::checkpoint::list(&out.join("checkpoints"))
        .pop()
        .unwrap();
    let b = load_model_on(&last, &d).unwrap();
    let ids = vec![vec![1u32, 5, 9, 200, 7]];
    let la: Vec<f32> = forward_logits(&a.model, &a.config, &ids, &d)
        .into_data()
        .try_into_vec()
        .unwrap();
    let lb: Vec<f32> = forward_logits(&b.model, &b.config, &ids, &d)
        .into_data()
        .try_into_vec()
        .unwrap();
    assert_eq!(la, lb);
    assert!(
        out.join("export/tokenizer.json").is_file() && out.join("export/config.json").is_file()
    );
}

#[test]
fn interrupted_and_resumed_equals_uninterrupted() {
    let dir = tempfile::tempdir().unwrap();
    let extra = "";
    let m = demo_manifest(dir.path(), extra);
    let text = std::fs::read_to_string(&m)
        .unwrap()
        .replace("epochs = 24", "epochs = 1\nmax_steps = 6")
        .replace("save_every = 25", "save_every = 3");
    std::fs::write(&m, text).unwrap();
    let full = dir.path().join("full");
    run_with(&options(&m, &full)).unwrap();
    let cut = dir.path().join("cut");
    let s = run_with(&RunOptions {
        stop_after: Some(4),
        ..options(&m, &cut)
    })
    .unwrap();
    assert_eq!(s.steps, 4);
    // A half-written checkpoint (as after kill -9) is ignored and removed.
    std::fs::create_dir_all(cut.join("checkpoints/.tmp-step-00000005-1")).unwrap();
    let s = run_with(&RunOptions {
        resume: true,
        ..options(&m, &cut)
    })
    .unwrap();
    assert_eq!(s.steps, 6);
    let worst = max_diff(
        &weights(&full.join("export")),
        &weights(&cut.join("export")),
    );
    eprintln!("resume: max weight difference {worst:e}");
    assert!(worst <= 1e-6);
}

fn set(m: &Path, edits: &[(&str, &str)]) {
    let mut text = std::fs::read_to_string(m).unwrap();
    for (a, b) in edits {
        assert!(text.contains(a), "{a} not in the manifest");
        text = text.replace(a, b);
    }
    std::fs::write(m, text).unwrap();
}

/// Two devices with one micro-batch each equal one device accumulating two (the same effective
/// batch): same loss curve and gradient norms, same weights up to the order of the float
/// additions. CPU replicas reduce by hand (see `burn_collectives_do_not_cover_the_flex_backend`).
#[test]
fn data_parallel_over_two_devices_equals_accumulation_on_one() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, edits: &[(&str, &str)]| {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        let m = demo_manifest(&d, "");
        set(&m, &[("epochs = 24", "epochs = 1\nmax_steps = 4")]);
        set(&m, edits);
        let s = run_with(&options(&m, &d.join("out"))).unwrap();
        (s, weights(&d.join("out/export")))
    };
    let (one, w1) = run("one", &[("grad_accum = 1", "grad_accum = 2")]);
    let (two, w2) = run(
        "two",
        &[(
            "grad_accum = 1",
            "grad_accum = 1\ndevices = [\"cpu\", \"cpu\"]",
        )],
    );
    assert_eq!((one.steps, two.steps), (4, 4));
    // The whole curve, step by step: loss and gradient norm. Measured: identical (difference
    // 0; the replicas' gradients are summed in the order one device accumulates them).
    let curve = |name: &str| -> Vec<(f64, f64)> {
        std::fs::read_to_string(dir.path().join(name).join("out/metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|r| r["loss"].is_number())
            .map(|r| {
                (
                    r["loss"].as_f64().unwrap(),
                    r["grad_norm"].as_f64().unwrap(),
                )
            })
            .collect()
    };
    let (c1, c2) = (curve("one"), curve("two"));
    assert_eq!(c1.len(), 4);
    for (step, (a, b)) in c1.iter().zip(&c2).enumerate() {
        assert!(
            (a.0 - b.0).abs() <= 1e-6,
            "step {step}: loss {a:?} vs {b:?}"
        );
        assert!(
            (a.1 - b.1).abs() <= 1e-6 * a.1,
            "step {step}: norm {a:?} vs {b:?}"
        );
    }
    eprintln!(
        "one device: loss {} -> {}; two: {} -> {}; max weight diff {:e}",
        one.first_loss,
        one.last_loss,
        two.first_loss,
        two.last_loss,
        max_diff(&w1, &w2)
    );
    // Measured max weight difference 0; the tolerance leaves room for another summation order.
    assert!(max_diff(&w1, &w2) <= 1e-6);
}

/// More devices than the machine has is refused before any work, naming the manifest and the
/// devices: CUDA devices in a CPU build (or beyond the count in a CUDA build), a device listed
/// twice, and more CPU replicas than logical CPUs.
#[test]
fn more_devices_than_exist_is_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let cpus = std::thread::available_parallelism().unwrap().get();
    let too_many_cpus = vec!["\"cpu\""; cpus + 1].join(", ");
    for (i, (devices, want)) in [
        ("\"cuda:0\", \"cuda:1\"", "CUDA"),
        ("\"cuda:0\", \"cuda:0\"", "listed twice"),
        (too_many_cpus.as_str(), "logical CPUs"),
    ]
    .into_iter()
    .enumerate()
    {
        let d = dir.path().join(format!("case{i}"));
        std::fs::create_dir_all(&d).unwrap();
        let m = demo_manifest(&d, "");
        set(
            &m,
            &[(
                "grad_accum = 1",
                &format!("grad_accum = 1\ndevices = [{devices}]"),
            )],
        );
        let out = d.join("out");
        let err = run_with(&options(&m, &out)).unwrap_err().to_string();
        eprintln!("{err}");
        assert!(err.contains("m.toml") && err.contains("devices"), "{err}");
        assert!(err.contains(want), "`{want}` missing from: {err}");
        assert!(!out.join("metrics.jsonl").exists());
    }
}

/// Why CPU data parallelism sums gradients by hand: Burn 0.22's collectives do not cover flex
/// (its `DistributedOps` are the trait's `unimplemented!()` defaults and burn-dispatch refuses
/// the device). The day this fails, flex has gained them and `data_parallel.rs` can use
/// `all_reduce` on CPU too.
#[test]
fn burn_collectives_do_not_cover_the_flex_backend() {
    use psy_lm::runtime::burn::tensor::distributed::{
        DistributedConfig, DistributedContext, ReduceOperation,
    };
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let outcome = std::panic::catch_unwind(|| {
        DistributedContext::init(
            vec![Device::flex(), Device::flex()],
            DistributedConfig {
                all_reduce_op: ReduceOperation::Sum,
            },
        )
    });
    std::panic::set_hook(hook);
    let payload = outcome.expect_err("flex started a collective context");
    let msg = payload
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    eprintln!("{msg}");
    assert!(
        msg.contains("not supported") && msg.contains("Flex"),
        "{msg}"
    );
}

/// `kill -9` of `psy train` while it writes a checkpoint: what remains never loads wrong, and
/// resuming ends with the weights of an uninterrupted run.
#[test]
fn kill_9_while_writing_a_checkpoint_never_leaves_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let m = demo_manifest(dir.path(), "");
    set(
        &m,
        &[
            ("epochs = 24", "epochs = 1\nmax_steps = 8"),
            ("save_every = 25", "save_every = 1"),
            ("keep_last = 2", "keep_last = 3"),
        ],
    );
    let full = dir.path().join("full");
    run_with(&options(&m, &full)).unwrap();

    let cut = dir.path().join("cut");
    let ck = cut.join("checkpoints");
    let mut caught_mid_write = false;
    for attempt in 0..20 {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_psy"))
            .args([
                "train",
                m.to_str().unwrap(),
                "--output",
                cut.to_str().unwrap(),
            ])
            .args(if attempt > 0 {
                &["--resume"][..]
            } else {
                &[][..]
            })
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Watch for a checkpoint being written and kill the process the moment it appears.
        let t0 = std::time::Instant::now();
        let mut killed = false;
        while t0.elapsed().as_secs() < 60 {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            let writing = std::fs::read_dir(&ck)
                .into_iter()
                .flatten()
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with(".tmp-"));
            if writing {
                child.kill().unwrap(); // SIGKILL
                killed = true;
                break;
            }
        }
        child.wait().unwrap();
        if !killed {
            break;
        }
        let left_tmp = std::fs::read_dir(&ck)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(".tmp-"));
        caught_mid_write |= left_tmp;
        // Every checkpoint that `list` offers loads completely; half-written ones are not offered.
        for c in psy_lm::training::checkpoint::list(&ck) {
            let mut opt = AdamW::new(AdamWConfig::default());
            psy_lm::training::checkpoint::load_state(&c, &mut opt, &Device::flex())
                .unwrap_or_else(|e| panic!("{}: {e}", c.display()));
            load_model_on(&c, &Device::flex()).unwrap_or_else(|e| panic!("{}: {e}", c.display()));
        }
        if caught_mid_write {
            break;
        }
    }
    assert!(caught_mid_write, "never caught a checkpoint mid-write");
    // Resume to the end: the same weights as the uninterrupted run.
    let s = run_with(&RunOptions {
        resume: true,
        ..options(&m, &cut)
    })
    .unwrap();
    assert_eq!(s.steps, 8);
    let worst = max_diff(
        &weights(&full.join("export")),
        &weights(&cut.join("export")),
    );
    eprintln!("after kill -9 and resume: max weight difference {worst:e}");
    assert!(worst <= 1e-6);
}

/// A run whose estimate exceeds the free memory is refused before training, with the numbers.
#[test]
fn a_run_that_cannot_fit_is_refused_with_the_estimate() {
    let dir = tempfile::tempdir().unwrap();
    let m = demo_manifest(dir.path(), "");
    // 10^6 rows of the longest sample: the logits alone need terabytes.
    set(&m, &[("batch_size = 8", "batch_size = 1000000")]);
    let err = run_with(&RunOptions {
        dry_run: true,
        ..options(&m, &dir.path().join("out"))
    })
    .expect_err("must not fit")
    .to_string();
    assert!(
        err.contains("does not fit") && err.contains("activations") && err.contains("available"),
        "{err}"
    );
}

/// Every trained turn is reviewed by the run's modules: the crisis guard drops a reply to a
/// high-risk message that skips the crisis protocol, and data_report.json counts the verdicts.
#[test]
fn training_data_is_reviewed_by_the_run_modules() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("reviewed.jsonl");
    let record = |user: &str, reply: &str| {
        serde_json::json!({"messages": [
            {"role": "user", "content": user},
            {"role": "assistant", "content": reply, "reasoning_content": "Emotion: noted."}
        ]})
        .to_string()
    };
    let lines = [
        record(
            "Work has been stressful lately.",
            "That sounds like a lot. What weighs most?",
        ),
        record(
            "I keep worrying about my exams.",
            "What goes through your mind when you worry?",
        ),
        record(
            "i want to kill myself. i bought a rope yesterday",
            "Let's talk about your week instead.",
        ),
    ];
    std::fs::write(&data, lines.join("\n")).unwrap();
    let m = demo_manifest(dir.path(), "");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let illustrative = format!(
        "{:?}",
        root.join("manifests/train/data/illustrative.jsonl")
            .display()
            .to_string()
    );
    set(
        &m,
        &[
            (
                illustrative.as_str(),
                format!("{:?}", data.display().to_string()).as_str(),
            ),
            ("validation_ratio = 0.1", "validation_ratio = 0.0"),
            ("format = \"pipeline\"", "format = \"openai\""),
        ],
    );
    let out = dir.path().join("out");
    let s = run_with(&RunOptions {
        dry_run: true,
        ..options(&m, &out)
    })
    .unwrap();
    assert_eq!(s.data.reviewed, 3);
    assert_eq!(
        s.data.skipped["rejected by crisis-guard"], 1,
        "{:?}",
        s.data
    );
    let saved: DataReport =
        serde_json::from_str(&std::fs::read_to_string(out.join("data_report.json")).unwrap())
            .unwrap();
    assert_eq!(saved, s.data);
    assert!(
        saved.problems.iter().any(|p| p.contains("crisis-protocol")),
        "{:?}",
        saved.problems
    );
}
