//! The client-facing reply held to its rules while it streams.
//!
//! Text is held back until a sentence is complete; a complete sentence is emitted only when it
//! names no forbidden label and fits the word budget (less the words kept free for required
//! text appended at the end, the crisis protocol). What the guard emits is exactly what the
//! transcript records. A crisis reply (high risk and above) streams nothing here: it is
//! checked whole once drafting is over (`crisis_draft`).

use psy_core::planner::Constraints;
use psy_core::reply_rules::{self, forbidden_labels, word_count, word_limit};

/// The reply as it streams, checked sentence by sentence.
pub(crate) struct ReplyGuard<'a> {
    c: &'a Constraints,
    /// Streamed text not yet emitted: an incomplete sentence.
    pending: String,
    emitted: String,
    limit: Option<usize>,
    /// Words kept free for required text appended at the end (the crisis protocol).
    reserve: usize,
    budget_reached: bool,
    /// Crisis reply: nothing streams until the draft is complete and checked as a whole.
    hold: bool,
    /// Whitespace after the last emitted sentence, sent only when another sentence follows,
    /// so that the streamed text equals the recorded reply.
    gap: String,
}

/// What the guard made of newly complete sentences.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct GuardStep {
    /// Text to stream to the client.
    pub emit: String,
    /// A complete sentence named these labels (it was withheld).
    pub labels: Vec<String>,
}

impl<'a> ReplyGuard<'a> {
    pub fn new(c: &'a Constraints) -> Self {
        let reserve = reply_rules::reserved_words(c.rules.iter().map(|r| &r.rule));
        ReplyGuard {
            c,
            pending: String::new(),
            emitted: String::new(),
            limit: word_limit(c),
            reserve,
            budget_reached: false,
            hold: c.crisis_protocol_required,
            gap: String::new(),
        }
    }

    /// The reply emitted so far.
    pub fn emitted(&self) -> &str {
        &self.emitted
    }

    /// The emitted reply and the space after it: where a continuation picks up.
    pub fn clean_text(&self) -> String {
        format!("{}{}", self.emitted, self.gap)
    }

    /// The reply is held back until it is checked whole (a crisis reply).
    pub fn holds(&self) -> bool {
        self.hold
    }

    /// The reply stopped at its word budget: nothing more is taken.
    pub fn budget_reached(&self) -> bool {
        self.budget_reached
    }

    /// Whether the text held back is an unfinished sentence: something other than white space
    /// that does not end as a sentence does (`.`, `!`, `?`, `…`, then closing quotes, brackets
    /// or emphasis). A last sentence held only because more text might have followed is
    /// finished.
    pub fn has_unfinished(&self) -> bool {
        let closers: &[char] = &['"', '\'', '\u{201d}', '\u{2019}', ')', ']', '*'];
        let body = self.pending.trim_end().trim_end_matches(closers);
        !body.trim().is_empty() && !body.ends_with(['.', '!', '?', '\u{2026}'])
    }

    /// Drops the incomplete sentence held back (the draft it came from is abandoned).
    pub fn discard_pending(&mut self) {
        self.pending.clear();
    }

    /// Checks and emits what is left of the draft, complete or not.
    pub fn finish(&mut self) -> GuardStep {
        self.push("", true, false)
    }

