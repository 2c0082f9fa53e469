//! Criteria sets as data: one TOML file per condition under `criteria/`, embedded in the
//! binary so the modules are self-contained. The schema is strict (`deny_unknown_fields`) so a
//! misspelt key fails the build-time tests instead of silently dropping a rule.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use psy_core::lexicon::Pattern;
use psy_core::module::valid_id;
use serde::Deserialize;

/// A classification system whose rules a module applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum System {
    Dsm5,
    Icd11,
}

impl System {
    /// The id used in `Hypothesis::systems` and in criterion `systems` lists.
    pub fn id(self) -> &'static str {
        match self {
            System::Dsm5 => "dsm5",
            System::Icd11 => "icd11",
        }
    }
}

/// One condition's criteria set, shared by both systems; the rules differ per system.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    pub id: String,
    pub name: String,
    /// DSM-5-TR (ICD-10-CM) code(s).
    pub dsm5: String,
    /// ICD-11 MMS code(s).
    pub icd11: String,
    /// Names and labels of the condition that must never be said to the client.
    pub labels: Vec<String>,
    /// Asked when the symptoms are described but not how long they have lasted.
    pub duration_question: String,
    pub criteria: Vec<Criterion>,
    pub rules: Rules,
    #[serde(default)]
    pub exclusions: Vec<Exclusion>,
}

/// A criterion (symptom) in paraphrase, with the client phrases that evidence it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Criterion {
    pub id: String,
    pub symptom: String,
    #[serde(default)]
    pub core: bool,
    /// Cue phrases in the engine lexicon syntax; `{a,b}` expands to alternatives.
    pub cues: Vec<String>,
    /// Short first-person sentences a client might say, matched by meaning when the run lends
    /// an encoder (threshold: `[semantic]` of dsm5.toml / icd11.toml). Own words, no quotes.
    #[serde(default)]
    pub examples: Vec<String>,
    /// Sentences of a look-alike this criterion must not be read from by meaning (another
    /// condition's symptom the encoder places close by): a sentence counts for the criterion
    /// only when it lies closer to one of `examples` than to all of these.
    #[serde(default)]
    pub unlike: Vec<String>,
    /// Plain client-facing question for when the criterion is unknown (no labels).
    pub follow_up: String,
    /// Systems the criterion belongs to; empty means both.
    #[serde(default)]
    pub systems: Vec<String>,
}

impl Criterion {
    pub fn applies(&self, system: System) -> bool {
        self.systems.is_empty() || self.systems.iter().any(|s| s == system.id())
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    pub dsm5: Rule,
    pub icd11: Rule,
}

impl Rules {
    pub fn get(&self, system: System) -> &Rule {
        match system {
            System::Dsm5 => &self.dsm5,
            System::Icd11 => &self.icd11,
        }
    }
}

/// The threshold rule of one system: k of n criteria, with core and required items.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub min_count: u32,
    /// How many core criteria must be among those met.
    #[serde(default)]
    pub min_core: u32,
    /// Criteria that must all be met (e.g. a bereavement for grief).
    #[serde(default)]
    pub required: Vec<String>,
    /// Minimum duration in days (0 = the system sets none).
    pub min_days: u32,
    /// How the system words the duration, for the rule-out notes.
    #[serde(default)]
    pub duration_note: String,
    /// Severity by count of criteria met, applied when the threshold is met.
    #[serde(default)]
    pub severity: Vec<Severity>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Severity {
    pub min_count: u32,
    pub label: String,
}

/// A differential or exclusion: always listed as a rule-out note; lowers confidence when
/// one of its cues is affirmed or when one of the named conditions meets its threshold.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exclusion {
    pub note: String,
    #[serde(default)]
    pub cues: Vec<String>,
    #[serde(default)]
    pub if_threshold: Vec<String>,
    #[serde(default = "default_penalty")]
    pub penalty: f32,
}

fn default_penalty() -> f32 {
    0.15
}

