//! Whether a model's draft may stand in a crisis reply.
//!
//! At high or imminent risk the protocol text is safe by construction; a small model's draft
//! is not. A draft is kept beside the protocol only if it passes every check below, over the
//! draft, the client's message and the plan; otherwise the reply is the protocol alone. The
//! phrase lists follow published safe-messaging guidance (no minimising, no praise or
//! romanticising, no method details) and err on the side of dropping a draft: losing a warm
//! sentence costs little, keeping a harmful one costs a great deal.

use std::collections::BTreeSet;
use std::fmt;

use psy_core::module::RiskLevel;
use psy_core::planner::Plan;
use psy_core::reply_rules::missing_required;

/// Why a draft was not kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DraftFault {
    /// Nothing complete was left once an unfinished last sentence was dropped.
    Empty,
    /// It neither shares a content word with the client's message nor acknowledges it.
    Unacknowledged,
    /// It repeats the client's message back instead of answering it.
    Echo { overlap_percent: usize },
    /// It minimises, praises or romanticises self-harm (the phrase found).
    Minimising(String),
    /// It gives a method detail: an amount, a height, a how-to (the text found).
    MethodDetail(String),
    /// At imminent risk it asks again about thoughts the client has already acted on.
    AsksAgain(String),
    /// It answers with a list or headed steps (the line found): advice to work through, where
    /// a crisis reply stays with the person in a few sentences and asks about their safety.
    AdviceList(String),
    /// It lectures, debates or blames (the phrase found): judging the thought or the person
    /// instead of staying with them.
    Lecturing(String),
}

impl fmt::Display for DraftFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DraftFault::Empty => write!(f, "draft had no complete sentence"),
            DraftFault::Unacknowledged => {
                write!(f, "draft does not acknowledge what the client said")
            }
            DraftFault::Echo { overlap_percent } => write!(
                f,
                "draft echoes the client's message ({overlap_percent}% of its words are theirs)"
            ),
            DraftFault::Minimising(p) => write!(f, "draft minimises or romanticises: \"{p}\""),
            DraftFault::MethodDetail(p) => write!(f, "draft gives a method detail: \"{p}\""),
            DraftFault::AsksAgain(p) => write!(
                f,
                "draft asks about thoughts the client has already acted on: \"{p}\""
            ),
            DraftFault::AdviceList(p) => write!(f, "draft answers with a list: \"{p}\""),
            DraftFault::Lecturing(p) => write!(f, "draft lectures or blames: \"{p}\""),
        }
    }
}

/// Phrases that acknowledge what was said without repeating it.
const ACKNOWLEDGEMENTS: &[&str] = &[
    "thank you for telling",
    "thanks for telling",
    "thank you for sharing",
    "glad you told",
    "glad you reached out",
    "glad you're talking",
    "i hear you",
    "i can hear",
    "it sounds like",
    "that sounds",
    "i'm so sorry",
    "i am so sorry",
    "i'm really sorry",
    "i'm worried about you",
    "i am worried about you",
    "what you just told me",
    "what you've told me",
    "you said",
];

/// Minimising, dismissing, praising or romanticising self-harm or a goodbye.
const MINIMISING: &[&str] = &[
    "beautiful",
    "lovely",
    "poetic",
    "just smile",
    "cheer up",
    "bright side",
    "could be worse",
    "not that bad",
    "not a big deal",
    "no big deal",
    "everyone feels",
    "everybody feels",
    "snap out of",
    "get over it",
    "you'll be fine",
    "you will be fine",
    "calm down",
    // Normalising what they describe ("it's normal to feel tired after taking pills").
    "it's normal",
    "it is normal",
    "that's normal",
    "perfectly normal",
    "completely normal",
    "nothing to worry about",
    "don't worry",
    "no need to worry",
    "brave decision",
    "brave choice",
    "courageous decision",
    "respect your decision",
    "respect your choice",
    "understand your decision",
    "your decision to",
    // Suicide framed as a considered choice ("the decision to end your life can be very
    // difficult"): seen in a kept crisis draft of Qwen2.5-Coder-1.5B (README, Which default model).
    "the decision to end",
    "decision to end your life",
    "decision to take your life",
    "decision to kill yourself",
    "at peace",
    "rest in peace",
    "better place",
    "a relief",
    "farewell",
    "i'll miss you",
    "i will miss you",
    "goodbye to you",
];

