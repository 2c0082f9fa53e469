//! The `psy` program's library: it links every built-in module crate, so that their
//! `inventory` registrations reach the binary (an rlib that nothing names is dropped by the
//! linker, registrations and all), and it holds the small command functions `main.rs` calls.
//!
//! To add a built-in module crate: add it to the workspace, to `[dependencies]` of the root
//! `Cargo.toml`, and to the `use ... as _;` list below.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

pub mod clinical_report;
pub mod eval;
pub mod f32_safetensors;
pub mod screen_member_cache;
pub mod screen_report;
pub mod serve;
pub mod synth;
pub mod train_screen;
pub mod upstream;
use psy_core::dialogue::Dialogue;
use psy_core::manifest::{self, ManifestError};
use psy_core::module::RiskLevel;
use psy_core::planner::{Plan, Planner};
use psy_core::registry::Registry;

// Name each built-in crate once so the linker keeps it (and its registrations). This list
// is the single place that says which modules ship with psy.
use psy_act as _;
use psy_cbt as _;
use psy_dbt as _;
use psy_diagnostics as _;
use psy_family_systems as _;
use psy_humanistic as _;
use psy_mi as _;
use psy_psychodynamic as _;
use psy_safety as _;

/// `mi_option_purge_delay` in mimalloc.h (v3): how long freed memory waits before mimalloc
/// returns it to the kernel.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Tells mimalloc (the binary's and the benches' allocator) to keep freed memory. Training and
/// prefill free and reallocate the same large tensors every step; returned memory comes back
/// as fresh pages the kernel must zero: a third of a Qwen3-0.6B LoRA step under perf.
pub fn keep_freed_memory() {
    // SAFETY: sets an integer option; mimalloc reads options atomically, at any time.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

/// The registry of built-in modules.
pub fn builtin_registry() -> Result<Registry, ManifestError> {
    Registry::builtin()
}

/// The default run manifest: `manifests/psyllm.toml` under the current directory.
pub fn default_manifest() -> PathBuf {
    PathBuf::from("manifests/psyllm.toml")
}

/// Binds a run manifest to the built-in modules and its plugins without loading the sentence
/// encoder: for commands that read the resolved run or its registry and never plan.
fn bind(manifest: &Path) -> Result<Planner, ManifestError> {
    Planner::new(manifest::load_run(manifest)?, builtin_registry()?)
}

/// Binds a run manifest to the built-in modules and its plugins, and lends them the run's
/// sentence encoder (`[assessment] encoder`, default all-MiniLM-L6-v2). Refuses to start when
/// the encoder cannot be loaded: the crisis guard's screen depends on it.
pub fn planner(manifest: &Path) -> Result<Planner, ManifestError> {
    planner_for_run(manifest::load_run(manifest)?)
}

/// [`planner`] for a run already resolved (an ablation's variant).
pub fn planner_for_run(run: manifest::ResolvedRun) -> Result<Planner, ManifestError> {
    let encoder = run.manifest.assessment.encoder.trim().to_string();
    let location = if encoder.is_empty() {
        run.origin()
    } else {
        run.locate("encoder")
    };
    let dir = (!encoder.is_empty()).then(|| PathBuf::from(&encoder));
    let embedder = psy_lm::encoder::shared_embedder(dir.as_deref()).map_err(|e| {
        ManifestError::Assessment {
            location: location.clone(),
            reason: format!("sentence encoder: {e}"),
        }
    })?;
    let screen = psy_safety::screen::builtin().map_err(|reason| ManifestError::Assessment {
        location: location.clone(),
        reason,
    })?;
    screen
        .verify(&*embedder)
        .map_err(|reason| ManifestError::Assessment { location, reason })?;
    Ok(Planner::new(run, builtin_registry()?)?.with_embedder(embedder))
}

/// `psy plan`: the plan for a message or a dialogue file, as text or JSON.
pub fn plan(manifest: &Path, message: Option<&str>, dialogue: Option<&Path>) -> Result<Plan> {
    let planner = planner(manifest)?;
    let dialogue = match (message, dialogue) {
        (Some(m), None) => Dialogue::from_message(m),
        (None, Some(p)) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("{}: cannot read dialogue", p.display()))?;
            Dialogue::parse(&text, &p.display().to_string())?
        }
        _ => bail!("give either --message or --dialogue"),
    };
    Ok(planner.plan(&dialogue))
}

