//! Therapy modality: family systems therapy.
//!
//! The content is in `module.toml`. Code adds one thing the shared matcher cannot know:
//! family talk is about other people by nature. The default assessment drops a cue whose
//! nearest subject is someone else ("my husband always takes her side"), which is right for
//! symptoms but wrong here: when the client is part of the sentence ("my", "I", "me"), what
//! their relatives do is exactly the evidence a family-systems view needs. Such hits are
//! added back and the score is recomputed with the engine's formula.

use psy_engine::dialogue::Dialogue;
use psy_engine::lexicon::{Lexicon, Text};
use psy_engine::module::{
    builtin_spec, cue_lexicon, lexicon_assessment, round4, Assessment, CueRole, Evidence,
    Indication, Module, ModuleSpec,
};

/// Words that put the client in the scene.
const FIRST_PERSON: &[&str] = &[
    "i", "i'm", "i've", "i'd", "i'll", "me", "my", "myself", "we", "we're", "us", "our",
];

struct FamilySystems {
    spec: ModuleSpec,
    cues: Lexicon,
}

impl FamilySystems {
    /// Affirmed third-person hits in sentences where the client also appears.
    fn relational_hits(&self, dialogue: &Dialogue) -> Vec<Evidence> {
        let mut out = Vec::new();
        for turn in dialogue.client_turns() {
            let text = Text::new(turn.text);
            for hit in self.cues.find(&text) {
                let group = &self.spec.cues[hit.entry];
                let only_third_person = hit.third_person
                    && !hit.negated
                    && (!hit.hypothetical || group.include_hypothetical);
                if !only_third_person || group.role == CueRole::Contraindication {
                    continue;
                }
                let sentence = text.tokens[hit.first_token].sentence;
                let client_in_scene = text
                    .tokens
                    .iter()
                    .filter(|t| t.sentence == sentence)
                    .any(|t| FIRST_PERSON.contains(&t.norm.as_str()));
                if client_in_scene {
                    out.push(Evidence {
                        id: group.id.clone(),
                        label: group.label.clone(),
                        message: turn.index,
                        start: hit.start,
                        end: hit.end,
                        text: hit.text,
                    });
                }
            }
        }
        out
    }
}

/// Recomputes score and technique order with the formula of `lexicon_assessment` after
/// evidence was added (the engine has no public helper for this yet).
fn rescore(spec: &ModuleSpec, ind: &mut Indication) {
    let mut raw = 0.0f32;
    let mut hits_per_group = vec![0u32; spec.cues.len()];
    for (g, group) in spec.cues.iter().enumerate() {
        let n = ind.cues.iter().filter(|e| e.id == group.id).count() as u32;
        hits_per_group[g] = n;
        raw += group.weight * n.min(2) as f32;
        if group.role == CueRole::Contraindication
            && ind.contraindications.iter().any(|e| e.id == group.id)
        {
            raw -= group.weight;
        }
    }
    ind.score = round4((1.0 - (-raw.max(0.0) / 2.0).exp()).clamp(0.0, 1.0));
    let mut ranked: Vec<(u32, usize, &str)> = spec
        .techniques
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let hits = t
                .cues
                .iter()
                .filter_map(|c| spec.cues.iter().position(|g| g.id == *c))
                .map(|g| hits_per_group[g])
                .sum();
            (hits, i, t.id.as_str())
        })
        .collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    ind.techniques = ranked.iter().map(|(_, _, id)| id.to_string()).collect();
}

impl Module for FamilySystems {
    fn spec(&self) -> &ModuleSpec {
        &self.spec
    }

    fn assess(&self, dialogue: &Dialogue) -> Assessment {
        let mut a = lexicon_assessment(&self.spec, dialogue);
        let mut ind = a.indication.take().unwrap_or_default();
        for ev in self.relational_hits(dialogue) {
            let overlaps = ind.cues.iter().any(|e| {
                e.id == ev.id && e.message == ev.message && e.start < ev.end && ev.start < e.end
            });
            if !overlaps {
                ind.cues.push(ev);
            }
        }
        ind.cues.sort_by_key(|e| (e.message, e.start, e.end));
        rescore(&self.spec, &mut ind);
        a.indication = Some(ind);
        a
    }
}

/// The module, built from the embedded manifest (exported for tests and the planner).
pub fn module() -> Box<dyn Module> {
    let spec = builtin_spec(
        include_str!("../module.toml"),
        "modalities/family-systems/module.toml",
    );
    let cues = cue_lexicon(&spec);
    Box::new(FamilySystems { spec, cues })
}

psy_engine::register_module!(module);

#[cfg(test)]
mod tests {
    use super::*;
    use psy_engine::dialogue::Dialogue;
    use psy_engine::module::ModuleKind;

    #[test]
    fn manifest_is_a_complete_modality() {
        let m = module();
        let s = m.spec();
        assert_eq!(s.module.id, "family-systems");
        assert_eq!(s.module.kind, ModuleKind::Modality);
        assert!(!s.module.references.is_empty());
        assert!(!s.principles.is_empty() && !s.guidelines.is_empty());
        assert!(!s.response_guidelines.is_empty());
        assert!(s.techniques.len() >= 4);
        assert!(s.rubric.len() >= 5);
        assert!(s.cues.len() >= 4);
        // Every technique is reachable from at least one cue group.
        assert!(
            s.techniques.iter().all(|t| !t.cues.is_empty()),
            "techniques need cues"
        );
    }

    #[test]
    fn affirmed_cue_scores_and_suggests_a_technique() {
        let a = module().assess(&Dialogue::from_message(
            "I'm always caught in the middle when my parents fight.",
        ));
        let ind = a.indication.expect("a modality reports an indication");
        assert!(
            ind.cues.iter().any(|e| e.id == "triangles"),
            "{:?}",
            ind.cues
        );
        assert!(ind.score >= 0.3, "score {}", ind.score);
        let first = &ind.techniques[0];
        let spec = module();
        let t = spec
            .spec()
            .techniques
            .iter()
            .find(|t| &t.id == first)
            .unwrap();
        assert!(t.cues.iter().any(|c| ind.cues.iter().any(|e| &e.id == c)));
    }

    #[test]
    fn relatives_actions_count_when_the_client_is_in_the_scene() {
        let text = "My mother-in-law criticises everything, and my husband always takes her side.";
        let a = module().assess(&Dialogue::from_message(text));
        let ind = a.indication.unwrap();
        let plain = lexicon_assessment(module().spec(), &Dialogue::from_message(text))
            .indication
            .unwrap();
        assert!(
            ind.cues.iter().any(|e| e.text == "takes her side"),
            "{:?}",
            ind.cues
        );
        assert!(ind.score > plain.score);
        // Without the client in the sentence, talk about another family stays out.
        let a = module().assess(&Dialogue::from_message(
            "Their neighbours' kids always take sides.",
        ));
        assert!(a.indication.unwrap().cues.is_empty());
    }

    #[test]
    fn negated_or_third_person_cue_does_not_count() {
        let a = module().assess(&Dialogue::from_message(
            "I'm not caught in the middle anymore.",
        ));
        let ind = a.indication.unwrap();
        assert!(
            !ind.cues.iter().any(|e| e.id == "triangles"),
            "{:?}",
            ind.cues
        );
    }
}
