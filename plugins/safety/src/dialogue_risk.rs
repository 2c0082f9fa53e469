//! The guard's level for a whole dialogue: every detector on every client turn, what the session
//! remembers between turns, and the level after each turn (the trajectory).
//!
//! - **lexicon**: the phrase rules of `rules.toml` (combinations may span turns);
//! - **screen**: the trained classifier over sentence embeddings ([`crate::screen`]), on each
//!   turn, its sentences, and the turn read with the client's previous turns;
//! - **session**: after a turn at high or above the level stays at least moderate (after an
//!   imminent turn on the suicide ladder, imminent) until the client reports being safe in a
//!   turn the screen rates below moderate: a change they name (`safe-change` in `rules.toml`:
//!   left the place, someone with them, the means taken away, help arrived), or their own word
//!   (`safe-now`; not a protective factor), which after an imminent turn counts only once a
//!   change has been named since; or until the screen, reading a later turn together with the
//!   alarming one (within its context window), rates them below moderate (a past crisis told as
//!   background). A turn that reports being safe is not raised by the screen's reading of it
//!   together with the earlier turns. While a carry is open, a turn naming a change is read by
//!   the screen through its other sentences only (the change names the place or means it left),
//!   unless it says "still" or holds another lexicon cue (a time word counts only outside the
//!   sentence that names the change: "he's staying with me tonight" is the change).
//! - **after a named change**: once the client has reported being safe with a change named,
//!   the crisis is history: the turn naming the change keeps the crisis's level up to moderate
//!   (a check-in), later turns are read by the lexicon through their own cues, the screen's
//!   context view does not count while its window still holds the crisis turn, and a turn that
//!   names the change again, or says the client is safe, is read through its other sentences;
//!   a new turn at high or above opens a new carry.
//!
//! - **a denial of harm** ("I'd never hurt her", "I'm not suicidal", `crate::denial`): the screen,
//!   which learnt the harm words, reads the turn's own words again with the denial blanked out
//!   when nothing in the turn speaks against it (a contrast, condition or hedge after it, a
//!   lexicon cue anywhere in the turn), nothing earlier in the session raised concern, and the
//!   screen read its piece as the kind of harm denied.
//!
//! - **a crisis told with the change that ended it** (rule 24, thirty-second session): while
//!   no carry is open, a turn that names a change (`safe-change`), holds no lexicon cue outside
//!   it (time words included) and no "still", and whose other sentences the screen reads below
//!   high, gets at most moderate from the screen (own and context view): the check-in a change
//!   turn gets after an open crisis, not the crisis it retells.
//!
//! - **a look-alike both detectors read as one** (rule 22, thirty-second session): where the
//!   screen reads a turn's whole message as a look-alike (its most likely category an idiom, a
//!   game, a story, ordinary talk ...) with `P(>= moderate)` below 0.10 and none of the turn's
//!   pieces at moderate, and every lexicon cue of the turn is a thought alone (ideation, intent,
//!   a passive wish, a burden, a method named, hopelessness, harm to someone), those cues read
//!   low: they are the joke's words ("if i have to sit through one more meeting i'm gonna kill
//!   myself lol"). A means, a time, a plan, a goodbye or an act in the turn keeps them.
//!
//! - **the danger kept past a change** (rules 28 and 29, thirty-fourth session): after a crisis
//!   the client reported safe from by a named change, a turn saying the change no longer holds
//!   (`change-undone` in `rules.toml`: the person who came has gone, the client is alone again)
//!   brings the crisis back at its level, at most high; a plan to go back or put off
//!   (`return-plan`) or the means kept (`means-kept`), in or after a crisis turn, does so even
//!   beside a named change and holds that floor (a plan for the session, the means until a
//!   named change makes the client safe), and while it holds the screen's calm settles nothing.
//!   A goodbye while a crisis at high or above is open keeps it at high. After a turn at
//!   moderate or above, a current cue of thoughts alone reads at least moderate.
//!
//! The level is the highest any detector gives; no detector can lower another's, except that a
//! crisis the client has reported being safe from (a change named) no longer counts, and the
//! look-alike reading above.
//!
//! Two views run over the same readings: the reply's (every cue) and the client's own (the
//! lexicon's cues about someone else left out, `risk.client_level`); the reply's level is at
//! least the client's at every turn.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use psy_core::dialogue::{Dialogue, Message};
use psy_core::lexicon::Text;
use psy_core::module::{
    CrisisResource, Evidence, RiskAssessment, RiskEvidence, RiskLevel, TurnRisk,
};
use psy_core::semantic::{sentence_spans, SentenceEmbedder};

use sha2::{Digest, Sha256};

use crate::rules::Focus;
use crate::screen::{self, PieceKind, Screen, TurnScore};
use crate::{lexicon_screen, rules, ScreenVerdict};

/// Why and where the level rose above what the lexicon found.
enum Decider {
    /// The screen, with the category of its strongest piece and whether that piece was the
    /// turn read with earlier turns.
    Screen {
        category: String,
        context: bool,
    },
    Session {
        since: usize,
    },
    /// A goodbye while the crisis of message `since` is open: the level stays the crisis's.
    Farewell {
        since: usize,
    },
    /// The change the client named in message `since` no longer holds (the person left, they
    /// are alone again): the crisis it had ended is back.
    Undone {
        since: usize,
    },
    /// A plan to go back or put off, or the means kept, after the crisis of message `since`.
    Kept {
        since: usize,
    },
    /// Thoughts alone after the concern of message `since`: at least moderate.
    ThoughtsAfter {
        since: usize,
    },
    /// An imminent turn's carry, still open: the level stays imminent.
    Ongoing {
        since: usize,
    },
    /// The client reported being safe in message `since`: the lexicon's cues of the crisis
    /// before it count as history, and the level is what the later turns give.
    Resolved {
        since: usize,
    },
    /// A combination of `rules.toml` completed by the screen's reading of the turn (its
    /// category, as `[screen_signals]` maps it) together with the lexicon's cues.
    Combined {
        combine: usize,
        category: String,
        message: usize,
    },
}