/// One input of `psy plan --batch`: a line's id and its dialogue.
pub struct BatchInput {
    pub id: String,
    pub dialogue: Dialogue,
}

/// Reads `psy plan --batch` input: JSONL whose lines hold `text` (one client message), `turns`
/// (client turns, oldest first) or `messages` (`[{role, content}]`), with an optional `id`.
pub fn read_batch(path: &Path) -> Result<Vec<BatchInput>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read batch file", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("{}:{}", path.display(), i + 1);
        let v: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("{at}: invalid JSON"))?;
        let dialogue = if let Some(m) = v.get("messages") {
            let messages = serde_json::from_value(m.clone())
                .with_context(|| format!("{at}: `messages` is not a list of {{role, content}}"))?;
            Dialogue::new(messages)
        } else if let Some(t) = v.get("text").and_then(|t| t.as_str()) {
            Dialogue::from_message(t)
        } else if let Some(ts) = v.get("turns").and_then(|t| t.as_array()) {
            let turns: Option<Vec<_>> = ts
                .iter()
                .map(|t| t.as_str().map(psy_core::dialogue::Message::user))
                .collect();
            Dialogue::new(turns.with_context(|| format!("{at}: `turns` holds a non-string"))?)
        } else {
            bail!("{at}: expected a string `text`, a list `turns` or a list `messages`");
        };
        if dialogue.client_turns().next().is_none() {
            bail!("{at}: no client message");
        }
        let id = v
            .get("id")
            .and_then(|x| x.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| format!("line-{}", i + 1));
        out.push(BatchInput { id, dialogue });
    }
    Ok(out)
}

/// `psy plan --batch`: one plan per input line, planned by one planner in one process.
pub fn plan_batch(manifest: &Path, batch: &Path) -> Result<Vec<(String, Plan)>> {
    let planner = planner(manifest)?;
    Ok(read_batch(batch)?
        .into_iter()
        .map(|b| {
            let plan = planner.plan(&b.dialogue);
            (b.id, plan)
        })
        .collect())
}

/// `psy eval risk`: the crisis guard of a run scored on a labelled risk set (per expectation
/// how many held, false alarms, misses by id, 95% Wilson intervals).
pub fn eval_risk(manifest: &Path, set: &Path) -> Result<psy_core::risk_eval::RiskReport> {
    let planner = planner(manifest)?;
    let items = psy_core::risk_eval::read_risk_set(set)?;
    Ok(psy_core::risk_eval::score(
        &set.display().to_string(),
        &items,
        |item| {
            let risk = planner.plan(&item.dialogue()).risk;
            psy_core::risk_eval::Rating {
                client: risk.client_level(),
                reply: risk.level,
            }
        },
    ))
}

/// `psy manifest check`: validates a run or ablation manifest and returns it resolved, as TOML.
pub fn check_manifest(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read manifest", path.display()))?;
    let is_ablation = text
        .lines()
        .any(|l| l.trim_start().starts_with("[ablation]"));
    if is_ablation {
        let ab = manifest::load_ablation(path)?;
        let mut out = format!(
            "# ablation `{}`: base {} with {} variants\n",
            ab.manifest.ablation.name,
            ab.base.origin(),
            ab.variants.len()
        );
        for (name, run) in &ab.variants {
            Planner::new(run.clone(), builtin_registry()?).map_err(|e| ManifestError::Variant {
                origin: path.display().to_string(),
                variant: name.clone(),
                source: Box::new(e),
            })?;
            out.push_str(&format!(
                "\n# --- variant `{name}` ---\n{}",
                toml::to_string(&run.manifest)?
            ));
        }
        Ok(out)
    } else {
        let planner = bind(path)?;
        Ok(format!(
            "# resolved from {}\n{}",
            planner
                .run()
                .files
                .iter()
                .map(|f| f.path.display().to_string())
                .collect::<Vec<_>>()
                .join(" <- "),
            toml::to_string(&planner.run().manifest)?
        ))
    }
}

