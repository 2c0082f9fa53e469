//! Who a cue is about and how far a negator reaches: the policy a module applies to the raw
//! flags of the shared matcher ([`Hit::negated`], [`Hit::third_person`]).
//!
//! The matcher's defaults suit symptoms: a cue whose nearest person word is someone else's is
//! that person's experience ("my sister can't sleep"), and a negator covers the rest of its
//! clause up to a new `and` conjunct. Some modules need a different reading, and declare it
//! in their manifest (`[matching]`) or pass it to [`Lexicon::find_with`] instead of
//! re-implementing the check:
//!
//! ```toml
//! [matching]
//! subject = "named-in-cue"   # "nearest-subject" (default) | "named-in-cue" | "client-in-sentence"
//! negation = "clause"        # "clause" (default) | "conjunct"
//! ```

use serde::{Deserialize, Serialize};

use crate::lexicon::{is_negator, refers_to_client, Hit, Lexicon, Text};

/// When a cue counts as being about the client.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SubjectPolicy {
    /// The nearest person word before the cue in its clause is not someone else's (symptoms:
    /// "my sister can't sleep" is the sister's).
    #[default]
    NearestSubject,
    /// Also when the cue's own words name the client ("it's all *my* fault", "when *I* was
    /// young") after someone else was mentioned, unless another person's reporting verb stands
    /// between ("she says it's all my fault" is her view).
    NamedInCue,
    /// Also when the client appears anywhere in the cue's sentence ("my husband always takes
    /// her side"): what relatives do is the evidence when the client is in the scene.
    ClientInSentence,
}

/// How far a negator before a cue reaches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NegationScope {
    /// Up to four words before the cue in its clause; a new `and` conjunct ends the reach
    /// ("I can't concentrate and I barely eat").
    #[default]
    Clause,
    /// As `Clause`, and `or` also starts a new predicate, so only the nearest negator's own
    /// predicate is denied (diagnostic screening, where a false denial hides a criterion).
    Conjunct,
}

/// The reading a module applies to lexicon hits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MatchPolicy {
    pub subject: SubjectPolicy,
    pub negation: NegationScope,
}

/// Verbs that introduce someone else's words or view ("she says it's my fault").
const REPORTING_VERBS: &[&str] = &[
    "say", "says", "said", "saying", "think", "thinks", "thought", "tell", "tells", "told",
    "telling", "claim", "claims", "claimed", "believe", "believes", "reckons", "insists",
    "insisted", "blames", "blamed", "accuses", "accused", "calls", "called", "yells", "yelled",
    "shouts", "shouted", "screams", "screamed",
];

impl MatchPolicy {
    /// Rewrites the `third_person` and `negated` flags of `hit` under this policy.
    pub fn apply(&self, text: &Text, hit: &mut Hit) {
        if hit.third_person {
            hit.third_person = !match self.subject {
                SubjectPolicy::NearestSubject => false,
                SubjectPolicy::NamedInCue => names_the_client(text, hit),
                SubjectPolicy::ClientInSentence => client_in_sentence(text, hit),
            };
        }
        if hit.negated && self.negation == NegationScope::Conjunct {
            hit.negated = !conjunct_after_nearest_negator(text, hit);
        }
    }
}

impl Lexicon {
    /// All matches, with their flags read under `policy`.
    pub fn find_with(&self, text: &Text, policy: &MatchPolicy) -> Vec<Hit> {
        let mut hits = self.find(text);
        for hit in &mut hits {
            policy.apply(text, hit);
        }
        hits
    }
}

/// The cue itself names the client and no reporting verb of someone else stands between it
/// and the nearest first-person word before it in the sentence.
fn names_the_client(text: &Text, hit: &Hit) -> bool {
    let toks = &text.tokens;
    if !toks[hit.first_token..=hit.last_token]
        .iter()
        .any(|t| refers_to_client(&t.norm))
    {
        return false;
    }
    let sentence = toks[hit.first_token].sentence;
    for k in (0..hit.first_token).rev() {
        let t = &toks[k];
        if t.sentence != sentence || refers_to_client(&t.norm) {
            break;
        }
        if REPORTING_VERBS.contains(&t.norm.as_str()) {
            // "I think ..." is the client's own voice; "she says ..." is someone else's.
            return toks[k.saturating_sub(2)..k]
                .iter()
                .any(|w| w.sentence == sentence && refers_to_client(&w.norm));
        }
    }
    true
}

/// The client appears somewhere in the sentence of the cue.
fn client_in_sentence(text: &Text, hit: &Hit) -> bool {
    let sentence = text.tokens[hit.first_token].sentence;
    text.tokens
        .iter()
        .filter(|t| t.sentence == sentence)
        .any(|t| refers_to_client(&t.norm))
}

/// An `and` or `or` between the nearest negator (within four words) and the cue.
fn conjunct_after_nearest_negator(text: &Text, hit: &Hit) -> bool {
    let toks = &text.tokens;
    let first = hit.first_token;
    let Some(neg) = (first.saturating_sub(4)..first)
        .rev()
        .find(|&i| is_negator(&toks[i].norm))
    else {
        return false;
    };
    toks[neg + 1..first]
        .iter()
        .any(|t| matches!(t.norm.as_str(), "and" | "or"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(phrase: &str, text: &str, policy: MatchPolicy) -> Hit {
        let lex = Lexicon::new([(0, phrase)]).unwrap();
        let hits = lex.find_with(&Text::new(text), &policy);
        assert_eq!(hits.len(), 1, "{phrase} in {text}: {hits:?}");
        hits.into_iter().next().unwrap()
    }

    fn subject(s: SubjectPolicy) -> MatchPolicy {
        MatchPolicy {
            subject: s,
            ..Default::default()
        }
    }

    #[test]
    fn default_policy_keeps_the_matcher_flags() {
        let text = "My son failed his test and it's all my fault.";
        assert!(hit("all my fault", text, MatchPolicy::default()).third_person);
    }

    #[test]
    fn a_cue_naming_the_client_is_theirs_unless_reported() {
        let named = subject(SubjectPolicy::NamedInCue);
        let text = "My son failed his test and it's all my fault.";
        assert!(!hit("all my fault", text, named).third_person);
        assert!(hit("all my fault", "She says it's all my fault.", named).third_person);
        // A cue without a first-person word stays someone else's.
        assert!(hit("can't sleep", "My sister can't sleep.", named).third_person);
    }

    #[test]
    fn client_in_the_sentence_keeps_relatives_cues() {
        let scene = subject(SubjectPolicy::ClientInSentence);
        let text = "My husband always takes her side.";
        assert!(!hit("takes her side", text, scene).third_person);
        let text = "Their neighbours' kids always take sides.";
        assert!(hit("take sides", text, scene).third_person);
    }

    #[test]
    fn conjunct_scope_ends_negation_at_or() {
        let text = "I can't focus or sleep properly";
        assert!(hit("sleep", text, MatchPolicy::default()).negated);
        let conjunct = MatchPolicy {
            negation: NegationScope::Conjunct,
            ..Default::default()
        };
        assert!(!hit("sleep", text, conjunct).negated);
        assert!(hit("sleep", "I can't sleep", conjunct).negated);
    }

    #[test]
    fn policy_reads_from_toml() {
        let p: MatchPolicy =
            toml::from_str("subject = \"client-in-sentence\"\nnegation = \"conjunct\"").unwrap();
        assert_eq!(p.subject, SubjectPolicy::ClientInSentence);
        assert_eq!(p.negation, NegationScope::Conjunct);
        assert!(toml::from_str::<MatchPolicy>("subject = \"me\"").is_err());
    }
}
