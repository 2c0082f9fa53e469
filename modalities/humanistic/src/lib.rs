//! Therapy modality: person-centred (humanistic) counselling.
//!
//! Everything this module does is declared in `module.toml` (guidelines, steps, techniques,
//! cue lexicon, rubric); the default `Module` hooks are enough, so the crate only embeds it.

psy_core::spec_module!("../module.toml");

#[cfg(test)]
mod tests {
    use super::*;
    use psy_core::testing;

    #[test]
    fn affirmed_cue_scores_and_suggests_a_technique() {
        testing::affirmed_cue_scores_and_suggests_a_technique(
            module().as_ref(),
            "I don't want advice, I just want someone to listen for once.",
            "wants-to-be-heard",
        );
    }

    #[test]
    fn negated_or_third_person_cue_does_not_count() {
        testing::cue_does_not_count(
            module().as_ref(),
            "It's not that I feel invisible at work.",
            "feeling-unseen",
        );
    }

    #[test]
    fn third_person_cues_do_not_count() {
        testing::third_person_cues_do_not_count(module().as_ref());
    }
}