/// The screen's decision for `turn` at `level`, from the strongest piece of the given kind.
fn screen_decider(
    scored: &Option<(&Screen, Vec<TurnScore>)>,
    turn: usize,
    level: RiskLevel,
    context: bool,
) -> Option<Decider> {
    let (screen, scores) = scored.as_ref()?;
    let t = scores.get(turn)?;
    let piece = if context {
        t.strongest(level, &[PieceKind::Context])?
    } else {
        screen.deciding_piece(t, level)?
    };
    Some(Decider::Screen {
        category: screen.category_of(piece).to_string(),
        context,
    })
}

/// The spans of `denials` whose piece (their sentence, or the whole turn when it is one
/// sentence) the screen reads as the kind of harm denied: harm to others where someone else's
/// harm is denied, the suicide ladder, self-harm or hopelessness where the client's own is; any
/// kind where the words do not say.
fn denied_spans(
    screen: &Screen,
    turn: &TurnScore,
    denials: &[crate::denial::Denial],
) -> Vec<(usize, usize)> {
    use crate::denial::Denied;
    denials
        .iter()
        .filter(|d| {
            let holding = turn
                .pieces
                .iter()
                .filter(|p| p.kind == PieceKind::Sentence)
                .find(|p| p.start <= d.start && d.start < p.end)
                .or_else(|| turn.pieces.iter().find(|p| p.kind == PieceKind::Message));
            let Some(piece) = holding else {
                return false;
            };
            let category = screen.category_of(piece);
            let own_harm = matches!(
                category,
                "wish-dead"
                    | "ideation-nonspecific"
                    | "ideation-method"
                    | "ideation-intent"
                    | "ideation-plan"
                    | "preparatory"
                    | "attempt-aborted"
                    | "attempt-interrupted"
                    | "attempt-actual"
                    | "attempt-ongoing"
                    | "self-harm"
                    | "hopelessness"
            );
            match d.denied {
                Denied::Other => !own_harm,
                Denied::Myself => category != "harm-others",
                Denied::Unsaid => true,
            }
        })
        .map(|d| (d.start, d.end))
        .collect()
}

/// The combination the screen's reading of turn `k` completes with the lexicon's cues, when it
/// rates the turn's own words (message or a sentence) high or above.
fn screen_combination<'a>(
    scored: &Option<(&Screen, Vec<TurnScore>)>,
    k: usize,
    with_screen: &'a [crate::ScreenCombination],
) -> Option<&'a crate::ScreenCombination> {
    let (screen, scores) = scored.as_ref()?;
    let t = scores.get(k)?;
    if t.own < RiskLevel::High {
        return None;
    }
    let piece = screen.deciding_piece(t, t.own)?;
    let category = screen.category_of(piece);
    with_screen.iter().find(|c| c.category == category)
}

/// The full risk assessment of `dialogue` for `locale`. Without an `embedder` the screen cannot
/// run; the assessment's `detectors` then lacks `screen` and the rationale says so.
pub fn assess_dialogue(
    dialogue: &Dialogue,
    locale: &str,
    manifest_resources: &[CrisisResource],
    embedder: Option<&dyn SentenceEmbedder>,
) -> RiskAssessment {
    let screen = embedder.map(|e| screen::builtin().map(|s| (s, e)));
    assess_with(dialogue, locale, manifest_resources, screen)
}

/// [`assess_dialogue`] with a given screen (not the compiled-in one): how `psy train-screen
/// --report` measures a candidate screen through the whole guard without rebuilding psy.
pub fn assess_dialogue_with_screen(
    dialogue: &Dialogue,
    locale: &str,
    manifest_resources: &[CrisisResource],
    screen: &Screen,
    embedder: &dyn SentenceEmbedder,
) -> RiskAssessment {
    assess_with(
        dialogue,
        locale,
        manifest_resources,
        Some(Ok((screen, embedder))),
    )
}

