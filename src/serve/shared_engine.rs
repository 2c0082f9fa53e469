//! Responder factories for `--max-batch` above 1: the model loads once, onto a batch engine,
//! the first time a worker builds its responder; every worker's responder (and every rebuild
//! after a panic) drafts on that engine, so their requests decode together.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use psy_lm::runtime::tokenizer::Tokenizer;
use psy_lm::runtime::EngineHandle;
use psy_lm::session::{Counselor, EngineDrafter};

use super::raw_responder::RawResponder;

/// Counselors of `manifest`, each with its own planner, drafting on one engine with `model`
/// (default: the manifest's).
pub fn counselors(
    manifest: PathBuf,
    model: Option<PathBuf>,
    max_batch: usize,
) -> impl FnMut() -> Result<Counselor> + Send {
    let mut shared: Option<(psy_core::manifest::ResolvedRun, EngineDrafter)> = None;
    move || {
        let (run, drafter) = match &shared {
            Some(s) => s.clone(),
            None => {
                let run = psy_core::manifest::load_run(&manifest)?;
                let model = crate::resolve_model(model.as_deref(), Some(&manifest))?;
                let tok = run.manifest.model.tokenizer.trim().to_string();
                let tok = (!tok.is_empty())
                    .then(|| manifest.parent().unwrap_or(Path::new(".")).join(tok));
                let drafter = EngineDrafter::load(&model, tok.as_deref(), max_batch)
                    .with_context(|| format!("loading model {}", model.display()))?;
                shared.insert((run, drafter)).clone()
            }
        };
        Ok(Counselor::new(
            crate::planner_for_run(run)?,
            Box::new(drafter),
        ))
    }
}

/// Raw responders decoding on one engine with `model`.
pub fn raw_responders(
    model: PathBuf,
    tokenizer: Option<PathBuf>,
    max_batch: usize,
) -> impl FnMut() -> Result<RawResponder> + Send {
    let mut shared: Option<(EngineHandle, Tokenizer)> = None;
    move || {
        let (engine, tok) = match &shared {
            Some(s) => s.clone(),
            None => {
                let s = RawResponder::load_engine(&model, tokenizer.as_deref(), max_batch)
                    .with_context(|| format!("loading model {}", model.display()))?;
                shared.insert(s).clone()
            }
        };
        Ok(RawResponder::on_engine(engine, tok)?)
    }
}