/// Lecturing, debating whether ending one's life is right, or blaming. Safe-messaging guidance
/// for crisis replies: do not debate or judge the person's reasons, do not lecture on the value
/// of life, do not make them feel guilty; stay with them and ask about their safety. Seen in a
/// kept draft of Qwen2.5-Coder-1.5B (README, "Replies in prose"): "you're aware of the potential
/// consequences of your actions. However, ... taking action to end your life is never a good
/// idea".
const LECTURING: &[&str] = &[
    "never a good idea",
    "never the answer",
    "not the answer",
    "never the solution",
    "not the solution",
    "permanent solution",
    "consequences of your actions",
    "consequences of your decision",
    "consequences of your choices",
    "think about your family",
    "think of your family",
    "think about the people who",
    "so much to live for",
    "everything to live for",
    "so much to be grateful",
    "you shouldn't feel",
    "you should not feel",
    "you shouldn't think",
    "shame on",
    "how could you",
];

/// How-to and lethality wording.
const METHOD_PHRASES: &[&str] = &[
    "how to kill",
    "how to end it",
    "how to overdose",
    "how to hang",
    "how to cut",
    "how much would",
    "how many would",
    "how many pills",
    "how much to take",
    "lethal",
    "fatal dose",
    "deadly dose",
    "enough to kill",
    "enough to die",
    "enough pills",
    "quickest way",
    "fastest way",
    "painless",
    "best way to die",
    "most effective way",
    "step by step",
    "high enough",
    "tall enough",
    "deep enough",
];

/// Units that make a number a dose, a count of pills or a height.
const AMOUNT_UNITS: &[&str] = &[
    "mg",
    "milligrams",
    "milligram",
    "g",
    "grams",
    "gram",
    "ml",
    "pills",
    "pill",
    "tablets",
    "tablet",
    "capsules",
    "doses",
    "feet",
    "foot",
    "ft",
    "metres",
    "meters",
    "m",
    "floors",
    "storeys",
    "stories",
];

/// Questions about suicidal thoughts: at imminent risk the client has already said.
const ASKS_AGAIN: &[&str] = &[
    "thinking of ending your life",
    "thinking about ending your life",
    "thinking of killing yourself",
    "thinking about killing yourself",
    "thinking of suicide",
    "thinking about suicide",
    "thoughts of suicide",
    "thoughts of ending your life",
    "want to end your life",
];

/// Words too common to show that a draft is about what the client said.
const STOPWORDS: &[&str] = &[
    "about",
    "after",
    "again",
    "also",
    "been",
    "before",
    "being",
    "could",
    "does",
    "doing",
    "from",
    "going",
    "have",
    "having",
    "here",
    "into",
    "just",
    "know",
    "like",
    "make",
    "more",
    "much",
    "need",
    "only",
    "really",
    "right",
    "some",
    "something",
    "than",
    "that",
    "their",
    "them",
    "then",
    "there",
    "these",
    "they",
    "thing",
    "things",
    "this",
    "those",
    "very",
    "want",
    "wanted",
    "were",
    "what",
    "when",
    "where",
    "which",
    "while",
    "with",
    "would",
    "your",
    "you're",
    "yours",
    "feel",
    "feeling",
    "think",
    "tell",
    "told",
    "said",
    "it's",
    "i'm",
    "i've",
    "don't",
    "can't",
];