/// One row of `psy plugins list`.
#[derive(Debug, serde::Serialize)]
pub struct PluginRow {
    pub id: String,
    pub kind: String,
    pub version: String,
    pub name: String,
    pub source: String,
}

/// `psy plugins list`: built-in modules plus the plugins a manifest or `--plugin` names.
pub fn list_plugins(manifest: Option<&Path>, extra: &[PathBuf]) -> Result<Vec<PluginRow>> {
    let registry = match manifest {
        Some(m) => bind(m)?.registry().clone(),
        None => builtin_registry()?,
    };
    let mut registry = registry;
    for p in extra {
        registry.load_plugin(p)?;
    }
    Ok(registry
        .entries()
        .iter()
        .map(|e| PluginRow {
            id: e.spec().module.id.clone(),
            kind: e.spec().module.kind.to_string(),
            version: e.spec().module.version.clone(),
            name: e.spec().module.name.clone(),
            source: e.source.to_string(),
        })
        .collect())
}

// ------------------------------------------------------------------ sessions and generation

use std::io::{BufRead, Write};
use std::ops::ControlFlow;

use psy_lm::runtime::{self, chat_template, tokenizer::Tokenizer};
use psy_lm::session::{self, Counselor, Delta, ModelDrafter, Session};

/// The model a command runs: `--model`, else the manifest's `[model] path` (relative to the
/// manifest), else the default model from the setup step.
pub fn resolve_model(model: Option<&Path>, manifest: Option<&Path>) -> Result<PathBuf> {
    if let Some(m) = model {
        return Ok(m.to_path_buf());
    }
    if let Some(mf) = manifest {
        let run = manifest::load_run(mf)?;
        let p = run.manifest.model.path.trim();
        if p.starts_with("$PSY_ASSETS") {
            return asset_model(p);
        }
        if !p.is_empty() {
            return Ok(mf.parent().unwrap_or(Path::new(".")).join(p));
        }
    }
    Ok(runtime::default_model_path()?)
}

/// A `[model] path` under `$PSY_ASSETS`: a file the setup step fetches.
fn asset_model(p: &str) -> Result<PathBuf> {
    let path = runtime::expand_assets(p);
    anyhow::ensure!(
        path.exists(),
        "model {} (`{p}` in the manifest) is missing: run scripts/setup.sh (or pass --model PATH)",
        path.display()
    );
    Ok(path)
}

/// A counselor for `manifest`, decoding with `model` (see [`resolve_model`]).
pub fn counselor(manifest: &Path, model: Option<&Path>) -> Result<Counselor> {
    let run = manifest::load_run(manifest)?;
    let model = resolve_model(model, Some(manifest))?;
    let tok = run.manifest.model.tokenizer.trim().to_string();
    let tok = (!tok.is_empty()).then(|| manifest.parent().unwrap_or(Path::new(".")).join(tok));
    // The model loads while the planner loads the sentence encoder and checks the crisis
    // screen: the two take similar time at startup and run on different cores.
    std::thread::scope(|s| {
        let drafter = s.spawn(|| load_drafter(&model, tok.as_deref()));
        let planner = planner_for_run(run);
        let drafter = drafter
            .join()
            .map_err(|_| anyhow::anyhow!("loading model {} panicked", model.display()))??;
        Ok(Counselor::new(planner?, Box::new(drafter)))
    })
}

/// A counselor for a resolved run (its `[model]` paths are already absolute), decoding with
/// `model` or the run's model.
pub fn counselor_for_run(run: manifest::ResolvedRun, model: Option<&Path>) -> Result<Counselor> {
    let model = match model {
        Some(m) => m.to_path_buf(),
        None => run_model(&run)?,
    };
    let tok = run.manifest.model.tokenizer.trim().to_string();
    let tok = (!tok.is_empty()).then(|| PathBuf::from(tok));
    counselor_with(planner_for_run(run)?, &model, tok.as_deref())
}

