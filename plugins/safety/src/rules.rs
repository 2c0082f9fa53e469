//! The crisis guard's rule file (`rules.toml`): schema, validation and compiled lexicons.
//!
//! Everything clinical lives in the TOML; this file only says what the keys mean and checks
//! that the data is coherent (phrases compile, combinations name known signals), so a typo
//! in the rules fails every test run instead of silently weakening the screen.

use std::collections::{BTreeMap, BTreeSet};

use psy_core::lexicon::Lexicon;
use psy_core::module::RiskLevel;
use serde::Deserialize;

/// Who a combination rule, or a reply, is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Subject {
    /// The client.
    #[default]
    #[serde(rename = "self")]
    Myself,
    /// Someone the client talks about.
    Other,
}

/// What the reply has to deal with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Focus {
    /// The client may harm themselves.
    #[default]
    #[serde(rename = "self")]
    Myself,
    /// The client may harm someone else.
    Others,
    /// The client is worried about someone else.
    ThirdParty,
}

/// A group of cue phrases with the level it gives alone and how context changes it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Category {
    pub id: String,
    pub label: String,
    /// Name used by combination rules (several categories may share one).
    pub signal: String,
    /// Level of one hit about the client.
    pub level: RiskLevel,
    /// Level of one hit about someone else; absent: such hits are ignored.
    #[serde(default)]
    pub other_level: Option<RiskLevel>,
    /// Level when the sentence places it in the past; absent: past makes no difference.
    #[serde(default)]
    pub past_level: Option<RiskLevel>,
    /// Signal a past hit carries into combinations (e.g. `history`); absent: none.
    #[serde(default)]
    pub past_signal: Option<String>,
    /// Cap for conditional hits ("if ... I'll ..."); absent: conditional hits are dropped.
    #[serde(default)]
    pub hypothetical_level: Option<RiskLevel>,
    /// Long words of these phrases match with one typo.
    #[serde(default)]
    pub typo_tolerant: bool,
    /// Says nothing about who is at risk (means, time); joins either side in combinations.
    #[serde(default)]
    pub neutral: bool,
    /// Speaks of thoughts alone (no means, time, plan or act): what a joke or an exaggeration
    /// borrows ("i want to die, i just sent the email to the whole department"). A turn the
    /// screen reads as a look-alike whose cues are all such keeps them at low.
    #[serde(default)]
    pub thoughts: bool,
    /// Keeps its level in a turn the trained screen reads as a confident no, where other cues
    /// read low (rule 33): an attempt, told or under way, and a stated intent.
    #[serde(default)]
    pub kept_against_screen: bool,
    /// Reported as a protective factor; never raises the level.
    #[serde(default)]
    pub protective: bool,
    /// Count hits only in the last `window` client turns (0: all turns), unless the same
    /// turn holds another risk hit.
    #[serde(default)]
    pub window: usize,
    /// Focus of the reply when this category decides the level.
    #[serde(default)]
    pub focus: Focus,
    pub phrases: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Removes hits overlapping the mask's own words.
    Span,
    /// Removes hits in the same sentence.
    Sentence,
}

/// Look-alike language that sets risk hits aside (idioms, fiction, prevention work).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mask {
    pub id: String,
    pub label: String,
    pub scope: Scope,
    /// Category ids this mask removes; `*` for all.
    pub masks: Vec<String>,
    /// Only remove hits about someone else.
    #[serde(default)]
    pub others_only: bool,
    /// Report the look-alike itself at this level when it removed something.
    #[serde(default)]
    pub report: Option<RiskLevel>,
    pub phrases: Vec<String>,
}

impl Mask {
    pub fn covers(&self, category: &str) -> bool {
        self.masks.iter().any(|m| m == "*" || m == category)
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Markers {
    pub past: Vec<String>,
    pub current: Vec<String>,
}

/// Signals that raise the level when they occur together.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Combine {
    pub id: String,
    /// What the combination means, for the rationale.
    pub summary: String,
    #[serde(default)]
    pub subject: Subject,
    /// Each inner list needs at least one present signal.
    pub requires: Vec<Vec<String>>,
    /// At least this many distinct hits among the named signals.
    #[serde(default)]
    pub min_hits: usize,
    pub level: RiskLevel,
    #[serde(default)]
    pub focus: Focus,
}

/// Texts keyed by focus.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ByFocus {
    #[serde(rename = "self")]
    pub myself: Vec<String>,
    pub others: Vec<String>,
    #[serde(rename = "third-party")]
    pub third_party: Vec<String>,
}

