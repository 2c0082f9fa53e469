//! Reads how long something has lasted from client text ("for 8 months", "the last two
//! weeks", "since the divorce"). Durations decide whether a threshold rule holds, so an
//! anchored but unmeasured time ("since March", "since the divorce") is kept as text with
//! `days = None` rather than guessed.
//!
//! Numbers come from client text, so every product and sum saturates: "for 20000000 years"
//! reads as the longest representable duration, never as an overflow.

use psy_core::lexicon::{Text, Token};

/// A stated duration in a message.
#[derive(Clone, Debug, PartialEq)]
pub struct Mention {
    pub message: usize,
    pub start: usize,
    pub end: usize,
    pub text: String,
    /// Length in days when it can be read; `None` for an event anchor.
    pub days: Option<u32>,
}

const PREFIX_WORDS: &[&str] = &[
    "for", "the", "past", "last", "over", "almost", "about", "nearly", "around", "like", "than",
    "more", "least", "at",
];
const MONTHS: &[&str] = &[
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "christmas",
    "summer",
    "winter",
    "spring",
    "autumn",
    "fall",
];
/// Phrases meaning "for most of my life"; read as ten years (longer than any rule needs).
const LIFELONG: &[&[&str]] = &[
    &["since", "i", "was", "a", "kid"],
    &["since", "i", "was", "a", "child"],
    &["since", "i", "was", "little"],
    &["since", "i", "was", "a", "teenager"],
    &["since", "i", "was", "a", "teen"],
    &["since", "childhood"],
    &["my", "whole", "life"],
    &["my", "entire", "life"],
    &["all", "my", "life"],
    &["as", "long", "as", "i", "can", "remember"],
    &["since", "forever"],
];
const LIFELONG_DAYS: u32 = 3650;

fn number(word: &str) -> Option<u32> {
    if let Ok(n) = word.parse::<u32>() {
        return Some(n);
    }
    Some(match word {
        "a" | "an" | "one" => 1,
        "two" | "couple" => 2,
        "three" | "few" | "several" => 3,
        "four" => 4,
        "five" => 5,
        "six" => 6,
        "seven" => 7,
        "eight" => 8,
        "nine" => 9,
        "ten" => 10,
        "eleven" => 11,
        "twelve" => 12,
        "fifteen" => 15,
        "eighteen" => 18,
        "twenty" => 20,
        "thirty" => 30,
        _ => return None,
    })
}

fn unit(word: &str) -> Option<(u32, bool)> {
    Some(match word {
        "day" | "night" => (1, false),
        "days" | "nights" => (1, true),
        "week" => (7, false),
        "weeks" => (7, true),
        "fortnight" => (14, false),
        "month" => (30, false),
        "months" => (30, true),
        "year" => (365, false),
        "years" => (365, true),
        _ => return None,
    })
}

fn is(tokens: &[Token], i: usize, w: &str) -> bool {
    tokens.get(i).is_some_and(|t| t.norm == w)
}

/// All durations stated in one message, in text order.
pub fn extract(message: usize, raw: &str) -> Vec<Mention> {
    let text = Text::new(raw);
    let t = &text.tokens;
    let mut out = Vec::new();
    let mut used_until = 0usize;
    let mention = |from: usize, to: usize, days: Option<u32>| Mention {
        message,
        start: t[from].start,
        end: t[to].end,
        text: raw[t[from].start..t[to].end].to_string(),
        days,
    };
    let mut i = 0;
    while i < t.len() {
        if i < used_until {
            i += 1;
            continue;
        }
        if let Some(p) = LIFELONG
            .iter()
            .find(|p| p.iter().enumerate().all(|(k, w)| is(t, i + k, w)))
        {
            out.push(mention(i, i + p.len() - 1, Some(LIFELONG_DAYS)));
            used_until = i + p.len();
            i = used_until;
            continue;
        }
        if t[i].norm == "since" {
            // An anchor: "since March", "since the divorce", "ever since my mom died".
            let clause = t[i].clause;
            let mut end = i;
            while end + 1 < t.len() && t[end + 1].clause == clause && end - i < 5 {
                end += 1;
            }
            if end > i {
                let from = if i > 0 && t[i - 1].norm == "ever" {
                    i - 1
                } else {
                    i
                };
                let to = if MONTHS.contains(&t[i + 1].norm.as_str()) {
                    i + 1
                } else {
                    end
                };
                out.push(mention(from, to, None));
                used_until = to + 1;
                i = used_until;
                continue;
            }
        }
        if let Some((unit_days, plural)) = unit(&t[i].norm) {
            if let Some(m) = read_quantity(t, i, unit_days, plural) {
                let (from, days) = m;
                // Include "for", "the last", "past" ... before the number in the text.
                let mut from = from;
                while from > 0 && PREFIX_WORDS.contains(&t[from - 1].norm.as_str()) {
                    from -= 1;
                }
                let mut to = i;
                let mut days = days;
                // "a year and a half"
                if is(t, i + 1, "and") && is(t, i + 2, "a") && is(t, i + 3, "half") {
                    days = days.saturating_add(unit_days / 2);
                    to = i + 3;
                }
                if is(t, to + 1, "ago") {
                    to += 1;
                }
                out.push(mention(from, to, Some(days)));
                used_until = to + 1;
                i = used_until;
                continue;
            }
        }
        i += 1;
    }
    out
}

