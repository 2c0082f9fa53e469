//! The items a run is scored on: the `[eval]` set read, split and cut to `max_items`, as
//! client turns with the reference history before them.

use std::num::NonZeroU64;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use psy_core::dialogue::{Dialogue, Message, Role as CoreRole};
use psy_core::eval_spec::{EvalProtocol, EvalSection, EvalSplit};
use psy_core::train_spec::OnBadRecord;
use psy_eval::dataset::{self, BadLine, EvalDialogue, ReadOptions, Role, Turn};
use serde::{Deserialize, Serialize};

/// One client turn to reply to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalItem {
    /// `<dialogue id>#<client turn index>`: pairs the same item across variants.
    pub key: String,
    pub dialogue_id: String,
    pub turn_index: usize,
    /// Reference turns up to and including this client turn (`turn` protocol).
    pub history: Vec<Turn>,
    /// The reference counselor reply after this client turn.
    pub reference: Option<String>,
}

/// What a run is scored on.
pub struct EvalData {
    pub path: PathBuf,
    pub sha256: String,
    pub protocol: EvalProtocol,
    pub items: Vec<EvalItem>,
    /// Lines that could not be read (counted in the report, never silently dropped).
    pub bad: Vec<BadLine>,
}

/// Reads the `[eval]` set of a run (`origin` names the manifest in errors).
pub fn load(section: &EvalSection, origin: &str) -> Result<EvalData> {
    if section.dataset.trim().is_empty() {
        bail!("{origin}: [eval] dataset is empty: name the eval dialogues (JSONL)");
    }
    let path = PathBuf::from(section.dataset.trim());
    let bytes = std::fs::read(&path)
        .with_context(|| format!("{}: cannot read eval set", path.display()))?;
    let set = dataset::read_eval_file(
        &path,
        ReadOptions {
            format: section.format,
            on_bad: OnBadRecord::Skip,
        },
    )?;
    let dialogues = match section.split {
        EvalSplit::All => set.dialogues,
        EvalSplit::HeldOut => {
            let k = NonZeroU64::new(section.split_every)
                .with_context(|| format!("{origin}: [eval] split_every must be at least 1"))?;
            dataset::held_out_split(set.dialogues, k).0
        }
    };
    let mut items: Vec<EvalItem> = dialogues.iter().flat_map(items_of).collect();
    if section.max_items > 0 {
        items.truncate(section.max_items);
    }
    if items.is_empty() {
        bail!(
            "{}: no client turn to score (after the {:?} split and max_items)",
            path.display(),
            section.split
        );
    }
    Ok(EvalData {
        sha256: crate::eval::provenance::sha256_hex(&bytes),
        path,
        protocol: section.protocol,
        items,
        bad: set.bad,
    })
}

fn items_of(d: &EvalDialogue) -> Vec<EvalItem> {
    dataset::turn_items(d)
        .into_iter()
        .map(|t| EvalItem {
            key: format!("{}#{}", t.dialogue_id, t.turn_index),
            dialogue_id: t.dialogue_id,
            turn_index: t.turn_index,
            history: t.history,
            reference: t.reference_reply,
        })
        .collect()
}

/// A reference turn as the planner reads it.
pub fn message_of(turn: &Turn) -> Message {
    Message {
        role: match turn.role {
            Role::System => CoreRole::System,
            Role::Client => CoreRole::User,
            Role::Counselor => CoreRole::Assistant,
        },
        content: turn.content.clone(),
        reasoning_content: None,
    }
}

/// The dialogue a reply is drafted for. `turn`: the reference history. `session`: the
/// client turns of the reference with the model's own earlier replies (`own`, by client turn
/// index, for this dialogue) in place of the reference counselor's.
pub fn dialogue_for(item: &EvalItem, protocol: EvalProtocol, own: &[String]) -> Dialogue {
    match protocol {
        EvalProtocol::Turn => Dialogue::new(item.history.iter().map(message_of).collect()),
        EvalProtocol::Session => {
            let mut messages = Vec::new();
            let mut client = 0;
            for t in &item.history {
                match t.role {
                    Role::Counselor => {}
                    Role::System => messages.push(message_of(t)),
                    Role::Client => {
                        messages.push(message_of(t));
                        if client < item.turn_index {
                            if let Some(r) = own.get(client) {
                                messages.push(Message::assistant(r.clone()));
                            }
                        }
                        client += 1;
                    }
                }
            }
            Dialogue::new(messages)
        }
    }
}

/// The judge's view of the dialogue a reply answers: `(role, text)` pairs, system turns left
/// out (the judge sees what the client and the counselor said).
pub fn judge_history(dialogue: &Dialogue) -> Vec<(String, String)> {
    dialogue
        .messages
        .iter()
        .filter(|m| m.role != CoreRole::System)
        .map(|m| {
            let role = if m.role == CoreRole::User {
                "user"
            } else {
                "assistant"
            };
            (role.to_string(), m.content.clone())
        })
        .collect()
}

/// A path for messages: relative to the working directory when it is under it.
pub fn shown(path: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| path.to_path_buf())
        .display()
        .to_string()
}
