//! The job for LLaMA-Factory (0.9.x): data in its ShareGPT layout with OpenAI-style role tags,
//! `dataset_info.json`, the training YAML, a ZeRO-3 DeepSpeed config and the launch files.

use std::io::Write;
use std::path::Path;

use serde_json::{json, Value};

use super::super::data::DataReport;
use super::super::error::{io, Result, TrainError};
use super::super::prepare::TrainingData;
use super::super::render::{inline_text, TracePlacement};
use super::{deepspeed, launch, Cluster, Example};
use crate::runtime::chat_template::ChatMessage;
use psy_core::train_spec::ScheduleKind;

const TRAIN: &str = "psy_train";
const EVAL: &str = "psy_eval";

/// LLaMA-Factory's template for the manifest's placement and chat template, and whether its
/// default system prompt must be blanked (its `qwen` template adds one; psy's ChatML does not).
fn template_name(data: &TrainingData) -> Result<(&'static str, bool)> {
    let t = &data.train;
    let src = data.template_source.as_deref().unwrap_or("");
    let qwen3_like = src.contains("<|im_start|>") && src.contains("reasoning_content");
    match (t.placement, t.chat_template.as_str()) {
        (TracePlacement::Inline, "chatml") => Ok(("qwen", true)),
        (TracePlacement::Template, "") if qwen3_like => Ok(("qwen3", false)),
        _ => Err(TrainError::Manifest {
            path: data.manifest.clone(),
            msg: format!(
                "[train] placement = {:?} with chat_template = {:?} has no LLaMA-Factory \
                 template: export supports placement = \"inline\" with chat_template = \"chatml\" \
                 (LLaMA-Factory `qwen`, PsyLLM's setting) and placement = \"template\" with a \
                 Qwen3 tokenizer's own template (LLaMA-Factory `qwen3`)",
                t.placement, t.chat_template
            ),
        }),
    }
}

/// Rows per device and accumulation steps that keep the manifest's effective batch
/// (`batch_size x grad_accum` sequences per optimizer step) over `world` GPUs.
fn batch_split(data: &TrainingData, world: usize) -> Result<(usize, usize)> {
    let t = &data.train;
    let bad = |msg: String| TrainError::Manifest {
        path: data.manifest.clone(),
        msg,
    };
    if t.token_budget > 0 {
        return Err(bad(
            "[train] token_budget has no LLaMA-Factory equivalent; set batch_size instead".into(),
        ));
    }
    let total = t.batch_size.max(1) * t.grad_accum.max(1);
    if !total.is_multiple_of(world) {
        return Err(bad(format!(
            "[train] batch_size x grad_accum = {total} sequences per step cannot be split evenly \
             over {world} GPUs; choose a multiple of {world}"
        )));
    }
    let per_gpu = total / world;
    let per_device = (1..=per_gpu.min(t.batch_size.max(1)))
        .rev()
        .find(|d| per_gpu.is_multiple_of(*d))
        .unwrap_or(1);
    Ok((per_device, per_gpu / per_device))
}

/// An exported example in ShareGPT layout; the trained (last) turn carries its trace inline,
/// where LLaMA-Factory's templates look for it.
fn example_json(e: &Example, placement: TracePlacement) -> Value {
    let msgs = &e.messages.messages;
    let last = e.messages.trained[0];
    let messages: Vec<Value> = msgs[..=last]
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let content = if i == last && placement == TracePlacement::Template {
                inline_text(m)
            } else {
                m.content.clone()
            };
            json!({"role": m.role, "content": content})
        })
        .collect();
    json!({"messages": messages, "origin": e.origin})
}

/// ShareGPT needs user/assistant alternation after an optional leading system message.
fn alternates(msgs: &[ChatMessage]) -> bool {
    let body = match msgs.first() {
        Some(m) if m.role == "system" => &msgs[1..],
        _ => msgs,
    };
    body.iter()
        .enumerate()
        .all(|(i, m)| m.role == if i % 2 == 0 { "user" } else { "assistant" })
        && body.len() % 2 == 0
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(io(path))
}

fn write_jsonl<'a>(path: &Path, rows: impl Iterator<Item = &'a Value>) -> Result<()> {
    let f = std::fs::File::create(path).map_err(io(path))?;
    let mut w = std::io::BufWriter::new(f);
    for r in rows {
        writeln!(w, "{r}").map_err(io(path))?;
    }
    w.flush().map_err(io(path))
}

