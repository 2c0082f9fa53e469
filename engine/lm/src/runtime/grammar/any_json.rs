//! Any JSON object (`response_format: {"type": "json_object"}`): free keys, values of every
//! JSON type, nested at most [`MAX_ANY_DEPTH`] containers deep so that the open containers
//! fit in a bit set and the state stays `Copy`.

use super::lexers::{NumLexer, Step, StrLexer};

/// Deepest nesting of objects and arrays (the root object counts as one).
pub const MAX_ANY_DEPTH: u8 = 16;

const LITERALS: [&[u8]; 3] = [b"true", b"false", b"null"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Phase {
    /// Nothing yet: the root must be an object.
    #[default]
    Root,
    Value,
    /// After `{`: a key or `}`.
    FirstKeyOrClose,
    /// After `,` in an object: a key.
    Key,
    InKey(StrLexer),
    Colon,
    /// After `[`: a value or `]`.
    FirstValueOrClose,
    /// After a value inside a container: `,` or the closing bracket.
    AfterValue,
    InString(StrLexer),
    InNumber(NumLexer),
    InLiteral {
        which: u8,
        pos: u8,
    },
}

/// Recognises one JSON object of any shape, compact with at most one space after `:` and `,`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AnyLexer {
    depth: u8,
    /// Bit d-1 set: the container at depth d is an object (else an array).
    objects: u16,
    phase: Phase,
    space_ok: bool,
}

impl AnyLexer {
    fn top_is_object(&self) -> bool {
        self.depth > 0 && self.objects >> (self.depth - 1) & 1 == 1
    }

    fn open(&mut self, object: bool) -> Step {
        if self.depth == MAX_ANY_DEPTH {
            return Step::Rejected;
        }
        let bit = 1u16 << self.depth;
        self.objects = if object {
            self.objects | bit
        } else {
            self.objects & !bit
        };
        self.depth += 1;
        self.phase = if object {
            Phase::FirstKeyOrClose
        } else {
            Phase::FirstValueOrClose
        };
        Step::Consumed
    }

    fn close(&mut self) -> Step {
        self.depth -= 1;
        if self.depth == 0 {
            Step::Finished
        } else {
            self.phase = Phase::AfterValue;
            Step::Consumed
        }
    }

    fn start_key(&mut self) -> Step {
        let mut s = StrLexer::default();
        s.step(b'"', None);
        self.phase = Phase::InKey(s);
        Step::Consumed
    }

    pub fn step(&mut self, b: u8) -> Step {
        if self.space_ok && b == b' ' {
            self.space_ok = false;
            return Step::Consumed;
        }
        self.space_ok = false;
        loop {
            return match self.phase {
                Phase::Root => match b {
                    b'{' => self.open(true),
                    _ => Step::Rejected,
                },
                Phase::Value => match b {
                    b'{' => self.open(true),
                    b'[' => self.open(false),
                    b'"' => {
                        let mut s = StrLexer::default();
                        s.step(b, None);
                        self.phase = Phase::InString(s);
                        Step::Consumed
                    }
                    b'-' | b'0'..=b'9' => {
                        let mut n = NumLexer::default();
                        n.step(b);
                        self.phase = Phase::InNumber(n);
                        Step::Consumed
                    }
                    _ => match LITERALS.iter().position(|l| l[0] == b) {
                        Some(which) => {
                            self.phase = Phase::InLiteral {
                                which: which as u8,
                                pos: 1,
                            };
                            Step::Consumed
                        }
                        None => Step::Rejected,
                    },
                },
                Phase::FirstKeyOrClose => match b {
                    b'"' => self.start_key(),
                    b'}' => self.close(),
                    _ => Step::Rejected,
                },
                Phase::Key => match b {
                    b'"' => self.start_key(),
                    _ => Step::Rejected,
                },
                Phase::InKey(mut s) => match s.step(b, None) {
                    Step::Consumed => {
                        self.phase = Phase::InKey(s);
                        Step::Consumed
                    }
                    Step::Finished => {
                        self.phase = Phase::Colon;
                        Step::Consumed
                    }
                    _ => Step::Rejected,
                },
                Phase::Colon => match b {
                    b':' => {
                        self.phase = Phase::Value;
                        self.space_ok = true;
                        Step::Consumed
                    }
                    _ => Step::Rejected,
                },
                Phase::FirstValueOrClose => match b {
                    b']' => self.close(),
                    _ => {
                        self.phase = Phase::Value;
                        continue;
                    }
                },
                Phase::AfterValue => match b {
                    b',' => {
                        self.phase = if self.top_is_object() {
                            Phase::Key
                        } else {
                            Phase::Value
                        };
                        self.space_ok = true;
                        Step::Consumed
                    }
                    b'}' if self.top_is_object() => self.close(),
                    b']' if !self.top_is_object() => self.close(),
                    _ => Step::Rejected,
                },
                Phase::InString(mut s) => match s.step(b, None) {
                    Step::Consumed => {
                        self.phase = Phase::InString(s);
                        Step::Consumed
                    }
                    Step::Finished => {
                        self.phase = Phase::AfterValue;
                        Step::Consumed
                    }
                    _ => Step::Rejected,
                },
                Phase::InNumber(mut n) => match n.step(b) {
                    Step::Consumed => {
                        self.phase = Phase::InNumber(n);
                        Step::Consumed
                    }
                    Step::EndedBefore => {
                        self.phase = Phase::AfterValue;
                        continue;
                    }
                    _ => Step::Rejected,
                },
                Phase::InLiteral { which, pos } => {
                    let text = LITERALS[which as usize];
                    if text[pos as usize] != b {
                        return Step::Rejected;
                    }
                    self.phase = if pos as usize + 1 == text.len() {
                        Phase::AfterValue
                    } else {
                        Phase::InLiteral {
                            which,
                            pos: pos + 1,
                        }
                    };
                    Step::Consumed
                }
            };
        }
    }

