//! What a training run reads before it touches a model: the manifest's `[train]` section, the
//! base model's configuration (an HF directory's `config.json`, or a GGUF file's metadata), the
//! tokenizer and the one chat template (a GGUF base's own, as at inference), the dialogues split
//! into training and validation, and the run's modules, which condition each turn's system
//! prompt and review every trained turn. `psy train` renders these into samples; `psy train
//! --export-job` writes the same message lists for another trainer.

use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::data::{read_dataset, Conversation, DataReport};
use super::error::{io, Result, TrainError};
use super::render::{RenderConfig, SampleRenderer, CHATML_TEMPLATE};
use crate::runtime::chat_template::{ChatMessage, ChatTemplate};
use crate::runtime::tokenizer::Tokenizer;
use crate::runtime::weights::GgufSource;
use crate::runtime::ModelConfig;
use psy_core::manifest::{self, TrainSection};
use psy_core::planner::Planner;

/// A manifest's training data, ready to render.
pub struct TrainingData {
    pub manifest: PathBuf,
    pub run: manifest::ResolvedRun,
    pub train: TrainSection,
    /// The base model (`[model] path`, `$PSY_ASSETS` expanded; empty = the default model): an
    /// HF directory, or a `.gguf` file whose tokenizer and chat template are its own.
    pub model_dir: PathBuf,
    /// Where the tokenizer was read from (copied into exports).
    pub tokenizer_path: PathBuf,
    pub tokenizer: Tokenizer,
    pub template: ChatTemplate,
    /// The template's Jinja source (written into exports).
    pub template_source: Option<String>,
    pub planner: Planner,
    pub convs: Vec<Conversation>,
    pub val_convs: Vec<Conversation>,
    /// What reading the data skipped, by reason; rendering adds its own counts.
    pub report: DataReport,
}

impl TrainingData {
    /// Reads everything `[train]` names: tokenizer, template, dataset (split by `seed` and
    /// `validation_ratio` unless a validation file is given) and the run's modules.
    pub fn load(manifest_path: &Path) -> Result<TrainingData> {
        let run =
            manifest::load_run(manifest_path).map_err(|e| mf(manifest_path, e.to_string()))?;
        let m = &run.manifest;
        let t = m.train.clone();
        if t.dataset.is_empty() {
            return Err(mf(manifest_path, "[train] dataset is empty"));
        }
        let model_dir = if m.model.path.trim().is_empty() {
            crate::runtime::default_model_path()?
        } else {
            expand(&m.model.path)
        };
        let tok_path = if m.model.tokenizer.is_empty() {
            model_dir.clone()
        } else {
            expand(&m.model.tokenizer)
        };
        let tokenizer = Tokenizer::from_path(&tok_path)
            .map_err(|e| TrainError::Tokenizer(format!("{}: {e}", tok_path.display())))?;
        let template = load_template(&t, &tokenizer, manifest_path)?;
        let template_source = template_source(&t, &tokenizer, manifest_path);

        let mut report = DataReport::default();
        let mut convs = read_dataset(&expand(&t.dataset), t.format, t.on_bad_record, &mut report)?;
        let val_convs: Vec<Conversation> = if !t.validation_file.is_empty() {
            read_dataset(
                &expand(&t.validation_file),
                t.format,
                t.on_bad_record,
                &mut report,
            )?
        } else {
            let mut rng = rand::rngs::StdRng::seed_from_u64(t.seed);
            convs.shuffle(&mut rng);
            let n = ((convs.len() as f64) * t.validation_ratio).round() as usize;
            let n = if t.validation_ratio > 0.0 && convs.len() >= 2 {
                n.max(1)
            } else {
                0
            };
            convs.drain(..n).collect()
        };
        let planner =
            Planner::from_path(manifest_path).map_err(|e| mf(manifest_path, e.to_string()))?;
        Ok(TrainingData {
            manifest: manifest_path.to_path_buf(),
            train: t,
            model_dir,
            tokenizer_path: tok_path,
            tokenizer,
            template,
            template_source,
            planner,
            convs,
            val_convs,
            report,
            run,
        })
    }

    /// Whether the base model is a GGUF file (dequantised to f32 for training; LoRA only).
    pub fn is_gguf(&self) -> bool {
        is_gguf(&self.model_dir)
    }

