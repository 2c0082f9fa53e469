//! Byte-at-a-time recognisers of single JSON values (strings, integers in a range, numbers,
//! fixed literals). Each is a small `Copy` value so that the token mask can copy a state per
//! trie node instead of allocating.

/// What one byte did to a value being recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The byte belongs to the value, which may go on.
    Consumed,
    /// The byte belongs to the value, which is now complete and cannot go on (closing quote).
    Finished,
    /// The value was already complete and the byte is not part of it (the comma after a
    /// number): the caller feeds the byte to what follows.
    EndedBefore,
    /// The byte cannot appear here.
    Rejected,
}

/// Escape progress inside a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Escape {
    #[default]
    None,
    /// After `\`.
    Backslash,
    /// Inside `\uXXXX`: which hex digit comes next (0..4), and whether the first was `d`/`D`
    /// (then the second must be 0-7: lone surrogates are not valid Unicode text).
    Hex { index: u8, after_d: bool },
}

/// A JSON string: the opening quote, characters (no raw control characters, well-formed
/// UTF-8, the standard escapes), the closing quote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StrLexer {
    started: bool,
    /// Characters so far; an escape counts as the one character it stands for.
    chars: u32,
    escape: Escape,
    /// Continuation bytes still due for the current UTF-8 character, and the allowed range of
    /// the next one (narrower after E0, ED, F0, F4 to exclude overlong forms and surrogates).
    need: u8,
    lo: u8,
    hi: u8,
}

impl StrLexer {
    /// Feeds one byte; `max_chars` is the schema's `maxLength`.
    pub fn step(&mut self, b: u8, max_chars: Option<u32>) -> Step {
        if !self.started {
            if b == b'"' {
                self.started = true;
                return Step::Consumed;
            }
            return Step::Rejected;
        }
        if self.need > 0 {
            if (self.lo..=self.hi).contains(&b) {
                self.need -= 1;
                self.lo = 0x80;
                self.hi = 0xBF;
                return Step::Consumed;
            }
            return Step::Rejected;
        }
        match self.escape {
            Escape::Backslash => {
                return match b {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {
                        self.escape = Escape::None;
                        Step::Consumed
                    }
                    b'u' => {
                        self.escape = Escape::Hex {
                            index: 0,
                            after_d: false,
                        };
                        Step::Consumed
                    }
                    _ => Step::Rejected,
                }
            }
            Escape::Hex { index, after_d } => {
                let ok = match index {
                    1 if after_d => (b'0'..=b'7').contains(&b),
                    _ => b.is_ascii_hexdigit(),
                };
                if !ok {
                    return Step::Rejected;
                }
                self.escape = if index == 3 {
                    Escape::None
                } else {
                    Escape::Hex {
                        index: index + 1,
                        after_d: index == 0 && (b == b'd' || b == b'D'),
                    }
                };
                return Step::Consumed;
            }
            Escape::None => {}
        }
        if b == b'"' {
            return Step::Finished;
        }
        // Every other byte starts a character: check the room first.
        if max_chars.is_some_and(|m| self.chars >= m) {
            return Step::Rejected;
        }
        let (need, lo, hi) = match b {
            b'\\' => {
                self.escape = Escape::Backslash;
                (0, 0x80, 0xBF)
            }
            0x00..=0x1F => return Step::Rejected,
            0x20..=0x7F => (0, 0x80, 0xBF),
            0xC2..=0xDF => (1, 0x80, 0xBF),
            0xE0 => (2, 0xA0, 0xBF),
            0xE1..=0xEC | 0xEE..=0xEF => (2, 0x80, 0xBF),
            0xED => (2, 0x80, 0x9F),
            0xF0 => (3, 0x90, 0xBF),
            0xF1..=0xF3 => (3, 0x80, 0xBF),
            0xF4 => (3, 0x80, 0x8F),
            _ => return Step::Rejected,
        };
        self.chars += 1;
        self.need = need;
        self.lo = lo;
        self.hi = hi;
        Step::Consumed
    }

    /// After the opening quote, with no escape or character half written: how many more
    /// characters fit.
    pub fn room(&self, max_chars: Option<u32>) -> Option<u32> {
        (self.started && self.escape == Escape::None && self.need == 0)
            .then(|| max_chars.map_or(u32::MAX, |m| m.saturating_sub(self.chars)))
    }

    /// Fewest bytes that complete the string (pending escape or UTF-8 bytes, the quote).
    pub fn min_to_end(&self) -> u32 {
        if !self.started {
            return 2;
        }
        let escape = match self.escape {
            Escape::None => 0,
            Escape::Backslash => 1,
            Escape::Hex { index, .. } => 4 - index as u32,
        };
        escape + self.need as u32 + 1
    }
}