    /// Inside a key or string value with no escape or character half written: unlimited room.
    pub fn string_room(&self) -> Option<u32> {
        match self.phase {
            Phase::InKey(s) | Phase::InString(s) => s.room(None),
            _ => None,
        }
    }

    /// Fewest bytes that close the object: the pending value, then one bracket per level.
    pub fn min_to_end(&self) -> u32 {
        let depth = self.depth as u32;
        let pending = match self.phase {
            Phase::Root => 2,
            Phase::Value => 1,
            Phase::FirstKeyOrClose | Phase::FirstValueOrClose | Phase::AfterValue => 0,
            // `"":0`
            Phase::Key => 4,
            Phase::InKey(s) => s.min_to_end() + 2,
            Phase::Colon => 2,
            Phase::InString(s) => s.min_to_end(),
            Phase::InNumber(n) => n.min_to_end(),
            Phase::InLiteral { which, pos } => {
                (LITERALS[which as usize].len() - pos as usize) as u32
            }
        };
        pending + depth
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(text: &str) -> Step {
        let mut l = AnyLexer::default();
        let mut last = Step::Rejected;
        for b in text.bytes() {
            last = l.step(b);
            if matches!(last, Step::Rejected | Step::Finished) {
                break;
            }
        }
        last
    }

    #[test]
    fn any_object_accepts_nested_json_and_rejects_the_rest() {
        assert_eq!(feed(r#"{}"#), Step::Finished);
        assert_eq!(
            feed(r#"{"a": [1, -2.5, "x", true, null, {"b": []}], "c":false}"#),
            Step::Finished
        );
        assert_eq!(feed(r#"[1]"#), Step::Rejected, "the root must be an object");
        assert_eq!(feed(r#"{"a":1,}"#), Step::Rejected);
        assert_eq!(feed(r#"{"a"  :1}"#), Step::Rejected);
        assert_eq!(feed(r#"{"a":  1}"#), Step::Rejected, "one space at most");
        assert_eq!(feed(r#"{"a":[1}"#), Step::Rejected);
        assert_eq!(feed(r#"{"a":tru}"#), Step::Rejected);
        let deep = "{\"a\":".to_string() + &"[".repeat(MAX_ANY_DEPTH as usize - 1);
        assert_eq!(feed(&deep), Step::Consumed);
        assert_eq!(feed(&(deep + "[")), Step::Rejected, "too deep");
    }

    #[test]
    fn min_to_end_counts_open_brackets() {
        let mut l = AnyLexer::default();
        for b in br#"{"a":[{"b":"x"#.iter() {
            assert_eq!(l.step(*b), Step::Consumed);
        }
        // `"` then `}]}`
        assert_eq!(l.min_to_end(), 4);
    }
}
