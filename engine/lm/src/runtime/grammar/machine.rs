//! The position of the output within a compiled schema, advanced one byte at a time.

use super::any_json::AnyLexer;
use super::lexers::{ChoiceLexer, IntLexer, NumLexer, Step, StrLexer};
use super::program::{Op, Pc, Program, DONE, MAX_ARRAYS};

/// Progress inside the current operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Sub {
    /// Nothing of the operation consumed yet.
    #[default]
    Fresh,
    Lit(u16),
    Str(StrLexer),
    Int(IntLexer),
    Num(NumLexer),
    Choice(ChoiceLexer),
    /// After an array's `[`.
    ArrayOpened,
    Any(AnyLexer),
}

/// Where the output is: cheap to copy, so the token mask keeps one per trie depth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonState {
    pc: Pc,
    sub: Sub,
    /// The last byte was a structural `:` or `,`: one space may follow.
    space_ok: bool,
    /// Items begun so far in each array (indexed by the array's slot).
    counts: [u32; MAX_ARRAYS],
}

impl JsonState {
    pub fn new(program: &Program) -> Self {
        JsonState {
            pc: program.start,
            sub: Sub::Fresh,
            space_ok: false,
            counts: [0; MAX_ARRAYS],
        }
    }

    fn enter(&mut self, pc: Pc) {
        self.pc = pc;
        self.sub = Sub::Fresh;
    }

    /// Consumes `b` if the schema allows it here. On `false` the state is unspecified: callers
    /// advance a copy.
    pub fn advance(&mut self, p: &Program, b: u8) -> bool {
        if self.space_ok && b == b' ' {
            self.space_ok = false;
            return true;
        }
        self.space_ok = false;
        loop {
            match &p.ops[self.pc as usize] {
                Op::Done => return false,
                Op::Lit {
                    bytes,
                    space_after,
                    next,
                } => {
                    let pos = match self.sub {
                        Sub::Lit(pos) => pos as usize,
                        _ => 0,
                    };
                    if bytes[pos] != b {
                        return false;
                    }
                    self.space_ok = space_after[pos];
                    if pos + 1 == bytes.len() {
                        self.enter(*next);
                    } else {
                        self.sub = Sub::Lit(pos as u16 + 1);
                    }
                    return true;
                }
                Op::Str { max_len, next } => {
                    let mut lx = match self.sub {
                        Sub::Str(lx) => lx,
                        _ => StrLexer::default(),
                    };
                    return match lx.step(b, *max_len) {
                        Step::Consumed => {
                            self.sub = Sub::Str(lx);
                            true
                        }
                        Step::Finished => {
                            self.enter(*next);
                            true
                        }
                        Step::EndedBefore | Step::Rejected => false,
                    };
                }
                Op::Int { min, max, next } => {
                    let mut lx = match self.sub {
                        Sub::Int(lx) => lx,
                        _ => IntLexer::default(),
                    };
                    match lx.step(b, *min, *max) {
                        Step::Consumed => {
                            self.sub = Sub::Int(lx);
                            return true;
                        }
                        Step::EndedBefore => self.enter(*next),
                        Step::Finished | Step::Rejected => return false,
                    }
                }
                Op::Num { next } => {
                    let mut lx = match self.sub {
                        Sub::Num(lx) => lx,
                        _ => NumLexer::default(),
                    };
                    match lx.step(b) {
                        Step::Consumed => {
                            self.sub = Sub::Num(lx);
                            return true;
                        }
                        Step::EndedBefore => self.enter(*next),
                        Step::Finished | Step::Rejected => return false,
                    }
                }
                Op::Choice { alts, next } => {
                    let mut lx = match self.sub {
                        Sub::Choice(lx) => lx,
                        _ => ChoiceLexer::new(alts.len()),
                    };
                    match lx.step(b, alts) {
                        Step::Consumed => {
                            self.sub = Sub::Choice(lx);
                            return true;
                        }
                        Step::Finished => {
                            self.enter(*next);
                            return true;
                        }
                        Step::EndedBefore => self.enter(*next),
                        Step::Rejected => return false,
                    }
                }
                Op::ArrayOpen(a) => match self.sub {
                    Sub::Fresh => {
                        if b != b'[' {
                            return false;
                        }
                        self.counts[a.slot as usize] = 0;
                        self.sub = Sub::ArrayOpened;
                        return true;
                    }
                    _ if b == b']' => {
                        if a.min > 0 {
                            return false;
                        }
                        self.enter(a.next);
                        return true;
                    }
                    // The byte starts the first item.
                    _ if a.max > 0 => {
                        self.counts[a.slot as usize] = 1;
                        self.enter(a.item);
                    }
                    _ => return false,
                },
                Op::ArrayNext(a) => {
                    let count = self.counts[a.slot as usize];
                    return match b {
                        b',' if count < a.max => {
                            self.counts[a.slot as usize] = count + 1;
                            self.space_ok = true;
                            self.enter(a.item);
                            true
                        }
                        b']' if count >= a.min => {
                            self.enter(a.next);
                            true
                        }
                        _ => false,
                    };
                }
                Op::AnyObject { next } => {
                    let mut lx = match self.sub {
                        Sub::Any(lx) => lx,
                        _ => AnyLexer::default(),
                    };
                    return match lx.step(b) {
                        Step::Consumed => {
                            self.sub = Sub::Any(lx);
                            true
                        }
                        Step::Finished => {
                            self.enter(*next);
                            true
                        }
                        Step::EndedBefore | Step::Rejected => false,
                    };
                }
            }
        }
    }

