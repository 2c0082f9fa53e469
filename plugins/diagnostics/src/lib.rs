//! DSM-5-TR and ICD-11 diagnostic screening modules (criteria as TOML data).
//!
//! One crate, two modules (`dsm5`, `icd11`) over one shared criteria set: the systems
//! differ in thresholds, durations and a few criteria, not in what clients say. Screening
//! is lexical and conservative: only the client's own affirmed statements count as met,
//! explicit denials count as missing, everything else stays unknown and becomes a question.

pub mod criteria;
pub mod duration;

use std::collections::HashMap;

use psy_core::dialogue::Dialogue;
use psy_core::exemplar_match::{self, ExampleGroup, SemanticPolicy};
use psy_core::lexicon::{Lexicon, Text};
use psy_core::module::{
    builtin_spec, round4, Assessment, CriterionStatus, DurationStatus, Evidence, Hypothesis,
    Module, ModuleSpec,
};
use psy_core::semantic::{AssessContext, SentenceEmbedder};

pub use criteria::{conditions, Condition, System};

/// What a lexicon group stands for.
#[derive(Clone, Copy, Debug)]
enum Group {
    Criterion { cond: usize, crit: usize },
    Exclusion { cond: usize, excl: usize },
}

/// A diagnostic screening module applying one system's rules.
pub struct Screening {
    spec: ModuleSpec,
    system: System,
    groups: Vec<Group>,
    lexicon: Lexicon,
    /// Criteria with example sentences: (lexicon group, examples, unlike sentences).
    examples: Vec<(usize, &'static [String], &'static [String])>,
}

impl Screening {
    /// Builds the module for a system; panics on a broken built-in spec or criteria file.
    pub fn new(system: System) -> Screening {
        let spec = match system {
            System::Dsm5 => builtin_spec(
                include_str!("../dsm5.toml"),
                "plugins/diagnostics/dsm5.toml",
            ),
            System::Icd11 => builtin_spec(
                include_str!("../icd11.toml"),
                "plugins/diagnostics/icd11.toml",
            ),
        };
        let mut groups = Vec::new();
        let mut phrases: Vec<(usize, String)> = Vec::new();
        let mut examples = Vec::new();
        for (ci, c) in conditions().iter().enumerate() {
            for (ki, k) in c.criteria.iter().enumerate() {
                if !k.applies(system) {
                    continue;
                }
                let g = groups.len();
                groups.push(Group::Criterion { cond: ci, crit: ki });
                if !k.examples.is_empty() {
                    examples.push((g, k.examples.as_slice(), k.unlike.as_slice()));
                }
                for p in &k.cues {
                    phrases.extend(criteria::expand(p).into_iter().map(|p| (g, p)));
                }
            }
            for (ei, e) in c.exclusions.iter().enumerate() {
                if e.cues.is_empty() {
                    continue;
                }
                let g = groups.len();
                groups.push(Group::Exclusion { cond: ci, excl: ei });
                for p in &e.cues {
                    phrases.extend(criteria::expand(p).into_iter().map(|p| (g, p)));
                }
            }
        }
        let lexicon = Lexicon::new(phrases.iter().map(|(g, p)| (*g, p.as_str())))
            .expect("cue phrases are checked when the criteria load");
        if let Err((field, m)) = spec.semantic.check(!examples.is_empty()) {
            panic!("plugins/diagnostics/{}.toml: {field}: {m}", system.id());
        }
        Screening {
            spec,
            system,
            groups,
            lexicon,
            examples,
        }
    }

    /// The module with other similarity thresholds (for calibration on the tuned sets).
    pub fn with_semantic(system: System, semantic: SemanticPolicy) -> Screening {
        let mut s = Screening::new(system);
        s.spec.semantic = semantic;
        s
    }

    /// Ablation for calibration: criteria found by their examples only, no cue phrases. How
    /// far the examples alone reach on sets they were not written from.
    pub fn examples_only(system: System, semantic: SemanticPolicy) -> Screening {
        let mut s = Screening::with_semantic(system, semantic);
        s.lexicon = Lexicon::new(std::iter::empty()).expect("an empty lexicon compiles");
        s
    }

    pub fn system(&self) -> System {
        self.system
    }
}

/// Per-condition working state while screening.
#[derive(Default, Clone)]
struct Found {
    /// Affirmed evidence per criterion index.
    affirmed: Vec<Vec<Evidence>>,
    denied: Vec<bool>,
    exclusion_hits: Vec<Vec<String>>,
}

