//! Crisis guard: suicide, self-harm and harm-to-others risk screening.
//!
//! Every psy run includes this module (`manifest::CRISIS_GUARD`). It reads every client turn,
//! rates risk `none | low | moderate | high | imminent` with evidence spans and the rule that
//! fired, and makes the reply carry the crisis protocol when risk is high. The lexicons,
//! look-alike masks, combination rules and texts are data (`rules.toml`, `resources.toml`);
//! this file applies them. A screen, not a clinician: it supports a human's judgement.

pub mod denial;
pub mod dialogue_risk;
pub mod resources;
pub mod rules;
pub mod screen;

use std::sync::OnceLock;

use psy_core::dialogue::Dialogue;
use psy_core::lexicon::{Hit, Text};
use psy_core::module::{
    builtin_spec, Assessment, CrisisResource, Evidence, Module, ModuleSpec, ReplyRule,
    RiskAssessment, RiskEvidence, RiskLevel, RuleContext, SampleView,
};
use psy_core::semantic::{AssessContext, SentenceEmbedder};

pub use resources::{
    emergency_number, emergency_phrases, normalise_locale, poison_line, resources_for, PoisonLine,
};
pub use rules::{Focus, Rules, Subject};

/// Locale used by [`Module::assess`], which does not see the run manifest; `localize` and
/// the reply rules use the run's locale.
pub const DEFAULT_LOCALE: &str = "US";

/// The compiled rule file, shared by every instance.
pub fn rules() -> &'static Rules {
    static RULES: OnceLock<Rules> = OnceLock::new();
    RULES.get_or_init(|| {
        Rules::parse(include_str!("../rules.toml"))
            .unwrap_or_else(|e| panic!("plugins/safety/rules.toml is invalid: {e}"))
    })
}

struct CrisisGuard {
    spec: ModuleSpec,
}

/// The crisis guard as a module (also what the registry builds).
pub fn module() -> Box<dyn Module> {
    Box::new(CrisisGuard {
        spec: builtin_spec(include_str!("../module.toml"), "plugins/safety/module.toml"),
    })
}

psy_core::register_module!(module);

impl Module for CrisisGuard {
    fn spec(&self) -> &ModuleSpec {
        &self.spec
    }

    /// Without an encoder: the lexicon and the session's memory only.
    fn assess(&self, dialogue: &Dialogue) -> Assessment {
        self.assess_with(dialogue, &AssessContext::default())
    }

    fn assess_with(&self, dialogue: &Dialogue, ctx: &AssessContext) -> Assessment {
        Assessment {
            module: self.spec.module.id.clone(),
            risk: Some(dialogue_risk::assess_dialogue(
                dialogue,
                DEFAULT_LOCALE,
                &[],
                ctx.embedder,
            )),
            ..Default::default()
        }
    }

    /// Crisis resources for the run's locale (manifest entries first, then the built-in table).
    fn localize(&self, assessment: &mut Assessment, locale: &str, resources: &[CrisisResource]) {
        if let Some(risk) = &mut assessment.risk {
            if !risk.resources.is_empty() {
                risk.resources = resources_for(locale, resources);
            }
        }
    }

    fn reply_rules(&self, ctx: &RuleContext) -> Vec<ReplyRule> {
        let mut out = self.spec.reply_rules.clone();
        if let Some(risk) = &ctx.assessment.risk {
            out.extend(crisis_reply_rule(rules(), risk, ctx.locale, ctx.resources));
        }
        out
    }

    /// A training reply to a high-risk client turn must take up the crisis protocol: one that
    /// meets none of the guard's required parts (a safety question, a resource, ...) ignores
    /// the crisis and would teach the model to skip it. A reply that meets some parts in its
    /// own words is kept; at inference the guard completes the rest.
    fn review_sample(&self, sample: &SampleView) -> Result<(), String> {
        let assessment = self.assess(sample.dialogue);
        let Some(risk) = assessment
            .risk
            .as_ref()
            .filter(|r| r.level >= RiskLevel::High)
        else {
            return Ok(());
        };
        let ctx = RuleContext {
            assessment: &assessment,
            locale: DEFAULT_LOCALE,
            resources: &[],
        };
        for rule in self.reply_rules(&ctx) {
            if let ReplyRule::Require { id, any_of, .. } = &rule {
                let ignored = !any_of.is_empty()
                    && !any_of
                        .iter()
                        .any(|g| psy_core::reply_rules::group_present(g, sample.reply));
                if ignored {
                    let examples: Vec<String> = any_of
                        .iter()
                        .filter_map(|g| g.first().map(|p| format!("\"{p}\"")))
                        .collect();
                    return Err(format!(
                        "reply to a {} risk message ignores `{id}`: nothing like {}",
                        risk.level.as_str(),
                        examples.join(" or ")
                    ));
                }
            }
        }
        Ok(())
    }
}