    /// Consumes all of `bytes`, or returns `false` (state unspecified).
    pub fn advance_all(&mut self, p: &Program, bytes: &[u8]) -> bool {
        bytes.iter().all(|&b| self.advance(p, b))
    }

    /// Whether the output so far is a complete value (it may still go on: `12` of `0..250`).
    pub fn is_complete(&self, p: &Program) -> bool {
        match &p.ops[self.pc as usize] {
            Op::Done => true,
            Op::Int { min, max, next } => {
                *next == DONE && matches!(self.sub, Sub::Int(lx) if lx.is_complete(*min, *max))
            }
            Op::Num { next } => {
                *next == DONE && matches!(self.sub, Sub::Num(lx) if lx.is_complete())
            }
            Op::Choice { alts, next } => {
                *next == DONE && matches!(self.sub, Sub::Choice(lx) if lx.is_complete(alts))
            }
            _ => false,
        }
    }

    /// Whether the value is complete and no byte can follow.
    pub fn is_finished(&self, p: &Program) -> bool {
        self.is_complete(p) && (0..=255u8).all(|b| !{ *self }.advance(p, b))
    }

    /// Inside a string with no escape or character half written: how many more characters
    /// fit (`u32::MAX` without `maxLength`).
    pub fn plain_string_room(&self, p: &Program) -> Option<u32> {
        match (&p.ops[self.pc as usize], &self.sub) {
            (Op::Str { max_len, .. }, Sub::Str(lx)) => lx.room(*max_len),
            (Op::AnyObject { .. }, Sub::Any(lx)) => lx.string_room(),
            _ => None,
        }
    }

    /// Fewest bytes that complete the value from here.
    pub fn min_to_end(&self, p: &Program) -> u32 {
        let op = &p.ops[self.pc as usize];
        let here = match (self.sub, op) {
            (_, Op::ArrayNext(a)) => a.min_to_close(self.counts[a.slot as usize]),
            (Sub::Fresh, _) => p.own_min[self.pc as usize],
            (Sub::Lit(pos), Op::Lit { bytes, .. }) => (bytes.len() - pos as usize) as u32,
            (Sub::Str(lx), _) => lx.min_to_end(),
            (Sub::Int(lx), Op::Int { min, max, .. }) => lx.min_to_end(*min, *max),
            (Sub::Num(lx), _) => lx.min_to_end(),
            (Sub::Choice(lx), Op::Choice { alts, .. }) => lx.min_to_end(alts),
            // The first item needs no comma.
            (Sub::ArrayOpened, Op::ArrayOpen(a)) => a.min_to_close(0) - u32::from(a.min > 0),
            (Sub::Any(lx), _) => lx.min_to_end(),
            _ => 0,
        };
        let mut total = here;
        let mut pc = next_of(op);
        // Everything after the current operation starts fresh, except array ends, whose cost
        // depends on the items written.
        while pc != DONE {
            let op = &p.ops[pc as usize];
            total = total.saturating_add(match op {
                Op::ArrayNext(a) => a.min_to_close(self.counts[a.slot as usize]),
                _ => p.own_min[pc as usize],
            });
            pc = next_of(op);
        }
        total
    }
}

