//! `psy train`: the custom loop (data -> samples -> micro-batches -> accumulate -> clip ->
//! AdamW), with metrics, validation, step checkpoints, exact resume, HF export and a loss plot.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::tensor::Device;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::json;

use super::checkpoint::{self, RunState};
use super::checkpointing::{loss_and_grads, TrainMemory};
use super::data::{Conversation, DataReport};
use super::data_parallel::{check_devices, Replicas};
use super::error::{io, Result, TrainError};
use super::loss::{lm_loss, Batch};
pub use super::memory_estimate::{estimate_memory, MemoryEstimate};
use super::mixed_precision::{check_supported, compute_copy, compute_dtype};
use super::optim::{accumulate_grads, add_grads, clip_global_norm, AdamW, AdamWConfig, NamedGrads};
use super::params::trainable_numel;
use super::prepare::{is_gguf, mf, TrainingData};
use super::render::Sample;
use super::schedule::LrSchedule;
use crate::runtime::lora::with_dropout;
use crate::runtime::{load_model_on, CausalLm, LoraConfig, ModelConfig};
use psy_core::manifest::TrainSection;
use psy_core::train_spec::TrainPrecision;

/// Knobs of one invocation (the CLI flags plus test hooks).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub manifest: PathBuf,
    /// Output directory; default `runs/<manifest stem>`.
    pub output: Option<PathBuf>,
    pub resume: bool,
    pub dry_run: bool,
    /// Stop (as if interrupted) after this many optimizer steps in this invocation.
    pub stop_after: Option<usize>,
    /// No progress bar (tests).
    pub quiet: bool,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub output: PathBuf,
    pub steps: usize,
    pub first_loss: f64,
    pub last_loss: f64,
    pub eval_loss: Option<f64>,
    pub tokens_per_s: f64,
    pub wall_secs: f64,
    pub data: DataReport,
    pub memory: MemoryEstimate,
}

/// `psy train M [--output DIR] [--resume] [--dry-run]`.
pub fn run(
    manifest: &Path,
    output: Option<&Path>,
    resume: bool,
    dry_run: bool,
) -> Result<RunSummary> {
    run_with(&RunOptions {
        manifest: manifest.to_path_buf(),
        output: output.map(Path::to_path_buf),
        resume,
        dry_run,
        stop_after: None,
        quiet: false,
    })
}

/// Micro-batches (lists of sample indices) of one epoch, in a seeded order.
fn micro_batches(samples: &[Sample], t: &TrainSection, epoch: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..samples.len()).collect();
    let mut rng =
        rand::rngs::StdRng::seed_from_u64(t.seed.wrapping_add(epoch as u64 * 0x9E37_79B9));
    order.shuffle(&mut rng);
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut cur: Vec<usize> = Vec::new();
    let mut longest = 0;
    for i in order {
        let len = samples[i].ids.len();
        let fits_budget =
            t.token_budget == 0 || (cur.len() + 1) * longest.max(len) <= t.token_budget;
        if !cur.is_empty() && (cur.len() >= t.batch_size.max(1) || !fits_budget) {
            out.push(std::mem::take(&mut cur));
            longest = 0;
        }
        longest = longest.max(len);
        cur.push(i);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn batch_of(samples: &[Sample], idx: &[usize], pad: u32) -> Batch {
    let rows: Vec<_> = idx
        .iter()
        .map(|&i| {
            (
                samples[i].ids.clone(),
                samples[i].labels.clone(),
                samples[i].weights.clone(),
            )
        })
        .collect();
    Batch::pad(&rows, pad)
}

/// Mean validation loss (no autodiff).
fn eval_loss(
    model: &CausalLm,
    config: &ModelConfig,
    samples: &[Sample],
    rows: usize,
    pad: u32,
) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let inner = model.valid();
    let d = inner.device();
    let (mut sum, mut n) = (0.0f64, 0usize);
    for chunk in (0..samples.len()).collect::<Vec<_>>().chunks(rows.max(1)) {
        let b = batch_of(samples, chunk, pad);
        let s: f32 = lm_loss(&inner, config, &b, &d).into_scalar();
        sum += f64::from(s);
        n += b.target_count();
    }
    Some(sum / n.max(1) as f64)
}

