//! Items of CPsyCoun's `turn` protocol: every client turn is replayed with the reference history
//! before it, and the model's reply is compared with the reference counselor reply that follows.

use serde::{Deserialize, Serialize};

use super::dialogue::{EvalDialogue, Role, Turn};

/// One client turn to reply to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TurnItem {
    pub dialogue_id: String,
    /// 0-based position of this client turn among the dialogue's client turns.
    pub turn_index: usize,
    /// The reference turns up to and including this client turn (system turn included).
    pub history: Vec<Turn>,
    /// The reference counselor reply right after this client turn, if there is one.
    pub reference_reply: Option<String>,
    /// That reply's reference reasoning trace, if it has one.
    pub reference_trace: Option<String>,
}

/// One item per client turn of `dialogue`, in order.
pub fn turn_items(dialogue: &EvalDialogue) -> Vec<TurnItem> {
    let turns = &dialogue.turns;
    turns
        .iter()
        .enumerate()
        .filter(|(_, t)| t.role == Role::Client)
        .enumerate()
        .map(|(turn_index, (i, _))| {
            let next = turns.get(i + 1).filter(|t| t.role == Role::Counselor);
            TurnItem {
                dialogue_id: dialogue.id.clone(),
                turn_index,
                history: turns[..=i].to_vec(),
                reference_reply: next.map(|t| t.content.clone()),
                reference_trace: next.and_then(|t| t.reasoning.clone()),
            }
        })
        .collect()
}