/// A draft whose content words come at least this much from the client's message repeats it.
const ECHO_SHARE: f64 = 0.6;
/// Fewer content words than this are too few to call a draft an echo.
const ECHO_MIN_WORDS: usize = 4;

/// A draft that repeats this many of the client's words in a row repeats their message.
const ECHO_RUN: usize = 6;

/// The longest run of words two normalised texts share, in order.
fn longest_shared_run(a: &str, b: &str) -> usize {
    let a: Vec<&str> = a.split_whitespace().collect();
    let b: Vec<&str> = b.split_whitespace().collect();
    let mut best = 0;
    for i in 0..a.len() {
        for j in 0..b.len() {
            let n = a[i..]
                .iter()
                .zip(&b[j..])
                .take_while(|(x, y)| x == y)
                .count();
            best = best.max(n);
        }
    }
    best
}

/// The part of `draft` that ends at its last complete sentence (an unfinished tail, e.g. cut
/// by the token cap, is dropped: a protocol is never glued after a half sentence).
pub fn complete_part(draft: &str) -> &str {
    let trimmed = draft.trim();
    let end = trimmed
        .char_indices()
        .rev()
        .find(|(i, c)| {
            matches!(c, '.' | '!' | '?')
                // A decimal point or an ellipsis run is not a sentence end on its own.
                && !trimmed[i + 1..].starts_with(|n: char| n.is_ascii_digit() || n == '.')
                && !is_list_number(trimmed, *i)
        })
        .map(|(i, c)| i + c.len_utf8());
    let Some(mut end) = end else { return "" };
    // A closing quote or bracket belongs to the sentence.
    while let Some(c) = trimmed[end..].chars().next() {
        if matches!(c, '"' | '\'' | ')' | '”' | '’') {
            end += c.len_utf8();
        } else {
            break;
        }
    }
    &trimmed[..end]
}

/// Whether the period at byte `dot` of `text` closes a list item's number ("4." alone on its
/// line: a draft cut by the token cap right after it), not a sentence.
fn is_list_number(text: &str, dot: usize) -> bool {
    let line = text[..dot].rfind('\n').map_or(0, |j| j + 1);
    let head = text[line..dot].trim();
    !head.is_empty() && head.chars().all(|c| c.is_ascii_digit())
}

/// Checks a crisis draft (already cut to [`complete_part`]) against the client's message and
/// the plan. Below high risk every draft passes: these checks are for crisis replies only.
pub fn check_crisis_draft(draft: &str, client: &str, plan: &Plan) -> Result<(), DraftFault> {
    if plan.risk.level < RiskLevel::High {
        return Ok(());
    }
    let text = normalise(draft);
    if text.trim().is_empty() {
        return Err(DraftFault::Empty);
    }
    if let Some(p) = find_phrase(&text, MINIMISING) {
        return Err(DraftFault::Minimising(p));
    }
    if let Some(p) = find_phrase(&text, LECTURING) {
        return Err(DraftFault::Lecturing(p));
    }
    if let Some(p) = method_detail(&text) {
        return Err(DraftFault::MethodDetail(p));
    }
    if let Some(line) = advice_list_line(draft) {
        return Err(DraftFault::AdviceList(line));
    }
    if plan.risk.level >= RiskLevel::Imminent {
        if let Some(p) = find_phrase(&text, ASKS_AGAIN) {
            return Err(DraftFault::AsksAgain(p));
        }
    }
    let client_text = normalise(client);
    let run = longest_shared_run(&text, &client_text);
    if run >= ECHO_RUN {
        return Err(DraftFault::Echo {
            overlap_percent: 100 * run / text.split_whitespace().count().max(1),
        });
    }
    let ours = content_words(&text);
    let theirs = content_words(&client_text);
    if ours.len() >= ECHO_MIN_WORDS {
        let shared = ours.iter().filter(|w| theirs.contains(*w)).count();
        let share = shared as f64 / ours.len() as f64;
        if share >= ECHO_SHARE {
            return Err(DraftFault::Echo {
                overlap_percent: (share * 100.0).round() as usize,
            });
        }
    }
    let acknowledges =
        find_phrase(&text, ACKNOWLEDGEMENTS).is_some() || ours.iter().any(|w| theirs.contains(w));
    if !acknowledges {
        return Err(DraftFault::Unacknowledged);
    }
    Ok(())
}