/// Reads the quantity before the unit at `u`; returns the first token of the quantity and
/// the days. Skips frequencies ("3 days a week", "twice a month"), ages and future times.
fn read_quantity(t: &[Token], u: usize, unit_days: u32, plural: bool) -> Option<(usize, u32)> {
    let next = t.get(u + 1).map(|x| x.norm.as_str());
    if matches!(
        next,
        Some("a" | "an" | "per" | "old" | "older" | "younger" | "each" | "later")
    ) {
        return None;
    }
    let frequency_before = |i: usize| {
        i > 0
            && (matches!(
                t[i - 1].norm.as_str(),
                "once" | "twice" | "times" | "every" | "in" | "next" | "per" | "each"
            ) || unit(&t[i - 1].norm).is_some())
    };
    // "half a year"
    if u >= 2 && t[u - 1].norm == "a" && t[u - 2].norm == "half" {
        return Some((u - 2, unit_days / 2));
    }
    // Number right before the unit, or "couple of" / "few" forms.
    let mut q = u.checked_sub(1)?;
    if t[q].norm == "of" {
        q = q.checked_sub(1)?;
    }
    if let Some(n) = number(&t[q].norm) {
        let mut from = q;
        if matches!(t[q].norm.as_str(), "couple" | "few") && q > 0 && t[q - 1].norm == "a" {
            from = q - 1;
        }
        // "a" alone stands only before a singular unit ("a month", not "a days").
        if matches!(t[q].norm.as_str(), "a" | "an") && plural {
            return None;
        }
        if frequency_before(from) {
            return None;
        }
        // "twenty five years" / "twenty-five"
        let mut n = n;
        if from > 0 && q == from {
            if let Some(tens) = number(&t[from - 1].norm).filter(|v| *v >= 20) {
                n = n.saturating_add(tens);
                from -= 1;
            }
        }
        if let Some((a, b)) = t[q].norm.split_once('-') {
            if let (Some(x), Some(y)) = (number(a), number(b)) {
                n = x.saturating_add(y);
            }
        }
        return Some((from, n.saturating_mul(unit_days)));
    }
    if let Some((a, b)) = t[q].norm.split_once('-') {
        if let (Some(x), Some(y)) = (number(a), number(b)) {
            return Some((q, x.saturating_add(y).saturating_mul(unit_days)));
        }
    }
    // "for months", "the past weeks": at least two units.
    if plural
        && matches!(
            t[u - 1].norm.as_str(),
            "for" | "past" | "last" | "over" | "many"
        )
    {
        return Some((u - 1, unit_days.saturating_mul(2)));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_numbers_saturate_instead_of_overflowing() {
        for text in [
            "for 20000000 years",
            "for 4294967295 years",
            "for twenty 4294967295 years",
            "for 4294967295-4294967295 years",
            "for 4294967295 years and a half",
        ] {
            let m = extract(0, text);
            assert_eq!(m.len(), 1, "{text}: {m:?}");
            assert_eq!(m[0].days, Some(u32::MAX), "{text}");
        }
        // Beyond u32 the number is not read at all: the words stay unmeasured.
        assert!(extract(0, "for 99999999999999999999 years").is_empty());
    }

    fn one(s: &str) -> (String, Option<u32>) {
        let m = extract(0, s);
        assert_eq!(m.len(), 1, "{s}: {m:?}");
        (m[0].text.clone(), m[0].days)
    }

    #[test]
    fn reads_numbers_and_words() {
        assert_eq!(
            one("I've felt like this for 8 months now"),
            ("for 8 months".into(), Some(240))
        );
        assert_eq!(
            one("the last two weeks were awful"),
            ("the last two weeks".into(), Some(14))
        );
        assert_eq!(
            one("for the past few months"),
            ("for the past few months".into(), Some(90))
        );
        assert_eq!(one("it's been 2 years"), ("2 years".into(), Some(730)));
        assert_eq!(
            one("a couple of weeks ago it started"),
            ("a couple of weeks ago".into(), Some(14))
        );
        assert_eq!(
            one("about a year and a half"),
            ("about a year and a half".into(), Some(547))
        );
        assert_eq!(
            one("twenty-five years"),
            ("twenty-five years".into(), Some(9125))
        );
        assert_eq!(one("for months"), ("for months".into(), Some(60)));
        assert_eq!(one("half a year"), ("half a year".into(), Some(182)));
    }

    #[test]
    fn anchors_have_no_length() {
        assert_eq!(
            one("I haven't slept since the divorce."),
            ("since the divorce".into(), None)
        );
        assert_eq!(
            one("since March, every night"),
            ("since March".into(), None)
        );
        assert_eq!(
            one("I've been like this since I was a kid"),
            ("since I was a kid".into(), Some(3650))
        );
    }

    #[test]
    fn skips_frequencies_ages_and_future() {
        assert!(extract(0, "I drink 3 days a week").is_empty());
        assert!(extract(0, "twice a month I binge").is_empty());
        assert!(extract(0, "my son is 5 years old").is_empty());
        assert!(extract(0, "the exam is in two weeks").is_empty());
    }
}