/// One risk cue found in a client turn, after masks and context.
#[derive(Clone, Debug)]
struct Found {
    /// Category index, or `None` for a reported look-alike mask.
    category: Option<usize>,
    /// Mask index for a reported look-alike.
    mask: Option<usize>,
    subject: Subject,
    neutral: bool,
    /// Signal for combinations; `None`: counts alone only (past, conditional, look-alike).
    signal: Option<String>,
    /// Told in the past tense, with no current marker in its sentence.
    past: bool,
    level: RiskLevel,
    evidence: Evidence,
}

/// The level a combination would give if the trained screen's reading of the last turn stood
/// for `category` (`[screen_signals]` of `rules.toml`): only combinations above the lexicon's
/// own level are kept.
#[derive(Clone, Debug)]
pub(crate) struct ScreenCombination {
    pub category: String,
    pub level: RiskLevel,
    /// Index of the combination in the rule file.
    pub combine: usize,
}

/// The outcome of screening, before it is turned into the engine's types.
struct LexiconScreen {
    level: RiskLevel,
    /// The level of the cues about the client alone (not about someone they talk about).
    client_level: RiskLevel,
    /// The level of the last turn's cues alone: all of them, and the client's own.
    last_turn_level: [RiskLevel; 2],
    focus: Focus,
    /// Rule (combination or category id) that decided the level, with its summary.
    decided_by: Option<(String, String)>,
    found: Vec<Found>,
    protective: Vec<Evidence>,
    lookalikes: Vec<String>,
    /// What each screen category would add to these cues (see [`ScreenCombination`]).
    with_screen: Vec<ScreenCombination>,
    /// The same for the cues about the client alone.
    client_with_screen: Vec<ScreenCombination>,
    /// The client's denials of harm in the last client turn (`denial::denials`), found once
    /// here for the session's reading too.
    last_turn_denials: Vec<denial::Denial>,
}

fn subject_of(text: &Text, hit: &Hit) -> Subject {
    let words = &text.tokens[hit.first_token..=hit.last_token];
    if words
        .iter()
        .any(|t| matches!(t.norm.as_str(), "myself" | "me"))
    {
        return Subject::Myself;
    }
    if words.iter().any(|t| {
        matches!(
            t.norm.as_str(),
            "herself" | "himself" | "themselves" | "themself"
        )
    }) {
        return Subject::Other;
    }
    // "end his life", "take her own life": the life is the person's whose act it is. (Not for
    // other possessions: "I took all her pills" is the client's own overdose.)
    let owner = |t: &psy_core::lexicon::Token| matches!(t.norm.as_str(), "his" | "her" | "their");
    if words
        .windows(2)
        .any(|w| owner(&w[0]) && w[1].norm == "life")
        || words
            .windows(3)
            .any(|w| owner(&w[0]) && w[1].norm == "own" && w[2].norm == "life")
    {
        return Subject::Other;
    }
    if hit.third_person {
        Subject::Other
    } else {
        Subject::Myself
    }
}

fn overlaps(a: &Evidence, b: (usize, usize)) -> bool {
    a.start < b.1 && b.0 < a.end
}

/// Words that join more means to the ones a change names ("the razor and all the blades",
/// "the gun along with the key").
const JOINING_WORDS: &[&str] = &[
    "and", "all", "the", "my", "his", "her", "their", "every", "other", "spare", "spares", "of",
    "with", "along", "plus", "too", "as", "well",
];

/// Words after joined means that keep them the object of the change ("the gun and the key to
/// his house"), unlike a verb that makes them the subject of a new statement ("and the pills
/// are in my bag").
const AFTER_JOINED: &[&str] = &[
    "and", "too", "as", "away", "off", "with", "to", "from", "into", "in", "out", "over", "up",
    "down", "now",
];

