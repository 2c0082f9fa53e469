//! Therapy modality: psychodynamic therapy.
//!
//! Everything is declared in `module.toml`, including how cues are read: stories about the
//! past are full of other people, so a cue that itself names the client ("when *I* was
//! young") counts after another person was mentioned (`[matching] subject = "named-in-cue"`).

psy_core::spec_module!("../module.toml");

#[cfg(test)]
mod tests {
    use super::*;
    use psy_core::testing;

    #[test]
    fn affirmed_cue_scores_and_suggests_a_technique() {
        testing::affirmed_cue_scores_and_suggests_a_technique(
            module().as_ref(),
            "I always end up with partners who are cold, just like my father was.",
            "repeating-pattern",
        );
    }

    #[test]
    fn cues_naming_the_client_count_after_another_person() {
        let m = module();
        testing::cue_counts(
            m.as_ref(),
            "I find it hard to rely on anyone. My father worked abroad when I was young.",
            "childhood-roots",
        );
        // Someone else's account stays theirs.
        testing::cue_does_not_count(
            m.as_ref(),
            "She says my father was never there.",
            "childhood-roots",
        );
    }

    #[test]
    fn third_person_cues_do_not_count() {
        let m = module();
        testing::cue_does_not_count(
            m.as_ref(),
            "My sister always ends up with the same kind of guy.",
            "repeating-pattern",
        );
        testing::third_person_cues_do_not_count(m.as_ref());
    }
}
