//! The plugin API: what a module is and the hooks it may provide.
//!
//! A module is a [`ModuleSpec`] (data: guidelines, reasoning steps, techniques, cue lexicon,
//! rubric items, reply rules) plus optional code. The same spec is read from a TOML file, from
//! a crate with `include_str!`, or from a dynamic library as JSON, so a TOML-only module and a
//! compiled one behave alike. Data flows one way: dialogue -> [`Assessment`] -> plan.

use serde::{Deserialize, Serialize};

use crate::dialogue::Dialogue;
use crate::lexicon::{Lexicon, Text};
pub use crate::match_policy::{MatchPolicy, NegationScope, SubjectPolicy};
use crate::semantic::AssessContext;

/// What part of the reasoning a module serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModuleKind {
    Diagnostic,
    Modality,
    Safety,
}

impl std::fmt::Display for ModuleKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ModuleKind::Diagnostic => "diagnostic",
            ModuleKind::Modality => "modality",
            ModuleKind::Safety => "safety",
        })
    }
}

/// The stage of counselor reasoning a step belongs to; the plan orders steps by stage.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Emotion,
    Pattern,
    Diagnostic,
    Risk,
    #[default]
    Modality,
    Response,
}

/// Identity of a module.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleHeader {
    /// Stable id used in run manifests (`cbt`, `dsm5`, `crisis-guard`).
    pub id: String,
    pub name: String,
    /// Semantic version of the module's content.
    pub version: String,
    pub kind: ModuleKind,
    #[serde(default)]
    pub description: String,
    /// Sources the content paraphrases (manuals, classification chapters).
    #[serde(default)]
    pub references: Vec<String>,
}

/// A step of counselor reasoning contributed to the plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    pub id: String,
    pub stage: Stage,
    pub title: String,
    /// What the counselor should think through at this step (goes into the reasoning prompt).
    pub instruction: String,
}

/// A technique of a modality and when it fits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Technique {
    pub id: String,
    pub name: String,
    /// When the technique is indicated, for the reasoning.
    pub when: String,
    /// How to offer it, in plain client-facing language (no jargon).
    pub how: String,
    /// Cue groups (ids of `[[cues]]`) whose presence makes this technique the first choice.
    #[serde(default)]
    pub cues: Vec<String>,
}

/// A group of cue phrases. Affirmed hits about the client raise the module's indication
/// score by `weight` (at most twice per group, so one repeated word cannot dominate).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CueGroup {
    pub id: String,
    pub label: String,
    #[serde(default = "one")]
    pub weight: f32,
    /// `indication` cues raise the score, `contraindication` cues lower it, `pattern` cues
    /// are reported as thinking patterns (e.g. cognitive distortions) and also raise it.
    #[serde(default)]
    pub role: CueRole,
    /// Count hits in hypotheticals ("what if I fail") as evidence; on for worry patterns.
    #[serde(default)]
    pub include_hypothetical: bool,
    pub phrases: Vec<String>,
    /// Short first-person sentences the run's encoder compares client sentences with
    /// (threshold in `[semantic]`; see [`crate::exemplar_match`]).
    #[serde(default)]
    pub examples: Vec<String>,
}

fn one() -> f32 {
    1.0
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CueRole {
    #[default]
    Indication,
    Contraindication,
    Pattern,
}

/// An item of an evaluation rubric (fidelity, safety, diagnostic reasoning).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RubricItem {
    pub id: String,
    pub name: String,
    /// What a judge looks for; anchors for low and high scores.
    pub description: String,
    #[serde(default)]
    pub low: String,
    #[serde(default)]
    pub high: String,
    /// Score range, e.g. 0..=6 for CTRS-style items.
    #[serde(default = "default_scale")]
    pub scale: [u8; 2],
}

fn default_scale() -> [u8; 2] {
    [0, 6]
}

/// A check on a draft reply, contributed by a module and carried in the plan's constraints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ReplyRule {
    /// These phrases must not appear in the client-facing reply.
    Forbid {
        id: String,
        reason: String,
        phrases: Vec<String>,
    },
    /// At least one phrase of each group must appear (case-insensitive substring match, so
    /// write phrases as plain lower-case text); otherwise `repair` text is appended.
    Require {
        id: String,
        reason: String,
        any_of: Vec<Vec<String>>,
        repair: String,
    },
    /// The reply must stay under this many words.
    MaxWords {
        id: String,
        reason: String,
        max: u32,
    },
}