/// Whether the means hit `means` follows the change `change` with only joining words between,
/// and ends its clause or goes on as the change's object.
fn joined_to(text: &Text, change: &Hit, means: &Hit) -> bool {
    let toks = &text.tokens;
    let ends_object = match toks.get(means.last_token + 1) {
        None => true,
        Some(next) => {
            next.clause != toks[means.last_token].clause
                || AFTER_JOINED.contains(&next.norm.as_str())
        }
    };
    means.first_token > change.last_token
        && ends_object
        && toks[change.last_token + 1..means.first_token]
            .iter()
            .all(|t| JOINING_WORDS.contains(&t.norm.as_str()))
}

/// How the rationale names a turn both detectors read as a look-alike.
const JOKE_LABEL: &str = "words of suicide or harm in a message the screen reads as a look-alike";

/// How the rationale names a turn whose cues the screen's confident no holds at low.
const CONFIDENT_NO_LABEL: &str =
    "words of suicide or harm in a message the screen reads as no risk at all";

/// What the screen said about one client turn, as far as the lexicon listens to it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScreenVerdict {
    /// A look-alike with no risk (`screen::Screen::reads_as_plain_lookalike`): cues of thoughts
    /// alone read low when the turn holds no other cue.
    pub plain_lookalike: bool,
    /// Every piece of the turn a confident no (`screen::Screen::reads_as_confident_no`): its
    /// cues read low, whatever their kind, except those of categories `kept_against_screen`.
    pub confident_no: bool,
}

impl ScreenVerdict {
    /// The bits the lexicon's memo of a turn is keyed by.
    pub fn key(self) -> u8 {
        u8::from(self.plain_lookalike) | u8::from(self.confident_no) << 1
    }
}