/// The guard with the screen (or why it could not load) when an encoder is available.
fn assess_with(
    dialogue: &Dialogue,
    locale: &str,
    manifest_resources: &[CrisisResource],
    screen: Option<Result<(&Screen, &dyn SentenceEmbedder), String>>,
) -> RiskAssessment {
    let rules = rules();
    let turns: Vec<_> = dialogue.client_turns().collect();
    let mut failure: Option<String> = None;
    let mut reader: Option<&dyn SentenceEmbedder> = None;
    let mut reread_failure: Option<String> = None;
    let mut scored: Option<(&Screen, Vec<TurnScore>)> = match screen {
        None => None,
        Some(loaded) => {
            match loaded.and_then(|(s, e)| Ok((s, s.score_dialogue(e, dialogue)?, e))) {
                Ok((s, scores, e)) => {
                    reader = Some(e);
                    Some((s, scores))
                }
                Err(err) => {
                    failure = Some(err);
                    None
                }
            }
        }
    };

    // What the screen read in each turn, as far as the lexicon listens (`ScreenVerdict`).
    let verdicts: Vec<ScreenVerdict> = match &scored {
        Some((screen, scores)) => scores
            .iter()
            .map(|t| ScreenVerdict {
                plain_lookalike: screen.reads_as_plain_lookalike(t),
                confident_no: screen.reads_as_confident_no(t),
            })
            .collect(),
        _ => vec![ScreenVerdict::default(); turns.len()],
    };
    // The lexicon's reading of each prefix ending at a client turn.
    let mut readings = Vec::with_capacity(turns.len());
    let mut last_lexicon = None;
    let mut prefix_hash = Sha256::new();
    let mut hashed = 0;
    for turn in &turns {
        let last = readings.len() + 1 == turns.len();
        for m in &dialogue.messages[hashed..=turn.index] {
            hash_message(&mut prefix_hash, m);
        }
        // The lexicon's reading depends on the screen's reading of the turn too.
        prefix_hash.update([verdicts[readings.len()].key()]);
        hashed = turn.index + 1;
        // Earlier turns' lexicon readings come from the memo (the planner is given the whole
        // dialogue every turn); the last turn's full reading is always computed.
        let reading = if last {
            let prefix = Dialogue::new(dialogue.messages[..=turn.index].to_vec());
            let lex = lexicon_screen(rules, &prefix, &verdicts);
            let reading = PrefixReading::of(&lex, turn.index, turn.text);
            remember(prefix_hash.clone().finalize().into(), reading.clone());
            last_lexicon = Some(lex);
            reading
        } else {
            let key: [u8; 32] = prefix_hash.clone().finalize().into();
            recall(&key).unwrap_or_else(|| {
                let prefix = Dialogue::new(dialogue.messages[..=turn.index].to_vec());
                let reading = PrefixReading::of(
                    &lexicon_screen(rules, &prefix, &verdicts),
                    turn.index,
                    turn.text,
                );
                remember(key, reading.clone());
                reading
            })
        };
        readings.push(reading);
    }
    // The client's denial of harm is not the harm: the screen reads each turn's own words
    // again without the denials it would read as what they deny (`crate::denial`).
    // Only while nothing earlier in the session raised concern: after a threat or a wish to
    // die, "I won't do it" is what a check-in is for ("I've got the hammer in my coat pocket"
    // ... "It's passed, I think. I won't do it.").
    if let (Some((screen, scores)), Some(e)) = (scored.as_mut(), reader) {
        for (k, turn) in turns.iter().enumerate() {
            let spans = denied_spans(screen, &scores[k], &readings[k].denials);
            if !spans.is_empty() {
                let earlier: Vec<&str> = turns
                    [k.saturating_sub(crate::screen::score::CONTEXT_TURNS)..k]
                    .iter()
                    .rev()
                    .map(|t| t.text)
                    .collect();
                if let Err(err) =
                    screen.reread_without(e, &mut scores[k], turn.text, &earlier, &spans)
                {
                    // The first reading stands, and the rationale says so.
                    reread_failure.get_or_insert(err);
                }
            }
            let concern = readings[k].level >= RiskLevel::Moderate
                || scores[k].own >= RiskLevel::Moderate
                || scores[k].context >= RiskLevel::Moderate;
            if concern {
                break;
            }
        }
    }
    // The client's own risk: the session read from the cues about the client alone (on its
    // own copy of the screen's scores, which the session discounts where a change is named).
    let client = {
        let mut scores = scored.clone();
        run_session(View::Client, &turns, &readings, &mut scores)
    };
    let client_level = client
        .trajectory
        .last()
        .map(|t| t.level)
        .unwrap_or_default();
    let reply = run_session(View::Reply, &turns, &readings, &mut scored);
    // The reply answers the higher of the two at every turn: the client's own risk can outlast
    // a helper's crisis the session read as resolved ("driving home" after a customer's son's
    // plan, then the client's own wish not to wake up).
    let trajectory: Vec<TurnRisk> = reply
        .trajectory
        .iter()
        .zip(&client.trajectory)
        .map(|(r, c)| TurnRisk {
            message: r.message,
            level: r.level.max(c.level),
        })
        .collect();
    let reply_level = reply.trajectory.last().map(|t| t.level).unwrap_or_default();
    let decider = if client_level > reply_level {
        client.decider
    } else {
        reply.decider
    };

    let Some(mut lex) = last_lexicon else {
        // No client turn: nothing to screen.
        let mut a = lexicon_screen(rules, dialogue, &[]).into_assessment(
            rules,
            locale,
            manifest_resources,
            Vec::new(),
        );
        a.detectors = detectors(scored.is_some());
        return a;
    };
    let final_level = trajectory.last().map(|t| t.level).unwrap_or_default();
    let mut extra: Vec<RiskEvidence> = Vec::new();
    if let Some((screen, scores)) = &scored {
        for t in scores {
            extra.extend(screen_evidence(screen, t, dialogue));
        }
    }
    if let Some(d) = &decider {
        let (id, summary, focus) = match d {
            Decider::Screen { category, context } => {
                let focus = if category == "harm-others" {
                    Focus::Others
                } else {
                    Focus::Myself
                };
                let summary = if *context {
                    format!("the trained screen, reading this turn with the client's earlier turns, finds `{category}`")
                } else {
                    format!("the trained screen finds `{category}` in the client's words")
                };
                let id = if *context { "screen:context" } else { "screen" };
                (id.to_string(), summary, focus)
            }
            Decider::Combined {
                combine,
                category,
                message,
            } => {
                let c = &rules.file.combines[*combine];
                // The screen's piece of that turn is evidence of the combination too.
                for e in extra
                    .iter_mut()
                    .filter(|e| e.rule == "screen" && e.evidence.message == *message)
                {
                    e.rule = c.id.clone();
                    e.level = c.level;
                }
                let focus = match c.subject {
                    crate::Subject::Other => Focus::ThirdParty,
                    crate::Subject::Myself => c.focus,
                };
                (
                    c.id.clone(),
                    format!(
                        "{}: the trained screen reads `{category}` in the client's words and the lexicon finds the rest",
                        c.summary
                    ),
                    focus,
                )
            }
            Decider::Session { since } => {
                extra.push(RiskEvidence {
                    rule: "session".into(),
                    category: "earlier-crisis".into(),
                    level: RiskLevel::Moderate,
                    evidence: message_evidence(
                        dialogue,
                        *since,
                        "an earlier turn rated high or above",
                    ),
                    detector: "session".into(),
                    score: None,
                });
                (
                    "session".to_string(),
                    format!(
                        "message {since} was rated high or above and the client has not said they are safe since"
                    ),
                    Focus::Myself,
                )
            }
            Decider::Resolved { since } => (
                "session".to_string(),
                format!(
                    "the client reported being safe in message {since}, so the crisis cues before it count as history"
                ),
                Focus::Myself,
            ),
            Decider::Farewell { since } => {
                extra.push(RiskEvidence {
                    rule: "session".into(),
                    category: "farewell-in-crisis".into(),
                    level: RiskLevel::High,
                    evidence: message_evidence(
                        dialogue,
                        *since,
                        "an earlier turn rated high or above, then a goodbye",
                    ),
                    detector: "session".into(),
                    score: None,
                });
                (
                    "session".to_string(),
                    format!(
                        "message {since} was rated high or above and the client takes leave without saying they are safe"
                    ),
                    Focus::Myself,
                )
            }
            Decider::Undone { since } => {
                extra.push(RiskEvidence {
                    rule: "session".into(),
                    category: "change-undone".into(),
                    level: RiskLevel::High,
                    evidence: message_evidence(
                        dialogue,
                        *since,
                        "the change that made the client safe, which no longer holds",
                    ),
                    detector: "session".into(),
                    score: None,
                });
                (
                    "session".to_string(),
                    format!(
                        "the client named a change that made them safe in message {since}, and says it no longer holds (the person left, or they are alone again)"
                    ),
                    Focus::Myself,
                )
            }
            Decider::Kept { since } => {
                extra.push(RiskEvidence {
                    rule: "session".into(),
                    category: "danger-kept".into(),
                    level: RiskLevel::High,
                    evidence: message_evidence(
                        dialogue,
                        *since,
                        "an earlier crisis, with the means kept or a plan to go back since",
                    ),
                    detector: "session".into(),
                    score: None,
                });
                (
                    "session".to_string(),
                    format!(
                        "message {since} was rated high or above, and the client keeps the means or plans to go back"
                    ),
                    Focus::Myself,
                )
            }
            Decider::ThoughtsAfter { since } => {
                extra.push(RiskEvidence {
                    rule: "session".into(),
                    category: "thoughts-after-crisis".into(),
                    level: RiskLevel::Moderate,
                    evidence: message_evidence(
                        dialogue,
                        *since,
                        "an earlier turn rated moderate or above",
                    ),
                    detector: "session".into(),
                    score: None,
                });
                (
                    "session".to_string(),
                    format!(
                        "message {since} was rated moderate or above, and the client still voices thoughts of death, being a burden or hopelessness"
                    ),
                    Focus::Myself,
                )
            }
            Decider::Ongoing { since } => {
                extra.push(RiskEvidence {
                    rule: "session".into(),
                    category: "earlier-imminent".into(),
                    level: RiskLevel::Imminent,
                    evidence: message_evidence(
                        dialogue,
                        *since,
                        "an earlier turn rated imminent (an attempt under way or the means at hand)",
                    ),
                    detector: "session".into(),
                    score: None,
                });
                (
                    "session".to_string(),
                    format!(
                        "message {since} was rated imminent and the client has named no change that made them safe since"
                    ),
                    Focus::Myself,
                )
            }
        };
        lex.level = final_level;
        lex.decided_by = Some((id, summary));
        lex.focus = focus;
    }
    lex.client_level = client_level.min(final_level);
    let mut a = lex.into_assessment(rules, locale, manifest_resources, extra);
    a.trajectory = trajectory;
    a.detectors = detectors(scored.is_some());
    if let Some(err) = failure {
        a.rationale.push_str(&format!(
            " The trained screen could not run ({err}); only the lexicon was applied."
        ));
    }
    if let Some(err) = reread_failure {
        a.rationale.push_str(&format!(
            " The trained screen could not read a turn again without the client's denial of \
             harm ({err}); its first reading stands."
        ));
    }
    a
}

