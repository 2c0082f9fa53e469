//! Therapy modality: person-centred (humanistic) counselling.
//!
//! Everything this module does is declared in `module.toml` (guidelines, steps, techniques,
//! cue lexicon, rubric); the default `Module` hooks are enough, so the crate only embeds it.

psy_core::spec_module!("../module.toml");

#[cfg(test)]
mod tests {
    use super::*;
    use psy_core::dialogue::Dialogue;

    #[test]
    fn affirmed_cue_scores_and_suggests_a_technique() {
        let a = module().assess(&Dialogue::from_message(
            "I don't want advice, I just want someone to listen for once.",
        ));
        let ind = a.indication.expect("a modality reports an indication");
        assert!(
            ind.cues.iter().any(|e| e.id == "wants-to-be-heard"),
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
    fn negated_or_third_person_cue_does_not_count() {
        let a = module().assess(&Dialogue::from_message(
            "It's not that I feel invisible at work.",
        ));
        let ind = a.indication.unwrap();
        assert!(
            !ind.cues.iter().any(|e| e.id == "feeling-unseen"),
            "{:?}",
            ind.cues
        );
    }
}
