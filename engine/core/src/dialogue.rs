//! Dialogues as the planner sees them: ordered messages with roles.
//!
//! Everything downstream (findings, evidence spans, plans) points back into a dialogue by
//! message index and byte offsets, so a dialogue is never rewritten once it is assessed.

use serde::{Deserialize, Serialize};

/// Who wrote a message. `user` is the client; `assistant` is the counselor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

/// One message of a dialogue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    pub role: Role,
    pub content: String,
    /// Hidden reasoning of an assistant turn (DeepSeek/OpenAI-style `reasoning_content`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
}

impl Message {
    pub fn user(content: impl Into<String>) -> Self {
        Message {
            role: Role::User,
            content: content.into(),
            reasoning_content: None,
        }
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Message {
            role: Role::Assistant,
            content: content.into(),
            reasoning_content: None,
        }
    }
}

/// An ordered list of messages.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Dialogue {
    pub messages: Vec<Message>,
}

/// A client turn with its index in [`Dialogue::messages`].
#[derive(Clone, Copy, Debug)]
pub struct ClientTurn<'a> {
    pub index: usize,
    pub text: &'a str,
}

impl Dialogue {
    pub fn new(messages: Vec<Message>) -> Self {
        Dialogue { messages }
    }

    /// A dialogue made of a single client message.
    pub fn from_message(text: impl Into<String>) -> Self {
        Dialogue {
            messages: vec![Message::user(text)],
        }
    }

    /// The client's messages, oldest first. Screening only ever reads these: the counselor's
    /// own words are not evidence about the client.
    pub fn client_turns(&self) -> impl Iterator<Item = ClientTurn<'_>> {
        self.messages
            .iter()
            .enumerate()
            .filter(|(_, m)| m.role == Role::User)
            .map(|(index, m)| ClientTurn {
                index,
                text: &m.content,
            })
    }

    /// The newest client message, if any.
    pub fn last_client_turn(&self) -> Option<ClientTurn<'_>> {
        self.client_turns().last()
    }

    /// Parses a dialogue file: a JSON array of messages, a JSON object `{"messages": [...]}`,
    /// or JSONL with one message per line. `origin` names the file in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Dialogue, DialogueError> {
        let trimmed = text.trim_start();
        if trimmed.starts_with('[') || trimmed.starts_with('{') && !looks_like_jsonl(text) {
            if trimmed.starts_with('[') {
                let messages: Vec<Message> =
                    serde_json::from_str(text).map_err(|e| DialogueError::Json {
                        origin: origin.into(),
                        line: e.line(),
                        column: e.column(),
                        message: e.to_string(),
                    })?;
                return Dialogue::checked(messages, origin);
            }
            let d: Dialogue = serde_json::from_str(text).map_err(|e| DialogueError::Json {
                origin: origin.into(),
                line: e.line(),
                column: e.column(),
                message: e.to_string(),
            })?;
            return Dialogue::checked(d.messages, origin);
        }
        let mut messages = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let m: Message = serde_json::from_str(line).map_err(|e| DialogueError::Json {
                origin: origin.into(),
                line: i + 1,
                column: e.column(),
                message: e.to_string(),
            })?;
            messages.push(m);
        }
        Dialogue::checked(messages, origin)
    }

    fn checked(messages: Vec<Message>, origin: &str) -> Result<Dialogue, DialogueError> {
        if !messages.iter().any(|m| m.role == Role::User) {
            return Err(DialogueError::NoClientMessage {
                origin: origin.into(),
            });
        }
        Ok(Dialogue { messages })
    }
}

fn looks_like_jsonl(text: &str) -> bool {
    text.lines().filter(|l| !l.trim().is_empty()).count() > 1
        && text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .all(|l| l.trim_start().starts_with('{') && l.trim_end().ends_with('}'))
}

#[derive(Debug, thiserror::Error)]
pub enum DialogueError {
    #[error("{origin}:{line}:{column}: not a dialogue message: {message}")]
    Json {
        origin: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{origin}: the dialogue has no message with role \"user\"")]
    NoClientMessage { origin: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_json_array_object_and_jsonl() {
        let a = r#"[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]"#;
        assert_eq!(Dialogue::parse(a, "a").unwrap().messages.len(), 2);
        let o = r#"{"messages":[{"role":"user","content":"hi"}]}"#;
        assert_eq!(Dialogue::parse(o, "o").unwrap().messages.len(), 1);
        let l =
            "{\"role\":\"user\",\"content\":\"a\"}\n{\"role\":\"assistant\",\"content\":\"b\"}\n";
        assert_eq!(Dialogue::parse(l, "l").unwrap().messages.len(), 2);
    }

    #[test]
    fn bad_line_is_named() {
        let l = "{\"role\":\"user\",\"content\":\"a\"}\n{\"role\":\"robot\",\"content\":\"b\"}\n";
        let e = Dialogue::parse(l, "d.jsonl").unwrap_err().to_string();
        assert!(e.starts_with("d.jsonl:2:"), "{e}");
    }
}