/// Which cues the session reads: all of them (the level the reply answers) or the client's own.
#[derive(Clone, Copy)]
enum View {
    Reply,
    Client,
}

impl View {
    /// The reading of this view: `reply` for every cue, `client` for the client's own.
    fn pick<T>(self, reply: T, client: T) -> T {
        match self {
            View::Reply => reply,
            View::Client => client,
        }
    }
}

/// The session's level after each client turn, and what decided the last one.
struct SessionRun {
    trajectory: Vec<TurnRisk>,
    decider: Option<Decider>,
}

/// The session rules over the lexicon's `readings` of each client turn and the screen's scores
/// (which it discounts where a turn names a change), for one [`View`].
fn run_session(
    view: View,
    turns: &[psy_core::dialogue::ClientTurn<'_>],
    readings: &[PrefixReading],
    scored: &mut Option<(&Screen, Vec<TurnScore>)>,
) -> SessionRun {
    let mut trajectory = Vec::with_capacity(turns.len());
    let mut carry_since: Option<usize> = None;
    // The client-turn position of the turn that started the carry.
    let mut carry_turn: Option<usize> = None;
    // The highest level of the turns the carry has held since it started.
    let mut carry_level: Option<RiskLevel> = None;
    // Whether a turn since the carry's last high turn named a change that made the client safe.
    let mut change_since_carry = false;
    // The message of the carry's last imminent turn.
    let mut imminent_since: Option<usize> = None;
    // The client-turn position of the crisis whose carry the client's report of safety ended,
    // until a new carry opens.
    let mut resolved: Option<usize> = None;
    // The message in which the client reported being safe from that crisis.
    let mut resolved_at = 0;
    // The level that crisis had reached.
    let mut resolved_level = RiskLevel::None;
    // The highest level of the turns so far at high or above, and its message (rule 29).
    let mut crisis: Option<(RiskLevel, usize)> = None;
    // The message of the first turn so far at moderate or above.
    let mut concern_at: Option<usize> = None;
    // A plan to go back or put off at or after a crisis: the floor it holds for the rest of
    // the session, and its message.
    let mut plan_floor: Option<(RiskLevel, usize)> = None;
    // The means kept at or after a crisis: the floor they hold until a named change makes the
    // client safe.
    let mut means_floor: Option<(RiskLevel, usize)> = None;
    let mut decider: Option<Decider> = None;
    for (k, turn) in turns.iter().enumerate() {
        let reading = &readings[k];
        // The change that ended the crisis no longer holds ("Pastor has gone now" after "my
        // pastor came", "he's on night shift again tonight", "I'll go back on the weekend"):
        // the crisis is back at its level (high at most: a plan for later, not one under way).
        let undone = (reading.undoes_change && resolved.is_some())
            .then(|| resolved_level.min(RiskLevel::High));
        // A plan to go back, or put off ("I will go back when it is quiet", "I'll wait till
        // after her birthday"), or the means kept ("I still have everything", "left all the
        // stuff in the boot"), after a crisis: the crisis is back at its level even beside a
        // named change (rule 29); a plan holds that floor for the rest of the session.
        let kept_now = reading.plans_return || reading.keeps_means;
        let kept = kept_now
            .then_some(crisis)
            .flatten()
            .map(|(l, at)| (l.min(RiskLevel::High), at));
        // A risk cue or "still" after the report reopens the crisis: "love you all" after "I'm
        // home, I'm in bed, I'm safe" is read with the pills in hand again.
        if reading.risk_cues || reading.says_still {
            resolved = None;
        }
        let lex_level = view.pick(reading.level, reading.client_level);
        let [last_turn, last_turn_client] = reading.last_turn_level;
        let turn_level = view.pick(last_turn, last_turn_client);
        let (mut own, mut context) = scored
            .as_ref()
            .map(|(_, s)| (s[k].own, s[k].context))
            .unwrap_or((RiskLevel::None, RiskLevel::None));
        // A crisis told together with the change that ended it, no crisis open before it ("I
        // was in the garage with the car running on Sunday" ... "My husband found me and took me
        // to the hospital"): the screen reads the crisis; the turn gets the check-in the change
        // turn of an open crisis gets, unless the lexicon finds a cue outside the change (a time
        // word too), the client says "still", or the turn's other sentences read high alone
        // ("I've kept the tablets ready, but don't worry, I'm calm").
        if carry_since.is_none()
            && reading.reports_change
            && !reading.other_cues
            && !reading.says_still
            && scored.as_ref().is_some_and(|(screen, scores)| {
                screen.own_without(&scores[k], &reading.change_spans) < RiskLevel::High
            })
        {
            own = own.min(RiskLevel::Moderate);
            context = context.min(RiskLevel::Moderate);
        }
        // Only the client's own report that they are safe ends the carry; a protective factor
        // ("I'm only here because of my kids") after "I'm on the bridge" does not. After an
        // attempt under way or means in hand the bare word is not enough ("I'm safe, I'm just
        // going to stand here a bit longer"): the client must name a change (left the place,
        // someone with them, the means taken away, help arrived).
        // The change may come in an earlier turn than the word ("I came down, my neighbour took
        // me in" ... "I'm safe now").
        // A turn that names the change speaks of the place or the means it left ("I came down off
        // the bridge"): while a carry is open, or after the client reported being safe from it,
        // the screen reads only its other sentences.
        // Once the crisis is history, the client's word that they are safe is read the same way
        // ("im safe now" after "my mate came and got me" is not the crisis again).
        let report_spans: Vec<(usize, usize)> = if resolved.is_some() {
            reading
                .change_spans
                .iter()
                .chain(&reading.safe_spans)
                .copied()
                .collect()
        } else {
            reading.change_spans.clone()
        };
        let own_report = match &scored {
            Some((screen, scores))
                if (carry_since.is_some() && reading.reports_change
                    || resolved.is_some() && !report_spans.is_empty())
                    && !reading.says_still
                    && !reading.other_cues =>
            {
                screen.own_without(&scores[k], &report_spans)
            }
            _ => own,
        };
        let safe_now = own_report < RiskLevel::Moderate
            && kept.is_none()
            && (reading.reports_change
                || reading.reports_safe_now
                    && (carry_level < Some(RiskLevel::Imminent) || change_since_carry));
        if safe_now && own_report < own {
            if let Some((screen, scores)) = scored.as_mut() {
                screen.discount_spans(&mut scores[k], &report_spans);
            }
            own = own_report;
        }
        // Once the client has reported being safe, the cues of the crisis turns are history:
        // the lexicon counts the cues of this turn (a time word in "he's staying with me tonight"
        // does not complete the plan of the crisis it ends).
        // A bare "I'm safe" after a high turn ends the carry, but the crisis it answers stays in
        // view (blind writers expect at least moderate); a named change makes it history.
        let safe_by_change = safe_now && (reading.reports_change || change_since_carry);
        let prefix_level = lex_level;
        let lex_level = if resolved.is_some() {
            turn_level
        } else if safe_by_change {
            // The turn that names the change still gets a safety check-in (moderate) when the
            // crisis it answers reached it; the crisis is history from the next turn on.
            turn_level.max(lex_level.min(RiskLevel::Moderate))
        } else {
            lex_level
        };
        let mut level = lex_level;
        let mut why = None;
        if lex_level < prefix_level {
            why = Some(Decider::Resolved {
                since: if safe_by_change {
                    turn.index
                } else {
                    resolved_at
                },
            });
        }
        if own > level {
            level = own;
            why = screen_decider(scored, k, own, false);
        }
        if let Some(c) = screen_combination(
            scored,
            k,
            view.pick(&reading.with_screen, &reading.client_with_screen),
        ) {
            if c.level > level {
                level = c.level;
                why = Some(Decider::Combined {
                    combine: c.combine,
                    category: c.category.clone(),
                    message: turn.index,
                });
            }
        }
        // After the client's report of safety the context view would read the resolved crisis
        // again with each calm turn inside its window ("a nurse is coming to talk to me" read
        // with "i cut and it's bleeding a lot").
        let rereads_resolved = resolved.is_some_and(|c| k - c <= screen::score::CONTEXT_TURNS);
        if !safe_now && !rereads_resolved && context > level {
            level = context;
            why = screen_decider(scored, k, context, true);
        }
        if let Some(back) = undone.filter(|&l| l > level) {
            level = back;
            why = Some(Decider::Undone { since: resolved_at });
        }
        let floor = kept
            .max(plan_floor)
            .max(means_floor.filter(|_| !safe_by_change));
        if let Some((back, at)) = floor.filter(|&(l, _)| l > level) {
            level = back;
            why = Some(Decider::Kept { since: at });
        }
        // Thoughts after a crisis or a concern are not the low they read alone ("Still dinnae
        // see the point in anything" after the police took them to A&E).
        if let Some(at) = concern_at.filter(|_| reading.thought_cues && level < RiskLevel::Moderate)
        {
            level = RiskLevel::Moderate;
            why = Some(Decider::ThoughtsAfter { since: at });
        }
        // The screen read this turn together with the turn that raised the alarm (still inside
        // its context window) and, like the lexicon and the turn's own words, found nothing
        // above low: the earlier turn was a past crisis told as background, not an open one.
        // Only a context view calibrated on labelled sessions may settle: an untrained one
        // reads "what's your favourite colour?" after "I'm on the bridge" as calm.
        // Never an attempt under way: screens trained on calm sessions read "thanks for
        // replying" after "I'm standing on the bridge right now" as calm (measured on the
        // candidate screens with writer f's sessions); only the client's word that they are
        // safe ends that carry.
        let settled_now = scored
            .as_ref()
            .is_some_and(|(s, _)| s.spec.thresholds.context_high.is_some())
            && carry_level.is_some_and(|l| l < RiskLevel::Imminent)
            && carry_turn.is_some_and(|c| k - c <= screen::score::CONTEXT_TURNS)
            && level < RiskLevel::Moderate
            && context < RiskLevel::Moderate
            // A thank-you and goodbye is how a calm farewell after arrangements ends ("letters
            // are posted, the dog's with my sister" ... "Thanks for everything. Bye"): it
            // settles nothing; only the client's word that they are safe does.
            && !reading.takes_leave
            // The means kept or a plan to go back: the screen's calm settles nothing.
            && floor.is_none()
            && !kept_now;
        match carry_since {
            Some(_) if safe_now || settled_now => {
                if safe_by_change {
                    resolved = carry_turn;
                    resolved_at = turn.index;
                    resolved_level = carry_level.unwrap_or_default();
                }
                carry_since = None;
                carry_turn = None;
                carry_level = None;
                change_since_carry = false;
                imminent_since = None;
            }
            // A goodbye while the crisis is open is a warning of its own (the `farewell` cues):
            // "Thanks for everything. Bye" after "letters are posted" keeps the crisis's level.
            Some(since)
                if reading.takes_leave
                    && carry_level.is_some_and(|l| l >= RiskLevel::High)
                    && level < RiskLevel::High =>
            {
                level = RiskLevel::High;
                why = Some(Decider::Farewell { since });
            }
            Some(since) if level < RiskLevel::Moderate => {
                level = RiskLevel::Moderate;
                why = Some(Decider::Session { since });
            }
            _ => {}
        }
        if level >= RiskLevel::High {
            resolved = None;
            carry_since = Some(turn.index);
            carry_turn = Some(k);
            carry_level = carry_level.max(Some(level));
            change_since_carry = reading.reports_change;
        } else if carry_since.is_some() && reading.reports_change {
            change_since_carry = true;
        }
        // Self-injury and harm to others are not an attempt on the client's life under way: a
        // cut "last night" the screen reads as imminent does not hold the session there.
        let on_the_ladder = match &why {
            Some(Decider::Screen { category, .. } | Decider::Combined { category, .. }) => {
                !matches!(category.as_str(), "self-harm" | "harm-others")
            }
            _ => true,
        };
        if level == RiskLevel::Imminent && on_the_ladder {
            imminent_since = Some(turn.index);
        }
        // An attempt under way, or a person at a height or with the means in hand, does not end
        // because the client turns calm ("thanks for everything", "don't worry, I'm comfy"):
        // until the carry ends (a named change, then their word) the level stays imminent. Set
        // after the carry's bookkeeping, which it does not touch.
        if let Some(since) = imminent_since.filter(|_| level < RiskLevel::Imminent) {
            level = RiskLevel::Imminent;
            why = Some(Decider::Ongoing { since });
        }
        if safe_by_change {
            means_floor = None;
        }
        if kept_now && level >= RiskLevel::High {
            let here = Some((level.min(RiskLevel::High), turn.index));
            if reading.plans_return {
                plan_floor = plan_floor.max(here);
            }
            if reading.keeps_means {
                means_floor = means_floor.max(here);
            }
        }
        if level >= RiskLevel::High && crisis.is_none_or(|(l, _)| level > l) {
            crisis = Some((level, turn.index));
        }
        if level >= RiskLevel::Moderate {
            concern_at.get_or_insert(turn.index);
        }
        trajectory.push(TurnRisk {
            message: turn.index,
            level,
        });
        if k + 1 == turns.len() {
            decider = why;
        }
    }
    SessionRun {
        trajectory,
        decider,
    }
}

/// What the session loop needs from the lexicon's reading of a dialogue prefix ending at a
/// client turn.
#[derive(Clone)]
struct PrefixReading {
    level: RiskLevel,
    /// The level of the cues about the client alone.
    client_level: RiskLevel,
    /// The level of the last turn's cues alone (all, the client's own).
    last_turn_level: [RiskLevel; 2],
    /// The client's own word in the last turn that they are safe or will not act (`safe-now`).
    reports_safe_now: bool,
    /// A concrete change the last turn reports after a crisis (`safe-change`).
    reports_change: bool,
    /// The byte spans of those changes in the last turn.
    change_spans: Vec<(usize, usize)>,
    /// The byte spans of the client's word in the last turn that they are safe.
    safe_spans: Vec<(usize, usize)>,
    /// Whether the last turn holds a risk cue of the lexicon outside those changes (a means, a
    /// farewell, a plan ..., or a time word in a sentence that names no change).
    other_cues: bool,
    /// Whether the last turn holds a risk cue of the lexicon other than a time word outside
    /// those changes: after a crisis the client reported safe from, such a turn reopens it.
    risk_cues: bool,
    /// Whether the last turn says "still" (`says_still`).
    says_still: bool,
    /// Whether the last turn takes leave (`takes_leave`).
    takes_leave: bool,
    /// Whether the last turn says the change that made the client safe no longer holds (the
    /// person who came has gone, the client is alone again) and names no other change
    /// (`change-undone`).
    undoes_change: bool,
    /// Whether the last turn plans to go back or puts the plan off (`return-plan`).
    plans_return: bool,
    /// Whether the last turn says the means are kept (`means-kept`).
    keeps_means: bool,
    /// Whether the last turn holds a current cue of thoughts alone about the client (a
    /// `thoughts` category: ideation, a passive wish, a burden, hopelessness ...).
    thought_cues: bool,
    /// The client's denials of harm in the last turn, none when the turn holds a lexicon cue
    /// (`crate::denial`).
    denials: Vec<crate::denial::Denial>,
    /// What the screen's reading of the last turn could add (`LexiconScreen::with_screen`).
    with_screen: Vec<crate::ScreenCombination>,
    /// The same for the cues about the client alone.
    client_with_screen: Vec<crate::ScreenCombination>,
}

impl PrefixReading {
    fn of(lex: &crate::LexiconScreen, turn: usize, text: &str) -> Self {
        // A cue of the last turn outside the changes it names.
        let outside = |f: &crate::Found| {
            f.evidence.message == turn
                && !lex.protective.iter().any(|p| {
                    p.message == turn
                        && p.id == crate::rules::SAFE_CHANGE
                        && p.start <= f.evidence.start
                        && f.evidence.end <= p.end
                })
        };
        // Time words, and the cues of a change undone, which act on the session only through
        // `undoes_change` (a nurse gone after treatment is not the overdose again).
        let not_a_risk_cue = |f: &crate::Found| {
            f.category.is_none_or(|c| {
                let c = &crate::rules().file.categories[c];
                c.signal == "timeline"
                    || c.id == crate::rules::CHANGE_UNDONE
                    || c.id == crate::rules::RETURN_PLAN
                    || c.id == crate::rules::MEANS_KEPT
            })
        };
        let change_spans: Vec<(usize, usize)> = lex
            .protective
            .iter()
            .filter(|e| e.message == turn && e.id == crate::rules::SAFE_CHANGE)
            .map(|e| (e.start, e.end))
            .collect();
        // The screen's sentences (the units `Screen::own_without` drops) that name a change.
        let change_sentences: Vec<(usize, usize)> = sentence_spans(text)
            .into_iter()
            .filter(|&(s, e)| change_spans.iter().any(|&(cs, ce)| cs < e && s < ce))
            .collect();
        // A denial counts where the turn holds no cue of the lexicon (a means or a time word
        // beside "I'm not going to hurt him" is not denied with it: "I bought a gun last week.
        // I'm not scared of burglars.").
        let denials = if lex
            .found
            .iter()
            .any(|f| f.category.is_some() && f.evidence.message == turn)
        {
            Vec::new()
        } else {
            lex.last_turn_denials.clone()
        };
        let words: Vec<String> = Text::new(text).tokens.into_iter().map(|t| t.norm).collect();
        let cue_spans = |id: &str| -> Vec<(usize, usize)> {
            lex.found
                .iter()
                .filter(|f| {
                    f.evidence.message == turn
                        && f.category
                            .is_some_and(|c| crate::rules().file.categories[c].id == id)
                })
                .map(|f| (f.evidence.start, f.evidence.end))
                .collect()
        };
        let undone = cue_spans(crate::rules::CHANGE_UNDONE);
        // "I'm home alone" names no change: a change counts only apart from the undoing.
        let other_change = change_spans
            .iter()
            .any(|&(cs, ce)| !undone.iter().any(|&(s, e)| cs < e && s < ce));
        let undoes_change = !undone.is_empty() && !other_change;
        PrefixReading {
            says_still: says_still(&words),
            takes_leave: takes_leave(&words),
            undoes_change,
            plans_return: !cue_spans(crate::rules::RETURN_PLAN).is_empty(),
            keeps_means: !cue_spans(crate::rules::MEANS_KEPT).is_empty(),
            // (Read low as a joke's words or not, but not told as past.)
            thought_cues: lex.found.iter().any(|f| {
                !f.past
                    && f.subject == crate::Subject::Myself
                    && outside(f)
                    && f.category
                        .is_some_and(|c| crate::rules().file.categories[c].thoughts)
            }),
            denials,
            level: lex.level,
            client_level: lex.client_level,
            last_turn_level: lex.last_turn_level,
            reports_safe_now: lex
                .protective
                .iter()
                .any(|e| e.message == turn && e.id == crate::rules::SAFE_NOW),
            reports_change: lex
                .protective
                .iter()
                .any(|e| e.message == turn && e.id == crate::rules::SAFE_CHANGE),
            safe_spans: lex
                .protective
                .iter()
                .filter(|e| e.message == turn && e.id == crate::rules::SAFE_NOW)
                .map(|e| (e.start, e.end))
                .collect(),
            // A time word counts unless the change it belongs to holds it ("he's staying with me
            // tonight"); the screen reads a sentence that names no change alone and misses the
            // plan in "Tomorrow night I'll go back".
            other_cues: lex.found.iter().any(|f| {
                f.category.is_some()
                    && outside(f)
                    && !(not_a_risk_cue(f)
                        && change_sentences
                            .iter()
                            .any(|&(s, e)| s <= f.evidence.start && f.evidence.end <= e))
            }),
            // Any cue but a time word ("he's staying with me tonight").
            risk_cues: lex.found.iter().any(|f| !not_a_risk_cue(f) && outside(f)),
            with_screen: lex.with_screen.clone(),
            client_with_screen: lex.client_with_screen.clone(),
            change_spans,
        }
    }
}

/// Prefixes remembered before the memo starts over (a few dozen bytes each).
const PREFIX_MEMO_LIMIT: usize = 16_384;

fn prefix_memo() -> &'static Mutex<HashMap<[u8; 32], PrefixReading>> {
    static MEMO: OnceLock<Mutex<HashMap<[u8; 32], PrefixReading>>> = OnceLock::new();
    MEMO.get_or_init(Default::default)
}

