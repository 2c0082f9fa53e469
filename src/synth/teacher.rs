//! Teachers: the model answering a stage, behind psy-eval's structured-completion client (the
//! judge loop: request under a JSON schema, parse, validate, repair, retry with backoff). A
//! remote teacher is any OpenAI-compatible endpoint (a hosted model, vLLM, `psy serve`: only
//! the URL differs); a local teacher is a psy model decoding in-process under the schema.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use psy_core::synth_spec::{TeacherKind, TeacherSection};
use psy_eval::judge::{
    ChatMessage, Judge, JudgeBackend, JudgeCall, JudgeError, OpenAiBackend, OpenAiConfig,
    TokenUsage,
};
use serde_json::Value;

use crate::eval::local_judge::LocalJudge;

/// One validated answer.
pub struct Answer<T> {
    pub value: T,
    /// The teacher's text as it came (reasoning of a reasoning model in front, in `<think>`).
    pub raw: String,
    /// Replies it took (1 without repairs).
    pub attempts: u32,
}

/// Tokens used by every teacher of a run, against the manifest's budget. A reply's tokens are
/// the ones its teacher reported (an endpoint's `usage`, a local model's own count); a reply
/// that came without a count is estimated at four characters a token, and kept apart so the
/// report says how much of the total is an estimate.
#[derive(Default)]
pub struct Budget {
    limit: u64,
    reported: AtomicU64,
    estimated: AtomicU64,
}

impl Budget {
    pub fn new(limit: u64) -> Budget {
        Budget {
            limit,
            ..Budget::default()
        }
    }
    pub fn used(&self) -> u64 {
        self.reported() + self.estimated()
    }
    /// Tokens the teachers reported.
    pub fn reported(&self) -> u64 {
        self.reported.load(Ordering::Relaxed)
    }
    /// Tokens estimated from characters, for replies without a count.
    pub fn estimated(&self) -> u64 {
        self.estimated.load(Ordering::Relaxed)
    }
    pub fn exhausted(&self) -> bool {
        self.limit > 0 && self.used() >= self.limit
    }
    /// One call's replies: their reported tokens, or the character estimate when any reply
    /// came without a count.
    fn add(&self, usage: Option<TokenUsage>, estimate_chars: usize) {
        match usage {
            Some(u) => self.reported.fetch_add(u.total(), Ordering::Relaxed),
            None => self
                .estimated
                .fetch_add(estimate_chars.div_ceil(4) as u64, Ordering::Relaxed),
        };
    }
}

/// Why a call gave no answer, as the report counts it.
#[derive(Debug)]
pub enum AskError {
    /// The token budget ran out before the call.
    Budget,
    Teacher(JudgeError),
}

impl AskError {
    /// The reason the report counts this failure under.
    pub fn reason(&self) -> &'static str {
        match self {
            AskError::Budget => "token budget exhausted",
            AskError::Teacher(e) => match e.innermost() {
                JudgeError::Invalid { .. } => "invalid output after repairs",
                JudgeError::Unavailable { .. } => "endpoint unavailable after retries",
                JudgeError::Rejected { .. } => "request rejected",
                JudgeError::BadResponse { .. } => "malformed response",
                JudgeError::Backend { .. } => "local model error",
                _ => "teacher error",
            },
        }
    }
}

impl std::fmt::Display for AskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AskError::Budget => write!(f, "the token budget is used up"),
            AskError::Teacher(e) => write!(f, "{e}"),
        }
    }
}

pub struct Teacher {
    judge: Judge,
    section: TeacherSection,
    budget: Arc<Budget>,
}

impl Teacher {
    pub fn id(&self) -> &str {
        self.judge.backend_id()
    }

    /// An answer to `messages` valid under `schema` and `check`.
    #[allow(clippy::too_many_arguments)]
    pub fn ask<T>(
        &self,
        stage: &str,
        item: &str,
        messages: Vec<ChatMessage>,
        schema: Value,
        max_tokens: usize,
        seed: u64,
        check: &dyn Fn(&Value) -> Result<T, String>,
    ) -> Result<Answer<T>, AskError> {
        if self.budget.exhausted() {
            return Err(AskError::Budget);
        }
        let prompt_chars: usize = messages.iter().map(|m| m.content.len()).sum();
        let call = JudgeCall {
            messages,
            schema,
            schema_name: format!("psy_synth_{stage}"),
            temperature: self.section.temperature,
            max_tokens,
            seed: Some(seed),
            repeat: 0,
            rubric_key: format!("synth:{stage}"),
            item: item.to_string(),
        };
        let result = self.judge.judge(&call, check);
        match result {
            Ok(j) => {
                let attempts = j.attempts.max(1);
                self.budget
                    .add(j.usage, prompt_chars * attempts as usize + j.raw.len());
                Ok(Answer {
                    value: j.value,
                    raw: j.raw,
                    attempts,
                })
            }
            Err(e) => {
                if let JudgeError::Invalid {
                    attempts, usage, ..
                } = e.innermost()
                {
                    self.budget.add(*usage, prompt_chars * *attempts as usize);
                }
                Err(AskError::Teacher(e))
            }
        }
    }
}

/// Builds teachers, loading each distinct model or endpoint once.
pub struct Teachers {
    backends: HashMap<String, Arc<dyn JudgeBackend>>,
    pub budget: Arc<Budget>,
}

impl Teachers {
    pub fn new(budget: Arc<Budget>) -> Teachers {
        Teachers {
            backends: HashMap::new(),
            budget,
        }
    }

    pub fn build(&mut self, stage: &str, section: &TeacherSection) -> Result<Teacher, String> {
        let key = format!(
            "{:?}|{}|{}|{}|{}|{}",
            section.kind,
            section.base_url,
            section.model,
            section.api_key_env,
            section.timeout_secs,
            section.max_attempts
        );
        let backend = match self.backends.get(&key) {
            Some(b) => b.clone(),
            None => {
                let b = backend(section).map_err(|e| format!("stage {stage}: {e}"))?;
                self.backends.insert(key, b.clone());
                b
            }
        };
        Ok(Teacher {
            judge: Judge::new(backend).with_repair_attempts(section.repair_attempts),
            section: section.clone(),
            budget: self.budget.clone(),
        })
    }
}

fn backend(section: &TeacherSection) -> Result<Arc<dyn JudgeBackend>, String> {
    match section.kind {
        TeacherKind::Openai => {
            let mut cfg = OpenAiConfig::new(section.base_url.trim(), section.model.trim());
            let var = section.api_key_env.trim();
            cfg.api_key_env = (!var.is_empty()).then(|| var.to_string());
            cfg.timeout = Duration::from_secs(section.timeout_secs);
            cfg.max_attempts = section.max_attempts;
            Ok(Arc::new(
                OpenAiBackend::new(cfg).map_err(|e| e.to_string())?,
            ))
        }
        TeacherKind::Psy => {
            let path = if section.model.trim().is_empty() {
                psy_lm::runtime::default_model_path().map_err(|e| e.to_string())?
            } else {
                PathBuf::from(section.model.trim())
            };
            let judge = LocalJudge::load(&path).map_err(|e| format!("{e:#}"))?;
            Ok(Arc::new(judge))
        }
    }
}