impl ByFocus {
    pub fn get(&self, f: Focus) -> &[String] {
        match f {
            Focus::Myself => &self.myself,
            Focus::Others => &self.others,
            Focus::ThirdParty => &self.third_party,
        }
    }
}

/// The steps a reply must take, by tier: `high` (ask about safety now, crisis line, someone
/// to reach, stay) and `imminent` (an attempt under way or means at hand with intent:
/// emergency services now).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Protocol {
    pub high: ByFocus,
    pub imminent: ByFocus,
}

impl Protocol {
    /// The steps for `level` (imminent, or high for anything below).
    pub fn get(&self, level: RiskLevel, f: Focus) -> &[String] {
        if level >= RiskLevel::Imminent {
            self.imminent.get(f)
        } else {
            self.high.get(f)
        }
    }
}

/// The standalone reply texts, by focus and tier, and how their placeholders read.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Repair {
    pub self_imminent: String,
    pub self_high: String,
    /// `self-high` for the next turn still at high after one that got the protocol.
    pub self_high_again: String,
    pub self_moderate: String,
    pub others_imminent: String,
    pub others_high: String,
    pub others_moderate: String,
    pub third_party_imminent: String,
    pub third_party_high: String,
    pub third_party_moderate: String,
    pub emergency_known: String,
    pub emergency_unknown: String,
    pub emergency_now_known: String,
    pub emergency_now_unknown: String,
    pub poison_known: String,
}

impl Repair {
    /// The text for `focus` at `level` (moderate, high or imminent; lower reads as moderate).
    pub fn get(&self, f: Focus, level: RiskLevel) -> &str {
        use RiskLevel::{High, Imminent};
        match (f, level) {
            (Focus::Myself, Imminent) => &self.self_imminent,
            (Focus::Myself, High) => &self.self_high,
            (Focus::Myself, _) => &self.self_moderate,
            (Focus::Others, Imminent) => &self.others_imminent,
            (Focus::Others, High) => &self.others_high,
            (Focus::Others, _) => &self.others_moderate,
            (Focus::ThirdParty, Imminent) => &self.third_party_imminent,
            (Focus::ThirdParty, High) => &self.third_party_high,
            (Focus::ThirdParty, _) => &self.third_party_moderate,
        }
    }
}

/// The whole rule file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    pub schema: u32,
    #[serde(rename = "category")]
    pub categories: Vec<Category>,
    #[serde(rename = "mask")]
    pub masks: Vec<Mask>,
    pub markers: Markers,
    #[serde(rename = "combine")]
    pub combines: Vec<Combine>,
    /// The trained screen's categories as the signals they stand for (`[screen_signals]`):
    /// when the screen rates a turn's own words high or above, the category of its strongest
    /// piece joins the combinations as that turn's cues about the client, so meaning found by
    /// the screen and means or a time found by the lexicon combine.
    #[serde(default)]
    pub screen_signals: BTreeMap<String, Vec<String>>,
    /// Named word lists a phrase may use as `@name` (`[word_sets]`): one list of the means or of
    /// the people who may take them, written once and combined in many phrases.
    #[serde(default)]
    pub word_sets: BTreeMap<String, Vec<String>>,
    pub protocol: Protocol,
    pub questions: ByFocus,
    pub repair: Repair,
}

/// The rule file with its lexicons compiled. Entry index = index into the matching list.
pub struct Rules {
    pub file: RuleFile,
    /// Categories without typo tolerance.
    pub strict: Lexicon,
    /// Categories with typo tolerance.
    pub fuzzy: Lexicon,
    pub masks: Lexicon,
    pub past: Lexicon,
    pub current: Lexicon,
}

/// The category of the client's own report of being safe: the only protective statement that
/// ends the session's carry after a crisis (`dialogue_risk.rs`), so a rule file must have it.
pub const SAFE_NOW: &str = "safe-now";

