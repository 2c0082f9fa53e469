//! Therapy modality: motivational interviewing (MI).
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
            "Part of me wants to cut back on drinking, but it helps me relax.",
            "ambivalence",
        );
    }

    #[test]
    fn negated_or_third_person_cue_does_not_count() {
        testing::cue_does_not_count(
            module().as_ref(),
            "My brother is on the fence about it.",
            "ambivalence",
        );
    }

    #[test]
    fn third_person_cues_do_not_count() {
        testing::third_person_cues_do_not_count(module().as_ref());
    }
}