fn recall(key: &[u8; 32]) -> Option<PrefixReading> {
    let memo = prefix_memo().lock().unwrap_or_else(|p| p.into_inner());
    memo.get(key).cloned()
}

fn remember(key: [u8; 32], reading: PrefixReading) {
    let mut memo = prefix_memo().lock().unwrap_or_else(|p| p.into_inner());
    if memo.len() >= PREFIX_MEMO_LIMIT {
        memo.clear();
    }
    memo.insert(key, reading);
}

/// Feeds one message to a prefix's hash: role and length-prefixed content, so that no two
/// different prefixes feed the same bytes. The lexicon reads only roles and contents (the
/// rules are compiled into the binary, so they need no place in the key).
fn hash_message(h: &mut Sha256, m: &Message) {
    h.update([m.role as u8]);
    h.update((m.content.len() as u64).to_le_bytes());
    h.update(m.content.as_bytes());
}

/// "Still" in a turn that names a change says something has not changed ("the knife is still
/// here with me", "he's still in the flat", "still shaking"): the turn is then read whole.
fn says_still(words: &[String]) -> bool {
    words.iter().any(|w| w == "still")
}

/// Leave-taking: "bye", "goodbye", thanks for everything or for all of it.
fn takes_leave(words: &[String]) -> bool {
    let has = |seq: &[&str]| words.windows(seq.len()).any(|w| w.iter().eq(seq.iter()));
    words
        .iter()
        .any(|w| matches!(w.as_str(), "bye" | "goodbye" | "farewell"))
        || has(&["for", "everything"])
        || has(&["for", "it", "all"])
        || has(&["for", "all", "of"])
}