/// Screens the client's turns with `rules`. `verdicts[pos]`: what the screen read in client
/// turn `pos` (see [`ScreenVerdict`]).
fn lexicon_screen(rules: &Rules, dialogue: &Dialogue, verdicts: &[ScreenVerdict]) -> LexiconScreen {
    let file = &rules.file;
    let turns: Vec<_> = dialogue.client_turns().collect();
    let mut found: Vec<Found> = Vec::new();
    let mut protective = Vec::new();
    let mut lookalikes: Vec<String> = Vec::new();
    let mut last_turn_denials = Vec::new();
    for (pos, turn) in turns.iter().enumerate() {
        let text = Text::new(turn.text);
        let sentence_of = |h: &Hit| text.tokens[h.first_token].sentence;
        let mut hits: Vec<Hit> = rules.strict.find(&text);
        hits.extend(rules.fuzzy.find(&text));
        let mask_hits = rules.masks.find(&text);
        let past: Vec<usize> = rules.past.find(&text).iter().map(sentence_of).collect();
        let current: Vec<usize> = rules.current.find(&text).iter().map(sentence_of).collect();

        // Negated cues say the opposite ("I'm not suicidal"); a cue inside a longer cue of
        // another category is read as the longer one ("tried to kill myself").
        hits.retain(|h| !h.negated);
        // A cue inside the client's denial of harm is denied with it, however far its negator
        // ("I am not having any thoughts of self-harm": the matcher's window is four words).
        let denied = denial::denials(&text);
        hits.retain(|h| {
            file.categories[h.entry].protective
                || !denied.iter().any(|d| d.start <= h.start && h.end <= d.end)
        });
        if pos + 1 == turns.len() {
            last_turn_denials = denied;
        }
        let spans: Vec<(usize, usize, usize)> =
            hits.iter().map(|h| (h.entry, h.start, h.end)).collect();
        hits.retain(|h| {
            !spans.iter().any(|&(e, s, t)| {
                e != h.entry
                    && s <= h.start
                    && h.end <= t
                    && (t - s) > (h.end - h.start)
                    && !file.categories[e].protective
                    && !file.categories[h.entry].protective
            })
        });

        // A turn the screen reads as a look-alike, whose cues are all thoughts alone: the
        // lexicon's words are the joke's ("if the wifi goes out i'm jumping off a bridge").
        let verdict = verdicts.get(pos).copied().unwrap_or_default();
        let thoughts_only = verdict.plain_lookalike
            && hits.iter().all(|h| {
                let cat = &file.categories[h.entry];
                cat.protective || cat.thoughts
            });
        let mut turn_found: Vec<Found> = Vec::new();
        for h in &hits {
            let cat = &file.categories[h.entry];
            let evidence = Evidence {
                id: cat.id.clone(),
                label: cat.label.clone(),
                message: turn.index,
                start: h.start,
                end: h.end,
                text: h.text.clone(),
            };
            if cat.protective {
                // "If my mum came to get me" is not a report that she did; "I'm home now where
                // the pills are" names the means beside the change (means inside the change
                // itself, "took the pills off me", or joined to it, "he's taken the razor and all
                // the blades", do not count).
                let report = cat.id == rules::SAFE_NOW || cat.id == rules::SAFE_CHANGE;
                let means_near = |o: &&Hit| {
                    cat.id == rules::SAFE_CHANGE
                        && matches!(
                            file.categories[o.entry].signal.as_str(),
                            "means" | "means-at-hand"
                        )
                        && sentence_of(o) == sentence_of(h)
                        && (o.end <= h.start || o.start >= h.end)
                };
                let means_beside = hits
                    .iter()
                    .filter(means_near)
                    .any(|o| !joined_to(&text, h, o));
                if !(report && h.hypothetical || means_beside) {
                    // The change covers the means joined to it: they went with it.
                    let mut evidence = evidence;
                    if let Some(end) = hits.iter().filter(means_near).map(|o| o.end).max() {
                        evidence.end = evidence.end.max(end);
                        evidence.text = turn.text[evidence.start..evidence.end].to_string();
                    }
                    protective.push(evidence);
                }
                continue;
            }
            let subject = subject_of(&text, h);
            let sentence = sentence_of(h);
            let masked_by = mask_hits.iter().find(|m| {
                let mask = &file.masks[m.entry];
                mask.covers(&cat.id)
                    && (!mask.others_only || subject == Subject::Other && !cat.neutral)
                    && match mask.scope {
                        rules::Scope::Span => overlaps(&evidence, (m.start, m.end)),
                        rules::Scope::Sentence => sentence_of(m) == sentence,
                    }
            });
            if let Some(m) = masked_by {
                let mask = &file.masks[m.entry];
                if !lookalikes.contains(&mask.label) {
                    lookalikes.push(mask.label.clone());
                }
                if let Some(level) = mask.report {
                    if !found.iter().chain(&turn_found).any(|f| {
                        f.mask == Some(m.entry)
                            && f.evidence.message == turn.index
                            && f.evidence.start == m.start
                    }) {
                        turn_found.push(Found {
                            past: false,
                            category: None,
                            mask: Some(m.entry),
                            subject,
                            neutral: true,
                            signal: None,
                            level,
                            evidence: Evidence {
                                id: mask.id.clone(),
                                label: mask.label.clone(),
                                message: turn.index,
                                start: m.start,
                                end: m.end,
                                text: m.text.clone(),
                            },
                        });
                    }
                }
                continue;
            }
            let base = match subject {
                Subject::Myself => Some(cat.level),
                Subject::Other if cat.neutral => Some(RiskLevel::None),
                Subject::Other => cat.other_level,
            };
            let Some(mut level) = base else { continue };
            let mut signal = Some(cat.signal.clone());
            let is_past = past.contains(&sentence) && !current.contains(&sentence);
            if is_past {
                if let Some(p) = cat.past_level {
                    level = level.min(p);
                    signal = cat.past_signal.clone();
                }
            }
            if thoughts_only && level > RiskLevel::Low {
                level = RiskLevel::Low;
                signal = None;
                if !lookalikes.iter().any(|l| l == JOKE_LABEL) {
                    lookalikes.push(JOKE_LABEL.to_string());
                }
            }
            // The screen reads every piece of the turn as no risk at all: the cue's words are
            // the look-alike's ("said goodbye to everyone, new job monday").
            if verdict.confident_no && level > RiskLevel::Low && !cat.kept_against_screen {
                level = RiskLevel::Low;
                signal = None;
                if !lookalikes.iter().any(|l| l == CONFIDENT_NO_LABEL) {
                    lookalikes.push(CONFIDENT_NO_LABEL.to_string());
                }
            }
            if h.hypothetical && !cat.neutral {
                match cat.hypothetical_level {
                    Some(cap) => {
                        level = level.min(cap);
                        signal = None;
                    }
                    None => continue,
                }
            }
            turn_found.push(Found {
                past: is_past,
                category: Some(h.entry),
                mask: None,
                subject,
                neutral: cat.neutral,
                signal,
                level,
                evidence,
            });
        }
        // Windowed categories (time, hopelessness) count only in recent turns, or where the
        // same turn holds a risk cue of its own.
        let has_risk = turn_found.iter().any(|f| {
            f.category
                .is_some_and(|c| !file.categories[c].neutral && file.categories[c].window == 0)
        });
        turn_found.retain(|f| match f.category {
            Some(c) => {
                let w = file.categories[c].window;
                w == 0 || pos + w >= turns.len() || has_risk
            }
            None => true,
        });
        found.extend(turn_found);
    }

    let (level, focus, decided_by) = decide(file, &found);
    let with_screen = screen_combinations(file, &found, level);
    // The client's own risk: the same reading without the cues about someone else.
    let mine: Vec<Found> = found
        .iter()
        .filter(|f| !(f.subject == Subject::Other && f.mask.is_none() && !f.neutral))
        .cloned()
        .collect();
    let (client_level, _, _) = decide(file, &mine);
    let client_with_screen = screen_combinations(file, &mine, client_level);
    // The last turn's cues alone: what counts once the client has reported being safe from
    // the crisis of earlier turns.
    let last = turns.last().map(|t| t.index);
    let in_last = |f: &&Found| Some(f.evidence.message) == last;
    let last_found: Vec<Found> = found.iter().filter(in_last).cloned().collect();
    let last_mine: Vec<Found> = mine.iter().filter(in_last).cloned().collect();
    let last_turn_level = [decide(file, &last_found).0, decide(file, &last_mine).0];
    LexiconScreen {
        level,
        last_turn_level,
        client_level,
        focus,
        decided_by,
        found,
        protective,
        lookalikes,
        with_screen,
        client_with_screen,
        last_turn_denials,
    }
}