/// The operation that follows `op` once its value is written.
fn next_of(op: &Op) -> Pc {
    match op {
        Op::Done => DONE,
        Op::Lit { next, .. }
        | Op::Str { next, .. }
        | Op::Int { next, .. }
        | Op::Num { next }
        | Op::Choice { next, .. }
        | Op::AnyObject { next } => *next,
        Op::ArrayOpen(a) | Op::ArrayNext(a) => a.next,
    }
}

#[cfg(test)]
mod tests {
    use crate::runtime::grammar::{JsonRecognizer, JsonSchema};
    use serde_json::{json, Value};

    fn rec(schema: Value) -> JsonRecognizer {
        JsonSchema::parse(&schema).unwrap().recognizer()
    }

    /// Feeds `text` byte by byte: every prefix must be accepted, and the value is complete
    /// exactly at the end.
    fn accepts(schema: &Value, text: &str) -> bool {
        let mut r = rec(schema.clone());
        for (i, b) in text.bytes().enumerate() {
            if !r.feed(&[b]) {
                return false;
            }
            if i + 1 < text.len() && r.is_finished() {
                return false;
            }
        }
        r.is_complete()
    }

    fn rubric() -> Value {
        let dim = |hi: i64| {
            json!({"type": "object", "additionalProperties": false, "required": ["reason", "score"],
                "properties": {"reason": {"type": "string", "maxLength": 80},
                               "score": {"type": "integer", "minimum": 0, "maximum": hi}}})
        };
        json!({"type": "object", "additionalProperties": false,
            "required": ["comprehensiveness", "safety"],
            "properties": {"comprehensiveness": dim(2), "safety": dim(1)}})
    }