/// The embedded criteria files, in a fixed order (the order ties are broken in).
const FILES: &[(&str, &str)] = &[
    ("mdd.toml", include_str!("../criteria/mdd.toml")),
    ("gad.toml", include_str!("../criteria/gad.toml")),
    ("panic.toml", include_str!("../criteria/panic.toml")),
    (
        "social-anxiety.toml",
        include_str!("../criteria/social-anxiety.toml"),
    ),
    ("ptsd.toml", include_str!("../criteria/ptsd.toml")),
    ("ocd.toml", include_str!("../criteria/ocd.toml")),
    (
        "adjustment.toml",
        include_str!("../criteria/adjustment.toml"),
    ),
    ("insomnia.toml", include_str!("../criteria/insomnia.toml")),
    ("bipolar1.toml", include_str!("../criteria/bipolar1.toml")),
    (
        "alcohol-use.toml",
        include_str!("../criteria/alcohol-use.toml"),
    ),
    (
        "prolonged-grief.toml",
        include_str!("../criteria/prolonged-grief.toml"),
    ),
    ("bulimia.toml", include_str!("../criteria/bulimia.toml")),
    ("anorexia.toml", include_str!("../criteria/anorexia.toml")),
    ("adhd.toml", include_str!("../criteria/adhd.toml")),
    (
        "specific-phobia.toml",
        include_str!("../criteria/specific-phobia.toml"),
    ),
];

/// All conditions, parsed and checked once. A broken file is a built-in bug: panics with
/// the file name so every test run catches it.
pub fn conditions() -> &'static [Condition] {
    static ALL: OnceLock<Vec<Condition>> = OnceLock::new();
    ALL.get_or_init(|| {
        let all: Vec<Condition> = FILES
            .iter()
            .map(|(name, text)| match parse(text) {
                Ok(c) => c,
                Err(e) => panic!("criteria/{name}: {e}"),
            })
            .collect();
        if let Err(e) = check_links(&all) {
            panic!("criteria: {e}");
        }
        all
    })
}

/// Parses and checks one criteria file.
pub fn parse(text: &str) -> Result<Condition, String> {
    let c: Condition = toml::from_str(text).map_err(|e| e.to_string())?;
    check(&c)?;
    Ok(c)
}

fn check(c: &Condition) -> Result<(), String> {
    if !valid_id(&c.id) {
        return Err(format!("`{}` is not a valid id", c.id));
    }
    if c.labels.is_empty() {
        return Err("`labels` must list the condition's names".into());
    }
    let mut ids = BTreeSet::new();
    for k in &c.criteria {
        if !valid_id(&k.id) || !ids.insert(k.id.as_str()) {
            return Err(format!("criterion id `{}` is invalid or repeated", k.id));
        }
        if k.cues.is_empty() || k.follow_up.trim().is_empty() {
            return Err(format!("criterion `{}` needs cues and a follow_up", k.id));
        }
        for s in &k.systems {
            if s != "dsm5" && s != "icd11" {
                return Err(format!("criterion `{}`: unknown system `{s}`", k.id));
            }
        }
        for p in k.cues.iter().flat_map(|p| expand(p)) {
            Pattern::compile(&p).map_err(|e| format!("criterion `{}`: {e}", k.id))?;
        }
        psy_core::exemplar_match::check_examples(&k.examples)
            .and_then(|()| psy_core::exemplar_match::check_examples(&k.unlike))
            .map_err(|e| format!("criterion `{}`: {e}", k.id))?;
        if k.examples.is_empty() && !k.unlike.is_empty() {
            return Err(format!(
                "criterion `{}`: `unlike` sentences need `examples` to be told apart from",
                k.id
            ));
        }
    }
    for system in [System::Dsm5, System::Icd11] {
        let r = c.rules.get(system);
        let applicable: Vec<&Criterion> = c.criteria.iter().filter(|k| k.applies(system)).collect();
        let cores = applicable.iter().filter(|k| k.core).count() as u32;
        if r.min_count == 0 || r.min_count as usize > applicable.len() || r.min_core > cores {
            return Err(format!(
                "rules.{}: min_count {} / min_core {} cannot be met by {} criteria ({cores} core)",
                system.id(),
                r.min_count,
                r.min_core,
                applicable.len()
            ));
        }
        for q in &r.required {
            if !applicable.iter().any(|k| k.id == *q) {
                return Err(format!("rules.{}: required `{q}` is unknown", system.id()));
            }
        }
    }
    for e in &c.exclusions {
        for p in e.cues.iter().flat_map(|p| expand(p)) {
            Pattern::compile(&p).map_err(|m| format!("exclusion: {m}"))?;
        }
        if !(e.penalty.is_finite() && (0.0..=1.0).contains(&e.penalty)) {
            return Err("exclusion penalty must lie in [0, 1]".into());
        }
    }
    Ok(())
}

