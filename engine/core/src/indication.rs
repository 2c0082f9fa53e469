//! How well a modality fits: the one scoring formula every modality uses, whether its evidence
//! came from the default lexicon assessment or from its own code.
//!
//! score = 1 - exp(-max(0, sum over indication and pattern groups of weight * min(hits, 2)
//!                        - sum over contraindication groups that matched of weight) / 2)
//!
//! Each group counts at most twice, so one repeated word cannot dominate; the score is
//! rounded to four decimals so plans print the same on every machine.

use crate::module::{round4, CueRole, Evidence, Indication, ModuleSpec};

/// Recomputes `score` and the technique order of `ind` from its cues and contraindications.
/// Call it after adding or removing evidence; evidence whose id names no cue group of `spec`
/// is kept but does not score.
pub fn score_indication(spec: &ModuleSpec, ind: &mut Indication) {
    let hits_per_group: Vec<u32> = spec
        .cues
        .iter()
        .map(|group| {
            let n = ind.cues.iter().filter(|e| e.id == group.id).count();
            u32::try_from(n).unwrap_or(u32::MAX)
        })
        .collect();
    let mut raw = 0.0f32;
    for (group, hits) in spec.cues.iter().zip(&hits_per_group) {
        raw += group.weight * (*hits).min(2) as f32;
        if group.role == CueRole::Contraindication
            && ind.contraindications.iter().any(|e| e.id == group.id)
        {
            raw -= group.weight;
        }
    }
    ind.score = round4((1.0 - (-raw.max(0.0) / 2.0).exp()).clamp(0.0, 1.0));
    // Techniques whose cue groups fired, most hits first; ties keep declaration order.
    let mut ranked: Vec<(u32, usize)> = spec
        .techniques
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let hits = t
                .cues
                .iter()
                .filter_map(|c| spec.cues.iter().position(|g| g.id == *c))
                .map(|g| hits_per_group[g])
                .fold(0u32, u32::saturating_add);
            (hits, i)
        })
        .collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    ind.techniques = ranked
        .iter()
        .map(|(_, i)| spec.techniques[*i].id.clone())
        .collect();
}

/// Adds evidence found by a module's own code, unless the same group already has an
/// overlapping span in that message; keeps the cues in text order. Rescore afterwards.
pub fn merge_evidence(ind: &mut Indication, extra: impl IntoIterator<Item = Evidence>) {
    for ev in extra {
        let overlaps = ind.cues.iter().any(|e| {
            e.id == ev.id && e.message == ev.message && e.start < ev.end && ev.start < e.end
        });
        if !overlaps {
            ind.cues.push(ev);
        }
    }
    ind.cues.sort_by_key(|e| (e.message, e.start, e.end));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::module::ModuleSpec;

    const SPEC: &str = r#"
schema = 1
[module]
id = "toy"
name = "Toy"
version = "1.0.0"
kind = "modality"
[[techniques]]
id = "first"
name = "First"
when = "w"
how = "h"
cues = ["a"]
[[techniques]]
id = "second"
name = "Second"
when = "w"
how = "h"
cues = ["b"]
[[cues]]
id = "a"
label = "A"
phrases = ["alpha"]
[[cues]]
id = "b"
label = "B"
weight = 2.0
phrases = ["beta"]
[[cues]]
id = "no"
label = "No"
role = "contraindication"
phrases = ["gamma"]
"#;

    fn ev(id: &str, start: usize) -> Evidence {
        Evidence {
            id: id.into(),
            label: id.into(),
            message: 0,
            start,
            end: start + 1,
            text: id.into(),
        }
    }

    #[test]
    fn formula_caps_each_group_at_two_hits_and_subtracts_contraindications() {
        let spec = ModuleSpec::from_toml(SPEC, "toy").unwrap();
        let mut ind = Indication {
            cues: vec![ev("a", 0), ev("a", 2), ev("a", 4), ev("b", 6)],
            ..Default::default()
        };
        score_indication(&spec, &mut ind);
        // raw = 1*2 + 2*1 = 4
        assert_eq!(ind.score, round4(1.0 - (-2.0f32).exp()));
        assert_eq!(ind.techniques, ["first", "second"]);
        ind.contraindications.push(ev("no", 8));
        score_indication(&spec, &mut ind);
        assert_eq!(ind.score, round4(1.0 - (-1.5f32).exp()));
    }

    #[test]
    fn merge_skips_overlapping_spans_of_the_same_group() {
        let mut ind = Indication {
            cues: vec![ev("a", 4)],
            ..Default::default()
        };
        merge_evidence(&mut ind, [ev("a", 4), ev("b", 4), ev("a", 0)]);
        let order: Vec<(&str, usize)> = ind.cues.iter().map(|e| (e.id.as_str(), e.start)).collect();
        assert_eq!(order, [("a", 0), ("a", 4), ("b", 4)]);
    }
}
