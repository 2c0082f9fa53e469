//! A conversation with a counselor: the dialogue so far and its transcript.

use std::ops::ControlFlow;
use std::path::Path;

use psy_core::dialogue::{Dialogue, Message};

use super::transcript::write_transcript;
use super::{Counselor, Delta, Result, TranscriptTurn, TurnOptions};

/// A conversation with a counselor and its transcript.
pub struct Session {
    counselor: Counselor,
    dialogue: Dialogue,
    turns: Vec<TranscriptTurn>,
}

impl Session {
    pub fn new(counselor: Counselor) -> Session {
        Session {
            counselor,
            dialogue: Dialogue::default(),
            turns: Vec::new(),
        }
    }

    pub fn counselor(&self) -> &Counselor {
        &self.counselor
    }

    /// Answers one client message and records the turn.
    pub fn send(
        &mut self,
        text: &str,
        on_delta: &mut dyn FnMut(Delta) -> ControlFlow<()>,
    ) -> Result<&TranscriptTurn> {
        self.dialogue.messages.push(Message::user(text));
        let turn = match self
            .counselor
            .respond(&self.dialogue, &TurnOptions::default(), on_delta)
        {
            Ok(t) => t,
            Err(e) => {
                self.dialogue.messages.pop();
                return Err(e);
            }
        };
        let mut reply = Message::assistant(turn.reply.clone());
        if !turn.reasoning.is_empty() {
            reply.reasoning_content = Some(turn.reasoning.clone());
        }
        self.dialogue.messages.push(reply);
        self.turns.push(turn);
        Ok(self.turns.last().expect("just pushed"))
    }

    pub fn turns(&self) -> &[TranscriptTurn] {
        &self.turns
    }

    /// Starts a new conversation (the transcript so far is dropped).
    pub fn reset(&mut self) {
        self.dialogue = Dialogue::default();
        self.turns.clear();
    }

    /// Writes the transcript as JSONL, one turn a line.
    pub fn save(&self, path: &Path) -> Result<()> {
        write_transcript(path, &self.turns)
    }
}
