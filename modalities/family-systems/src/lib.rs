//! Therapy modality: family systems therapy.
//!
//! The content is in `module.toml`. Code adds one thing the shared matcher cannot know:
//! family talk is about other people by nature. The default assessment drops a cue whose
//! nearest subject is someone else ("my husband always takes her side"), which is right for
//! symptoms but wrong here: when the client is part of the sentence ("my", "I", "me"), what
//! their relatives do is exactly the evidence a family-systems view needs. Such hits are
//! added back and the score is recomputed with the engine's formula.

#[allow(dead_code)] // each crate uses a subset of the shared helpers
#[path = "../../shared/evidence.rs"]
mod evidence;

use psy_core::dialogue::Dialogue;
use psy_core::module::{builtin_spec, Assessment, Module, ModuleSpec};

struct FamilySystems {
    spec: ModuleSpec,
}

impl Module for FamilySystems {
    fn spec(&self) -> &ModuleSpec {
        &self.spec
    }

    fn assess(&self, dialogue: &Dialogue) -> Assessment {
        evidence::assess_reinstating(&self.spec, dialogue, evidence::client_in_sentence)
    }
}

/// The module, built from the embedded manifest (exported for tests and the planner).
pub fn module() -> Box<dyn Module> {
    let spec = builtin_spec(
        include_str!("../module.toml"),
        "modalities/family-systems/module.toml",
    );
    Box::new(FamilySystems { spec })
}

psy_core::register_module!(module);

#[cfg(test)]
mod tests {
    use super::*;
    use psy_core::dialogue::Dialogue;
    use psy_core::module::lexicon_assessment;

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