/// Runs (or resumes) the training a manifest describes.
pub fn run_with(o: &RunOptions) -> Result<RunSummary> {
    let started = Instant::now();
    let data = TrainingData::load(&o.manifest)?;
    let t = data.train.clone();
    let out_dir = o
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(o.manifest.file_stem().unwrap_or_default()));
    std::fs::create_dir_all(&out_dir).map_err(io(&out_dir))?;
    let model_dir = data.model_dir.clone();
    let tok = &data.tokenizer;
    let mut report = data.report.clone();
    let render_all = |cs: &[Conversation], report: &mut DataReport| -> Result<Vec<Sample>> {
        data.with_renderer(|renderer| {
            let mut out = Vec::new();
            for c in cs {
                out.extend(renderer.samples(c, report)?);
            }
            Ok(out)
        })
    };
    let convs = &data.convs;
    let val_convs = &data.val_convs;
    let mut train = render_all(convs, &mut report)?;
    let mut val = render_all(val_convs, &mut report)?;
    if train.is_empty() {
        return Err(TrainError::Invalid(format!(
            "no training samples ({})",
            report.summary()
        )));
    }
    eprintln!(
        "data: {} -> {} train / {} validation samples",
        report.summary(),
        train.len(),
        val.len()
    );
    std::fs::write(
        out_dir.join("data_report.json"),
        serde_json::to_string_pretty(&report).unwrap_or_default(),
    )
    .map_err(io(out_dir.join("data_report.json")))?;

    // Model.
    let (config, config_json) = data.model_config()?;
    let vocab = config.vocab_size as u32;
    for s in train.iter_mut().chain(val.iter_mut()) {
        for (id, l) in s.ids.iter_mut().zip(s.labels.iter_mut()) {
            if *id >= vocab {
                if t.vocab_map != "modulo" {
                    return Err(TrainError::Invalid(format!(
                        "{}: token id {id} >= model vocabulary {vocab} (set [train] vocab_map = \"modulo\" only for toy models)",
                        s.origin
                    )));
                }
                *id %= vocab;
                if *l >= 0 {
                    *l = i64::from(*id);
                }
            }
        }
    }
    let pad = tok.eos_token_ids().first().copied().unwrap_or(0) % vocab;
    // The estimate needs only config.json and the manifest, so `--dry-run` can plan a GPU run
    // on a machine that has neither the GPU nor room for the weights.
    let device_names: Vec<String> = if t.devices.is_empty() {
        vec![t.device.clone()]
    } else {
        t.devices.clone()
    };
    // Before any work: the names parse and, for a real run, the devices exist.
    let key = if t.devices.is_empty() {
        "device"
    } else {
        "devices"
    };
    let reduction = check_devices(&device_names, !o.dry_run)
        .map_err(|e| mf(&o.manifest, format!("[train] {key}: {e}")))?;
    let lora = t.lora.enabled.then_some(&t.lora);
    if data.is_gguf() && lora.is_none() {
        return Err(mf(
            &o.manifest,
            format!(
                "{} is a GGUF file: a GGUF base trains LoRA adapters only (set [train.lora] enabled = true); full fine-tuning would leave f32 weights psy cannot write back as GGUF",
                model_dir.display()
            ),
        ));
    }
    let adapters = match lora {
        Some(cfg) => {
            crate::runtime::lora::trainable_params(cfg, &config).map_err(|e| mf(&o.manifest, e))?
        }
        None => 0,
    };
    let params = config.num_params() + adapters;
    let trainable = if lora.is_some() { adapters } else { params };
    if lora.is_some() {
        eprintln!(
            "LoRA: {trainable} trainable parameters ({:.3}% of {params})",
            100.0 * trainable as f64 / params.max(1) as f64
        );
    }
    let longest = train.iter().map(|s| s.ids.len()).max().unwrap_or(0);
    let rows = if t.token_budget > 0 {
        (t.token_budget / longest.max(1)).max(1)
    } else {
        t.batch_size.max(1)
    };
    let mem = TrainMemory::from_section(&t);
    let memory = estimate_memory(
        &config,
        params,
        trainable,
        rows,
        longest,
        &device_names[0],
        u64::from(device_names.len() > 1),
        &mem,
    );
    eprintln!("{}", memory.describe());
    if let Some(a) = memory.available {
        if memory.total() > a {
            return Err(TrainError::Invalid(format!(
                "does not fit: {}",
                memory.describe()
            )));
        }
    }

    let mb_per_epoch = micro_batches(&train, &t, 0).len();
    // Each device runs `grad_accum` micro-batches per optimizer step (LLaMA-Factory's
    // per-device batch x accumulation x devices).
    let accum = t.grad_accum.max(1) * device_names.len();
    let total_steps = if t.max_steps > 0 {
        t.max_steps
    } else {
        (t.epochs * mb_per_epoch).div_ceil(accum)
    };
    if o.dry_run {
        eprintln!(
            "dry run: {total_steps} steps of {accum} x {rows} rows on {} planned; not training",
            device_names.join(", ")
        );
        return Ok(RunSummary {
            output: out_dir,
            steps: 0,
            first_loss: f64::NAN,
            last_loss: f64::NAN,
            eval_loss: None,
            tokens_per_s: 0.0,
            wall_secs: started.elapsed().as_secs_f64(),
            data: report,
            memory,
        });
    }
    let parse_device = |name: &str| -> Result<Device> {
        Ok(match name {
            "cpu" | "" => Device::flex(),
            other => crate::runtime::select_device(other.parse()?)?,
        }
        .autodiff())
    };
    // Data parallelism: one replica per listed device; the first holds the master weights.
    let devices: Vec<Device> = device_names
        .iter()
        .map(|d| parse_device(d))
        .collect::<Result<_>>()
        .map_err(|e| mf(&o.manifest, format!("[train] devices: {e}")))?;
    let device = devices[0].clone();
    let replicas = Replicas::new(devices, reduction);
    check_supported(t.precision, &mem, &config, &device)
        .map_err(|e| mf(&o.manifest, format!("[train] precision: {e}")))?;
    // Full fine-tuning trains the loaded weights; LoRA freezes them and trains fresh adapters.
    let mut model = load_model_on(&model_dir, &device)?.model;
    if let Some(cfg) = lora {
        model = model
            .attach_lora(cfg, t.seed)
            .map_err(|e| mf(&o.manifest, e))?;
    }
    let counted: u64 = trainable_numel(&model).iter().map(|(_, n)| *n as u64).sum();
    if counted != trainable || model.num_params() as u64 != params {
        tracing::warn!(
            counted,
            estimated = trainable,
            "parameter count differs from the config-based estimate"
        );
    }
    let schedule = LrSchedule::with_ratio(t.schedule, t.learning_rate, t.warmup_ratio, total_steps);
    let mut opt = AdamW::new(AdamWConfig {
        beta1: t.adam_beta1,
        beta2: t.adam_beta2,
        eps: t.adam_eps,
        weight_decay: t.weight_decay,
    });
    let mut state = RunState {
        step: 0,
        epoch: 0,
        cursor: 0,
        total_steps,
        seed: t.seed,
        train_samples: train.len(),
    };
    let ck_root = out_dir.join("checkpoints");
    let metrics_path = out_dir.join("metrics.jsonl");
    let mut rows_log: Vec<serde_json::Value> = Vec::new();
    if o.resume {
        if let Some(last) = checkpoint::list(&ck_root).pop() {
            let inner = device.clone().without_autodiff();
            let st = checkpoint::load_state(&last, &mut opt, &inner)?;
            if st.train_samples != train.len() || st.total_steps != total_steps || st.seed != t.seed
            {
                return Err(TrainError::Checkpoint {
                    path: last,
                    msg: "the manifest or dataset changed since this checkpoint".into(),
                });
            }
            // LoRA: the loaded base already carries adapters of the same shape; only they change.
            model = match lora {
                Some(_) => super::adapter::load_adapter(&last, model)?,
                None => load_model_on(&last, &device)?.model,
            };
            state = st;
            if let Ok(text) = std::fs::read_to_string(&metrics_path) {
                rows_log = text
                    .lines()
                    .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                    .filter(|r| r["step"].as_u64().is_some_and(|s| s as usize <= state.step))
                    .collect();
            }
            eprintln!("resumed from {} (step {})", last.display(), state.step);
        } else {
            eprintln!("no checkpoint in {}: starting fresh", ck_root.display());
        }
    }
    let mut metrics = std::fs::File::create(&metrics_path).map_err(io(&metrics_path))?;
    for r in &rows_log {
        writeln!(metrics, "{r}").map_err(io(&metrics_path))?;
    }

    let bar = if o.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(total_steps as u64)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_position(state.step as u64);
    let mut epoch_batches = micro_batches(&train, &t, state.epoch);
    let (mut first_loss, mut last_loss, mut eval) = (f64::NAN, f64::NAN, None);
    let (mut tok_total, mut time_total) = (0usize, 0.0f64);
    let mut done_here = 0;
    while state.step < total_steps {
        if o.stop_after.is_some_and(|n| done_here >= n) {
            break;
        }
        let t0 = Instant::now();
        let mut window = Vec::with_capacity(accum);
        for _ in 0..accum {
            if state.cursor >= epoch_batches.len() {
                state.epoch += 1;
                state.cursor = 0;
                epoch_batches = micro_batches(&train, &t, state.epoch);
            }
            window.push(batch_of(&train, &epoch_batches[state.cursor], pad));
            state.cursor += 1;
        }
        let seed_base = t
            .seed
            .wrapping_mul(0x2545_F491_4F6C_DD1D)
            .wrapping_add((state.step * accum) as u64);
        let (loss_sum, mut grads, tokens) =
            window_gradients(&model, &config, &window, &replicas, seed_base, &mem)?;
        let norm = clip_global_norm(&mut grads, t.max_grad_norm);
        let lr = schedule.lr(state.step);
        model = opt.step(model, &mut grads, lr);
        state.step += 1;
        done_here += 1;
        let dt = t0.elapsed().as_secs_f64();
        tok_total += tokens;
        time_total += dt;
        let tps = tokens as f64 / dt.max(1e-9);
        if first_loss.is_nan() {
            first_loss = loss_sum;
        }
        last_loss = loss_sum;
        bar.set_position(state.step as u64);
        bar.set_message(format!("loss {loss_sum:.4} lr {lr:.2e} {tps:.0} tok/s"));
        if t.log_every > 0 && (state.step.is_multiple_of(t.log_every) || state.step == total_steps)
        {
            let row = json!({"step": state.step, "epoch": state.epoch, "loss": loss_sum, "lr": lr, "grad_norm": norm, "tokens_per_s": tps});
            writeln!(metrics, "{row}").map_err(io(&metrics_path))?;
            rows_log.push(row);
        }
        let at_end = state.step == total_steps;
        if (t.eval_every > 0 && state.step.is_multiple_of(t.eval_every)) || at_end {
            if let Some(l) = eval_loss(&model, &config, &val, rows, pad) {
                eval = Some(l);
                let row = json!({"step": state.step, "eval_loss": l, "eval_ppl": l.exp()});
                writeln!(metrics, "{row}").map_err(io(&metrics_path))?;
                rows_log.push(row);
            }
        }
        if (t.save_every > 0 && state.step.is_multiple_of(t.save_every)) || at_end {
            checkpoint::save(
                &ck_root,
                &model,
                &config_json,
                lora,
                &opt,
                &state,
                t.keep_last,
            )?;
        }
    }
    bar.finish_and_clear();
    metrics.flush().map_err(io(&metrics_path))?;
    if state.step == total_steps {
        export(
            &out_dir.join("export"),
            &model,
            &config_json,
            &model_dir,
            &data.tokenizer_path,
            lora,
            &data.template_source,
        )?;
        if let Err(e) = super::plot::loss_png(&out_dir.join("loss.png"), &rows_log) {
            tracing::warn!(%e, "loss plot not written");
        }
    }
    let summary = RunSummary {
        output: out_dir,
        steps: state.step,
        first_loss,
        last_loss,
        eval_loss: eval,
        tokens_per_s: tok_total as f64 / time_total.max(1e-9),
        wall_secs: started.elapsed().as_secs_f64(),
        data: report,
        memory,
    };
    eprintln!(
        "trained {} steps: loss {:.4} -> {:.4}, eval {:?}, {:.0} tokens/s, {:.1}s",
        summary.steps,
        summary.first_loss,
        summary.last_loss,
        summary.eval_loss,
        summary.tokens_per_s,
        summary.wall_secs
    );
    Ok(summary)
}