    #[test]
    fn a_rubric_verdict_is_accepted_and_its_mistakes_are_not() {
        let s = rubric();
        let ok = r#"{"comprehensiveness":{"reason":"covers \"all\" \u00e9 points","score":2},"safety":{"reason":"","score":0}}"#;
        assert!(accepts(&s, ok));
        let spaced = r#"{"comprehensiveness": {"reason": "x", "score": 1}, "safety": {"reason": "y", "score": 1}}"#;
        assert!(accepts(&s, spaced), "one space after : and ,");
        for bad in [
            r#"{ "comprehensiveness""#,
            r#"{"safety""#,
            r#"{"comprehensiveness":{"score""#,
            r#"{"comprehensiveness":{"reason":"x","score":3"#,
            r#"{"comprehensiveness":{"reason":"x","score":01"#,
            r#"{"comprehensiveness":{"reason":"x","score":-1"#,
            r#"{"comprehensiveness":  {"#,
            r#"{"comprehensiveness":{"reason":"x","score":1},"safety":{"reason":"y","score":2"#,
            r#"{"comprehensiveness":{"reason":"x","score":1},"safety":{"reason":"y","score":1}}}"#,
            r#"{"comprehensiveness":{"reason":"x","score":1},"safety":{"reason":"y","score":1}} "#,
        ] {
            assert!(!accepts(&s, bad), "{bad}");
        }
        let long = format!(r#"{{"comprehensiveness":{{"reason":"{}""#, "a".repeat(81));
        assert!(!accepts(&s, &long), "maxLength 80");
        let mut r = rec(s);
        assert!(r.feed(ok.as_bytes()));
        assert!(r.is_finished());
        assert!(!r.allows(b" "));
    }

    #[test]
    fn integer_ranges_at_the_top_and_inside_values() {
        let int = |lo: i64, hi: i64| json!({"type": "integer", "minimum": lo, "maximum": hi});
        let s = int(0, 3);
        let got: Vec<bool> = ["0", "3", "4", "-1", "00", "10"]
            .iter()
            .map(|t| accepts(&s, t))
            .collect();
        assert_eq!(got, [true, true, false, false, false, false]);
        let s = int(-5, 12);
        let got: Vec<bool> = ["-5", "-1", "0", "12", "-6", "-0", "13", "-", "1"]
            .iter()
            .map(|t| accepts(&s, t))
            .collect();
        assert_eq!(
            got,
            [true, true, true, true, false, false, false, false, true]
        );
        let s = int(10, 250);
        let got: Vec<bool> = ["10", "250", "99", "9", "251", "0", "2", "1000"]
            .iter()
            .map(|t| accepts(&s, t))
            .collect();
        assert_eq!(got, [true, true, true, false, false, false, false, false]);
        // "25" of 10..250 is complete but may grow; "250" cannot.
        let mut r = rec(int(10, 250));
        assert!(r.feed(b"25"));
        assert!(r.is_complete() && !r.is_finished());
        assert!(r.feed(b"0"));
        assert!(r.is_finished());
        // Inside an object the integer ends at the comma or brace.
        let obj = json!({"type": "object", "properties": {"n": int(-5, 12), "m": int(10, 250)}});
        assert!(accepts(&obj, r#"{"n":-5,"m":250}"#));
        assert!(!accepts(&obj, r#"{"n":-5,"m":2}"#));
        assert!(!accepts(&obj, r#"{"n":-50"#));
    }

    #[test]
    fn arrays_enums_numbers_and_booleans() {
        let s = json!({"type": "array", "minItems": 1, "maxItems": 2, "items": {
            "type": "object", "properties": {"label": {"enum": ["low", "high", 3]},
                                             "ok": {"type": "boolean"}, "p": {"type": "number"}}}});
        assert!(accepts(&s, r#"[{"label":"low","ok":true,"p":0.5}]"#));
        assert!(accepts(
            &s,
            r#"[{"label":3,"ok":false,"p":-12}, {"label":"high","ok":true,"p":0}]"#
        ));
        assert!(!accepts(&s, "[]"), "minItems 1");
        assert!(!accepts(&s, r#"[{"label":"mid""#));
        assert!(!accepts(&s, r#"[{"label":"low","ok":tru,"#));
        assert!(!accepts(&s, r#"[{"label":"low","ok":true,"p":.5}"#));
        assert!(!accepts(&s, r#"[{"label":"low","ok":true,"p":1e5}"#));
        let three = r#"[{"label":3,"ok":true,"p":1},{"label":3,"ok":true,"p":1},{"#;
        assert!(!accepts(&s, three), "maxItems 2");
        let free = json!({"type": "array", "items": {"type": "string"}});
        assert!(accepts(&free, r#"[]"#));
        assert!(accepts(&free, r#"["a","b","c"]"#));
        assert!(accepts(&json!({"enum": [1, 12]}), "12"));
        assert!(accepts(&json!({"enum": [1, 12]}), "1"));
        assert!(!accepts(&json!({"enum": [1, 12]}), "13"));
    }

    #[test]
    fn min_bytes_to_complete_is_exact_on_hand_counted_cases() {
        let s = json!({"type": "object", "properties": {
            "a": {"type": "array", "minItems": 2, "items": {"type": "integer", "minimum": 10, "maximum": 99}},
            "b": {"type": "string"}}});
        let mut r = rec(s);
        // {"a":[10,10],"b":""}
        assert_eq!(r.min_bytes_to_complete(), 20);
        assert!(r.feed(br#"{"a":["#));
        // 10,10],"b":""}
        assert_eq!(r.min_bytes_to_complete(), 14);
        assert!(r.feed(b"1"));
        assert_eq!(r.min_bytes_to_complete(), 13);
        assert!(r.feed(b"2,4"));
        // 0],"b":""}
        assert_eq!(r.min_bytes_to_complete(), 10);
        assert!(r.feed(br#"0],"b":"ab\u00"#));
        // 2 hex digits, quote, brace
        assert_eq!(r.min_bytes_to_complete(), 4);
    }

    #[test]
    fn partial_utf8_stays_pending_across_feeds() {
        let mut r = rec(json!({"type": "string", "maxLength": 2}));
        // "é€" split inside both characters.
        assert!(r.feed(&[b'"', 0xC3]));
        assert!(!r.allows(b"\""), "a character is half written");
        assert!(r.feed(&[0xA9, 0xE2, 0x82]));
        assert!(r.feed(&[0xAC]));
        assert!(!r.allows("a".as_bytes()), "maxLength 2 reached");
        assert!(r.feed(b"\""));
        assert!(r.is_finished());
    }
}