/// The category of a concrete change the client reports after a crisis (left the place,
/// someone with them, the means taken away, help arrived): after an attempt under way or means
/// in hand, the bare word "I'm safe" does not end the carry; such a change does.
pub const SAFE_CHANGE: &str = "safe-change";

/// The category of a turn saying the change that made the client safe no longer holds (the
/// person who came has gone, the client is alone again): after a crisis the client reported safe
/// from by a named change, it brings the crisis back (`dialogue_risk.rs`). Optional.
pub const CHANGE_UNDONE: &str = "change-undone";

/// The category of a plan to go back to where the crisis was, or do it again later: after such
/// a crisis it brings the crisis back even beside a named change. Optional.
pub const RETURN_PLAN: &str = "return-plan";

/// The category of the means kept after a crisis ("I still have everything"): like a return
/// plan, it brings the crisis back even beside a named change. Optional.
pub const MEANS_KEPT: &str = "means-kept";

impl Rules {
    /// Parses and checks a rule file; the error says what is wrong and where.
    pub fn parse(text: &str) -> Result<Rules, String> {
        let file: RuleFile = toml::from_str(text).map_err(|e| e.to_string())?;
        if file.schema != 1 {
            return Err(format!("unsupported rules schema {}", file.schema));
        }
        let mut ids = BTreeSet::new();
        let mut signals: BTreeSet<&str> = BTreeSet::new();
        for c in &file.categories {
            if !ids.insert(c.id.as_str()) {
                return Err(format!("duplicate category `{}`", c.id));
            }
            if c.phrases.is_empty() {
                return Err(format!("category `{}` has no phrases", c.id));
            }
            if c.thoughts && (c.protective || c.neutral) {
                return Err(format!(
                    "category `{}`: `thoughts` names risk cues of thoughts alone; a protective \
                     or neutral category cannot be one",
                    c.id
                ));
            }
            signals.insert(&c.signal);
            if let Some(s) = &c.past_signal {
                signals.insert(s);
            }
        }
        for id in [SAFE_NOW, SAFE_CHANGE] {
            if !file.categories.iter().any(|c| c.id == id && c.protective) {
                return Err(format!(
                    "no protective category `{id}`: without the client's own report of being \
                     safe the session could never settle after a crisis"
                ));
            }
        }
        for m in &file.masks {
            if !ids.insert(m.id.as_str()) {
                return Err(format!(
                    "duplicate id `{}` (masks and categories share ids)",
                    m.id
                ));
            }
            for target in &m.masks {
                if target != "*" && !file.categories.iter().any(|c| &c.id == target) {
                    return Err(format!("mask `{}` names unknown category `{target}`", m.id));
                }
            }
        }
        for c in &file.combines {
            if !ids.insert(c.id.as_str()) {
                return Err(format!("duplicate id `{}`", c.id));
            }
            if c.requires.is_empty() || c.requires.iter().any(|g| g.is_empty()) {
                return Err(format!("combination `{}` has an empty requirement", c.id));
            }
            for s in c.requires.iter().flatten() {
                if !signals.contains(s.as_str()) {
                    return Err(format!("combination `{}` names unknown signal `{s}`", c.id));
                }
            }
        }
        for (category, sigs) in &file.screen_signals {
            if !crate::screen::exemplars::CATEGORIES.contains(&category.as_str()) {
                return Err(format!(
                    "[screen_signals]: `{category}` is not a category of the trained screen (one of {})",
                    crate::screen::exemplars::CATEGORIES.join(", ")
                ));
            }
            if let Some(s) = sigs.iter().find(|s| !signals.contains(s.as_str())) {
                return Err(format!(
                    "[screen_signals]: `{category}` names unknown signal `{s}`"
                ));
            }
        }
        check_word_sets(&file.word_sets)?;
        let sets = &file.word_sets;
        // Every phrase with its `@name` word sets written out as `{a|b}` groups.
        let resolved = |group: usize, phrases: &[String]| -> Result<Vec<(usize, String)>, String> {
            phrases
                .iter()
                .map(|p| Ok((group, with_word_sets(p, sets)?)))
                .collect()
        };
        let lexicon =
            |pairs: Vec<(usize, String)>| Lexicon::new(pairs.iter().map(|(i, p)| (*i, p.as_str())));
        let cat_lex = |fuzzy: bool| -> Result<Lexicon, String> {
            let mut pairs = Vec::new();
            for (i, c) in file.categories.iter().enumerate() {
                if c.typo_tolerant == fuzzy {
                    pairs.extend(resolved(i, &c.phrases)?);
                }
            }
            lexicon(pairs)
        };
        // "the gun's in the drawer" holds the means `gun`.
        let strict = cat_lex(false)?.with_clitics();
        let fuzzy = cat_lex(true)?.with_typo_tolerance().with_clitics();
        let mut mask_pairs = Vec::new();
        for (i, m) in file.masks.iter().enumerate() {
            mask_pairs.extend(resolved(i, &m.phrases)?);
        }
        let masks = lexicon(mask_pairs)?;
        let past = lexicon(resolved(0, &file.markers.past)?)?;
        let current = lexicon(resolved(0, &file.markers.current)?)?;
        for f in [Focus::Myself, Focus::Others, Focus::ThirdParty] {
            if file.questions.get(f).is_empty()
                || file.protocol.high.get(f).is_empty()
                || file.protocol.imminent.get(f).is_empty()
            {
                return Err(format!("questions and protocol need entries for {f:?}"));
            }
        }
        Ok(Rules {
            file,
            strict,
            fuzzy,
            masks,
            past,
            current,
        })
    }