    /// Adds streamed text; complete sentences are checked and emitted (all of it at `end`).
    /// Stops at the first sentence naming a label when `stop_on_label`.
    pub fn push(&mut self, delta: &str, end: bool, stop_on_label: bool) -> GuardStep {
        let mut step = GuardStep::default();
        if self.budget_reached {
            return step;
        }
        self.pending.push_str(delta);
        let parts: Vec<String> = reply_rules::sentences(&self.pending)
            .into_iter()
            .map(str::to_string)
            .collect();
        let complete = if end {
            parts.len()
        } else {
            parts.len().saturating_sub(1)
        };
        let mut consumed = 0;
        for s in &parts[..complete] {
            consumed += s.len();
            let labels = forbidden_labels(self.c, s);
            if !labels.is_empty() {
                step.labels.extend(labels);
                if stop_on_label {
                    break;
                }
                continue;
            }
            let mut body = s.trim_end().to_string();
            if let Some(limit) = self.limit {
                let budget = limit.saturating_sub(self.reserve);
                if word_count(&self.emitted) + word_count(s) > budget {
                    self.budget_reached = true;
                    if !self.emitted.trim().is_empty() {
                        break;
                    }
                    // One endless first sentence: cut it at the budget.
                    body = s
                        .split_whitespace()
                        .take(budget)
                        .collect::<Vec<_>>()
                        .join(" ");
                    body.push('…');
                }
            }
            // A reply never opens with blank space.
            let piece = if self.emitted.trim().is_empty() {
                body.trim_start().to_string()
            } else {
                format!("{}{body}", self.gap)
            };
            self.gap = s[s.trim_end().len()..].to_string();
            self.emitted.push_str(&piece);
            if !self.hold {
                step.emit.push_str(&piece);
            }
            if self.budget_reached {
                break;
            }
        }
        self.pending.drain(..consumed);
        step
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::fixtures::{constraints, crisis_protocol, forbid_labels, max_words};

    #[test]
    fn a_sentence_is_held_back_until_it_is_complete() {
        let c = constraints(vec![forbid_labels(), max_words(20)]);
        let mut g = ReplyGuard::new(&c);
        assert_eq!(g.push("I hear ", false, true), GuardStep::default());
        let step = g.push("you. What keeps", false, true);
        assert_eq!(step.emit, "I hear you.");
        // The space after a sentence goes out only with the next sentence.
        assert_eq!(g.finish().emit, " What keeps");
        assert_eq!(g.emitted(), "I hear you. What keeps");
    }

    #[test]
    fn the_first_sentence_naming_a_label_stops_the_guard_when_asked() {
        let c = constraints(vec![forbid_labels(), max_words(20)]);
        let mut g = ReplyGuard::new(&c);
        g.push("I hear you. It sounds like ins", false, true);
        let step = g.push("omnia to me. What keeps you up? ", false, true);
        assert_eq!(step.emit, "");
        assert_eq!(step.labels, ["insomnia"]);
        assert_eq!(g.clean_text(), "I hear you. ");
        // Without the stop, the sentence is withheld and the next one goes out.
        let mut g = ReplyGuard::new(&c);
        let step = g.push(
            "I hear you. Panic disorder, maybe. Go on. And",
            false,
            false,
        );
        assert_eq!(step.emit, "I hear you. Go on.");
        assert_eq!(step.labels, ["panic disorder"]);
    }

    #[test]
    fn the_reply_stops_at_the_last_sentence_end_within_the_budget() {
        let c = constraints(vec![max_words(8)]);
        let mut g = ReplyGuard::new(&c);
        let step = g.push(
            "One two three four five. Six seven eight nine. Ten. ",
            false,
            true,
        );
        assert_eq!(step.emit, "One two three four five.");
        assert!(g.budget_reached());
        assert_eq!(g.push("More words. ", false, true), GuardStep::default());
        assert_eq!(g.finish(), GuardStep::default());
    }

    #[test]
    fn an_endless_first_sentence_is_cut_at_the_budget() {
        let c = constraints(vec![max_words(4)]);
        let mut g = ReplyGuard::new(&c);
        assert_eq!(
            g.push("  and so on and so on", true, true).emit,
            "and so on and…"
        );
        assert!(g.budget_reached());
    }

    #[test]
    fn words_are_kept_free_for_required_text() {
        // 10 words less the 6 of the crisis protocol's repair text.
        let c = constraints(vec![max_words(10), crisis_protocol()]);
        let mut g = ReplyGuard::new(&c);
        let step = g.push("I am here. You matter. Tell me more. ", false, true);
        assert_eq!(step.emit, "I am here.");
        assert!(g.budget_reached());
    }

    #[test]
    fn a_discarded_draft_leaves_no_pending_text() {
        let c = constraints(vec![max_words(20)]);
        let mut g = ReplyGuard::new(&c);
        g.push("Fine. Half a sen", false, true);
        g.discard_pending();
        assert_eq!(g.push("tence. Next", false, true).emit, " tence.");
        assert_eq!(g.emitted(), "Fine. tence.");
    }

    #[test]
    fn a_crisis_reply_is_held_back_whole() {
        let mut c = constraints(vec![max_words(40), crisis_protocol()]);
        c.crisis_protocol_required = true;
        let mut g = ReplyGuard::new(&c);
        assert!(g.holds());
        assert_eq!(g.push("I hear you. You matter. ", false, true).emit, "");
        assert_eq!(g.finish().emit, "");
        assert_eq!(g.emitted(), "I hear you. You matter.");
    }
}
