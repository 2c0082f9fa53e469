//! `psy`: parse arguments and call one library function per subcommand.

/// Large tensors (logits, activations) are allocated and freed on every training step and
/// prefill. With glibc's allocator a fifth of a CPU training step went to page faults and kernel
/// locks (perf); mimalloc made the step about 25% faster (benches/train.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "psy",
    version,
    about = "Clinically grounded counseling language models (a research tool, not a clinical device)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Plan the counselor's next reply: risk, hypotheses, modalities, reasoning steps, prompt.
    Plan {
        #[arg(long, default_value = "manifests/psyllm.toml")]
        manifest: PathBuf,
        /// A single client message.
        #[arg(
            long,
            conflicts_with_all = ["dialogue", "batch"],
            required_unless_present_any = ["dialogue", "batch"]
        )]
        message: Option<String>,
        /// A dialogue: JSON array, {"messages": [...]}, or JSONL of {"role", "content"}.
        #[arg(long, conflicts_with = "batch")]
        dialogue: Option<PathBuf>,
        /// Many inputs in one process: JSONL whose lines hold `text`, `turns` (client turns) or
        /// `messages`, with an optional `id`. Prints one line per input (with --json, one plan).
        #[arg(long)]
        batch: Option<PathBuf>,
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Evaluate a run on its `[eval]` set (automatic metrics, and rubric judges when
    /// `[eval.judge]` names one): `psy eval manifests/eval-demo.toml`. `psy eval risk FILE...`
    /// scores the crisis guard on labelled risk sets.
    #[command(args_conflicts_with_subcommands = true)]
    Eval {
        #[command(subcommand)]
        command: Option<EvalCommand>,
        /// Run manifest whose `[eval]` section says what to score.
        manifest: Option<PathBuf>,
        #[command(flatten)]
        opts: EvalArgs,
    },
    /// Run an ablation: every variant decoded and scored on the base run's `[eval]`, compared
    /// with the first variant (report.json/csv/md, radar and delta charts in --output).
    Ablate {
        /// Ablation manifest, e.g. manifests/ablations/demo.toml.
        ablation: PathBuf,
        #[command(flatten)]
        opts: EvalArgs,
        /// Cells decoded at once (each loads its own copy of the model).
        #[arg(long, default_value_t = 1)]
        jobs: usize,
    },
    /// Retrain the crisis guard's screen from its exemplars (plugins/safety/screen/): embeds
    /// them, trains the head, calibrates thresholds on a validation split, writes the weights
    /// and screen.toml with their hashes. Rebuild psy afterwards: the screen is compiled in.
    TrainScreen {
        /// Exemplar directory (*.jsonl: text, level, category, writer).
        #[arg(long, default_value = "plugins/safety/screen/exemplars")]
        exemplars: PathBuf,
        /// Output directory for screen.toml and head.safetensors.
        #[arg(long, default_value = "plugins/safety/screen")]
        out: PathBuf,
        /// Sentence encoder directory (default: all-MiniLM-L6-v2 from the setup step).
        #[arg(long)]
        encoder: Option<PathBuf>,
        #[arg(long)]
        epochs: Option<usize>,
        #[arg(long)]
        hidden: Option<usize>,
        /// Upper encoder blocks to fine-tune (0: train the head over a frozen encoder).
        #[arg(long)]
        tuned_layers: Option<usize>,
        #[arg(long)]
        learning_rate: Option<f64>,
        /// Optimizer steps of linear learning-rate warm-up (default 0, as the shipped screen)
        #[arg(long)]
        warmup_steps: Option<usize>,
        /// Seeds of the ensemble's members, one member each, comma-separated (default: the
        /// shipped screen's: 7, 9-14).
        #[arg(long, value_delimiter = ',')]
        seeds: Vec<u64>,
        /// Distil: a screen directory whose combined level readings of the training texts are
        /// the members' level targets instead of the labels.
        #[arg(long)]
        teacher: Option<PathBuf>,
        /// Train nothing: measure the screen in --out through the whole guard on the
        /// validation split (and on each --set), false alarms by detector and category.
        #[arg(long)]
        report: bool,
        /// Train nothing: set the cut-offs of the screen in --out again on the validation
        /// split of --exemplars (its own training data) and rewrite its screen.toml.
        #[arg(long)]
        recalibrate: bool,
        /// Labelled files for --report (`text` or `messages`, `level`, `category` a line).
        #[arg(long = "set")]
        sets: Vec<PathBuf>,
        /// With --report: write every item's per-detector readings here (JSONL).
        #[arg(long)]
        readings: Option<PathBuf>,
    },
    /// Score diagnostic and modality choice on labelled sets (vignettes: JSONL/TOML with
    /// `condition` and `messages`; modality messages: `modality`/`expected` and `text`): top-1
    /// and top-2 with 95% Wilson intervals, and planning time per item. Aggregates only.
    ClinicalReport {
        #[arg(long, default_value = "manifests/psyllm.toml")]
        manifest: PathBuf,
        /// Labelled sets, e.g. tests/heldout/vignettes.jsonl tests/heldout/modality.jsonl.
        #[arg(required = true)]
        sets: Vec<PathBuf>,
        /// List the ids of missed items (tuned sets only; refused under tests/heldout/).
        #[arg(long)]
        misses: bool,
    },
    /// A counseling session: every reply decoded from a plan and held to its rules.
    Counsel {
        #[arg(long, default_value = "manifests/psyllm.toml")]
        manifest: PathBuf,
        /// Model (HF directory or .gguf); default: the manifest's, else SmolLM2 from setup.
        #[arg(long)]
        model: Option<PathBuf>,
        /// Client messages, one a line (or JSONL of {"content": ...}), run non-interactively.
        #[arg(long, conflicts_with = "replay")]
        script: Option<PathBuf>,
        /// Write the transcript (JSONL) here.
        #[arg(long)]
        save: Option<PathBuf>,
        /// Also show risk, leading hypotheses and chosen modalities per turn.
        #[arg(long)]
        show_plan: bool,
        /// Print a saved transcript instead of running a session.
        #[arg(long)]
        replay: Option<PathBuf>,
        /// Send the plan's full system prompt and outline (slow on small CPU models).
        #[arg(long)]
        full_prompt: bool,
        #[command(flatten)]
        upstream: UpstreamArgs,
    },
    /// OpenAI-compatible server (POST /v1/chat/completions, GET /v1/models, GET /health).
    Serve {
        #[arg(long, default_value = "manifests/psyllm.toml")]
        manifest: PathBuf,
        #[arg(long)]
        model: Option<PathBuf>,
        /// Serve the model alone: no plan, no crisis guard, no repairs; `response_format`
        /// and `logit_bias` honoured. For judges and data synthesis, never for people.
        #[arg(long, conflicts_with_all = ["manifest", "upstream"])]
        raw: bool,
        /// Tokenizer for `--raw` when the model carries none (tokenizer.json).
        #[arg(long, requires = "raw")]
        tokenizer: Option<PathBuf>,
        #[command(flatten)]
        upstream: UpstreamArgs,
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: String,
        /// Requests waiting beyond this many get 429.
        #[arg(long, default_value_t = 64)]
        queue: usize,
        /// Requests answered at once, their tokens decoded together in one forward pass per
        /// step (1: one at a time, each with the previous request's prompt cache). Default: 8
        /// with --raw (independent prompts from judges and teachers); 1 for counseling, whose
        /// sessions gain more from the prompt cache than from batching (the batch engine
        /// prefills every prompt whole).
        #[arg(long)]
        max_batch: Option<usize>,
        /// Open connections at most (further clients wait to be accepted).
        #[arg(long, default_value_t = 256)]
        max_connections: usize,
        /// Largest request body in bytes (413 beyond it).
        #[arg(long, default_value_t = 4 << 20)]
        max_body_bytes: usize,
    },
    /// Raw generation for debugging the runtime: no plan, no crisis guard, no rules (talk to
    /// people with `psy chat` or `psy counsel`). From a prompt, a chat message or token ids.
    Generate {
        #[arg(long)]
        model: Option<PathBuf>,
        /// A PEFT LoRA adapter directory (psy's `export/adapter/`, or a LLaMA-Factory LoRA
        /// output) merged into the model before generating.
        #[arg(long, value_name = "DIR")]
        adapter: Option<PathBuf>,
        #[arg(long, group = "input")]
        prompt: Option<String>,
        /// A user message rendered with the model's chat template.
        #[arg(long, group = "input")]
        chat: Option<String>,
        /// Comma-separated token ids.
        #[arg(long, group = "input", value_delimiter = ',')]
        input_ids: Option<Vec<u32>>,
        #[command(flatten)]
        sampling: SamplingArgs,
        /// Constrain the output to one JSON value valid under this JSON schema file (the
        /// subset rubric verdicts use: objects, arrays, strings, integers, numbers, booleans,
        /// enums); generation stops once the value is complete.
        #[arg(long, value_name = "FILE")]
        json_schema: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Show how a tokenizer splits a text.
    Tokenize {
        /// tokenizer.json, model directory or .gguf (default: the default model).
        #[arg(long)]
        tokenizer: Option<PathBuf>,
        #[arg(long, conflicts_with = "file", required_unless_present = "file")]
        text: Option<String>,
        #[arg(long)]
        file: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Sentence embeddings (all-MiniLM-L6-v2 by default); two texts also print their cosine.
    Embed {
        /// A text to embed (repeat for several).
        #[arg(long = "text", required = true)]
        texts: Vec<String>,
        /// Sentence-transformers directory (default: the MiniLM from scripts/setup.sh).
        #[arg(long)]
        encoder: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Chat with a model behind the crisis guard: at high risk the reply is checked and
    /// carries the crisis protocol (or is the protocol alone); no other plan rules.
    Chat {
        #[arg(long)]
        model: Option<PathBuf>,
        /// Run manifest for the crisis guard's locale and resources.
        #[arg(long, default_value = "manifests/psyllm.toml")]
        manifest: PathBuf,
        #[command(flatten)]
        sampling: SamplingArgs,
    },
    /// Supervised fine-tuning from a run manifest's `[train]` section.
    Train {
        manifest: PathBuf,
        /// Output directory (metrics.jsonl, checkpoints/, export/, loss.png).
        #[arg(long)]
        output: Option<PathBuf>,
        /// Continue from the newest complete checkpoint in the output directory.
        #[arg(long)]
        resume: bool,
        /// Print the memory estimate and stop (refuses when it cannot fit).
        #[arg(long)]
        dry_run: bool,
        /// Write the same job for another trainer into DIR (new or empty) instead of training:
        /// data, config and launch script (see the README's "Beyond one machine").
        #[arg(long, value_name = "DIR", conflicts_with_all = ["resume", "dry_run", "output"])]
        export_job: Option<PathBuf>,
        /// The trainer `--export-job` writes for.
        #[arg(long, default_value = "llamafactory", requires = "export_job")]
        engine: psy_lm::training::export_job::Engine,
        /// Nodes the exported job runs on.
        #[arg(long, default_value_t = 1, requires = "export_job")]
        nodes: usize,
        /// GPUs per node of the exported job.
        #[arg(long, default_value_t = 1, requires = "export_job")]
        gpus_per_node: usize,
    },
    /// Synthesise counseling dialogues from posts (PsyLLM's four-stage pipeline) as a synth
    /// manifest says: `psy synth manifests/synth/demo.toml --output DIR` writes one JSONL per
    /// stage, DIR/records.jsonl (the pipeline record format) and DIR/report.json.
    Synth {
        /// Synth manifest, e.g. manifests/synth/demo.toml.
        manifest: PathBuf,
        /// Output directory (default runs/synth-<name>).
        #[arg(long)]
        output: Option<PathBuf>,
        /// Finish an interrupted run in the output directory (finished keys are skipped).
        #[arg(long, conflicts_with_all = ["dry_run", "report"])]
        resume: bool,
        /// Print every stage's first prompt, teacher and answer schema; call nothing.
        #[arg(long, conflicts_with = "report")]
        dry_run: bool,
        /// Print the totals of the run in the output directory (counts by stage and reason).
        #[arg(long)]
        report: bool,
    },
    /// Data-set tools.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
    /// Manifest tools.
    Manifest {
        #[command(subcommand)]
        command: ManifestCommand,
    },
    /// Module (plugin) tools.
    Plugins {
        #[command(subcommand)]
        command: PluginsCommand,
    },
}

#[derive(Subcommand)]
enum DataCommand {
    /// Counts and distributions of a pipeline-record file (dialogues, rounds, turns, words;
    /// modalities, scenes, severity, risk; filter verdicts from a filter.jsonl beside it):
    /// text, stats.json and histograms stats.png / stats.svg.
    Stats {
        file: PathBuf,
        /// Where stats.json and the charts go (default: the file's directory).
        #[arg(long)]
        output: Option<PathBuf>,
        /// Print stats.json instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
struct UpstreamArgs {
    /// Draft with this OpenAI-compatible endpoint (base URL with /v1, e.g. a vLLM or
    /// llama.cpp server, or `psy serve --raw`) instead of a local model; the plan, crisis
    /// guard and repairs stay in psy.
    #[arg(long, value_name = "URL", conflicts_with = "model")]
    upstream: Option<String>,
    /// The model name the upstream serves.
    #[arg(long, requires = "upstream", default_value = "default")]
    upstream_model: String,
    /// Name of the environment variable holding the upstream's API key.
    #[arg(long, requires = "upstream", value_name = "VAR")]
    upstream_api_key_env: Option<String>,
    /// The upstream model's tokenizer.json: lets psy ban label tokens with `logit_bias`
    /// (without it, a redraft is only told which words to avoid).
    #[arg(long, requires = "upstream", value_name = "FILE")]
    upstream_tokenizer: Option<PathBuf>,
    /// Seconds a whole draft may take.
    #[arg(long, requires = "upstream", default_value_t = 300)]
    upstream_timeout: u64,
}

impl UpstreamArgs {
    fn config(self) -> Option<psy::upstream::UpstreamConfig> {
        let mut c = psy::upstream::UpstreamConfig::new(self.upstream?, self.upstream_model);
        c.api_key_env = self.upstream_api_key_env;
        c.tokenizer = self.upstream_tokenizer;
        c.timeout = std::time::Duration::from_secs(self.upstream_timeout);
        Some(c)
    }
}

#[derive(clap::Args)]
struct SamplingArgs {
    #[arg(long, default_value_t = 128)]
    max_new_tokens: usize,
    /// Argmax decoding (the default when no temperature is given).
    #[arg(long, conflicts_with = "temperature")]
    greedy: bool,
    #[arg(long)]
    temperature: Option<f32>,
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    #[arg(long, default_value_t = 0.0)]
    min_p: f32,
    #[arg(long, default_value_t = 1.0)]
    repetition_penalty: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

impl SamplingArgs {
    fn config(&self) -> psy_lm::runtime::GenerationConfig {
        psy_lm::runtime::GenerationConfig {
            max_new_tokens: self.max_new_tokens,
            sampling: psy_lm::runtime::SamplingConfig {
                temperature: if self.greedy {
                    0.0
                } else {
                    self.temperature.unwrap_or(0.0)
                },
                top_k: self.top_k,
                top_p: self.top_p,
                min_p: self.min_p,
                repetition_penalty: self.repetition_penalty,
                seed: self.seed,
            },
            ..Default::default()
        }
    }
}

#[derive(clap::Args)]
struct EvalArgs {
    /// Run directory (default runs/eval-<run> or runs/ablate-<ablation>); a rerun resumes it.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Call the judge afresh instead of reading the judge cache.
    #[arg(long)]
    no_cache: bool,
    /// Decode with this model instead of the manifest's.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Items of a cell answered at once, their tokens decoded together in one forward pass
    /// per step on a batch engine (default: one after another with the model's prompt cache).
    #[arg(long)]
    max_batch: Option<usize>,
}

impl EvalArgs {
    fn options(self, jobs: usize) -> psy::eval::EvalOptions {
        psy::eval::EvalOptions {
            output: self.output,
            no_cache: self.no_cache,
            jobs,
            model: self.model,
            max_batch: self.max_batch,
        }
    }
}

#[derive(Subcommand)]
enum EvalCommand {
    /// Score the run's crisis guard on labelled risk sets: JSONL of {"text" | "messages",
    /// "min"?, "max"?, "id"?}. Prints, per expectation, how many held (95% Wilson intervals),
    /// the misses by id and a confusion matrix.
    Risk {
        #[arg(long, default_value = "manifests/psyllm.toml")]
        manifest: PathBuf,
        /// Labelled sets, e.g. tests/heldout/crisis.jsonl tests/heldout/dialogues.jsonl.
        #[arg(required = true)]
        sets: Vec<PathBuf>,
        /// Print each set's report as one JSON object (total, passed, by_expectation, misses,
        /// false_alarms, confusion).
        #[arg(long)]
        json: bool,
    },
    /// Agreement of two raters per measure: quadratic-weighted Cohen's kappa (scores rounded),
    /// Krippendorff's alpha (interval) and the mean absolute difference. Each rater is a judged
    /// cell (RUN_DIR/cells/<cell>, its verdicts.jsonl) or a CSV with the header
    /// `key,measure,score` (e.g. human ratings).
    Agree {
        a: PathBuf,
        b: PathBuf,
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ManifestCommand {
    /// Validate a run or ablation manifest and print it resolved.
    Check { manifest: PathBuf },
}

#[derive(Subcommand)]
enum PluginsCommand {
    /// List every module: id, kind, version, source.
    List {
        /// Also load the plugins this run manifest lists.
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// Also load this module manifest or plugin library (repeatable).
        #[arg(long = "plugin")]
        plugins: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Plan {
            manifest,
            batch: Some(batch),
            json,
            ..
        } => {
            for (id, plan) in psy::plan_batch(&manifest, &batch)? {
                if json {
                    println!("{}", serde_json::json!({"id": id, "plan": plan}));
                } else {
                    println!("{id}\t{}", plan.risk.level.as_str());
                }
            }
        }
        Command::TrainScreen {
            exemplars,
            out,
            encoder,
            epochs,
            hidden,
            tuned_layers,
            learning_rate,
            warmup_steps,
            seeds,
            teacher,
            report,
            recalibrate,
            sets,
            readings,
        } => {
            if report {
                print!(
                    "{}",
                    psy::screen_report::screen_report(&psy::screen_report::ReportOptions {
                        exemplars,
                        screen: out,
                        encoder,
                        sets,
                        readings,
                    })?
                );
                return Ok(());
            }
            let mut o = psy::train_screen::TrainScreenOptions::shipped(std::path::Path::new("."));
            o.exemplars = exemplars;
            o.out = out;
            o.encoder = encoder;
            if recalibrate {
                let spec = psy::train_screen::recalibrate(&o)?;
                println!("{}", toml::to_string(&spec.thresholds)?);
                println!("validation: {:?}", spec.validation);
                return Ok(());
            }
            if let Some(e) = epochs {
                o.config.epochs = e;
            }
            if let Some(h) = hidden {
                o.config.hidden = h;
            }
            if !seeds.is_empty() {
                o.seeds = seeds;
            }
            o.teacher = teacher;
            o.member_cache = Some(psy::screen_member_cache::cache_root());
            if let Some(t) = tuned_layers {
                o.config.tuned_layers = t;
            }
            if let Some(l) = learning_rate {
                o.config.learning_rate = l;
            }
            if let Some(w) = warmup_steps {
                o.config.warmup_steps = w;
            }
            let r = psy::train_screen::train_screen(&o)?;
            let v = &r.spec.validation;
            let t = &r.spec.thresholds;
            println!(
                "trained {} members on {} exemplars ({} held for validation) in {:.1} s",
                r.losses.len(),
                r.spec.training.examples,
                r.spec.training.validation_examples,
                r.seconds,
            );
            for (seed, first, last) in &r.losses {
                println!("  seed {seed}: epoch loss {first:.4} -> {last:.4}");
            }
            println!(
                "thresholds: moderate {:.3}, high {:.3}, imminent {:.3}",
                t.moderate, t.high, t.imminent
            );
            println!(
                "validation (thresholds were set here: a fit): acute -> high+ {}/{}, elevated -> moderate+ {}/{}, false alarms {}/{}",
                v.acute[0], v.acute[1], v.elevated[0], v.elevated[1], v.false_alarms[0], v.false_alarms[1]
            );
            println!("wrote {} (rebuild psy to use it)", r.screen_toml.display());
        }
        Command::Eval {
            command: None,
            manifest,
            opts,
        } => {
            let Some(manifest) = manifest else {
                anyhow::bail!("give a run manifest (psy eval M), `psy eval risk FILE...` or `psy eval agree A B`");
            };
            let out = psy::eval::eval_run(&manifest, &opts.options(1))?;
            print!("{}", out.markdown);
            eprintln!("wrote {}", out.dir.display());
        }
        Command::Ablate {
            ablation,
            opts,
            jobs,
        } => {
            let out = psy::eval::ablate(&ablation, &opts.options(jobs))?;
            print!("{}", out.markdown);
            eprintln!("wrote {}", out.dir.display());
        }
        Command::Eval {
            command:
                Some(EvalCommand::Risk {
                    manifest,
                    sets,
                    json,
                }),
            ..
        } => {
            for set in &sets {
                let report = psy::eval_risk(&manifest, set)?;
                if json {
                    println!("{}", serde_json::to_string(&report)?);
                } else {
                    print!("{}", report.to_text());
                }
            }
        }
        Command::Eval {
            command: Some(EvalCommand::Agree { a, b, json }),
            ..
        } => {
            let report = psy::eval::agree(&a, &b)?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{}", report.to_text());
            }
        }
        Command::ClinicalReport {
            manifest,
            sets,
            misses,
        } => print!(
            "{}",
            psy::clinical_report::report(&manifest, &sets, misses)?
        ),
        Command::Plan {
            manifest,
            message,
            dialogue,
            json,
            ..
        } => {
            let plan = psy::plan(&manifest, message.as_deref(), dialogue.as_deref())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&plan)?);
            } else {
                print!("{}", plan.to_text());
            }
        }
        Command::Counsel {
            manifest,
            model,
            script,
            save,
            show_plan,
            replay,
            full_prompt,
            upstream,
        } => psy::counsel(psy::CounselArgs {
            manifest,
            model,
            script,
            save,
            show_plan,
            replay,
            full_prompt,
            upstream: upstream.config(),
        })?,
        Command::Serve {
            manifest,
            model,
            raw,
            tokenizer,
            upstream,
            addr,
            queue,
            max_batch,
            max_connections,
            max_body_bytes,
        } => {
            let max_batch = max_batch.unwrap_or(if raw {
                psy::serve::DEFAULT_MAX_BATCH
            } else {
                1
            });
            let mut options = psy::serve::ServeOptions {
                queue,
                max_batch,
                max_connections,
                ..Default::default()
            };
            options.limits.max_body_bytes = max_body_bytes;
            let upstream = upstream.config();
            let backend = if raw {
                psy::serve::Backend::Raw { model, tokenizer }
            } else {
                psy::serve::Backend::Counsel {
                    manifest,
                    model,
                    upstream,
                }
            };
            psy::serve::serve(backend, &addr, options)?
        }
        Command::Generate {
            model,
            adapter,
            prompt,
            chat,
            input_ids,
            sampling,
            json_schema,
            json,
        } => {
            let mut cfg = sampling.config();
            if let Some(file) = json_schema {
                cfg.json_schema = Some(psy::read_json_schema(&file)?);
            }
            let input = match (prompt, chat, input_ids) {
                (Some(p), _, _) => psy::GenerateInput::Prompt(p),
                (_, Some(c), _) => psy::GenerateInput::Chat(c),
                (_, _, Some(ids)) => psy::GenerateInput::Ids(ids),
                _ => anyhow::bail!("give --prompt, --chat or --input-ids"),
            };
            psy::generate(model.as_deref(), adapter.as_deref(), input, &cfg, json)?;
        }
        Command::Tokenize {
            tokenizer,
            text,
            file,
            json,
        } => {
            let text = match (text, file) {
                (Some(t), _) => t,
                (_, Some(f)) => std::fs::read_to_string(&f)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?,
                _ => anyhow::bail!("give --text or --file"),
            };
            print!("{}", psy::tokenize(tokenizer.as_deref(), &text, json)?);
        }
        Command::Embed {
            texts,
            encoder,
            json,
        } => print!("{}", psy::embed(&texts, encoder.as_deref(), json)?),
        Command::Chat {
            model,
            manifest,
            sampling,
        } => psy::chat(model.as_deref(), &manifest, &sampling.config())?,
        Command::Train {
            manifest,
            output,
            resume,
            dry_run,
            export_job,
            engine,
            nodes,
            gpus_per_node,
        } => match export_job {
            Some(dir) => {
                let cluster = psy_lm::training::export_job::Cluster {
                    nodes,
                    gpus_per_node,
                };
                let s = psy_lm::training::export_job::export_job(&manifest, &dir, engine, cluster)?;
                println!("{}", psy_lm::training::export_job::describe(&s));
            }
            None => {
                psy_lm::training::run(&manifest, output.as_deref(), resume, dry_run)?;
            }
        },
        Command::Synth {
            manifest,
            output,
            resume,
            dry_run,
            report,
        } => {
            if dry_run {
                print!("{}", psy::synth::dry_run(&manifest)?);
            } else if report {
                print!(
                    "{}",
                    psy::synth::report(&manifest, output.as_deref())?.to_text()
                );
            } else {
                let opts = psy::synth::SynthOptions {
                    manifest,
                    output,
                    resume,
                    progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
                };
                print!("{}", psy::synth::synthesize(&opts)?.to_text());
            }
        }
        Command::Data {
            command: DataCommand::Stats { file, output, json },
        } => {
            let (stats, dir) = psy::synth::data_stats(&file, output.as_deref())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&stats)?);
            } else {
                print!("{}", stats.to_text());
                eprintln!("wrote {}/stats.json, stats.png, stats.svg", dir.display());
            }
        }
        Command::Manifest {
            command: ManifestCommand::Check { manifest },
        } => {
            print!("{}", psy::check_manifest(&manifest)?);
            eprintln!("ok: {}", manifest.display());
        }
        Command::Plugins {
            command:
                PluginsCommand::List {
                    manifest,
                    plugins,
                    json,
                },
        } => {
            let rows = psy::list_plugins(manifest.as_deref(), &plugins)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!("{:<24} {:<11} {:<8} SOURCE", "ID", "KIND", "VERSION");
                for r in rows {
                    println!("{:<24} {:<11} {:<8} {}", r.id, r.kind, r.version, r.source);
                }
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    // Rust ignores SIGPIPE, so printing into a closed pipe (`psy plan ... | head`) would panic;
    // like other command-line tools, psy ends quietly instead.
    #[cfg(unix)]
    // SAFETY: resetting a signal's disposition to its default at start-up, before any thread.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    psy::keep_freed_memory();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PSY_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