/// The model file a resolved run decodes with: its `[model] path`, else the default model.
pub fn run_model(run: &manifest::ResolvedRun) -> Result<PathBuf> {
    let p = run.manifest.model.path.trim();
    if p.is_empty() {
        Ok(runtime::default_model_path()?)
    } else if p.starts_with("$PSY_ASSETS") {
        asset_model(p)
    } else {
        Ok(PathBuf::from(p))
    }
}

/// A counselor for `manifest` whose drafts come from an OpenAI-compatible upstream; the
/// plan, prompts, guard and repairs stay here.
pub fn counselor_upstream(manifest: &Path, config: upstream::UpstreamConfig) -> Result<Counselor> {
    let url = config.base_url.clone();
    let drafter = upstream::UpstreamDrafter::new(config)
        .with_context(|| format!("connecting to the upstream {url}"))?;
    Ok(Counselor::new(planner(manifest)?, Box::new(drafter)))
}

pub(crate) fn counselor_with(
    planner: Planner,
    model: &Path,
    tok: Option<&Path>,
) -> Result<Counselor> {
    Ok(Counselor::new(planner, Box::new(load_drafter(model, tok)?)))
}

fn load_drafter(model: &Path, tok: Option<&Path>) -> Result<ModelDrafter> {
    ModelDrafter::load(model, tok).with_context(|| format!("loading model {}", model.display()))
}

/// Options of `psy counsel`.
pub struct CounselArgs {
    pub manifest: PathBuf,
    pub model: Option<PathBuf>,
    pub script: Option<PathBuf>,
    pub save: Option<PathBuf>,
    pub show_plan: bool,
    pub replay: Option<PathBuf>,
    /// Give the model the plan's full prompt instead of the compact one.
    pub full_prompt: bool,
    /// Draft with this OpenAI-compatible endpoint instead of a local model.
    pub upstream: Option<upstream::UpstreamConfig>,
}

/// Prints deltas as they stream: reasoning dimmed, content plain.
fn print_delta(state: &mut Option<bool>) -> impl FnMut(Delta) -> ControlFlow<()> + '_ {
    move |d| {
        let mut out = std::io::stdout().lock();
        let (reasoning, text) = match d {
            Delta::Reasoning(t) => (true, t),
            Delta::Content(t) => (false, t),
        };
        if *state != Some(reasoning) {
            let _ = write!(
                out,
                "{}",
                if reasoning {
                    "\n[reasoning] "
                } else {
                    "\ncounselor> "
                }
            );
            *state = Some(reasoning);
        }
        let _ = write!(out, "{text}");
        let _ = out.flush();
        ControlFlow::Continue(())
    }
}

fn run_turn(session: &mut Session, text: &str, show_plan: bool) -> Result<()> {
    let mut state = None;
    let turn = session.send(text, &mut print_delta(&mut state))?;
    println!();
    if show_plan {
        print!("{}", session::plan_summary_text(&turn.plan));
    }
    for v in &turn.violations {
        println!("  ! violated {} ({}): {}", v.rule, v.source, v.detail);
    }
    for r in &turn.repairs {
        println!("  + repaired {} by {}: {}", r.rule, r.action, r.detail);
    }
    println!(
        "  ({} ms, {} prompt + {} generated tokens)",
        turn.timings.total_ms as u64, turn.timings.prompt_tokens, turn.timings.completion_tokens
    );
    Ok(())
}