/// The level of `found`, the focus of the reply and the rule that decided it: each cue alone,
/// then the combinations; the highest wins, combinations and the client's own risk first on ties.
fn decide(file: &rules::RuleFile, found: &[Found]) -> (RiskLevel, Focus, Option<(String, String)>) {
    let mut level = RiskLevel::None;
    let mut decided_by: Option<(String, String)> = None;
    let mut focus = Focus::Myself;
    for c in &file.combines {
        if combine_fires(c, found) && c.level > level {
            level = c.level;
            decided_by = Some((c.id.clone(), c.summary.clone()));
            focus = match c.subject {
                Subject::Other => Focus::ThirdParty,
                Subject::Myself => c.focus,
            };
        }
    }
    let mut by_level: Vec<&Found> = found.iter().collect();
    by_level.sort_by_key(|f| {
        (
            f.subject == Subject::Other,
            std::cmp::Reverse(f.evidence.message),
        )
    });
    for f in by_level {
        if f.level > level {
            level = f.level;
            let (id, label, cat_focus) = match (f.category, f.mask) {
                (Some(c), _) => {
                    let cat = &file.categories[c];
                    (cat.id.clone(), cat.label.clone(), cat.focus)
                }
                (None, Some(m)) => (
                    file.masks[m].id.clone(),
                    file.masks[m].label.clone(),
                    Focus::Myself,
                ),
                _ => continue,
            };
            focus = match f.subject {
                Subject::Other if f.mask.is_none() => Focus::ThirdParty,
                _ => cat_focus,
            };
            let id = match f.subject {
                Subject::Other if f.mask.is_none() => format!("third-party:{id}"),
                _ => id,
            };
            decided_by = Some((id, label));
        }
    }
    (level, focus, decided_by)
}

/// Requirement groups of `c` that the lexicon's own cues meet.
fn groups_met(c: &rules::Combine, found: &[Found]) -> usize {
    let counts = |f: &Found| f.neutral || f.subject == c.subject;
    c.requires
        .iter()
        .filter(|g| {
            found
                .iter()
                .any(|f| counts(f) && f.signal.as_ref().is_some_and(|s| g.contains(s)))
        })
        .count()
}