impl ReplyRule {
    pub fn id(&self) -> &str {
        match self {
            ReplyRule::Forbid { id, .. }
            | ReplyRule::Require { id, .. }
            | ReplyRule::MaxWords { id, .. } => id,
        }
    }
}

/// Everything a module declares as data. The schema of module manifests.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleSpec {
    pub schema: u32,
    pub module: ModuleHeader,
    /// Core ideas of the approach, for the reasoning prompt.
    #[serde(default)]
    pub principles: Vec<String>,
    /// Guidelines for the system prompt: diagnostic guidelines (D) for diagnostic modules,
    /// therapeutic guidelines (T) for modalities, safety guidelines for safety modules.
    #[serde(default)]
    pub guidelines: Vec<String>,
    /// How the counselor should sound when using this approach (client-facing, plain words).
    #[serde(default)]
    pub response_guidelines: Vec<String>,
    #[serde(default)]
    pub reasoning_steps: Vec<StepSpec>,
    #[serde(default)]
    pub techniques: Vec<Technique>,
    #[serde(default)]
    pub indications: Vec<String>,
    #[serde(default)]
    pub contraindications: Vec<String>,
    #[serde(default)]
    pub cues: Vec<CueGroup>,
    #[serde(default)]
    pub rubric: Vec<RubricItem>,
    /// Reply rules that always apply while this module is active.
    #[serde(default)]
    pub reply_rules: Vec<ReplyRule>,
    /// Who a cue is about and how far negation reaches when the cues are read (`[matching]`).
    #[serde(default)]
    pub matching: MatchPolicy,
    /// How close to a cue group's `examples` a client sentence must be (`[semantic]`).
    #[serde(default)]
    pub semantic: crate::exemplar_match::SemanticPolicy,
    /// The cue lexicon, compiled on first use and kept with the spec.
    #[serde(skip)]
    pub compiled: CompiledCues,
}

/// A lazily compiled cue lexicon; it is derived data, so it never affects equality.
#[derive(Clone, Default)]
pub struct CompiledCues(std::sync::OnceLock<Lexicon>);

impl PartialEq for CompiledCues {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for CompiledCues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CompiledCues")
    }
}

impl ModuleSpec {
    /// Parses a module manifest; errors carry line and column.
    pub fn from_toml(
        text: &str,
        origin: &str,
    ) -> Result<ModuleSpec, crate::manifest_error::ManifestError> {
        let spec: ModuleSpec = crate::manifest_error::parse_toml(text, origin)?;
        spec.validate(origin)?;
        Ok(spec)
    }