    pub fn category(&self, id: &str) -> Option<&Category> {
        self.file.categories.iter().find(|c| c.id == id)
    }

    pub fn combine(&self, id: &str) -> Option<&Combine> {
        self.file.combines.iter().find(|c| c.id == id)
    }
}

/// A word set's name: lower-case letters, digits and inner hyphens.
fn is_set_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Word sets are plain choices: a named, non-empty list of words or word sequences, none of
/// which holds group syntax or another set.
fn check_word_sets(sets: &BTreeMap<String, Vec<String>>) -> Result<(), String> {
    for (name, words) in sets {
        if !is_set_name(name) {
            return Err(format!(
                "[word_sets]: `{name}` is not a set name (lower-case letters, digits, hyphens)"
            ));
        }
        if words.is_empty() {
            return Err(format!("[word_sets]: `{name}` is empty"));
        }
        if let Some(w) = words
            .iter()
            .find(|w| w.trim().is_empty() || w.contains(['{', '|', '}', '@']))
        {
            return Err(format!(
                "[word_sets]: `{name}` has the entry `{w}` (an entry is a word or words, without `{{`, `|`, `}}` or `@`)"
            ));
        }
    }
    Ok(())
}

/// `phrase` with each `@name` written out as the group of that word set (`@means` ->
/// `{knife|knives|...}`); an unknown set is an error naming the phrase.
fn with_word_sets(phrase: &str, sets: &BTreeMap<String, Vec<String>>) -> Result<String, String> {
    let mut out = String::with_capacity(phrase.len());
    let mut rest = phrase;
    while let Some(at) = rest.find('@') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let len = after
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
            .unwrap_or(after.len());
        let name = after[..len].trim_end_matches('-');
        let Some(words) = sets.get(name) else {
            return Err(format!(
                "cue phrase `{phrase}`: no word set `@{name}` in [word_sets]"
            ));
        };
        out.push('{');
        out.push_str(&words.join("|"));
        out.push('}');
        rest = &after[name.len()..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::Rules;

    const SHIPPED: &str = include_str!("../rules.toml");

    fn with_screen_signals(table: &str) -> String {
        let start = SHIPPED.find("[screen_signals]").expect("the shipped table");
        let end = start + SHIPPED[start..].find("\n\n").expect("the table ends");
        format!("{}{table}{}", &SHIPPED[..start], &SHIPPED[end..])
    }

    /// The ids of the categories `pick` holds for, in file order.
    fn ids_where(rules: &Rules, pick: impl Fn(&super::Category) -> bool) -> Vec<&str> {
        rules
            .file
            .categories
            .iter()
            .filter(|c| pick(c))
            .map(|c| c.id.as_str())
            .collect()
    }

    #[test]
    fn the_shipped_rules_keep_attempts_and_intent_against_the_screen() {
        // Rule 33 was measured with exactly these three kept.
        let rules = Rules::parse(SHIPPED).unwrap();
        let mut kept = ids_where(&rules, |c| c.kept_against_screen);
        kept.sort_unstable();
        assert_eq!(kept, ["attempt", "attempt-now", "intent"]);
    }

    #[test]
    fn the_shipped_screen_signals_name_screen_categories_and_lexicon_signals() {
        let rules = Rules::parse(SHIPPED).unwrap();
        assert_eq!(rules.file.screen_signals.len(), 12);
        assert_eq!(
            rules.file.screen_signals["ideation-plan"],
            ["plan", "intent", "ideation"]
        );
        // Negative categories stand for nothing.
        assert!(!rules.file.screen_signals.contains_key("past-resolved"));
    }

    #[test]
    fn word_sets_are_written_out_and_checked() {
        let sets = [
            (
                "means".to_string(),
                vec!["gun".to_string(), "the pills".to_string()],
            ),
            (
                "who".to_string(),
                vec!["he's".to_string(), "my mum's".to_string()],
            ),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            super::with_word_sets("@who got @means.", &sets).unwrap(),
            "{he's|my mum's} got {gun|the pills}."
        );
        let err = super::with_word_sets("took @meds", &sets).unwrap_err();
        assert!(
            err.contains("`took @meds`") && err.contains("no word set `@meds`"),
            "{err}"
        );
        let file = |line: &str| {
            SHIPPED.replacen("\n[word_sets]\n", &format!("\n[word_sets]\n{line}\n"), 1)
        };
        for (line, says) in [
            ("Zz = [\"gun\"]", "`Zz` is not a set name"),
            ("zz = []", "`zz` is empty"),
            ("zz = [\"gun|rope\"]", "has the entry `gun|rope`"),
        ] {
            let err = Rules::parse(&file(line)).err().unwrap();
            assert!(err.contains(says), "{line}: {err}");
        }
        let err = Rules::parse(&SHIPPED.replacen("@means", "@meanz", 1))
            .err()
            .unwrap();
        assert!(err.contains("no word set `@meanz`"), "{err}");
        // The shipped file's sets are all used and every phrase written out compiles.
        let rules = Rules::parse(SHIPPED).unwrap();
        for name in rules.file.word_sets.keys() {
            assert!(
                SHIPPED.contains(&format!("@{name}")),
                "@{name} is never used"
            );
        }
    }

    #[test]
    fn a_rule_file_without_the_safe_now_category_is_refused() {
        let err = Rules::parse(&SHIPPED.replace("id = \"safe-now\"", "id = \"safe-soon\""))
            .err()
            .unwrap();
        assert!(err.contains("no protective category `safe-now`"), "{err}");
        let err = Rules::parse(&SHIPPED.replace("id = \"safe-change\"", "id = \"changed\""))
            .err()
            .unwrap();
        assert!(
            err.contains("no protective category `safe-change`"),
            "{err}"
        );
    }

    #[test]
    fn thoughts_alone_are_named_in_the_file_and_never_protective() {
        let rules = Rules::parse(SHIPPED).unwrap();
        let thoughts = ids_where(&rules, |c| c.thoughts);
        // Means, time, plans, farewells and acts are not what a joke borrows.
        assert_eq!(
            thoughts,
            [
                "ideation",
                "intent",
                "passive",
                "burden",
                "hopelessness",
                "method",
                "harm-others"
            ]
        );
        let safe_now = SHIPPED.find("id = \"safe-now\"").unwrap();
        let mut bad = SHIPPED.to_string();
        bad.insert_str(safe_now, "thoughts = true\n");
        let err = Rules::parse(&bad).err().unwrap();
        assert!(
            err.contains("category `safe-now`") && err.contains("cannot be one"),
            "{err}"
        );
    }

    #[test]
    fn screen_signals_with_an_unknown_category_or_signal_are_refused() {
        let err = Rules::parse(&with_screen_signals(
            "[screen_signals]\nideation-plans = [\"plan\"]",
        ))
        .err()
        .unwrap();
        assert!(
            err.contains("`ideation-plans` is not a category of the trained screen"),
            "{err}"
        );
        let err = Rules::parse(&with_screen_signals(
            "[screen_signals]\nideation-plan = [\"plans\"]",
        ))
        .err()
        .unwrap();
        assert!(
            err.contains("`ideation-plan` names unknown signal `plans`"),
            "{err}"
        );
    }
}