/// An integer in `[min, max]`: an optional `-` (only when negatives are in range), no leading
/// zeros, no `-0`, and no digit that would leave the range whatever follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IntLexer {
    negative: bool,
    digits: u8,
    magnitude: u64,
}

/// Most digits of an `i64`.
const MAX_INT_DIGITS: u32 = 19;

impl IntLexer {
    pub fn step(&mut self, b: u8, min: i64, max: i64) -> Step {
        if b == b'-' && self.digits == 0 && !self.negative {
            return if min < 0 {
                self.negative = true;
                Step::Consumed
            } else {
                Step::Rejected
            };
        }
        if b.is_ascii_digit() {
            let d = (b - b'0') as u64;
            let extendable = !(self.digits > 0 && self.magnitude == 0);
            if extendable && !(self.negative && self.digits == 0 && d == 0) {
                let next = IntLexer {
                    negative: self.negative,
                    digits: self.digits + 1,
                    magnitude: self.magnitude.saturating_mul(10).saturating_add(d),
                };
                if next.fewest_more_digits(min, max).is_some() {
                    *self = next;
                    return Step::Consumed;
                }
            }
        }
        if self.is_complete(min, max) {
            Step::EndedBefore
        } else {
            Step::Rejected
        }
    }

    /// Whether the digits so far already form an integer in range.
    pub fn is_complete(&self, min: i64, max: i64) -> bool {
        self.digits > 0 && self.fits_with(0, min, max)
    }

    /// Whether some integer in range is this prefix followed by exactly `k` more digits.
    fn fits_with(&self, k: u32, min: i64, max: i64) -> bool {
        if self.digits as u32 + k > MAX_INT_DIGITS || (self.digits == 0 && k == 0) {
            return false;
        }
        // Magnitudes in range for this sign.
        let (lo, hi) = if self.negative {
            (-(max as i128), -(min as i128))
        } else {
            (min as i128, max as i128)
        };
        let (lo, hi) = (lo.max(0), hi);
        if hi < lo {
            return false;
        }
        let p = 10i128.pow(k);
        let (a, b) = if self.digits == 0 {
            // k fresh digits, no leading zero (a single 0 only without a sign).
            let first = if k == 1 && !self.negative { 0 } else { p / 10 };
            (first, p - 1)
        } else if self.magnitude == 0 {
            if k > 0 {
                return false;
            }
            (0, 0)
        } else {
            let m = self.magnitude as i128;
            (m * p, m * p + p - 1)
        };
        a <= hi && lo <= b
    }

    /// Fewest further digits that reach an integer in range, if any does.
    fn fewest_more_digits(&self, min: i64, max: i64) -> Option<u32> {
        (0..=MAX_INT_DIGITS).find(|&k| self.fits_with(k, min, max))
    }

    /// Fewest bytes that complete an integer in range (a `-` counts when only negatives fit).
    pub fn min_to_end(&self, min: i64, max: i64) -> u32 {
        let own = self.fewest_more_digits(min, max);
        if self.digits == 0 && !self.negative && min < 0 {
            let neg = IntLexer {
                negative: true,
                ..*self
            };
            let via_minus = neg.fewest_more_digits(min, max).map(|k| k + 1);
            return own.into_iter().chain(via_minus).min().unwrap_or(u32::MAX);
        }
        own.unwrap_or(u32::MAX)
    }
}

/// Longest integer part and fraction of a `number` (bounded so that a number always ends).
pub const MAX_NUMBER_DIGITS: u8 = 15;

/// Where a number is: `-?(0|[1-9][0-9]*)(\.[0-9]+)?`, without exponent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum NumPhase {
    #[default]
    Start,
    Minus,
    Zero,
    Int(u8),
    Dot,
    Frac(u8),
}

/// A JSON number with at most [`MAX_NUMBER_DIGITS`] integer and fraction digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NumLexer {
    phase: NumPhase,
}

impl NumLexer {
    pub fn step(&mut self, b: u8) -> Step {
        use NumPhase::*;
        let digit = b.is_ascii_digit();
        let next = match (self.phase, b) {
            (Start, b'-') => Minus,
            (Start | Minus, b'0') => Zero,
            (Start | Minus, _) if digit => Int(1),
            (Zero, b'.') | (Int(_), b'.') => Dot,
            (Int(n), _) if digit && n < MAX_NUMBER_DIGITS => Int(n + 1),
            (Dot, _) if digit => Frac(1),
            (Frac(n), _) if digit && n < MAX_NUMBER_DIGITS => Frac(n + 1),
            _ => {
                return if self.is_complete() {
                    Step::EndedBefore
                } else {
                    Step::Rejected
                }
            }
        };
        self.phase = next;
        Step::Consumed
    }