impl Module for Screening {
    fn spec(&self) -> &ModuleSpec {
        &self.spec
    }

    fn assess(&self, dialogue: &Dialogue) -> Assessment {
        self.screen(dialogue, None)
    }

    /// With an encoder, a criterion is also met by a client sentence close to its examples.
    fn assess_with(&self, dialogue: &Dialogue, ctx: &AssessContext) -> Assessment {
        self.screen(dialogue, ctx.embedder)
    }
}

impl Screening {
    fn screen(&self, dialogue: &Dialogue, embedder: Option<&dyn SentenceEmbedder>) -> Assessment {
        let conds = conditions();
        let mut found: Vec<Found> = conds
            .iter()
            .map(|c| Found {
                affirmed: vec![Vec::new(); c.criteria.len()],
                denied: vec![false; c.criteria.len()],
                exclusion_hits: vec![Vec::new(); c.exclusions.len()],
            })
            .collect();
        let mut mentions = Vec::new();
        let mut symptoms = Vec::new();
        // Denials the lexicon read, as (group, message, start, end): the encoder skips them.
        let mut denials: Vec<(usize, usize, usize, usize)> = Vec::new();
        for turn in dialogue.client_turns() {
            let text = Text::new(turn.text);
            mentions.extend(duration::extract(turn.index, turn.text));
            // The manifests' `[matching]` ends a negation at `and`/`or`: "I can't concentrate
            // and I barely eat" denies concentration, not eating.
            for hit in self.lexicon.find_with(&text, &self.spec.matching) {
                // Hypotheticals and talk about other people say nothing about the client.
                if hit.hypothetical || hit.third_person {
                    continue;
                }
                match self.groups[hit.entry] {
                    Group::Criterion { cond, crit } => {
                        if hit.negated {
                            found[cond].denied[crit] = true;
                            denials.push((hit.entry, turn.index, hit.start, hit.end));
                            continue;
                        }
                        let c = &conds[cond];
                        let ev = Evidence {
                            id: format!("{}/{}", c.id, c.criteria[crit].id),
                            label: c.criteria[crit].symptom.clone(),
                            message: turn.index,
                            start: hit.start,
                            end: hit.end,
                            text: hit.text.clone(),
                        };
                        symptoms.push(ev.clone());
                        found[cond].affirmed[crit].push(ev);
                    }
                    Group::Exclusion { cond, excl } => {
                        if !hit.negated {
                            found[cond].exclusion_hits[excl].push(hit.text.clone());
                        }
                    }
                }
            }
        }
        let mut notes = Vec::new();
        if let Some(embedder) = embedder {
            match self.by_examples(embedder, dialogue, &denials) {
                Ok(extra) => {
                    for (cond, crit, ev) in extra {
                        let known = &mut found[cond].affirmed[crit];
                        let overlaps = known.iter().any(|e| {
                            e.message == ev.message && e.start < ev.end && ev.start < e.end
                        });
                        if !overlaps {
                            symptoms.push(ev.clone());
                            known.push(ev);
                        }
                    }
                }
                Err(e) => notes.push(format!(
                    "sentence encoder {} failed, criteria read by lexicon only: {e}",
                    embedder.name()
                )),
            }
        }
        symptoms.sort_by(|a, b| (a.message, a.start, &a.id).cmp(&(b.message, b.start, &b.id)));

        let mut hyps: Vec<Hypothesis> = conds
            .iter()
            .zip(&found)
            .map(|(c, f)| self.hypothesis(c, f, &mentions))
            .collect();
        // Second pass: differentials that depend on another condition's threshold.
        let met: Vec<bool> = hyps.iter().map(|h| h.threshold_met).collect();
        for (ci, c) in conds.iter().enumerate() {
            for e in &c.exclusions {
                let hit = e.if_threshold.iter().any(|t| {
                    conds
                        .iter()
                        .position(|o| o.id == *t)
                        .is_some_and(|o| met[o])
                });
                if hit {
                    let h = &mut hyps[ci];
                    h.confidence = round4((h.confidence - e.penalty).max(0.0));
                }
            }
        }
        hyps.retain(|h| !h.criteria_met.is_empty());
        hyps.sort_by(|a, b| b.confidence.total_cmp(&a.confidence).then(a.id.cmp(&b.id)));

        for m in &mentions {
            notes.push(match m.days {
                Some(d) => format!("duration stated: \"{}\" (about {d} days)", m.text),
                None => format!("time anchor stated: \"{}\" (length unknown)", m.text),
            });
        }
        Assessment {
            module: self.spec.module.id.clone(),
            symptoms,
            hypotheses: hyps,
            notes,
            ..Default::default()
        }
    }
}