/// Requirement groups the lexicon must meet itself in a combination the screen joins: the
/// screen says what the thought is, and two concrete facts (means at hand, a time, preparations)
/// must come from the client's words. One time word alone ("this week") is too broad to make a
/// screen's high reading imminent: on the validation split that raised 36 of 154 high-labelled
/// and 5 look-alike messages to imminent for one more imminent message rated imminent.
const LEXICON_GROUPS_WITH_SCREEN: usize = 2;

/// For each category of `[screen_signals]`: the highest combination its signals would complete
/// with `found` (as cues about the client in the last turn), when that is above `level` and the
/// lexicon meets at least [`LEXICON_GROUPS_WITH_SCREEN`] of its groups. The first such
/// combination in the file wins ties, as in [`lexicon_screen`].
fn screen_combinations(
    file: &rules::RuleFile,
    found: &[Found],
    level: RiskLevel,
) -> Vec<ScreenCombination> {
    let last = found.iter().map(|f| f.evidence.message).max().unwrap_or(0);
    file.screen_signals
        .iter()
        .filter_map(|(category, signals)| {
            let mut with: Vec<Found> = found.to_vec();
            with.extend(signals.iter().map(|s| Found {
                past: false,
                category: None,
                mask: None,
                subject: Subject::Myself,
                neutral: false,
                signal: Some(s.clone()),
                level: RiskLevel::High,
                evidence: Evidence {
                    id: "screen".into(),
                    label: format!("trained screen: {category}"),
                    message: last,
                    start: 0,
                    end: 0,
                    text: String::new(),
                },
            }));
            let mut best: Option<ScreenCombination> = None;
            for (i, c) in file.combines.iter().enumerate() {
                let above = best.as_ref().map_or(level, |b| b.level);
                if c.level > above
                    && groups_met(c, found) >= LEXICON_GROUPS_WITH_SCREEN
                    && combine_fires(c, &with)
                {
                    best = Some(ScreenCombination {
                        category: category.clone(),
                        level: c.level,
                        combine: i,
                    });
                }
            }
            best
        })
        .collect()
}

/// Whether a combination's signals are all present for its subject.
fn combine_fires(c: &rules::Combine, found: &[Found]) -> bool {
    let counts = |f: &Found| f.neutral || f.subject == c.subject;
    let has = |sig: &str| {
        found
            .iter()
            .any(|f| counts(f) && f.signal.as_deref() == Some(sig))
    };
    // A combination needs at least one cue that is about its subject, not only means or time.
    let own = found.iter().any(|f| {
        !f.neutral
            && f.subject == c.subject
            && f.signal
                .as_deref()
                .is_some_and(|s| c.requires.iter().flatten().any(|r| r == s))
    });
    if !own || !c.requires.iter().all(|g| g.iter().any(|s| has(s))) {
        return false;
    }
    if c.min_hits > 0 {
        let n = found
            .iter()
            .filter(|f| {
                counts(f)
                    && f.signal
                        .as_deref()
                        .is_some_and(|s| c.requires.iter().flatten().any(|r| r == s))
            })
            .count();
        return n >= c.min_hits;
    }
    true
}