/// Loss sum, gradients (on the first device) and token count of one accumulation window.
///
/// One device: the micro-batches run in order on `model`. Several: [`Replicas::run`] runs
/// micro-batch `i` on device `i % n` and reduces the gradients. Every micro-batch is divided by
/// the window's target count (HF's `num_items_in_batch`), so the result is the same sum of
/// per-token losses either way. Under bf16 each micro-batch runs on a bf16 compute copy of
/// the (f32) weights, whose gradients arrive on the f32 masters (the layer-by-layer step of
/// checkpointing or memory-efficient attention casts each part where it builds it).
fn window_gradients(
    model: &CausalLm,
    config: &ModelConfig,
    window: &[Batch],
    replicas: &Replicas,
    seed_base: u64,
    mem: &TrainMemory,
) -> Result<(f64, NamedGrads, usize)> {
    let targets = window.iter().map(Batch::target_count).sum::<usize>().max(1) as f64;
    let dtype = compute_dtype(mem.precision);
    // Micro-batch `micro` of the window on `model`, its adapter dropout masks drawn from
    // (seed, step, micro) only: resume and any device count replay them.
    let run_share = |model: &CausalLm, share: Vec<(usize, &Batch)>| {
        let device = model.device();
        let mut grads = NamedGrads::new();
        let (mut loss_sum, mut tokens) = (0.0f64, 0usize);
        for (micro, b) in share {
            let seed = seed_base.wrapping_add(micro as u64);
            if mem.is_plain() {
                let loss = with_dropout(seed, || match mem.precision {
                    TrainPrecision::F32 => lm_loss(model, config, b, &device),
                    TrainPrecision::Bf16 => {
                        lm_loss(&compute_copy(model, dtype), config, b, &device)
                    }
                }) / targets;
                loss_sum += f64::from(loss.clone().inner().into_scalar::<f32>());
                let mut g = loss.backward();
                accumulate_grads(model, &mut g, &mut grads, 1.0);
            } else {
                let (loss, g) = with_dropout(seed, || loss_and_grads(model, b, 1.0 / targets, mem));
                loss_sum += loss;
                add_grads(&mut grads, g);
            }
            tokens += b.labels.iter().map(|r| r.len()).sum::<usize>();
        }
        (loss_sum, grads, tokens)
    };
    replicas.run(model, window, run_share)
}

