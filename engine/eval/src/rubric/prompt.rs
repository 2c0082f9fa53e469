//! The judge's prompt: the rubric as a system message, the dialogue and the reply as the user
//! message. It is deterministic (the same inputs give the same bytes) because the judge cache
//! keys on it.

use crate::judge::ChatMessage;
use crate::think::strip_think;

use super::schema::REASON_MAX_CHARS;
use super::spec::Rubric;

impl Rubric {
    /// The judge's system prompt: instructions, every dimension with the meaning of each of
    /// its scores, and the verdict schema the answer must match.
    pub fn judge_system_prompt(&self) -> String {
        let mut out = String::new();
        out.push_str(self.instructions.trim());
        out.push_str("\n\n");
        out.push_str(&format!("Rubric: {}", self.title.trim()));
        if !self.description.trim().is_empty() {
            out.push_str(&format!("\n{}", self.description.trim()));
        }
        out.push_str("\n\nScore the counselor's reply on each dimension:\n");
        for (i, d) in self.dimensions.iter().enumerate() {
            out.push_str(&format!(
                "\n{}. {} (key `{}`, integer from {} to {})\n   {}\n",
                i + 1,
                d.name.trim(),
                d.id,
                d.min,
                d.max,
                d.question.trim()
            ));
            for (k, level) in d.levels.iter().enumerate() {
                out.push_str(&format!("   {}: {}\n", d.min + k as i64, level.trim()));
            }
        }
        out.push_str(&format!(
            "\nAnswer with JSON only, no other text, matching this JSON schema: {}\n\
             For every dimension write the `reason` first (at most {REASON_MAX_CHARS} characters, naming what in the reply decides the score), then the integer `score`.",
            self.verdict_schema()
        ));
        out
    }

    /// The judge's messages for one counselor reply: `history` is the dialogue before it as
    /// `(role, text)` pairs (`user`/`client` or `assistant`/`counselor`). Hidden reasoning
    /// (`<think>...</think>`) is removed from the reply and from counselor turns before
    /// judging.
    pub fn judge_messages<R: AsRef<str>, T: AsRef<str>>(
        &self,
        history: &[(R, T)],
        reply: &str,
    ) -> Vec<ChatMessage> {
        let mut user = String::from("The conversation so far:\n");
        if history.is_empty() {
            user.push_str("(none: the reply opens the conversation)\n");
        }
        for (role, text) in history {
            let speaker = speaker(role.as_ref());
            let text = if speaker == "Counselor" {
                strip_think(text.as_ref())
            } else {
                text.as_ref().trim().to_string()
            };
            user.push_str(&format!("{speaker}: {text}\n"));
        }
        user.push_str(&format!(
            "\nThe counselor's reply to judge:\n{}\n",
            strip_think(reply)
        ));
        vec![
            ChatMessage {
                role: "system".into(),
                content: self.judge_system_prompt(),
            },
            ChatMessage {
                role: "user".into(),
                content: user,
            },
        ]
    }
}

fn speaker(role: &str) -> String {
    match role.trim().to_ascii_lowercase().as_str() {
        "user" | "client" | "human" | "seeker" => "Client".into(),
        "assistant" | "counselor" | "counsellor" | "therapist" | "gpt" | "supporter" => {
            "Counselor".into()
        }
        other => {
            let mut c = other.chars();
            match c.next() {
                Some(f) => f.to_uppercase().chain(c).collect(),
                None => "Unknown".into(),
            }
        }
    }
}