    /// Semantic checks serde cannot express: schema, ids, versions, phrases, references.
    pub fn validate(&self, origin: &str) -> Result<(), crate::manifest_error::ManifestError> {
        use crate::manifest_error::ManifestError as E;
        let field = |f: &str, m: String| E::Invalid {
            origin: origin.to_string(),
            field: f.to_string(),
            message: m,
        };
        if self.schema != 1 {
            return Err(field(
                "schema",
                format!(
                    "unsupported schema {}, this psy reads schema = 1",
                    self.schema
                ),
            ));
        }
        if !valid_id(&self.module.id) {
            return Err(field(
                "module.id",
                format!(
                    "`{}` is not a valid id (lower-case letters, digits and `-`)",
                    self.module.id
                ),
            ));
        }
        if semver::Version::parse(&self.module.version).is_err() {
            return Err(field(
                "module.version",
                format!(
                    "`{}` is not a semantic version like 1.2.0",
                    self.module.version
                ),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, c) in self.cues.iter().enumerate() {
            if !seen.insert(c.id.as_str()) {
                return Err(field(
                    &format!("cues[{i}].id"),
                    format!("duplicate cue group `{}`", c.id),
                ));
            }
            if c.phrases.is_empty() {
                return Err(field(
                    &format!("cues[{i}].phrases"),
                    "a cue group needs at least one phrase".into(),
                ));
            }
            for p in &c.phrases {
                crate::lexicon::Pattern::compile_all(p)
                    .map_err(|m| field(&format!("cues[{i}].phrases"), m))?;
            }
            crate::exemplar_match::check_examples(&c.examples)
                .map_err(|m| field(&format!("cues[{i}].examples"), m))?;
            if !(c.weight.is_finite() && c.weight > 0.0) {
                return Err(field(
                    &format!("cues[{i}].weight"),
                    "weight must be a positive number".into(),
                ));
            }
        }
        self.semantic
            .check(self.cues.iter().any(|c| !c.examples.is_empty()))
            .map_err(|(f, m)| field(&f, m))?;
        for (i, t) in self.techniques.iter().enumerate() {
            for c in &t.cues {
                if !seen.contains(c.as_str()) {
                    return Err(field(
                        &format!("techniques[{i}].cues"),
                        format!("technique `{}` names unknown cue group `{c}`", t.id),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Ids are lower-case ASCII words joined by `-`.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !id.starts_with('-')
        && !id.ends_with('-')
}

/// A span of client text that supports a finding.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Id of the cue group, criterion or rule that matched.
    pub id: String,
    /// Readable name of what was found.
    pub label: String,
    /// Index of the message in the dialogue.
    pub message: usize,
    /// Byte span in that message.
    pub start: usize,
    pub end: usize,
    pub text: String,
}

/// Status of one diagnostic criterion.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CriterionStatus {
    pub id: String,
    pub symptom: String,
    pub core: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<Evidence>,
}

/// What is known about how long the symptoms have lasted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct DurationStatus {
    /// The rule's minimum duration in days (0 when the rule sets none).
    pub required_days: u32,
    /// Duration the client stated, in days, when it could be read.
    pub stated_days: Option<u32>,
    /// The words it was read from ("for 8 months", "since the divorce").
    pub stated_text: Option<String>,
    pub known: bool,
    pub met: Option<bool>,
}

/// A diagnostic hypothesis: a condition considered, with the criteria for and against.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hypothesis {
    pub id: String,
    pub name: String,
    pub dsm5: String,
    pub icd11: String,
    /// Which classification's rule was applied (`dsm5` or `icd11`); merged plans list both.
    pub systems: Vec<String>,
    pub confidence: f32,
    /// Whether the threshold rule (k of n with the core items) is met on the evidence.
    pub threshold_met: bool,
    pub criteria_met: Vec<CriterionStatus>,
    /// Criteria the client denied.
    pub criteria_missing: Vec<CriterionStatus>,
    /// Criteria not yet talked about.
    pub criteria_unknown: Vec<CriterionStatus>,
    pub duration: DurationStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// Exclusions or differentials to rule out before taking the hypothesis further.
    #[serde(default)]
    pub rule_outs: Vec<String>,
    /// Questions that would resolve the most important unknowns, most useful first.
    pub follow_up_questions: Vec<String>,
}

/// Crisis risk levels, ordered.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum RiskLevel {
    #[default]
    None,
    Low,
    Moderate,
    High,
    Imminent,
}

impl RiskLevel {
    pub fn as_str(&self) -> &'static str {
        match self {
            RiskLevel::None => "none",
            RiskLevel::Low => "low",
            RiskLevel::Moderate => "moderate",
            RiskLevel::High => "high",
            RiskLevel::Imminent => "imminent",
        }
    }

    /// The level named `s` (as [`RiskLevel::as_str`] writes it).
    pub fn parse(s: &str) -> Option<RiskLevel> {
        [
            RiskLevel::None,
            RiskLevel::Low,
            RiskLevel::Moderate,
            RiskLevel::High,
            RiskLevel::Imminent,
        ]
        .into_iter()
        .find(|l| l.as_str() == s)
    }
}

/// Evidence for risk with the rule that fired.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RiskEvidence {
    pub rule: String,
    pub category: String,
    pub level: RiskLevel,
    pub evidence: Evidence,
    /// The detector that found it: `lexicon` (phrase rules), `screen` (the trained classifier
    /// over sentence embeddings) or `session` (what earlier turns imply for this one).
    #[serde(default = "lexicon_detector")]
    pub detector: String,
    /// The detector's score for the span (the screen's probability), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
}

fn lexicon_detector() -> String {
    "lexicon".into()
}

/// The level after one client turn, as if the dialogue had ended there.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TurnRisk {
    /// Index of the client message in the dialogue.
    pub message: usize,
    pub level: RiskLevel,
}

/// A crisis line or service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrisisResource {
    pub locale: String,
    pub name: String,
    pub contact: String,
}