impl Screening {
    /// Criteria met by meaning: (condition, criterion, evidence) for each client sentence close
    /// to a criterion's examples, unless the lexicon read a denial of any criterion there.
    fn by_examples(
        &self,
        embedder: &dyn SentenceEmbedder,
        dialogue: &Dialogue,
        denials: &[(usize, usize, usize, usize)],
    ) -> Result<Vec<(usize, usize, Evidence)>, String> {
        let groups: Vec<ExampleGroup> = self
            .examples
            .iter()
            .map(|(_, ex, unlike)| ExampleGroup {
                examples: ex,
                unlike,
                include_hypothetical: false,
            })
            .collect();
        // Any denial the lexicon read silences the encoder there, whatever the criterion: the
        // encoder reads "I don't have any trouble sleeping" as a complaint about sleep.
        let denied = |_: usize, m: usize, s: usize, e: usize| {
            denials
                .iter()
                .any(|&(_, dm, ds, de)| dm == m && ds < e && s < de)
        };
        let hits = exemplar_match::find(
            embedder,
            &groups,
            dialogue,
            &self.spec.semantic,
            self.spec.matching.subject,
            false,
            &denied,
        )?;
        let conds = conditions();
        let cond_of = |h: &exemplar_match::ExampleHit| match self.groups[self.examples[h.group].0] {
            Group::Criterion { cond, .. } => Some(cond),
            Group::Exclusion { .. } => None,
        };
        // A message read whole is one piece of evidence: it supports at most the one criterion
        // of a condition it lies closest to. Read whole, "I've been so tired lately. Work is
        // overwhelming and I can't seem to switch off at night." lay 0.57-0.64 from five
        // insomnia criteria and counted as five of them met. Sentences and clauses still meet
        // every criterion they are close to (one sentence can hold several symptoms).
        // The closest whole-message hit per (condition, message); on a tie the first, in
        // criterion order.
        let mut closest: HashMap<(usize, usize), usize> = HashMap::new();
        for (i, h) in hits.iter().enumerate().filter(|(_, h)| h.whole_message) {
            if let Some(cond) = cond_of(h) {
                let at = closest.entry((cond, h.message)).or_insert(i);
                if h.similarity > hits[*at].similarity {
                    *at = i;
                }
            }
        }
        let hits: Vec<exemplar_match::ExampleHit> = hits
            .iter()
            .enumerate()
            .filter(|&(i, h)| match cond_of(h).filter(|_| h.whole_message) {
                Some(cond) => closest[&(cond, h.message)] == i,
                None => true,
            })
            .map(|(_, h)| h.clone())
            .collect();
        Ok(hits
            .into_iter()
            .filter_map(|h| {
                let Group::Criterion { cond, crit } = self.groups[self.examples[h.group].0] else {
                    return None;
                };
                let text = &dialogue.messages.get(h.message)?.content;
                let c = &conds[cond];
                let ev = Evidence {
                    id: format!("{}/{}", c.id, c.criteria[crit].id),
                    label: h.label(&c.criteria[crit].symptom),
                    message: h.message,
                    start: h.start,
                    end: h.end,
                    text: text.get(h.start..h.end)?.to_string(),
                };
                Some((cond, crit, ev))
            })
            .collect())
    }