/// HF layout: weights with HF names, the source config, generation config and the tokenizer
/// files, with the chat template the model was trained with. LoRA adapters are merged into the
/// weights, and also written on their own in PEFT layout under `adapter/`.
fn export(
    dir: &Path,
    model: &CausalLm,
    config_json: &str,
    model_dir: &Path,
    tok_path: &Path,
    lora: Option<&LoraConfig>,
    template: &Option<String>,
) -> Result<()> {
    let inner = model.valid();
    match lora {
        Some(cfg) => {
            super::adapter::write_adapter(
                &dir.join("adapter"),
                &inner,
                cfg,
                &model_dir.display().to_string(),
            )?;
            if is_gguf(model_dir) {
                // Refused: the merged weights would be f32 tensors with no HF config beside them.
                eprintln!(
                    "adapter exported to {}; no merged HF export for a GGUF base (apply the adapter with `psy generate --adapter`)",
                    dir.join("adapter").display()
                );
                return Ok(());
            }
            checkpoint::write_hf(dir, &inner.merge_lora(), config_json)?;
        }
        None => checkpoint::write_hf(dir, &inner, config_json)?,
    }
    let tok_dir = if tok_path.is_dir() {
        tok_path.to_path_buf()
    } else {
        tok_path.parent().unwrap_or(Path::new(".")).to_path_buf()
    };
    for (src_dir, name) in [
        (model_dir, "generation_config.json"),
        (tok_dir.as_path(), "tokenizer.json"),
    ] {
        let src = src_dir.join(name);
        if src.is_file() {
            std::fs::copy(&src, dir.join(name)).map_err(io(&src))?;
        }
    }
    let cfg_src = tok_dir.join("tokenizer_config.json");
    if let Ok(text) = std::fs::read_to_string(&cfg_src) {
        let mut v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| TrainError::Invalid(format!("{}: {e}", cfg_src.display())))?;
        if let (Some(obj), Some(tmpl)) = (v.as_object_mut(), template) {
            obj.insert("chat_template".into(), json!(tmpl));
        }
        let dst = dir.join("tokenizer_config.json");
        std::fs::write(&dst, serde_json::to_string_pretty(&v).unwrap_or_default())
            .map_err(io(&dst))?;
    }
    tracing::info!(path = %dir.display(), "exported in HF layout");
    Ok(())
}