impl LexiconScreen {
    fn into_assessment(
        self,
        rules: &Rules,
        locale: &str,
        manifest_resources: &[psy_core::module::CrisisResource],
        extra: Vec<RiskEvidence>,
    ) -> RiskAssessment {
        let file = &rules.file;
        let decided = self.decided_by.as_ref().map(|d| d.0.clone());
        let combo = decided.as_deref().and_then(|id| rules.combine(id));
        let mut evidence: Vec<RiskEvidence> = self
            .found
            .iter()
            .map(|f| {
                let (category, base_rule) = match (f.category, f.mask) {
                    (Some(c), _) => {
                        let id = file.categories[c].id.clone();
                        let rule = if f.subject == Subject::Other && !f.neutral {
                            format!("third-party:{id}")
                        } else {
                            id.clone()
                        };
                        (id, rule)
                    }
                    (None, Some(m)) => (file.masks[m].id.clone(), file.masks[m].id.clone()),
                    _ => unreachable!("a finding is a category or a mask"),
                };
                // Cues that took part in the deciding combination carry its id and level.
                let in_combo = combo.filter(|c| {
                    (f.neutral || f.subject == c.subject)
                        && f.signal
                            .as_deref()
                            .is_some_and(|s| c.requires.iter().flatten().any(|r| r == s))
                });
                match in_combo {
                    Some(c) => RiskEvidence {
                        rule: c.id.clone(),
                        category,
                        level: c.level,
                        evidence: f.evidence.clone(),
                        detector: "lexicon".into(),
                        score: None,
                    },
                    None => RiskEvidence {
                        rule: base_rule,
                        category,
                        level: f.level,
                        evidence: f.evidence.clone(),
                        detector: "lexicon".into(),
                        score: None,
                    },
                }
            })
            .collect();
        evidence.extend(self.protective.iter().map(|e| RiskEvidence {
            rule: "protective".into(),
            category: e.id.clone(),
            level: RiskLevel::None,
            evidence: e.clone(),
            detector: "lexicon".into(),
            score: None,
        }));
        evidence.extend(extra);
        // Strongest first; among equals the newest message first (recent turns weigh most).
        evidence.sort_by(|a, b| {
            b.level
                .cmp(&a.level)
                .then(b.evidence.message.cmp(&a.evidence.message))
                .then(a.evidence.start.cmp(&b.evidence.start))
        });
        let mut rationale = self.rationale(&evidence);
        let client_level = self.client_level.min(self.level);
        if client_level < self.level {
            rationale.push_str(&format!(
                " The client's own risk: {} (the level is another person's).",
                client_level.as_str()
            ));
        }
        let (protocol, resources) = if self.level >= RiskLevel::High {
            let res = resources_for(locale, manifest_resources);
            let steps = file
                .protocol
                .get(self.level, self.focus)
                .iter()
                .map(|s| fill(s, &res, locale, &file.repair))
                .collect();
            (steps, res)
        } else {
            (Vec::new(), Vec::new())
        };
        RiskAssessment {
            level: self.level,
            client_level: Some(client_level),
            evidence,
            rationale,
            protocol,
            resources,
            trajectory: Vec::new(),
            detectors: vec!["lexicon".into()],
        }
    }

    fn rationale(&self, evidence: &[RiskEvidence]) -> String {
        let protective: Vec<&str> = self.protective.iter().map(|e| e.text.as_str()).collect();
        let protective = if protective.is_empty() {
            String::new()
        } else {
            format!(
                "; protective factors mentioned: \"{}\"",
                protective.join("\", \"")
            )
        };
        let Some((id, summary)) = &self.decided_by else {
            return if self.lookalikes.is_empty() {
                format!("No risk indicators in the client's messages{protective}.")
            } else {
                format!(
                    "No personal risk found: {} set aside as look-alike language{protective}.",
                    self.lookalikes.join(", ")
                )
            };
        };
        let about = if self.focus == Focus::ThirdParty {
            " about someone the client knows"
        } else {
            ""
        };
        let quote = evidence
            .iter()
            .filter(|_| self.level > RiskLevel::None)
            .find(|e| e.level == self.level)
            .map(|e| {
                format!(
                    ", most recently \"{}\" (message {})",
                    e.evidence.text, e.evidence.message
                )
            })
            .unwrap_or_default();
        let level = match self.level {
            // A session whose crisis the client reported safe from may end with no cue at all.
            RiskLevel::None => "No".to_string(),
            l => {
                let mut level = l.as_str().to_string();
                level[..1].make_ascii_uppercase();
                level
            }
        };
        let set_aside = if self.lookalikes.is_empty() {
            String::new()
        } else {
            format!(
                "; set aside as look-alike language: {}",
                self.lookalikes.join(", ")
            )
        };
        format!("{level} risk: {summary}{about}{quote} [rule `{id}`]{set_aside}{protective}.")
    }
}