/// The first line of `draft` that makes it a list of advice: a numbered item ("1. ..."), a
/// bullet ("- ", "* ", "• ") or a Markdown heading ("### Step 1"). Small models answered crisis
/// disclosures with self-help lists ("Educate Yourself: learn more about suicide prevention");
/// published safe-messaging guidance for crisis replies asks for a short, direct response that
/// stays with the person, so at high risk a listed draft is replaced by the protocol.
fn advice_list_line(draft: &str) -> Option<String> {
    draft.lines().map(str::trim).find_map(|line| {
        let numbered = line.split_once(['.', ')']).is_some_and(|(n, rest)| {
            !n.is_empty()
                && n.len() <= 2
                && n.chars().all(|c| c.is_ascii_digit())
                && rest.starts_with(' ')
        });
        let bullet = ["- ", "* ", "• "].iter().any(|b| line.starts_with(b));
        let heading = line.starts_with('#');
        (numbered || bullet || heading).then(|| line.chars().take(60).collect())
    })
}

/// Lower case, curly apostrophes straightened, words separated by single spaces, with a
/// space at each end so that phrases match whole words.
fn normalise(text: &str) -> String {
    let lower = text.to_lowercase().replace(['’', '‘'], "'");
    let words: Vec<String> = lower
        .split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '-'))
        .map(|w| w.trim_matches(['\'', '-']).to_string())
        .filter(|w| !w.is_empty())
        .collect();
    format!(" {} ", words.join(" "))
}

/// The first of `phrases` that occurs in normalised `text` as whole words.
fn find_phrase(text: &str, phrases: &[&str]) -> Option<String> {
    phrases
        .iter()
        .find(|p| text.contains(&format!(" {p} ")))
        .map(|p| p.to_string())
}

/// A how-to or lethality phrase, or a number followed by an amount or height unit.
fn method_detail(text: &str) -> Option<String> {
    if let Some(p) = find_phrase(text, METHOD_PHRASES) {
        return Some(p);
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    for (i, w) in words.iter().enumerate() {
        // "50mg" is one word; "50 mg" and "twenty pills" are two.
        let digits = w.trim_end_matches(|c: char| c.is_ascii_alphabetic());
        let glued_unit = &w[digits.len()..];
        let is_number = !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())
            || NUMBER_WORDS.contains(w);
        if !is_number {
            continue;
        }
        if !glued_unit.is_empty() && AMOUNT_UNITS.contains(&glued_unit) {
            return Some(w.to_string());
        }
        if let Some(unit) = words.get(i + 1).filter(|u| AMOUNT_UNITS.contains(*u)) {
            return Some(format!("{w} {unit}"));
        }
    }
    None
}

const NUMBER_WORDS: &[&str] = &[
    "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "twelve", "fifteen",
    "twenty", "thirty", "forty", "fifty", "hundred",
];

/// Content words: not stop words, four letters or more, with a plural or past `s`/`ed`/`ing`
/// ending taken off so that "pills" meets "pill".
fn content_words(text: &str) -> BTreeSet<String> {
    text.split_whitespace()
        .filter(|w| w.len() >= 4 && !STOPWORDS.contains(w))
        .map(stem)
        .collect()
}

fn stem(word: &str) -> String {
    for suffix in ["ing", "ed", "s"] {
        if let Some(base) = word.strip_suffix(suffix) {
            if base.len() >= 3 {
                return base.to_string();
            }
        }
    }
    word.to_string()
}