/// `psy counsel`: replay a transcript, run a script, or an interactive session.
pub fn counsel(a: CounselArgs) -> Result<()> {
    if let Some(path) = &a.replay {
        for t in session::read_transcript(path)? {
            println!("--- turn {} (risk {}) ---", t.turn, t.risk_level.as_str());
            print!("{}", session::format_turn(&t, a.show_plan));
        }
        return Ok(());
    }
    let style = if a.full_prompt {
        session::PromptStyle::Full
    } else {
        session::PromptStyle::Compact
    };
    let counselor = match a.upstream {
        Some(u) => counselor_upstream(&a.manifest, u)?,
        None => counselor(&a.manifest, a.model.as_deref())?,
    };
    let mut session = Session::new(counselor.with_prompt_style(style));
    if let Some(script) = &a.script {
        for msg in session::read_script(script)? {
            println!("\nclient> {msg}");
            run_turn(&mut session, &msg, a.show_plan)?;
        }
        if let Some(out) = &a.save {
            session.save(out)?;
            eprintln!("saved {} turns to {}", session.turns().len(), out.display());
        }
        return Ok(());
    }
    println!("psy counsel: type a message; /plan, /save FILE, /reset, /exit");
    let stdin = std::io::stdin();
    loop {
        print!("\nclient> ");
        std::io::stdout().flush()?;
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim();
        match line
            .split_once(' ')
            .map_or((line, ""), |(c, r)| (c, r.trim()))
        {
            ("", _) => continue,
            ("/exit", _) | ("/quit", _) => break,
            ("/reset", _) => {
                session.reset();
                println!("(new session)");
            }
            ("/plan", _) => match session.turns().last() {
                Some(t) => print!("{}", t.plan.to_text()),
                None => println!("(no turn yet)"),
            },
            ("/save", file) if !file.is_empty() => {
                session.save(Path::new(file))?;
                println!("saved {} turns to {file}", session.turns().len());
            }
            ("/save", _) => println!("usage: /save FILE"),
            _ => {
                if let Err(e) = run_turn(&mut session, line, a.show_plan) {
                    eprintln!("error: {e:#}");
                }
            }
        }
    }
    if let Some(out) = &a.save {
        session.save(out)?;
    }
    Ok(())
}

/// What `psy generate` starts from.
pub enum GenerateInput {
    Prompt(String),
    Chat(String),
    Ids(Vec<u32>),
}

/// Reads a JSON schema file for constrained decoding (`psy generate --json-schema`): a JSON
/// error names the file, line and column; a schema outside the supported subset names the file
/// and the keyword's path inside the schema.
pub fn read_json_schema(path: &Path) -> Result<runtime::grammar::JsonSchema> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}:{}:{}: invalid JSON: {e}",
            path.display(),
            e.line(),
            e.column()
        )
    })?;
    runtime::grammar::JsonSchema::parse(&value)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// `psy generate`: raw generation from a prompt, a chat message or token ids.
pub fn generate(
    model: Option<&Path>,
    adapter: Option<&Path>,
    input: GenerateInput,
    cfg: &runtime::GenerationConfig,
    json: bool,
) -> Result<()> {
    let path = resolve_model(model, None)?;
    let tok = runtime::load_tokenizer(&path)?;
    let ids = match (&input, &tok) {
        (GenerateInput::Ids(ids), _) => ids.clone(),
        (GenerateInput::Prompt(p), Some(t)) => t.encode(p, true)?,
        (GenerateInput::Chat(c), Some(t)) => {
            let tmpl = chat_template::ChatTemplate::for_tokenizer(t)
                .with_context(|| format!("{}: no chat template", path.display()))??;
            let text = tmpl.render(
                &[chat_template::ChatMessage::new("user", c.clone())],
                &chat_template::RenderOptions {
                    add_generation_prompt: true,
                    ..Default::default()
                },
            )?;
            t.encode(&text, false)?
        }
        _ => bail!("{}: no tokenizer; use --input-ids", path.display()),
    };
    let mut model = runtime::load_model(&path)?;
    if let Some(dir) = adapter {
        // A PEFT adapter (psy's or LLaMA-Factory's LoRA output) merged into f32 weights.
        model.model = psy_lm::training::adapter::apply_peft_adapter(model.model, dir)?;
    }
    let codec = tok.as_ref().map(|t| t as &dyn runtime::TextCodec);
    let mut out = runtime::generate(&model, codec, &[ids], cfg, &mut |ev| {
        if !json {
            print!("{}", ev.delta);
            let _ = std::io::stdout().flush();
        }
    })?;
    let out = out.pop().context("no output")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!();
        eprintln!(
            "[{} tokens, {:?}, prefill {:.0} tok/s, decode {:.1} tok/s]",
            out.generated_ids.len(),
            out.finish_reason,
            out.timings.prefill_tokens_per_second,
            out.timings.decode_tokens_per_second
        );
    }
    Ok(())
}

/// `psy tokenize`.
pub fn tokenize(tokenizer: Option<&Path>, text: &str, json: bool) -> Result<String> {
    let path = resolve_model(tokenizer, None)?;
    Ok(runtime::tokenize_cli::run_tokenize(&path, text, json)?)
}