/// Fills the placeholders of a protocol or repair text (`rules.toml` lists them) for `locale`.
fn fill(
    text: &str,
    res: &[psy_core::module::CrisisResource],
    locale: &str,
    repair: &rules::Repair,
) -> String {
    let (emergency, emergency_now) = match emergency_number(locale) {
        Some(n) => (
            repair.emergency_known.replace("{number}", n),
            repair.emergency_now_known.replace("{number}", n),
        ),
        None => (
            repair.emergency_unknown.clone(),
            repair.emergency_now_unknown.clone(),
        ),
    };
    let poison = match poison_line(locale) {
        Some(p) => repair
            .poison_known
            .replace("{name}", &p.name)
            .replace("{number}", &p.number),
        None => String::new(),
    };
    let filled = text
        .replace("{resources}", &resources::describe(res))
        .replace("{emergency-now}", &emergency_now)
        .replace("{emergency}", &emergency)
        .replace("{poison}", &poison);
    // An empty `{poison}` leaves a double space (or a trailing one) behind.
    filled.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Screens a dialogue for a given locale and manifest resources (what the planner would see
/// if `assess` knew the run): the full risk assessment, with the trained screen when an
/// `embedder` is given.
pub fn assess_risk(
    dialogue: &Dialogue,
    locale: &str,
    manifest_resources: &[psy_core::module::CrisisResource],
    embedder: Option<&dyn SentenceEmbedder>,
) -> RiskAssessment {
    dialogue_risk::assess_dialogue(dialogue, locale, manifest_resources, embedder)
}

/// The focus of a finished assessment, read back from the rule ids of its evidence (the
/// engine's `RiskAssessment` has no field for it).
pub fn focus_of(rules: &Rules, risk: &RiskAssessment) -> Focus {
    let top = risk
        .evidence
        .iter()
        .filter(|e| e.level == risk.level && e.rule != "protective")
        .map(|e| {
            if e.rule.starts_with("third-party:") {
                Focus::ThirdParty
            } else if e.detector != "lexicon" {
                if e.category == "harm-others" {
                    Focus::Others
                } else {
                    Focus::Myself
                }
            } else if let Some(c) = rules.combine(&e.rule) {
                match c.subject {
                    Subject::Other => Focus::ThirdParty,
                    Subject::Myself => c.focus,
                }
            } else if let Some(c) = rules.category(&e.rule) {
                c.focus
            } else {
                Focus::Myself
            }
        })
        .collect::<Vec<_>>();
    // The client's own risk comes first, then harm to others, then a third person.
    [Focus::Myself, Focus::Others, Focus::ThirdParty]
        .into_iter()
        .find(|f| top.contains(f))
        .unwrap_or(Focus::Myself)
}

/// Whether the client turn before the last was already at high or above, so the previous
/// reply carried the crisis protocol.
fn protocol_given(risk: &RiskAssessment) -> bool {
    let t = &risk.trajectory;
    t.len() >= 2 && t[t.len() - 2].level >= RiskLevel::High
}

/// The reply rule for an assessed risk: at imminent, emergency services now (and the poison
/// line where the locale has one); at high, the crisis protocol (in other words on the turn
/// after one that got it); at moderate, a safety check-in; nothing below. The repair text is
/// the tier's standalone reply.
pub fn crisis_reply_rule(
    rules: &Rules,
    risk: &RiskAssessment,
    locale: &str,
    manifest_resources: &[psy_core::module::CrisisResource],
) -> Option<ReplyRule> {
    if risk.level < RiskLevel::Moderate {
        return None;
    }
    let focus = focus_of(rules, risk);
    let file = &rules.file;
    let res = resources_for(locale, manifest_resources);
    let questions: Vec<String> = file.questions.get(focus).to_vec();
    let text = if focus == Focus::Myself && risk.level == RiskLevel::High && protocol_given(risk) {
        &file.repair.self_high_again
    } else {
        file.repair.get(focus, risk.level)
    };
    let repair = fill(text, &res, locale, &file.repair);
    Some(match risk.level {
        RiskLevel::Imminent => {
            // Someone at imminent risk has already said what is happening: the reply sends
            // them to emergency care rather than asking again.
            let mut any_of = vec![emergency_phrases(locale)];
            if focus != Focus::Others {
                if let Some(p) = poison_line(locale) {
                    any_of.push(vec![p.number.clone()]);
                }
            }
            ReplyRule::Require {
                id: "crisis-protocol".into(),
                reason: "risk is imminent: the reply must urge emergency services now".into(),
                any_of,
                repair,
            }
        }
        RiskLevel::High => ReplyRule::Require {
            id: "crisis-protocol".into(),
            reason: format!(
                "risk is {}: the reply must ask about safety now and give crisis resources",
                risk.level.as_str()
            ),
            any_of: vec![
                questions,
                resources::resource_phrases(&res, emergency_number(locale)),
            ],
            repair,
        },
        _ => ReplyRule::Require {
            id: "safety-check-in".into(),
            reason: "risk is moderate: the reply must ask gently and directly about safety".into(),
            any_of: vec![questions],
            repair,
        },
    })
}
