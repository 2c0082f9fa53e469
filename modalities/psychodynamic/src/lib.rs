//! Therapy modality: psychodynamic therapy.
//!
//! The content is in `module.toml`. Code adds one correction: stories about the past are
//! full of other people, and the shared matcher reads a cue as someone else's experience
//! when another person was the last one mentioned ("nobody stayed when I was young"). A cue
//! that itself names the client ("when *I* was young", "*my* father was never there") is
//! about the client, so it is added back (reported speech excepted) and the score recomputed.

#[allow(dead_code)] // each crate uses a subset of the shared helpers
#[path = "../../shared/evidence.rs"]
mod evidence;

use psy_core::dialogue::Dialogue;
use psy_core::module::{builtin_spec, Assessment, Module, ModuleSpec};

struct Psychodynamic {
    spec: ModuleSpec,
}

impl Module for Psychodynamic {
    fn spec(&self) -> &ModuleSpec {
        &self.spec
    }

    fn assess(&self, dialogue: &Dialogue) -> Assessment {
        evidence::assess_reinstating(&self.spec, dialogue, evidence::names_the_client)
    }
}

/// The module, built from the embedded manifest (exported for tests and the planner).
pub fn module() -> Box<dyn Module> {
    let spec = builtin_spec(
        include_str!("../module.toml"),
        "modalities/psychodynamic/module.toml",
    );
    Box::new(Psychodynamic { spec })
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
            "I always end up with partners who are cold, just like my father was.",
        ));
        let ind = a.indication.expect("a modality reports an indication");
        assert!(
            ind.cues.iter().any(|e| e.id == "repeating-pattern"),
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
    fn cues_naming_the_client_count_after_another_person() {
        let text = "I find it hard to rely on anyone. My father worked abroad when I was young.";
        let plain = lexicon_assessment(module().spec(), &Dialogue::from_message(text));
        let ours = module().assess(&Dialogue::from_message(text));
        assert!(!plain
            .indication
            .unwrap()
            .cues
            .iter()
            .any(|e| e.id == "childhood-roots"));
        let ind = ours.indication.unwrap();
        assert!(
            ind.cues.iter().any(|e| e.text == "when I was young"),
            "{:?}",
            ind.cues
        );
        // Someone else's account stays theirs.
        let a = module().assess(&Dialogue::from_message(
            "She says my father was never there.",
        ));
        assert!(!a
            .indication
            .unwrap()
            .cues
            .iter()
            .any(|e| e.id == "childhood-roots"));
    }

    #[test]
    fn negated_or_third_person_cue_does_not_count() {
        let a = module().assess(&Dialogue::from_message(
            "My sister always ends up with the same kind of guy.",
        ));
        let ind = a.indication.unwrap();
        assert!(
            !ind.cues.iter().any(|e| e.id == "repeating-pattern"),
            "{:?}",
            ind.cues
        );
    }
}