fn detectors(screen: bool) -> Vec<String> {
    let mut d = vec!["lexicon".to_string()];
    if screen {
        d.push("screen".into());
    }
    d.push("session".into());
    d
}

/// The screen's evidence for one turn: its strongest piece when the turn reaches moderate.
fn screen_evidence(screen: &Screen, t: &TurnScore, dialogue: &Dialogue) -> Vec<RiskEvidence> {
    let mut out = Vec::new();
    for (level, context, rule) in [
        (t.own, false, "screen"),
        (t.context, true, "screen:context"),
    ] {
        if level < RiskLevel::Moderate {
            continue;
        }
        let piece = if context {
            t.strongest(level, &[PieceKind::Context])
        } else {
            screen.deciding_piece(t, level)
        };
        let Some(piece) = piece else {
            continue;
        };
        let text = &dialogue.messages[t.message].content;
        out.push(RiskEvidence {
            rule: rule.into(),
            category: screen.category_of(piece).to_string(),
            level,
            evidence: Evidence {
                id: rule.into(),
                label: format!("trained screen ({})", piece.kind.as_str()),
                message: t.message,
                start: piece.start,
                end: piece.end,
                text: text[piece.start..piece.end].to_string(),
            },
            detector: "screen".into(),
            score: Some(round3(
                piece.output.levels[screen::score::output_for(level)],
            )),
        });
    }
    out
}

/// Scores in plans are rounded so that the same dialogue gives the same plan byte for byte.
fn round3(x: f32) -> f32 {
    (x * 1000.0).round() / 1000.0
}

fn message_evidence(dialogue: &Dialogue, message: usize, label: &str) -> Evidence {
    let text = &dialogue.messages[message].content;
    Evidence {
        id: "session".into(),
        label: label.into(),
        message,
        start: 0,
        end: text.len(),
        text: text.clone(),
    }
}