    fn hypothesis(&self, c: &Condition, f: &Found, mentions: &[duration::Mention]) -> Hypothesis {
        let rule = c.rules.get(self.system);
        let mut met = Vec::new();
        let mut missing = Vec::new();
        let mut unknown = Vec::new();
        let mut unknown_idx = Vec::new();
        for (ki, k) in c.criteria.iter().enumerate() {
            if !k.applies(self.system) {
                continue;
            }
            let status = CriterionStatus {
                id: k.id.clone(),
                symptom: k.symptom.clone(),
                core: k.core,
                evidence: f.affirmed[ki].clone(),
            };
            if !f.affirmed[ki].is_empty() {
                met.push(status);
            } else if f.denied[ki] {
                missing.push(status);
            } else {
                unknown.push(status);
                unknown_idx.push(ki);
            }
        }
        let n = (met.len() + missing.len() + unknown.len()) as f32;
        let met_core = met.iter().filter(|k| k.core).count() as u32;
        let missing_core = missing.iter().filter(|k| k.core).count() as f32;
        let required_ok = rule.required.iter().all(|r| met.iter().any(|k| k.id == *r));
        let threshold_met =
            met.len() as u32 >= rule.min_count && met_core >= rule.min_core && required_ok;

        let duration = duration_status(rule.min_days, mentions);
        let severity = if threshold_met {
            rule.severity
                .iter()
                .filter(|s| met.len() as u32 >= s.min_count)
                .max_by_key(|s| s.min_count)
                .map(|s| s.label.clone())
        } else {
            None
        };

        let mut rule_outs = Vec::new();
        let mut penalty = 0.0f32;
        for (e, hits) in c.exclusions.iter().zip(&f.exclusion_hits) {
            if hits.is_empty() {
                rule_outs.push(e.note.clone());
            } else {
                penalty += e.penalty;
                rule_outs.push(format!(
                    "{} (client said: \"{}\")",
                    e.note,
                    hits.join("\", \"")
                ));
            }
        }
        if !rule.duration_note.is_empty() {
            rule_outs.push(format!("duration: {}", rule.duration_note));
        }

        // Questions: unknown core items, then the duration, then other unknowns; at most 3.
        let mut qs: Vec<String> = unknown_idx
            .iter()
            .filter(|&&ki| c.criteria[ki].core)
            .map(|&ki| c.criteria[ki].follow_up.clone())
            .collect();
        if rule.min_days > 0 && !duration.known {
            qs.push(c.duration_question.clone());
        }
        qs.extend(
            unknown_idx
                .iter()
                .filter(|&&ki| !c.criteria[ki].core)
                .map(|&ki| c.criteria[ki].follow_up.clone()),
        );
        qs.truncate(3);

        // Confidence: how far towards the threshold, breadth of criteria, core items,
        // threshold and duration; explicit denials of core items and exclusions lower it.
        let prop_k = (met.len() as f32 / rule.min_count as f32).min(1.0);
        let prop_n = met.len() as f32 / n.max(1.0);
        let core_score = if rule.min_core > 0 {
            (met_core as f32 / rule.min_core as f32).min(1.0)
        } else if met_core > 0 {
            1.0
        } else {
            0.5
        };
        let required_score = if rule.required.is_empty() || required_ok {
            1.0
        } else {
            0.0
        };
        let dur_score = match (rule.min_days, duration.met) {
            (0, _) | (_, None) => 0.5,
            (_, Some(true)) => 1.0,
            (_, Some(false)) => 0.0,
        };
        let raw = 0.30 * prop_k
            + 0.15 * prop_n
            + 0.15 * core_score
            + 0.05 * required_score
            + 0.15 * f32::from(u8::from(threshold_met))
            + 0.10 * dur_score
            - 0.05 * missing_core
            - penalty;
        Hypothesis {
            id: c.id.clone(),
            name: c.name.clone(),
            dsm5: c.dsm5.clone(),
            icd11: c.icd11.clone(),
            systems: vec![self.system.id().to_string()],
            confidence: round4(raw.clamp(0.0, 1.0)),
            threshold_met,
            criteria_met: met,
            criteria_missing: missing,
            criteria_unknown: unknown,
            duration,
            severity,
            rule_outs,
            follow_up_questions: qs,
        }
    }
}

/// The longest measured duration wins (clients often date the start of the trouble once);
/// with none, the first event anchor is kept as text.
fn duration_status(required_days: u32, mentions: &[duration::Mention]) -> DurationStatus {
    let longest = mentions
        .iter()
        .filter_map(|m| m.days.map(|d| (d, m)))
        .max_by(|a, b| a.0.cmp(&b.0).then(b.1.message.cmp(&a.1.message)));
    match longest {
        Some((d, m)) => DurationStatus {
            required_days,
            stated_days: Some(d),
            stated_text: Some(m.text.clone()),
            known: true,
            met: Some(d >= required_days),
        },
        None => DurationStatus {
            required_days,
            stated_days: None,
            stated_text: mentions.first().map(|m| m.text.clone()),
            known: false,
            met: (required_days == 0).then_some(true),
        },
    }
}

/// The DSM-5-TR screening module.
pub fn dsm5_module() -> Box<dyn Module> {
    Box::new(Screening::new(System::Dsm5))
}

/// The ICD-11 screening module.
pub fn icd11_module() -> Box<dyn Module> {
    Box::new(Screening::new(System::Icd11))
}

/// The crate's primary module (DSM-5-TR), for tests that take one module.
pub fn module() -> Box<dyn Module> {
    dsm5_module()
}

psy_core::register_module!(dsm5_module);
psy_core::register_module!(icd11_module);