/// `psy chat`: a plain chat with the model (no plan, no rules), for comparing with `counsel`.
/// `psy chat`: chat with a model behind the crisis guard. Each turn is planned; below high
/// risk the model's reply streams as it comes, at high risk and above the draft is held back
/// and kept only if it passes the crisis checks, with the tier's protocol (the protocol alone
/// when it fails). No other plan rules apply: `psy counsel` is the full pipeline.
pub fn chat(model: Option<&Path>, manifest: &Path, cfg: &runtime::GenerationConfig) -> Result<()> {
    let planner = planner(manifest)?;
    let path = resolve_model(model, None)?;
    let tok = Tokenizer::from_path(&path)?;
    let tmpl = chat_template::ChatTemplate::for_tokenizer(&tok)
        .with_context(|| format!("{}: no chat template", path.display()))??;
    let model = runtime::load_model(&path)?;
    let mut messages = Vec::new();
    let mut dialogue = Vec::new();
    println!("psy chat: model chat behind the crisis guard (no other plan rules); /exit to leave");
    loop {
        print!("\nyou> ");
        std::io::stdout().flush()?;
        let mut line = String::new();
        if std::io::stdin().lock().read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim();
        if line == "/exit" {
            break;
        }
        if line.is_empty() {
            continue;
        }
        dialogue.push(psy_core::dialogue::Message::user(line));
        let plan = planner.plan(&Dialogue::new(dialogue.clone()));
        let crisis = plan.risk.level >= RiskLevel::High;
        messages.push(chat_template::ChatMessage::new("user", line));
        let text = tmpl.render(
            &messages,
            &chat_template::RenderOptions {
                add_generation_prompt: true,
                ..Default::default()
            },
        )?;
        let ids = tok.encode(&text, false)?;
        print!("model> ");
        let mut out = runtime::generate(&model, Some(&tok), &[ids], cfg, &mut |ev| {
            // A crisis draft is checked whole before anything is shown.
            if !crisis {
                print!("{}", ev.delta);
                let _ = std::io::stdout().flush();
            }
        })?;
        let draft = out.pop().context("no output")?.content;
        let reply = if crisis {
            let r = session::crisis_reply(&draft, line, &plan);
            print!("{}", r.text);
            r.text
        } else {
            draft
        };
        println!();
        messages.push(chat_template::ChatMessage::new("assistant", &reply));
        dialogue.push(psy_core::dialogue::Message::assistant(&reply));
    }
    Ok(())
}

/// `psy embed`: sentence embeddings of `texts` with the encoder in `encoder` (default:
/// all-MiniLM-L6-v2 from setup); with exactly two texts, also their cosine similarity. Text
/// output is one `[i] text` line and one line of values per text; JSON is
/// `{"encoder", "dim", "embeddings": [{"text", "embedding"}], "cosine"}`.
pub fn embed(texts: &[String], encoder: Option<&Path>, json: bool) -> Result<String> {
    use psy_lm::encoder;
    let enc = encoder::shared(encoder)?;
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let vectors = enc.embed(&refs)?;
    let cos = match vectors.as_slice() {
        [a, b] => Some(encoder::cosine(a, b)),
        _ => None,
    };
    if json {
        let rows: Vec<_> = texts
            .iter()
            .zip(&vectors)
            .map(|(t, v)| serde_json::json!({ "text": t, "embedding": v }))
            .collect();
        let v = serde_json::json!({
            "encoder": enc.dir(),
            "dim": enc.dim(),
            "embeddings": rows,
            "cosine": cos,
        });
        return Ok(format!("{v}\n"));
    }
    let mut out = String::new();
    for (i, (t, v)) in texts.iter().zip(&vectors).enumerate() {
        let values: Vec<String> = v.iter().map(|x| format!("{x:.6}")).collect();
        out.push_str(&format!("[{}] {t}\n{}\n", i + 1, values.join(" ")));
    }
    if let Some(c) = cos {
        out.push_str(&format!("cosine similarity: {c:.4}\n"));
    }
    Ok(out)
}
