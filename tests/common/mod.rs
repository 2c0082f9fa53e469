//! Shared test helpers: a counselor over a scripted drafter (drafts chosen by the test, so
//! that rule-breaking drafts can be injected on purpose) and manifests per prompting mode.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use psy_core::manifest;
use psy_core::planner::Planner;
use psy_lm::runtime::FinishReason;
use psy_lm::session::{Counselor, Draft, DraftEvent, DraftRequest, Drafter, Result};

/// Hands out the scripted drafts in order (the last one repeats), streaming them word by
/// word; `Break` from the caller stops the stream as a real model would.
#[derive(Clone, Default)]
pub struct ScriptedDrafter {
    pub drafts: Arc<Mutex<VecDeque<String>>>,
    pub last: Arc<Mutex<String>>,
    /// Every request received, for assertions on prompts, prefixes and bans.
    pub requests: Arc<Mutex<Vec<DraftRequest>>>,
    /// Words streamed in total (shows where a stream was stopped).
    pub streamed_words: Arc<Mutex<usize>>,
    pub delay_per_word: Duration,
}

impl ScriptedDrafter {
    pub fn new(drafts: &[&str]) -> Self {
        ScriptedDrafter {
            drafts: Arc::new(Mutex::new(drafts.iter().map(|s| s.to_string()).collect())),
            ..Default::default()
        }
    }
}

impl Drafter for ScriptedDrafter {
    fn draft(
        &mut self,
        req: &DraftRequest,
        on_event: &mut dyn FnMut(DraftEvent) -> ControlFlow<()>,
    ) -> Result<Draft> {
        self.requests.lock().unwrap().push(req.clone());
        let text = {
            let mut q = self.drafts.lock().unwrap();
            match q.pop_front() {
                Some(t) => {
                    *self.last.lock().unwrap() = t.clone();
                    t
                }
                None => self.last.lock().unwrap().clone(),
            }
        };
        // `<think>...</think>` marks reasoning, as a thinking model's tags would.
        let (think, content) = match text.split_once("</think>") {
            Some((t, c)) => (t.replace("<think>", ""), c.to_string()),
            None => (String::new(), text.clone()),
        };
        let mut n = 0;
        let mut out = String::new();
        let mut finish = FinishReason::StopToken;
        'outer: for (part, in_think) in [(think.as_str(), true), (content.as_str(), false)] {
            for w in part.split_inclusive(' ') {
                if !self.delay_per_word.is_zero() {
                    std::thread::sleep(self.delay_per_word);
                }
                n += 1;
                *self.streamed_words.lock().unwrap() += 1;
                if !in_think {
                    out.push_str(w);
                }
                if on_event(DraftEvent { delta: w, in_think }).is_break() {
                    break 'outer;
                }
                if n >= req.max_new_tokens {
                    finish = FinishReason::Length;
                    break 'outer;
                }
            }
        }
        Ok(Draft {
            reasoning: think.trim().to_string(),
            content: out.trim().to_string(),
            prompt_tokens: req.messages.iter().map(|m| m.content.len() / 4).sum(),
            completion_tokens: n,
            finish: Some(finish),
            ..Default::default()
        })
    }

    fn context_length(&self) -> Option<usize> {
        Some(8192)
    }

    fn model_id(&self) -> String {
        "scripted".into()
    }
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A planner for `manifests/psyllm.toml` with the prompting mode set to `mode`.
pub fn planner(mode: &str, dir: &Path) -> Planner {
    planner_with(mode, dir, "")
}

/// [`planner`] with more manifest text appended (whole sections).
pub fn planner_with(mode: &str, dir: &Path, extra: &str) -> Planner {
    let path = dir.join(format!("{mode}.toml"));
    std::fs::write(
        &path,
        format!(
            "schema = 1\nextends = \"{}\"\n[prompting]\nmode = \"{mode}\"\n{extra}",
            repo().join("manifests/psyllm.toml").display()
        ),
    )
    .unwrap();
    Planner::new(
        manifest::load_run(&path).unwrap(),
        psy::builtin_registry().unwrap(),
    )
    .unwrap()
}

/// A counselor whose drafts come from `drafter`. Crisis turns always draft (`crisis_drafts =
/// "checked"`), so that the scripted drafts meet the crisis-draft checks at every level.
pub fn counselor(mode: &str, drafter: ScriptedDrafter) -> Counselor {
    let dir = tempfile::tempdir().unwrap();
    let checked = "[safety]\ncrisis_drafts = \"checked\"\n";
    Counselor::new(planner_with(mode, dir.path(), checked), Box::new(drafter))
}

pub fn smollm2() -> PathBuf {
    psy_lm::runtime::default_model_path().unwrap_or_else(|e| panic!("{e}"))
}

/// A file of the default assets (`$PSY_ASSETS`, else `~/.cache/psy/assets`), which
/// `scripts/setup.sh` downloads.
pub fn asset(rel: &str) -> PathBuf {
    let dir = std::env::var_os("PSY_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is not set"))
                .join(".cache/psy/assets")
        });
    let p = dir.join(rel);
    assert!(
        p.exists(),
        "missing asset {}: run scripts/setup.sh (it downloads the default assets into $PSY_ASSETS or ~/.cache/psy/assets)",
        p.display()
    );
    p
}

/// `psy serve --raw` in-process on a free loopback port, with `model` (its own tokenizer);
/// returns the server and its base URL (`http://127.0.0.1:PORT`).
pub async fn raw_server(model: &Path) -> (psy::serve::Running, String) {
    let model = model.to_path_buf();
    let running = psy::serve::start(
        move || Ok(psy::serve::RawResponder::load(&model, None)?),
        "127.0.0.1:0",
        psy::serve::ServeOptions::default(),
    )
    .await
    .unwrap();
    let base = format!("http://{}", running.addr);
    (running, base)
}
