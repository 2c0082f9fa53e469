//! Therapy modality: family systems therapy.
//!
//! Everything is declared in `module.toml`, including how cues are read: family talk is
//! about other people by nature, so when the client is part of the sentence ("my husband
//! always takes her side") what relatives do counts as evidence
//! (`[matching] subject = "client-in-sentence"`).

psy_core::spec_module!("../module.toml");

#[cfg(test)]
mod tests {
    use super::*;
    use psy_core::testing;

    #[test]
    fn affirmed_cue_scores_and_suggests_a_technique() {
        testing::affirmed_cue_scores_and_suggests_a_technique(
            module().as_ref(),
            "I'm always caught in the middle when my parents fight.",
            "triangles",
        );
    }

    #[test]
    fn relatives_actions_count_when_the_client_is_in_the_scene() {
        let m = module();
        let text = "My mother-in-law criticises everything, and my husband always takes her side.";
        let ev = testing::cue_counts(m.as_ref(), text, "triangles");
        assert_eq!(ev.text, "takes her side");
    }

    #[test]
    fn negated_cue_does_not_count() {
        testing::cue_does_not_count(
            module().as_ref(),
            "I'm not caught in the middle anymore.",
            "triangles",
        );
    }

    #[test]
    fn third_person_cues_do_not_count() {
        let m = module();
        // Without the client in the sentence, talk about another family stays out.
        testing::nothing_counts(m.as_ref(), "Their neighbours' kids always take sides.");
        testing::third_person_cues_do_not_count(m.as_ref());
    }
}