fn check_links(all: &[Condition]) -> Result<(), String> {
    let mut ids = BTreeSet::new();
    for c in all {
        if !ids.insert(c.id.as_str()) {
            return Err(format!("condition id `{}` is repeated", c.id));
        }
    }
    for c in all {
        for e in &c.exclusions {
            for t in &e.if_threshold {
                if !ids.contains(t.as_str()) || *t == c.id {
                    return Err(format!("{}: if_threshold names `{t}`", c.id));
                }
            }
        }
    }
    Ok(())
}

/// Expands `{a,b}` alternatives in a cue phrase: `{afraid,scared} of _? {dogs,heights}`
/// gives four phrases; `{a,b}?` makes the group optional. Keeps lexicons short while covering colloquial variants.
pub fn expand(phrase: &str) -> Vec<String> {
    let Some(open) = phrase.find('{') else {
        return vec![phrase.to_string()];
    };
    let Some(close) = phrase[open..].find('}').map(|i| i + open) else {
        return vec![phrase.to_string()];
    };
    let head = &phrase[..open];
    let mut tail = &phrase[close + 1..];
    let mut alts: Vec<&str> = phrase[open + 1..close].split(',').map(str::trim).collect();
    // `{a,b}?` also allows neither alternative.
    if let Some(rest) = tail.strip_prefix('?') {
        tail = rest;
        alts.push("");
    }
    alts.iter()
        .flat_map(|alt| {
            let joined = format!("{head}{alt}{tail}");
            expand(&joined.split_whitespace().collect::<Vec<_>>().join(" "))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brace_expansion() {
        assert_eq!(
            expand("{afraid,scared} of {dogs,heights}"),
            vec![
                "afraid of dogs",
                "afraid of heights",
                "scared of dogs",
                "scared of heights"
            ]
        );
        assert_eq!(expand("plain"), vec!["plain"]);
        assert_eq!(
            expand("so {very,really}? sad"),
            vec!["so very sad", "so really sad", "so sad"]
        );
    }

    #[test]
    fn every_file_parses() {
        assert!(conditions().len() >= 15);
    }

    #[test]
    fn unknown_field_is_an_error() {
        let bad = FILES[0]
            .1
            .replacen("duration_question", "duration_questoin", 1);
        assert!(parse(&bad).unwrap_err().contains("duration_questoin"));
        let bad = FILES[0]
            .1
            .replacen("follow_up", "exampels = [\"x\"]\nfollow_up", 1);
        let err = parse(&bad).unwrap_err();
        assert!(err.contains("exampels") && err.contains("line"), "{err}");
    }

    /// `unlike` sentences are told apart from a criterion's examples, so they need some, and
    /// they are held to the examples' form.
    #[test]
    fn unlike_sentences_need_examples_and_are_short() {
        let text = r#"
id = "toy"
name = "Toy"
dsm5 = "F00"
icd11 = "0A00"
labels = ["toy"]
duration_question = "How long?"
[[criteria]]
id = "one"
symptom = "a symptom"
core = true
cues = ["toy cue"]
unlike = ["I sleep fine."]
follow_up = "Any?"
[rules.dsm5]
min_count = 1
min_core = 1
min_days = 0
[rules.icd11]
min_count = 1
min_core = 1
min_days = 0
"#;
        let err = parse(text).unwrap_err();
        assert!(
            err.contains("criterion `one`") && err.contains("unlike"),
            "{err}"
        );
        let long = format!("unlike = [\"{}\"]", "word ".repeat(31));
        let text = text.replace(
            "unlike = [\"I sleep fine.\"]",
            &format!("examples = [\"I sleep badly.\"]\n{long}"),
        );
        let err = parse(&text).unwrap_err();
        assert!(
            err.contains("criterion `one`") && err.contains("30 words"),
            "{err}"
        );
    }
}