    pub fn is_complete(&self) -> bool {
        matches!(
            self.phase,
            NumPhase::Zero | NumPhase::Int(_) | NumPhase::Frac(_)
        )
    }

    pub fn min_to_end(&self) -> u32 {
        if self.is_complete() {
            0
        } else {
            1
        }
    }
}

/// One of several fixed texts (enum values, `true`/`false`), matched byte by byte; a text that
/// is a prefix of another (`1` and `12`) ends on the byte that follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChoiceLexer {
    pos: u16,
    /// Bit i: alternative i still matches.
    alive: u64,
}

impl ChoiceLexer {
    pub fn new(alternatives: usize) -> Self {
        ChoiceLexer {
            pos: 0,
            alive: if alternatives >= 64 {
                u64::MAX
            } else {
                (1u64 << alternatives) - 1
            },
        }
    }

    fn alive<'a>(&self, alts: &'a [Box<[u8]>]) -> impl Iterator<Item = &'a [u8]> + 'a {
        let alive = self.alive;
        alts.iter()
            .enumerate()
            .filter(move |(i, _)| alive >> i & 1 == 1)
            .map(|(_, a)| &a[..])
    }

    pub fn step(&mut self, b: u8, alts: &[Box<[u8]>]) -> Step {
        let pos = self.pos as usize;
        let mut next = 0u64;
        for (i, a) in alts.iter().enumerate() {
            if self.alive >> i & 1 == 1 && a.get(pos) == Some(&b) {
                next |= 1 << i;
            }
        }
        if next == 0 {
            return if self.is_complete(alts) {
                Step::EndedBefore
            } else {
                Step::Rejected
            };
        }
        self.alive = next;
        self.pos += 1;
        if self.alive(alts).all(|a| a.len() == pos + 1) {
            Step::Finished
        } else {
            Step::Consumed
        }
    }

    pub fn is_complete(&self, alts: &[Box<[u8]>]) -> bool {
        self.pos > 0 && self.alive(alts).any(|a| a.len() == self.pos as usize)
    }

    pub fn min_to_end(&self, alts: &[Box<[u8]>]) -> u32 {
        self.alive(alts)
            .map(|a| (a.len() - self.pos as usize) as u32)
            .min()
            .unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `text`; returns the last step, or `Rejected` as soon as a byte is rejected.
    fn run(mut f: impl FnMut(u8) -> Step, text: &str) -> Step {
        let mut last = Step::Rejected;
        for b in text.bytes() {
            last = f(b);
            if last == Step::Rejected {
                return last;
            }
        }
        last
    }

    fn string(text: &str, max: Option<u32>) -> Step {
        let mut s = StrLexer::default();
        run(|b| s.step(b, max), text)
    }

    #[test]
    fn strings_take_escapes_and_utf8_and_count_characters() {
        assert_eq!(string(r#""a\"b\\c\n\t\u00e9""#, None), Step::Finished);
        assert_eq!(string("\"caf\u{e9} \u{1F600}\"", Some(6)), Step::Finished);
        assert_eq!(string("\"caf\u{e9} \u{1F600}\"", Some(5)), Step::Rejected);
        assert_eq!(string(r#""\u0041\u00e9""#, Some(2)), Step::Finished);
        assert_eq!(string(r#""\u0041\u00e9x""#, Some(2)), Step::Rejected);
        assert_eq!(string("\"a\nb\"", None), Step::Rejected, "raw newline");
        assert_eq!(string(r#""\x""#, None), Step::Rejected);
        assert_eq!(
            string(r#""\ud800""#, None),
            Step::Rejected,
            "lone surrogate"
        );
        assert_eq!(string(r#""\uDbff""#, None), Step::Rejected);
        assert_eq!(string(r#""\uD7FF""#, None), Step::Finished);
        // Overlong, surrogate and out-of-range UTF-8 are rejected.
        for bad in [
            &[b'"', 0xC0, 0x80][..],
            &[b'"', 0xED, 0xA0],
            &[b'"', 0xF4, 0x90],
            &[b'"', 0xE0, 0x80],
        ] {
            let mut s = StrLexer::default();
            let last = bad.iter().map(|&b| s.step(b, None)).last();
            assert_eq!(last, Some(Step::Rejected), "{bad:x?}");
        }
        // A split character stays pending: two bytes of a three-byte one need one more.
        let mut s = StrLexer::default();
        for &b in &[b'"', 0xE2, 0x82] {
            assert_eq!(s.step(b, None), Step::Consumed);
        }
        assert_eq!(s.min_to_end(), 2);
        assert_eq!(s.step(b'"', None), Step::Rejected);
    }

    fn int(text: &str, min: i64, max: i64) -> Step {
        let mut l = IntLexer::default();
        // The whole text must be the integer: ending before its last byte is a rejection.
        match run(|b| l.step(b, min, max), text) {
            Step::Consumed if l.is_complete(min, max) => Step::Finished,
            Step::EndedBefore => Step::Rejected,
            last => last,
        }
    }

    #[test]
    fn integer_ranges_forbid_every_out_of_range_prefix() {
        for ok in ["0", "1", "2", "3"] {
            assert_eq!(int(ok, 0, 3), Step::Finished, "{ok}");
        }
        for bad in ["4", "-", "-1", "00", "01", "10", "30"] {
            assert_eq!(int(bad, 0, 3), Step::Rejected, "{bad}");
        }
        for ok in ["-5", "-1", "0", "9", "10", "12"] {
            assert_eq!(int(ok, -5, 12), Step::Finished, "{ok}");
        }
        for bad in ["-6", "-0", "-05", "13", "20", "-10", "012"] {
            assert_eq!(int(bad, -5, 12), Step::Rejected, "{bad}");
        }
        for ok in ["10", "99", "100", "250", "199"] {
            assert_eq!(int(ok, 10, 250), Step::Finished, "{ok}");
        }
        for bad in ["0", "251", "260", "1000", "-1"] {
            assert_eq!(int(bad, 10, 250), Step::Rejected, "{bad}");
        }
        // "3" and "9" are not in range yet but grow into it (30, 99): prefixes, not rejections.
        for prefix in ["1", "2", "3", "9", "25"] {
            let mut l = IntLexer::default();
            assert!(
                prefix.bytes().all(|b| l.step(b, 10, 250) == Step::Consumed),
                "{prefix}"
            );
        }
        let mut l = IntLexer::default();
        assert_eq!(l.step(b'2', 10, 250), Step::Consumed);
        assert_eq!(l.step(b'6', 10, 250), Step::Consumed);
        assert_eq!(
            l.step(b'0', 10, 250),
            Step::EndedBefore,
            "260 exceeds 250: 26 ended"
        );
        let mut l = IntLexer::default();
        assert_eq!(l.step(b'2', 10, 250), Step::Consumed);
        assert!(!l.is_complete(10, 250));
        assert_eq!(l.min_to_end(10, 250), 1);
        assert_eq!(l.step(b',', 10, 250), Step::Rejected);
        assert_eq!(IntLexer::default().min_to_end(-20, -10), 3);
        assert_eq!(IntLexer::default().min_to_end(100, 200), 3);
        // The full i64 range works without overflow.
        assert_eq!(
            int("-9223372036854775808", i64::MIN, i64::MAX),
            Step::Finished
        );
        assert_eq!(
            int("9223372036854775807", i64::MIN, i64::MAX),
            Step::Finished
        );
        assert_eq!(
            int("9223372036854775808", i64::MIN, i64::MAX),
            Step::Rejected
        );
    }

    #[test]
    fn numbers_end_on_the_following_byte() {
        let num = |t: &str| {
            let mut l = NumLexer::default();
            (run(|b| l.step(b), t), l.is_complete())
        };
        assert_eq!(num("-0.25"), (Step::Consumed, true));
        assert_eq!(num("12,"), (Step::EndedBefore, true));
        assert_eq!(num("1."), (Step::Consumed, false));
        assert_eq!(
            num("01").0,
            Step::EndedBefore,
            "0 then a digit: the number ended at 0"
        );
        assert_eq!(num(".5").0, Step::Rejected);
        assert!(!num("-").1);
        assert_eq!(
            num("1234567890123456").0,
            Step::EndedBefore,
            "16 integer digits"
        );
    }

    #[test]
    fn choices_match_prefix_sharing_texts() {
        let alts: Vec<Box<[u8]>> = ["1", "12", "\"ab\""]
            .iter()
            .map(|s| s.as_bytes().into())
            .collect();
        let mut c = ChoiceLexer::new(alts.len());
        assert_eq!(c.step(b'1', &alts), Step::Consumed);
        assert!(c.is_complete(&alts));
        assert_eq!(c.step(b'}', &alts), Step::EndedBefore);
        assert_eq!(c.step(b'2', &alts), Step::Finished);
        let mut c = ChoiceLexer::new(alts.len());
        assert_eq!(run(|b| c.step(b, &alts), "\"ab\""), Step::Finished);
        let mut c = ChoiceLexer::new(alts.len());
        assert_eq!(run(|b| c.step(b, &alts), "\"ac"), Step::Rejected);
    }
}