/// The risk assessment of a safety module.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct RiskAssessment {
    /// The level the reply answers: the highest of the client's own risk and the risk of
    /// someone the client talks about (a friend who has taken pills gets the helper protocol).
    pub level: RiskLevel,
    /// The client's own risk (suicide, self-harm, harming someone), without the risk of people
    /// the client talks about; `None` from modules that do not tell them apart (read it through
    /// [`RiskAssessment::client_level`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_level: Option<RiskLevel>,
    pub evidence: Vec<RiskEvidence>,
    /// Why the level is what it is, in one sentence for the reasoning.
    pub rationale: String,
    /// Steps the reply must take (acknowledge, ask about safety, resources, contact someone).
    #[serde(default)]
    pub protocol: Vec<String>,
    #[serde(default)]
    pub resources: Vec<CrisisResource>,
    /// The level after each client turn, oldest first (the last entry is `level`).
    #[serde(default)]
    pub trajectory: Vec<TurnRisk>,
    /// The detectors that ran (`lexicon`, `screen`, `session`); a run without `screen` had no
    /// sentence encoder and says so.
    #[serde(default)]
    pub detectors: Vec<String>,
}

impl RiskAssessment {
    /// The client's own risk: `client_level` where the module gave one, else `level`; never
    /// above `level`.
    pub fn client_level(&self) -> RiskLevel {
        self.client_level.unwrap_or(self.level).min(self.level)
    }
}

/// How well a modality fits the dialogue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct Indication {
    pub score: f32,
    pub cues: Vec<Evidence>,
    pub contraindications: Vec<Evidence>,
    /// Technique ids suggested by the cues, best first.
    pub techniques: Vec<String>,
}

/// What one module found in a dialogue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct Assessment {
    pub module: String,
    /// Symptoms or themes found, with spans.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub symptoms: Vec<Evidence>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hypotheses: Vec<Hypothesis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk: Option<RiskAssessment>,
    /// Thinking patterns (e.g. cognitive distortions) with spans.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patterns: Vec<Evidence>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub indication: Option<Indication>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Context a module may read when it contributes reply rules: its own assessment and the
/// run's locale. (Modules never see other modules' findings: the planner combines them.)
pub struct RuleContext<'a> {
    pub assessment: &'a Assessment,
    pub locale: &'a str,
    pub resources: &'a [CrisisResource],
}

/// A training sample as modules see it when filtering or annotating data.
pub struct SampleView<'a> {
    pub dialogue: &'a Dialogue,
    pub reasoning: &'a str,
    pub reply: &'a str,
}

/// A module of psy. Only [`Module::spec`] is required; every hook has a default driven by
/// the spec's data, so a module written as TOML alone is a complete module.
pub trait Module: Send + Sync {
    /// The module's declared data.
    fn spec(&self) -> &ModuleSpec;

    /// Reads the client's turns and reports findings. Default: score the spec's cue lexicon.
    fn assess(&self, dialogue: &Dialogue) -> Assessment {
        lexicon_assessment(self.spec(), dialogue)
    }

    /// [`Module::assess`] with what the planner lends: modules that understand meaning (the
    /// crisis guard's screen, exemplar cues) use `ctx.embedder`. Default: `assess`, plus the
    /// cue groups found by their `examples` ([`exemplar_assessment`]).
    fn assess_with(&self, dialogue: &Dialogue, ctx: &AssessContext) -> Assessment {
        exemplar_assessment(self.spec(), dialogue, ctx, self.assess(dialogue))
    }

    /// Adapts findings to the run's settings, e.g. crisis resources for the run's locale
    /// (`resources` are the manifest's own entries). Default: nothing to adapt.
    fn localize(&self, assessment: &mut Assessment, locale: &str, resources: &[CrisisResource]) {
        let _ = (assessment, locale, resources);
    }

    /// Checks for draft replies, given this module's findings. Default: the spec's rules.
    fn reply_rules(&self, ctx: &RuleContext) -> Vec<ReplyRule> {
        let _ = ctx;
        self.spec().reply_rules.clone()
    }

    /// Whether a training sample should be kept; `Err(reason)` drops it. Default: keep.
    fn review_sample(&self, sample: &SampleView) -> Result<(), String> {
        let _ = sample;
        Ok(())
    }
}

/// A module that is nothing but its spec (TOML-only modules, and built-ins without code).
pub struct SpecModule {
    spec: ModuleSpec,
}

impl SpecModule {
    pub fn new(spec: ModuleSpec) -> Self {
        SpecModule { spec }
    }
}

impl Module for SpecModule {
    fn spec(&self) -> &ModuleSpec {
        &self.spec
    }
}

