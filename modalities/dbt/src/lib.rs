//! Therapy modality: dialectical behaviour therapy (DBT) skills.
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
            "My mood swings are so intense, one minute I'm fine and then I explode.",
            "mood-swings",
        );
    }

    #[test]
    fn negated_or_third_person_cue_does_not_count() {
        testing::cue_does_not_count(
            module().as_ref(),
            "I never have mood swings like that.",
            "mood-swings",
        );
    }

    #[test]
    fn third_person_cues_do_not_count() {
        testing::third_person_cues_do_not_count(module().as_ref());
    }
}