/// A YAML scalar: JSON's quoting is valid YAML, except that PyYAML (YAML 1.1) reads `1e-8` as a
/// string: exponents get a decimal point (`1.0e-8`).
fn y(v: impl serde::Serialize) -> String {
    let s = serde_json::to_string(&v).unwrap_or_default();
    match s.find(['e', 'E']) {
        Some(e) if !s.starts_with('"') && !s[..e].contains('.') => {
            format!("{}.0{}", &s[..e], &s[e..])
        }
        _ => s,
    }
}

/// Writes the job; returns the examples written (training, validation) and what LLaMA-Factory
/// will do differently from `psy train`.
pub(crate) fn write(
    dir: &Path,
    data: &TrainingData,
    train: &[Example],
    eval: &[Example],
    cluster: Cluster,
    report: &mut DataReport,
) -> Result<([usize; 2], Vec<String>)> {
    let t = &data.train;
    let (template, blank_system) = template_name(data)?;
    let (per_device, accum) = batch_split(data, cluster.world_size())?;
    if (t.reasoning_weight - 1.0).abs() > 0.0 || (t.reply_weight - 1.0).abs() > 0.0 {
        return Err(TrainError::Manifest {
            path: data.manifest.clone(),
            msg: "[train] reasoning_weight and reply_weight must be 1.0: LLaMA-Factory has no \
                  per-token loss weights"
                .into(),
        });
    }

    // Data, and psy's rendering of every example for the parity check.
    let mut reference = Vec::new();
    let mut rows: [Vec<Value>; 2] = [Vec::new(), Vec::new()];
    for (k, (name, examples)) in [(TRAIN, train), (EVAL, eval)].into_iter().enumerate() {
        for e in examples {
            if !alternates(&e.messages.messages) {
                report.skip(
                    "not exportable",
                    format!("{}: roles do not alternate user/assistant", e.origin),
                );
                continue;
            }
            let Some(sample) =
                data.with_renderer(|r| r.sample_of(&e.origin, &e.messages, report))?
            else {
                continue;
            };
            reference.push(json!({
                "dataset": name,
                "index": rows[k].len(),
                "origin": e.origin,
                "input_ids": sample.ids,
                "labels": sample.labels,
            }));
            rows[k].push(example_json(e, t.placement));
        }
    }
    let counts = [rows[0].len(), rows[1].len()];
    if counts[0] == 0 {
        return Err(TrainError::Invalid(format!(
            "no training example left to export ({}); raise [train] max_len?",
            report.summary()
        )));
    }
    let data_dir = dir.join("data");
    std::fs::create_dir_all(&data_dir).map_err(io(&data_dir))?;
    for (k, name) in [TRAIN, EVAL].into_iter().enumerate() {
        write_jsonl(&data_dir.join(format!("{name}.jsonl")), rows[k].iter())?;
    }
    write_jsonl(&dir.join("psy_samples.jsonl"), reference.iter())?;
    let tags = json!({
        "role_tag": "role", "content_tag": "content", "user_tag": "user",
        "assistant_tag": "assistant", "system_tag": "system"
    });
    let mut info = serde_json::Map::new();
    for (name, n) in [(TRAIN, counts[0]), (EVAL, counts[1])] {
        if n > 0 {
            info.insert(
                name.into(),
                json!({"file_name": format!("{name}.jsonl"), "formatting": "sharegpt",
                       "columns": {"messages": "messages"}, "tags": tags}),
            );
        }
    }
    write_file(
        &data_dir.join("dataset_info.json"),
        &(serde_json::to_string_pretty(&Value::Object(info)).unwrap_or_default() + "\n"),
    )?;

    // The training YAML, field for field from `[train]`.
    let model = std::path::absolute(&data.model_dir).unwrap_or_else(|_| data.model_dir.clone());
    let mut yaml = format!(
        "# LLaMA-Factory job written by `psy train --export-job` from {manifest}\n\
         # Run: ./launch.sh (see its header for several nodes). On a cluster, point\n\
         # model_name_or_path at the model there (a local path or a Hugging Face id).\n\n\
         ### model\nmodel_name_or_path: {model}\ntrust_remote_code: true\n\n\
         ### method\nstage: sft\ndo_train: true\n",
        manifest = data.manifest.display(),
        model = y(model.display().to_string()),
    );
    if t.lora.enabled {
        let target = if t.lora.target_modules.iter().any(|m| m == "all-linear") {
            "all".to_string()
        } else {
            t.lora.target_modules.join(",")
        };
        yaml += &format!(
            "finetuning_type: lora\nlora_rank: {}\nlora_alpha: {}\nlora_dropout: {}\nlora_target: {}\n",
            t.lora.rank,
            t.lora.alpha,
            t.lora.dropout,
            y(target)
        );
    } else {
        yaml += "finetuning_type: full\n";
    }
    yaml += "deepspeed: ds_z3_config.json\n\n### dataset\ndataset_dir: data\n";
    yaml += &format!("dataset: {TRAIN}\n");
    if counts[1] > 0 {
        yaml += &format!("eval_dataset: {EVAL}\n");
    }
    yaml += &format!("template: {template}\n");
    if blank_system {
        yaml += "default_system: \"\"   # psy's ChatML adds no system prompt of its own\n";
    }
    yaml += "enable_thinking: true\n\
             # One example per trained turn, its history untrained: the tokens psy trains.\n\
             mask_history: true\n";
    yaml += &format!(
        "cutoff_len: {}\noverwrite_cache: true\npreprocessing_num_workers: 4\n\n",
        t.max_len
    );
    yaml += &format!(
        "### output\noutput_dir: output\nlogging_steps: {}\nsave_steps: {}\nsave_total_limit: {}\n\
         plot_loss: true\noverwrite_output_dir: true\nreport_to: none\n\n",
        t.log_every.max(1),
        t.save_every.max(1),
        t.keep_last.max(1)
    );
    let schedule = match t.schedule {
        ScheduleKind::Cosine => "cosine",
        ScheduleKind::Linear => "linear",
        ScheduleKind::Constant => "constant_with_warmup",
    };
    yaml += &format!(
        "### train\n# {world} GPU(s) x {per_device} rows x {accum} accumulation steps = the manifest's \
         batch_size x grad_accum = {total} sequences per step\n\
         per_device_train_batch_size: {per_device}\ngradient_accumulation_steps: {accum}\n\
         learning_rate: {lr}\nlr_scheduler_type: {schedule}\nwarmup_ratio: {warm}\n\
         weight_decay: {wd}\nmax_grad_norm: {clip}\nadam_beta1: {b1}\nadam_beta2: {b2}\n\
         adam_epsilon: {eps}\nseed: {seed}\nbf16: true\nddp_timeout: 180000000\n",
        world = cluster.world_size(),
        total = t.batch_size.max(1) * t.grad_accum.max(1),
        lr = y(t.learning_rate),
        warm = y(t.warmup_ratio),
        wd = y(t.weight_decay),
        clip = y(t.max_grad_norm),
        b1 = y(t.adam_beta1),
        b2 = y(t.adam_beta2),
        eps = y(t.adam_eps),
        seed = t.seed,
    );
    if t.max_steps > 0 {
        yaml += &format!("max_steps: {}\n", t.max_steps);
    } else {
        yaml += &format!("num_train_epochs: {}\n", t.epochs.max(1));
    }
    if counts[1] > 0 {
        yaml += &format!(
            "\n### eval\nper_device_eval_batch_size: {per_device}\neval_strategy: steps\neval_steps: {}\n",
            t.eval_every.max(1)
        );
    }
    write_file(&dir.join("train.yaml"), &yaml)?;
    write_file(
        &dir.join("ds_z3_config.json"),
        &(serde_json::to_string_pretty(&deepspeed::zero3()).unwrap_or_default() + "\n"),
    )?;
    let script = dir.join("launch.sh");
    write_file(&script, &launch::script(cluster))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
            .map_err(io(&script))?;
    }
    write_file(&dir.join("hostfile"), &launch::hostfile(cluster))?;

    let mut notes = vec![
        "LLaMA-Factory also trains the newline its template writes after each end-of-turn \
         token; psy stops at the end-of-turn token (the newline is never generated)"
            .to_string(),
        "a sample longer than cutoff_len keeps its last turn whole in LLaMA-Factory \
         (mask_history truncates the history first); psy cuts at max_len from the start"
            .to_string(),
    ];
    if t.vocab_map == "modulo" {
        notes.push(
            "[train] vocab_map = \"modulo\" folds token ids into a toy model's vocabulary; \
             LLaMA-Factory cannot train this model on these data (the data check still holds)"
                .into(),
        );
    }
    if t.plan_conditioning {
        notes.push("each example carries the planner's system prompt for its turn".into());
    }
    Ok((counts, notes))
}

#[cfg(test)]
mod tests {
    use super::y;

    #[test]
    fn yaml_floats_keep_a_decimal_point_before_the_exponent() {
        assert_eq!(y(1e-8), "1.0e-8");
        assert_eq!(y(3e-3), "0.003");
        assert_eq!(y(2.5e-12), "2.5e-12");
        assert_eq!(y("1e-8"), "\"1e-8\"");
        assert_eq!(y(16.0), "16.0");
    }
}