/// The spec's cue lexicon (group index = index into `spec.cues`), compiled once per spec.
pub fn compiled_cues(spec: &ModuleSpec) -> &Lexicon {
    spec.compiled.0.get_or_init(|| {
        Lexicon::new(
            spec.cues
                .iter()
                .enumerate()
                .flat_map(|(g, c)| c.phrases.iter().map(move |p| (g, p.as_str()))),
        )
        .expect("cue phrases are validated when the spec is loaded")
    })
}

/// The default assessment: affirmed cue hits about the client (read under the spec's
/// [`MatchPolicy`]; hypotheticals only where the group allows them) are scored with
/// [`score_indication`]; pattern cues are also reported as patterns. Diagnostic and safety
/// specs report the hits as symptoms instead.
pub fn lexicon_assessment(spec: &ModuleSpec, dialogue: &Dialogue) -> Assessment {
    let lexicon = compiled_cues(spec);
    let mut out = Assessment {
        module: spec.module.id.clone(),
        ..Default::default()
    };
    let mut indication = Indication::default();
    for turn in dialogue.client_turns() {
        let text = Text::new(turn.text);
        for hit in lexicon.find_with(&text, &spec.matching) {
            let group = &spec.cues[hit.entry];
            let counts = !hit.negated
                && !hit.third_person
                && (!hit.hypothetical || group.include_hypothetical);
            if !counts {
                continue;
            }
            let ev = Evidence {
                id: group.id.clone(),
                label: group.label.clone(),
                message: turn.index,
                start: hit.start,
                end: hit.end,
                text: hit.text.clone(),
            };
            match group.role {
                CueRole::Contraindication => indication.contraindications.push(ev),
                CueRole::Pattern => {
                    out.patterns.push(ev.clone());
                    indication.cues.push(ev);
                }
                CueRole::Indication => indication.cues.push(ev),
            }
        }
    }
    score_indication(spec, &mut indication);
    if spec.module.kind == ModuleKind::Modality {
        out.indication = Some(indication);
    } else {
        out.symptoms = indication.cues;
    }
    out
}

/// The default module path with an encoder: `assessment` (the module's lexicon findings) plus
/// the cue groups found by their examples, rescored. Without an encoder, or without examples,
/// the assessment is returned as it is; an encoder error becomes a note.
pub fn exemplar_assessment(
    spec: &ModuleSpec,
    dialogue: &Dialogue,
    ctx: &AssessContext,
    mut assessment: Assessment,
) -> Assessment {
    let Some(embedder) = ctx.embedder else {
        return assessment;
    };
    if spec.cues.iter().all(|c| c.examples.is_empty()) {
        return assessment;
    }
    use crate::exemplar_match::{find, ExampleGroup};
    let groups: Vec<ExampleGroup> = spec
        .cues
        .iter()
        .map(|c| ExampleGroup {
            examples: &c.examples,
            unlike: &[],
            include_hypothetical: c.include_hypothetical,
        })
        .collect();
    // Lexicon denials per (group, message): byte spans the lexicon read as negated.
    let lexicon = compiled_cues(spec);
    let mut negated: Vec<(usize, usize, usize, usize)> = Vec::new();
    for turn in dialogue.client_turns() {
        for h in lexicon.find_with(&Text::new(turn.text), &spec.matching) {
            if h.negated {
                negated.push((h.entry, turn.index, h.start, h.end));
            }
        }
    }
    let denied = |g: usize, m: usize, s: usize, e: usize| {
        negated
            .iter()
            .any(|&(ng, nm, ns, ne)| ng == g && nm == m && ns < e && s < ne)
    };
    let hits = match find(
        embedder,
        &groups,
        dialogue,
        &spec.semantic,
        spec.matching.subject,
        true,
        &denied,
    ) {
        Ok(h) => h,
        Err(e) => {
            assessment.notes.push(format!(
                "sentence encoder {} failed, cues read by lexicon only: {e}",
                embedder.name()
            ));
            return assessment;
        }
    };
    let turn_text = |m: usize| dialogue.messages.get(m).map(|x| x.content.as_str());
    let evidence: Vec<(CueRole, Evidence)> = hits
        .iter()
        .filter_map(|h| {
            let group = &spec.cues[h.group];
            let text = turn_text(h.message)?;
            let ev = Evidence {
                id: group.id.clone(),
                label: h.label(&group.label),
                message: h.message,
                start: h.start,
                end: h.end,
                text: text.get(h.start..h.end)?.to_string(),
            };
            Some((group.role, ev))
        })
        .collect();
    if spec.module.kind == ModuleKind::Modality {
        let mut ind = assessment.indication.take().unwrap_or_default();
        let (against, rest): (Vec<_>, Vec<_>) = evidence
            .into_iter()
            .partition(|(r, _)| *r == CueRole::Contraindication);
        for (_, ev) in against {
            if !ind.contraindications.iter().any(|e| e.id == ev.id) {
                ind.contraindications.push(ev);
            }
        }
        let before: Vec<Evidence> = ind.cues.clone();
        merge_evidence(&mut ind, rest.iter().map(|(_, e)| e.clone()));
        for (role, ev) in &rest {
            if *role == CueRole::Pattern && !before.contains(ev) && ind.cues.contains(ev) {
                assessment.patterns.push(ev.clone());
            }
        }
        assessment
            .patterns
            .sort_by_key(|e| (e.message, e.start, e.end));
        score_indication(spec, &mut ind);
        // The formula gives equal scores to equal counts; between modalities with the same
        // count, the one whose examples lie closer to the client's words ranks first.
        let closest = hits
            .iter()
            .filter(|h| spec.cues[h.group].role != CueRole::Contraindication)
            .filter(|h| ind.cues.iter().any(|e| e.id == spec.cues[h.group].id))
            .map(|h| h.similarity)
            .fold(0.0f32, f32::max);
        if ind.score > 0.0 && closest > 0.0 {
            ind.score = round4(ind.score + closest / 1000.0);
        }
        assessment.indication = Some(ind);
    } else {
        for (_, ev) in evidence {
            let overlaps = assessment.symptoms.iter().any(|e| {
                e.id == ev.id && e.message == ev.message && e.start < ev.end && ev.start < e.end
            });
            if !overlaps {
                assessment.symptoms.push(ev);
            }
        }
        assessment
            .symptoms
            .sort_by_key(|e| (e.message, e.start, e.end));
    }
    assessment
}