/// A crisis reply composed from a finished draft.
#[derive(Clone, Debug, PartialEq)]
pub struct CrisisReply {
    /// What the client reads.
    pub text: String,
    /// The part of the draft that was kept (empty when none was).
    pub kept: String,
    /// Why the draft was not kept, when it was not (an empty draft has no fault).
    pub fault: Option<DraftFault>,
    /// Ids of the required rules whose text was added.
    pub added: Vec<String>,
}

/// The reply at high risk and above: the draft's complete part when it passes
/// [`check_crisis_draft`], followed by the required text it lacks (the tier's protocol);
/// otherwise that text alone.
pub fn crisis_reply(draft: &str, client: &str, plan: &Plan) -> CrisisReply {
    let complete = complete_part(draft);
    let (kept, fault) = match check_crisis_draft(complete, client, plan) {
        Ok(()) => (complete.to_string(), None),
        Err(_) if draft.trim().is_empty() => (String::new(), None),
        Err(fault) => (String::new(), Some(fault)),
    };
    let mut text = kept.clone();
    let mut added = Vec::new();
    for (id, required) in missing_required(&plan.constraints, &kept) {
        if !text.is_empty() {
            text.push_str("\n\n");
        }
        text.push_str(&required);
        added.push(id);
    }
    CrisisReply {
        text,
        kept,
        fault,
        added,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::fixtures;
    use psy_core::manifest::PromptingMode;

    const OVERDOSE: &str =
        "I took all my pills an hour ago. I feel sleepy. Just wanted to say goodbye.";
    const THOUGHTS: &str = "I don't see the point anymore. I've been thinking about killing \
                            myself and I have pills saved up.";

    fn plan_at(level: RiskLevel) -> Plan {
        let mut plan = fixtures::plan(PromptingMode::Direct);
        plan.risk.level = level;
        plan
    }

    fn check(draft: &str, client: &str, level: RiskLevel) -> Result<(), DraftFault> {
        check_crisis_draft(complete_part(draft), client, &plan_at(level))
    }

    #[test]
    fn below_high_risk_every_draft_passes() {
        assert_eq!(check("Just smile!", THOUGHTS, RiskLevel::Moderate), Ok(()));
    }

    #[test]
    fn a_draft_that_acknowledges_by_form_or_by_content_passes() {
        let by_form = "Thank you for telling me. I'm here with you.";
        assert_eq!(check(by_form, THOUGHTS, RiskLevel::High), Ok(()));
        let by_content = "It matters that you can't see a point right now, and I want to \
                          understand what has made it so hard.";
        assert_eq!(check(by_content, THOUGHTS, RiskLevel::High), Ok(()));
        let overdose = "I'm so worried about you after those pills. Please get help now.";
        assert_eq!(check(overdose, OVERDOSE, RiskLevel::Imminent), Ok(()));
    }

    #[test]
    fn an_off_topic_draft_fails() {
        for d in [
            "Your words bring back memories of my own summer by the lake.",
            "Have you tried going for a walk? Fresh air helps.",
        ] {
            assert_eq!(
                check(d, OVERDOSE, RiskLevel::Imminent),
                Err(DraftFault::Unacknowledged),
                "{d}"
            );
        }
    }

    #[test]
    fn a_minimising_or_romanticising_draft_fails() {
        for (d, found) in [
            ("That's a beautiful perspective on goodbyes.", "beautiful"),
            ("I hear you. Just smile and it will pass.", "just smile"),
            (
                "It sounds hard, but everyone feels that way sometimes.",
                "everyone feels",
            ),
            (
                "Thank you for telling me. You'll be at peace soon.",
                "at peace",
            ),
            (
                "I respect your decision to say goodbye.",
                "respect your decision",
            ),
            // SmolLM2-135M's draft in `psy chat` on a turn after the overdose message.
            (
                "I'm so sorry to hear that. It's normal to feel tired after taking a lot of \
                 pills, especially if you're taking them for a long time.",
                "it's normal",
            ),
        ] {
            assert_eq!(
                check(d, THOUGHTS, RiskLevel::High),
                Err(DraftFault::Minimising(found.into())),
                "{d}"
            );
        }
    }

    #[test]
    fn a_draft_with_a_method_detail_fails() {
        for (d, found) in [
            (
                "Thank you for telling me. 20 pills would not be enough.",
                "20 pills",
            ),
            ("I hear you. Anything over 500mg is risky.", "500mg"),
            (
                "It sounds like you've thought about a bridge of 30 metres.",
                "30 metres",
            ),
            ("I hear you. Twenty tablets is a lot.", "twenty tablets"),
            (
                "Thank you for telling me. That is not a lethal amount.",
                "lethal",
            ),
            (
                "I hear you. I won't explain how to overdose.",
                "how to overdose",
            ),
        ] {
            assert_eq!(
                check(d, THOUGHTS, RiskLevel::High),
                Err(DraftFault::MethodDetail(found.into())),
                "{d}"
            );
        }
        // Numbers that are not amounts pass: a phone number, a time.
        let ok = "Thank you for telling me. Please call 988 in the next 5 minutes.";
        assert_eq!(check(ok, THOUGHTS, RiskLevel::High), Ok(()));
    }

    #[test]
    fn an_echo_of_the_clients_message_fails() {
        let echo = "You took all your pills an hour ago. You feel sleepy and wanted to say \
                    goodbye.";
        assert!(matches!(
            check(echo, OVERDOSE, RiskLevel::Imminent),
            Err(DraftFault::Echo { .. })
        ));
        // A short message repeated word for word is an echo too.
        let short = "I'm going to hurt him, I know where he lives.";
        assert!(matches!(
            check(short, short, RiskLevel::High),
            Err(DraftFault::Echo { .. })
        ));
        // Naming one thing they said, inside a reply of its own, is not an echo.
        let reply = "I'm so worried about the pills you took. Please call 911 right now, and \
                     unlock the door so help can reach you.";
        assert_eq!(check(reply, OVERDOSE, RiskLevel::Imminent), Ok(()));
    }

    #[test]
    fn at_imminent_risk_asking_about_suicidal_thoughts_again_fails() {
        let d = "Thank you for telling me. Are you thinking of ending your life?";
        assert_eq!(
            check(d, OVERDOSE, RiskLevel::Imminent),
            Err(DraftFault::AsksAgain("thinking of ending your life".into()))
        );
        // At high risk it is the right question.
        assert_eq!(check(d, THOUGHTS, RiskLevel::High), Ok(()));
    }

    #[test]
    fn an_unfinished_last_sentence_is_dropped_and_nothing_left_fails() {
        assert_eq!(
            complete_part("I hear you. You matter. And I wan"),
            "I hear you. You matter."
        );
        assert_eq!(complete_part("He said \"stop.\" Then"), "He said \"stop.\"");
        assert_eq!(complete_part("It was 2.5 hours"), "");
        // A list cut by the token cap after its next item's number (Qwen2.5-1.5B's crisis
        // draft in the demo script ended "...make a big difference.\n\n4.").
        assert_eq!(
            complete_part("1. **Call**: ring 988.\n\n2. Talk to someone.\n\n4."),
            "1. **Call**: ring 988.\n\n2. Talk to someone."
        );
        assert_eq!(complete_part("I counted to 3. Then"), "I counted to 3.");
        assert_eq!(
            check("and so on and so on…", THOUGHTS, RiskLevel::High),
            Err(DraftFault::Empty)
        );
    }

    #[test]
    fn a_draft_that_lectures_or_blames_fails() {
        // The 1.5B's draft that passed every other check (demo, turn 3), shortened.
        let kept =
            "It sounds like you're struggling with a lot of emotional turmoil. The fact that \
                    you're considering suicide suggests that you're aware of the potential \
                    consequences of your actions. However, taking action to end your life is \
                    never a good idea.";
        assert_eq!(
            check(kept, THOUGHTS, RiskLevel::High),
            Err(DraftFault::Lecturing("never a good idea".into()))
        );
        let guilt =
            "I hear how much pain you're in. Think about your family and how they would feel.";
        assert_eq!(
            check(guilt, THOUGHTS, RiskLevel::High),
            Err(DraftFault::Lecturing("think about your family".into()))
        );
        // Staying with the person is not lecturing.
        let staying = "I'm so glad you told me about the pills. That sounds like a lot of pain to \
                       carry, and I want to help you stay safe right now.";
        assert_eq!(check(staying, THOUGHTS, RiskLevel::High), Ok(()));
    }

    #[test]
    fn a_draft_that_answers_with_a_list_fails() {
        // The 1.5B's kept crisis drafts in the demo (README, Which default model), shortened.
        let numbered = "Thank you for sharing your concern. Here are some steps:\n\n\
                        1. **Seek Professional Help:** talk to a counselor.";
        assert_eq!(
            check(numbered, THOUGHTS, RiskLevel::High),
            Err(DraftFault::AdviceList(
                "1. **Seek Professional Help:** talk to a counselor.".into()
            ))
        );
        let headed = "Thank you for sharing.\n\n### Step 1: Acknowledge Your Feelings\n\
                      First, it's important to acknowledge how you feel.";
        assert!(matches!(
            check(headed, THOUGHTS, RiskLevel::High),
            Err(DraftFault::AdviceList(_))
        ));
        let bullets = "I hear you.\n- Call a friend.\n- Go for a walk.";
        assert_eq!(
            check(bullets, THOUGHTS, RiskLevel::High),
            Err(DraftFault::AdviceList("- Call a friend.".into()))
        );
        // Numbers inside sentences, a sentence ending a line and a hyphenated word are not lists.
        for prose in [
            "I hear you. You said it has been 2. weeks like this, and I'm glad you told me.",
            "I'm so sorry.\nIt sounds like a well-meant plan fell apart.",
            "Thank you for telling me. At 3 in the morning everything feels heavier.",
        ] {
            assert_eq!(check(prose, THOUGHTS, RiskLevel::High), Ok(()), "{prose}");
        }
        // Below high risk a list is an ordinary reply.
        assert_eq!(check(numbered, THOUGHTS, RiskLevel::Moderate), Ok(()));
    }

    #[test]
    fn a_draft_that_calls_suicide_a_decision_fails() {
        let draft = "Thank you for sharing your concerns about suicide. As you mentioned, the \
                     decision to end your life can be very difficult and overwhelming.";
        assert_eq!(
            check(draft, THOUGHTS, RiskLevel::High),
            Err(DraftFault::Minimising("the decision to end".into()))
        );
    }

    #[test]
    fn a_kept_draft_comes_first_and_a_failed_one_leaves_the_protocol_alone() {
        let mut plan = plan_at(RiskLevel::High);
        plan.constraints = fixtures::constraints(vec![fixtures::crisis_protocol()]);
        let good = crisis_reply("Thank you for telling me. I'm here. And I", THOUGHTS, &plan);
        assert_eq!(
            good.text,
            "Thank you for telling me. I'm here.\n\nPlease call or text 988 now."
        );
        assert_eq!(
            (good.fault, good.added),
            (None, vec!["crisis-protocol".into()])
        );
        let bad = crisis_reply("Just smile, it passes.", THOUGHTS, &plan);
        assert_eq!(bad.text, "Please call or text 988 now.");
        assert_eq!(bad.kept, "");
        assert_eq!(bad.fault, Some(DraftFault::Minimising("just smile".into())));
        // A kept draft that already gives the protocol's text gets nothing added.
        let whole = crisis_reply("I hear you. Please call 988 now.", THOUGHTS, &plan);
        assert_eq!(whole.text, "I hear you. Please call 988 now.");
        assert!(whole.added.is_empty());
    }
}