    /// The base model's configuration and the JSON that checkpoints record: `config.json` of
    /// an HF directory, or the configuration read from a GGUF file's metadata (no weight read).
    pub fn model_config(&self) -> Result<(ModelConfig, String)> {
        if self.is_gguf() {
            let (_, config) = GgufSource::open(&self.model_dir, true)?;
            let json = serde_json::to_string_pretty(&config)
                .map_err(|e| TrainError::Invalid(format!("{}: {e}", self.model_dir.display())))?;
            return Ok((config, json));
        }
        let path = self.model_dir.join("config.json");
        let json = std::fs::read_to_string(&path).map_err(io(&path))?;
        Ok((ModelConfig::from_hf_file(&path)?, json))
    }

    /// Calls `f` with the run's renderer: the manifest's placement, weights and `max_len`, plan
    /// conditioning when enabled, and every trained turn reviewed by the run's modules
    /// (`Module::review_sample`).
    pub fn with_renderer<R>(&self, f: impl FnOnce(&SampleRenderer) -> R) -> R {
        let t = &self.train;
        let plan_prompt = |history: &[ChatMessage]| -> String {
            self.planner.plan(&dialogue_of(history)).prompt.system
        };
        let review = |turn: &[ChatMessage]| -> std::result::Result<(), (String, String)> {
            let Some((reply, history)) = turn.split_last() else {
                return Ok(());
            };
            let dialogue = dialogue_of(history);
            let view = psy_core::module::SampleView {
                dialogue: &dialogue,
                reasoning: reply.reasoning_content.as_deref().unwrap_or(""),
                reply: &reply.content,
            };
            for module in self.planner.active() {
                module
                    .review_sample(&view)
                    .map_err(|reason| (module.spec().module.id.clone(), reason))?;
            }
            Ok(())
        };
        let renderer = SampleRenderer {
            template: &self.template,
            tokenizer: &self.tokenizer,
            config: RenderConfig {
                placement: t.placement,
                reasoning_weight: t.reasoning_weight,
                reply_weight: t.reply_weight,
                last_turn_only: t.last_turn_only,
                max_len: t.max_len,
            },
            system_for_turn: if t.plan_conditioning {
                Some(&plan_prompt)
            } else {
                None
            },
            review: Some(&review),
        };
        f(&renderer)
    }
}

/// The dialogue modules read from a chat history (system messages are the run's, not the
/// client's or the counselor's).
fn dialogue_of(history: &[ChatMessage]) -> psy_core::dialogue::Dialogue {
    use psy_core::dialogue::{Dialogue, Message, Role};
    let msgs = history
        .iter()
        .filter(|m| m.role != "system")
        .map(|m| Message {
            role: if m.role == "user" {
                Role::User
            } else {
                Role::Assistant
            },
            content: m.content.clone(),
            reasoning_content: None,
        })
        .collect();
    Dialogue::new(msgs)
}

/// A `.gguf` file (not an HF directory).
pub fn is_gguf(path: &Path) -> bool {
    path.is_file() && path.extension().is_some_and(|e| e == "gguf")
}

/// Expands a leading `$PSY_ASSETS` (default `~/.cache/psy/assets`), where test assets live.
pub fn expand(p: &str) -> PathBuf {
    crate::runtime::assets::expand_assets(p)
}

pub(super) fn mf(path: &Path, msg: impl Into<String>) -> TrainError {
    TrainError::Manifest {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

fn load_template(t: &TrainSection, tok: &Tokenizer, manifest: &Path) -> Result<ChatTemplate> {
    let src = match t.chat_template.as_str() {
        "" => tok
            .chat_template_source()
            .ok_or_else(|| {
                mf(
                    manifest,
                    "the tokenizer has no chat template; set [train] chat_template",
                )
            })?
            .to_string(),
        "chatml" => CHATML_TEMPLATE.to_string(),
        p => {
            let path = manifest.parent().unwrap_or(Path::new(".")).join(expand(p));
            std::fs::read_to_string(&path).map_err(io(&path))?
        }
    };
    ChatTemplate::from_source(&src, tok.bos_token(), tok.eos_token())
        .map_err(|e| TrainError::Template(e.to_string()))
}

fn template_source(t: &TrainSection, tok: &Tokenizer, manifest: &Path) -> Option<String> {
    match t.chat_template.as_str() {
        "" => tok.chat_template_source().map(str::to_string),
        "chatml" => Some(CHATML_TEMPLATE.to_string()),
        p => std::fs::read_to_string(manifest.parent().unwrap_or(Path::new(".")).join(expand(p)))
            .ok(),
    }
}