/// Rounds to four decimals so plans print the same on every machine.
pub fn round4(x: f32) -> f32 {
    (x * 10_000.0).round() / 10_000.0
}

/// A built-in module, registered from its crate with `inventory::submit!`.
pub struct BuiltinModule {
    /// The crate that registered it (shown by `psy plugins list`).
    pub crate_name: &'static str,
    pub build: fn() -> Box<dyn Module>,
}

inventory::collect!(BuiltinModule);

/// Registers a built-in module from a crate: `psy_core::register_module!(build_fn);`.
#[macro_export]
macro_rules! register_module {
    ($build:expr) => {
        $crate::inventory::submit! {
            $crate::module::BuiltinModule { crate_name: env!("CARGO_PKG_NAME"), build: $build }
        }
    };
}

/// Declares a built-in module that is nothing but its embedded manifest:
/// `psy_core::spec_module!("../module.toml");` defines `pub fn module()` and registers it.
#[macro_export]
macro_rules! spec_module {
    ($path:literal) => {
        /// The module, built from the embedded manifest (exported for tests and the planner).
        pub fn module() -> Box<dyn $crate::module::Module> {
            Box::new($crate::module::SpecModule::new(
                $crate::module::builtin_spec(
                    include_str!($path),
                    concat!(env!("CARGO_PKG_NAME"), ": ", $path),
                ),
            ))
        }
        $crate::register_module!(module);
    };
}

/// Builds a [`SpecModule`] from a crate's embedded TOML; a broken built-in is a bug caught
/// by every test run, so it panics with the parse error.
pub fn builtin_spec(toml_text: &str, origin: &str) -> ModuleSpec {
    match ModuleSpec::from_toml(toml_text, origin) {
        Ok(s) => s,
        Err(e) => panic!("built-in module manifest is invalid: {e}"),
    }
}

// ---- The indication score ------------------------------------------------------------
// How well a modality fits: the one scoring formula every modality uses, whether its evidence
// came from the default lexicon assessment or from its own code.
//
// score = 1 - exp(-max(0, sum over indication and pattern groups of weight * min(hits, 2)
//                        - sum over contraindication groups that matched of weight) / 2)
//
// Each group counts at most twice, so one repeated word cannot dominate; the score is
// rounded to four decimals so plans print the same on every machine.

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
mod indication_tests {
    use super::*;

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
