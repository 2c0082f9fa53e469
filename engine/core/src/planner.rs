//! The planner: from a run manifest and a dialogue to a reasoning [`Plan`].
//!
//! Every active module assesses the dialogue; the planner merges the findings (risk,
//! hypotheses, patterns, modality scores), chooses modalities, orders the reasoning steps,
//! renders the system prompt and sets the reply constraints. Same manifest and dialogue,
//! same plan, byte for byte: no clocks, no hash-map order, scores rounded.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::affect::{read_affect, AffectReading, Intensity};
use crate::dialogue::Dialogue;
use crate::manifest::{
    self, ManifestError, ModalityPolicy, PromptingMode, ResolvedRun, CRISIS_GUARD,
};
use crate::module::{
    Assessment, Evidence, Hypothesis, Module, ModuleKind, ModuleSpec, ReplyRule, RiskAssessment,
    RiskLevel, RuleContext, Stage,
};
use crate::registry::Registry;
use crate::semantic::{AssessContext, SentenceEmbedder};
use crate::words::reserved_words;

/// How the case formulation's line of diagnostic hypotheses starts (names, codes, confidence,
/// criteria, questions). A compact session prompt finds it by this prefix and says it in the
/// client's terms instead.
pub const DIAGNOSTIC_LINE: &str = "- Diagnostic considerations:";

/// The heading of the case formulation paragraph; a compact session prompt replaces it by
/// notes addressed to the counselor.
pub const FORMULATION_HEADING: &str = "Case formulation (private, do not reveal):";

/// A step of the counselor's reasoning, with what the findings say about it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanStep {
    pub id: String,
    pub stage: Stage,
    pub title: String,
    pub instruction: String,
    /// The module that contributed the step (`psy` for the planner's own steps).
    pub source: String,
    /// What this dialogue's findings say for this step.
    pub context: String,
}

/// A modality with its indication score and whether the plan uses it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModalityChoice {
    pub id: String,
    pub name: String,
    pub score: f32,
    pub chosen: bool,
    /// Suggested techniques (id, name, how to offer it), best first.
    pub techniques: Vec<TechniqueChoice>,
    pub cues: Vec<Evidence>,
    /// Contraindication cues that matched (e.g. "just want someone to listen" for CBT): they
    /// lowered the score, and under the `auto` policy they veto the modality.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contraindicated: Vec<Evidence>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TechniqueChoice {
    pub id: String,
    pub name: String,
    pub how: String,
}

/// A reply rule with the module that asked for it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourcedRule {
    pub source: String,
    #[serde(flatten)]
    pub rule: ReplyRule,
}

/// What a reply must respect.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Constraints {
    pub intensity: Intensity,
    /// About this many words (PsyLLM: ~50 light, ~150 heavy).
    pub target_words: u32,
    pub max_words: u32,
    /// Budget for the hidden reasoning, in words.
    pub reasoning_max_words: u32,
    /// Diagnostic labels and clinical jargon never reach the client.
    pub no_labels_to_client: bool,
    /// Risk is high or imminent: the reply must carry the crisis protocol.
    pub crisis_protocol_required: bool,
    pub rules: Vec<SourcedRule>,
}

/// The prompts the plan renders.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Prompts {
    pub mode: PromptingMode,
    /// System prompt: persona, diagnostic guidelines (D), therapeutic guidelines (T),
    /// safety, the private case formulation and the reply constraints.
    pub system: String,
    /// The ordered reasoning steps with their context, for `icl` and `two-phase`.
    pub reasoning_outline: String,
}

/// The reasoning plan for the next counselor turn.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub run: String,
    /// Index of the client message the plan answers.
    pub turn: usize,
    pub active_modules: Vec<String>,
    pub affect: AffectReading,
    pub risk: RiskAssessment,
    pub hypotheses: Vec<Hypothesis>,
    pub patterns: Vec<Evidence>,
    pub modalities: Vec<ModalityChoice>,
    pub reasoning_steps: Vec<PlanStep>,
    pub prompt: Prompts,
    pub constraints: Constraints,
    /// Every module's raw findings, in activation order.
    pub findings: Vec<Assessment>,
}

/// A run manifest bound to its modules, ready to plan dialogues.
pub struct Planner {
    run: ResolvedRun,
    registry: Registry,
    diagnostic: Vec<Arc<dyn Module>>,
    modalities: Vec<Arc<dyn Module>>,
    safety: Vec<Arc<dyn Module>>,
    /// The sentence encoder lent to modules; `None` plans with lexicons alone.
    embedder: Option<Arc<dyn SentenceEmbedder>>,
}

impl Planner {
    /// Reads a run manifest and binds it to the built-in modules plus its plugins.
    pub fn from_path(path: &Path) -> Result<Planner, ManifestError> {
        let run = manifest::load_run(path)?;
        Planner::new(run, Registry::builtin()?)
    }

    /// Binds a resolved run to a registry: loads the run's plugins, then checks every
    /// listed id exists and has the kind of the list it is in.
    pub fn new(run: ResolvedRun, mut registry: Registry) -> Result<Planner, ManifestError> {
        for p in &run.manifest.modules.plugins {
            let path = Path::new(p);
            if !path.exists() {
                return Err(ManifestError::Plugin(format!(
                    "{}: plugin {} does not exist",
                    run.locate(p.rsplit('/').next().unwrap_or(p)),
                    p
                )));
            }
            registry.load_plugin(path)?;
        }
        if registry.get(CRISIS_GUARD).is_none() {
            return Err(ManifestError::CrisisGuardRemoved {
                location: run.origin(),
                reason: "the `crisis-guard` module is not linked into this program (name the psy-safety crate)".into(),
            });
        }
        let m = &run.manifest;
        let resolve = |ids: &[String],
                       kind: ModuleKind,
                       listed: &str|
         -> Result<Vec<Arc<dyn Module>>, ManifestError> {
            ids.iter()
                .map(|id| {
                    let entry = registry
                        .get(id)
                        .ok_or_else(|| ManifestError::UnknownModule {
                            location: run.locate(id),
                            kind: listed.to_string(),
                            id: id.clone(),
                            suggestions: registry.suggest(id),
                        })?;
                    let actual = entry.spec().module.kind;
                    if actual != kind {
                        return Err(ManifestError::WrongKind {
                            location: run.locate(id),
                            id: id.clone(),
                            actual: actual.to_string(),
                            listed: listed.to_string(),
                        });
                    }
                    Ok(entry.module.clone())
                })
                .collect()
        };
        let diagnostic = resolve(&m.modules.diagnostic, ModuleKind::Diagnostic, "diagnostic")?;
        let modalities = resolve(&m.modules.modality, ModuleKind::Modality, "modality")?;
        let safety = resolve(&m.modules.safety, ModuleKind::Safety, "safety")?;
        for id in &m.planner.fixed {
            if !m.modules.modality.contains(id) {
                let mut suggestions = registry.suggest(id);
                suggestions.retain(|s| m.modules.modality.contains(s));
                return Err(ManifestError::UnknownModule {
                    location: run.locate(id),
                    kind: "active modality (planner.fixed)".into(),
                    id: id.clone(),
                    suggestions,
                });
            }
        }
        Ok(Planner {
            run,
            registry,
            diagnostic,
            modalities,
            safety,
            embedder: None,
        })
    }

    /// Lends `embedder` to every module from now on (see [`crate::semantic`]).
    pub fn with_embedder(mut self, embedder: Arc<dyn SentenceEmbedder>) -> Self {
        self.embedder = Some(embedder);
        self
    }

    /// The encoder modules assess with, if any.
    pub fn embedder(&self) -> Option<&Arc<dyn SentenceEmbedder>> {
        self.embedder.as_ref()
    }

    /// What modules are lent while assessing.
    pub fn assess_context(&self) -> AssessContext<'_> {
        AssessContext {
            embedder: self.embedder.as_deref(),
        }
    }

    pub fn run(&self) -> &ResolvedRun {
        &self.run
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Every active module, in activation order (diagnostic, safety, modalities).
    pub fn active(&self) -> impl Iterator<Item = &Arc<dyn Module>> {
        self.diagnostic
            .iter()
            .chain(&self.safety)
            .chain(&self.modalities)
    }

    /// Plans the counselor's reply to the newest client message.
    pub fn plan(&self, dialogue: &Dialogue) -> Plan {
        let m = &self.run.manifest;
        let affect = read_affect(dialogue);
        let ctx = self.assess_context();
        let diag: Vec<Assessment> = self
            .diagnostic
            .iter()
            .map(|x| x.assess_with(dialogue, &ctx))
            .collect();
        let safe: Vec<Assessment> = self
            .safety
            .iter()
            .map(|x| {
                let mut a = x.assess_with(dialogue, &ctx);
                x.localize(&mut a, &m.safety.locale, &m.safety.resources);
                a
            })
            .collect();
        let moda: Vec<Assessment> = self
            .modalities
            .iter()
            .map(|x| x.assess_with(dialogue, &ctx))
            .collect();

        let risk = merge_risk(&safe);
        let hypotheses = merge_hypotheses(&diag, m.planner.max_hypotheses);
        let modalities = self.choose_modalities(&moda);
        let patterns: Vec<Evidence> = moda
            .iter()
            .chain(&diag)
            .flat_map(|a| a.patterns.iter().cloned())
            .collect();

        // Reply rules: the planner's own length rule, then each module's, given its findings.
        let intensity = if risk.level >= RiskLevel::Moderate {
            Intensity::Heavy
        } else {
            affect.intensity
        };
        let assessments: Vec<(&Arc<dyn Module>, &Assessment)> = self
            .diagnostic
            .iter()
            .zip(&diag)
            .chain(self.safety.iter().zip(&safe))
            .chain(self.modalities.iter().zip(&moda).filter(|(x, _)| {
                modalities
                    .iter()
                    .any(|c| c.chosen && c.id == x.spec().module.id)
            }))
            .collect();
        let mut module_rules = Vec::new();
        for (module, assessment) in &assessments {
            let ctx = RuleContext {
                assessment,
                locale: &m.safety.locale,
                resources: &m.safety.resources,
            };
            for rule in module.reply_rules(&ctx) {
                module_rules.push(SourcedRule {
                    source: module.spec().module.id.clone(),
                    rule,
                });
            }
        }
        let mut rules = Vec::new();
        let crisis = risk.level >= RiskLevel::High;
        let target = match intensity {
            _ if crisis => m.prompting.crisis_words,
            Intensity::Light => m.prompting.light_words,
            Intensity::Moderate => m.prompting.moderate_words,
            Intensity::Heavy => m.prompting.heavy_words,
        };
        // A crisis reply is the model's few sentences and then the protocol's text (its
        // `require` rules), which the budget makes room for.
        let max_words = if crisis {
            target * 2 + reserved_words(module_rules.iter().map(|r| &r.rule)) as u32
        } else {
            target + target / 2
        };
        rules.push(SourcedRule {
            source: "psy".into(),
            rule: ReplyRule::MaxWords {
                id: "word-budget".into(),
                reason: format!("{intensity:?} message: about {target} words, at most {max_words}")
                    .to_lowercase(),
                max: max_words,
            },
        });
        rules.extend(module_rules);
        let constraints = Constraints {
            intensity,
            target_words: target,
            max_words,
            reasoning_max_words: m.prompting.reasoning_words,
            no_labels_to_client: true,
            crisis_protocol_required: crisis,
            rules,
        };

        let reasoning_steps = self.steps(
            &affect,
            &risk,
            &hypotheses,
            &patterns,
            &modalities,
            &constraints,
        );
        let prompt = Prompts {
            mode: m.prompting.mode,
            system: self.system_prompt(&risk, &hypotheses, &modalities, &constraints),
            reasoning_outline: outline(&reasoning_steps),
        };
        let findings = diag.into_iter().chain(safe).chain(moda).collect();
        Plan {
            run: m.run.name.clone(),
            turn: dialogue.last_client_turn().map(|t| t.index).unwrap_or(0),
            active_modules: self.active().map(|x| x.spec().module.id.clone()).collect(),
            affect,
            risk,
            hypotheses,
            patterns,
            modalities,
            reasoning_steps,
            prompt,
            constraints,
            findings,
        }
    }

    fn choose_modalities(&self, moda: &[Assessment]) -> Vec<ModalityChoice> {
        let p = &self.run.manifest.planner;
        let mut list: Vec<(usize, ModalityChoice)> = self
            .modalities
            .iter()
            .zip(moda)
            .enumerate()
            .map(|(i, (module, a))| {
                let spec = module.spec();
                let ind = a.indication.clone().unwrap_or_default();
                let techniques = ind
                    .techniques
                    .iter()
                    .filter_map(|t| spec.techniques.iter().find(|x| &x.id == t))
                    .chain(
                        spec.techniques
                            .iter()
                            .filter(|x| !ind.techniques.contains(&x.id)),
                    )
                    .take(3)
                    .map(|t| TechniqueChoice {
                        id: t.id.clone(),
                        name: t.name.clone(),
                        how: t.how.clone(),
                    })
                    .collect();
                (
                    i,
                    ModalityChoice {
                        id: spec.module.id.clone(),
                        name: spec.module.name.clone(),
                        score: ind.score,
                        chosen: false,
                        techniques,
                        cues: ind.cues,
                        contraindicated: ind.contraindications,
                    },
                )
            })
            .collect();
        match p.modality_policy {
            ModalityPolicy::Fixed => {
                for (_, c) in &mut list {
                    c.chosen = p.fixed.contains(&c.id);
                }
                list.sort_by_key(|(i, c)| {
                    (
                        p.fixed
                            .iter()
                            .position(|f| *f == c.id)
                            .unwrap_or(usize::MAX),
                        *i,
                    )
                });
            }
            ModalityPolicy::Auto => {
                list.sort_by(|a, b| b.1.score.total_cmp(&a.1.score).then(a.0.cmp(&b.0)));
                let mut chosen = 0;
                for (_, c) in &mut list {
                    // A matched contraindication vetoes the modality, whatever its score.
                    if chosen < p.top_k && c.score >= p.min_score && c.contraindicated.is_empty() {
                        c.chosen = true;
                        chosen += 1;
                    }
                }
                if chosen == 0 {
                    // Nothing points anywhere: the fallback (listening first), else the best
                    // modality that is not contraindicated.
                    let at = list
                        .iter()
                        .position(|(_, c)| c.id == p.fallback)
                        .or_else(|| list.iter().position(|(_, c)| c.contraindicated.is_empty()))
                        .unwrap_or(0);
                    if let Some((_, c)) = list.get_mut(at) {
                        c.chosen = true;
                    }
                    list.sort_by_key(|(_, c)| !c.chosen);
                }
            }
        }
        list.into_iter().map(|(_, c)| c).collect()
    }

    fn steps(
        &self,
        affect: &AffectReading,
        risk: &RiskAssessment,
        hypotheses: &[Hypothesis],
        patterns: &[Evidence],
        modalities: &[ModalityChoice],
        constraints: &Constraints,
    ) -> Vec<PlanStep> {
        let mut steps = vec![PlanStep {
            id: "emotion".into(),
            stage: Stage::Emotion,
            title: "What is the client feeling?".into(),
            instruction: "Name the feelings in the client's words and how intense they are; notice what matters most to them right now.".into(),
            source: "psy".into(),
            context: String::new(),
        }];
        let chosen: Vec<&ModalityChoice> = modalities.iter().filter(|c| c.chosen).collect();
        let contributing = self.diagnostic.iter().chain(&self.safety).chain(
            chosen
                .iter()
                .filter_map(|c| self.modalities.iter().find(|x| x.spec().module.id == c.id)),
        );
        for module in contributing {
            for s in &module.spec().reasoning_steps {
                // DSM-5-TR and ICD-11 screening share their steps: one step, both sources.
                if let Some(same) = steps
                    .iter_mut()
                    .find(|x| x.stage == s.stage && x.title == s.title)
                {
                    same.source = format!("{}+{}", same.source, module.spec().module.id);
                    continue;
                }
                steps.push(PlanStep {
                    id: format!("{}.{}", module.spec().module.id, s.id),
                    stage: s.stage,
                    title: s.title.clone(),
                    instruction: s.instruction.clone(),
                    source: module.spec().module.id.clone(),
                    context: String::new(),
                });
            }
        }
        // Earlier in the session the client was at high risk and has not said they are safe:
        // the conversation may move on, the safety plan may not.
        let earlier_crisis = risk
            .trajectory
            .iter()
            .rev()
            .skip(1)
            .find(|t| t.level >= RiskLevel::High);
        if let (Some(t), true) = (
            earlier_crisis,
            (RiskLevel::Moderate..RiskLevel::High).contains(&risk.level),
        ) {
            steps.push(PlanStep {
                id: "safety-planning".into(),
                stage: Stage::Risk,
                title: "Keep the safety plan going".into(),
                instruction: format!(
                    "Message {} was at {} risk and the client has not said they are safe since. Before moving on, come back to safety: are they safe right now, who can they reach today, and what will they do if the urges return (warning signs, coping steps, people and the crisis line, keeping means out of reach).",
                    t.message,
                    t.level.as_str()
                ),
                source: CRISIS_GUARD.into(),
                context: String::new(),
            });
        }
        steps.push(PlanStep {
            id: "response".into(),
            stage: Stage::Response,
            title: "Plan the reply".into(),
            instruction: "Decide what the reply does first (reflect, validate, ask, suggest) and keep it in plain, warm language without labels or jargon.".into(),
            source: "psy".into(),
            context: String::new(),
        });
        steps.sort_by_key(|s| s.stage);
        // The findings of a stage are stated once, on its first step.
        let mut seen = Vec::new();
        for s in &mut steps {
            if seen.contains(&s.stage) {
                continue;
            }
            seen.push(s.stage);
            s.context = match s.stage {
                Stage::Emotion => format!(
                    "intensity {:?} (score {}); feelings: {}; e.g. {}",
                    affect.intensity,
                    affect.score,
                    list_or_none(&affect.emotions),
                    quotes(affect.evidence.iter().map(|e| e.text.as_str()).take(3))
                )
                .to_lowercase(),
                Stage::Pattern => {
                    if patterns.is_empty() {
                        "no thinking patterns detected".into()
                    } else {
                        patterns
                            .iter()
                            .take(5)
                            .map(|p| format!("{} (\"{}\")", p.label, p.text))
                            .collect::<Vec<_>>()
                            .join("; ")
                    }
                }
                Stage::Diagnostic => diagnostic_context(hypotheses),
                Stage::Risk => risk_context(risk),
                Stage::Modality => chosen
                    .iter()
                    .map(|c| {
                        format!(
                            "{} (score {}): {}",
                            c.name,
                            c.score,
                            c.techniques
                                .iter()
                                .map(|t| t.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
                Stage::Response => response_context(constraints),
            };
        }
        steps
    }

    fn system_prompt(
        &self,
        risk: &RiskAssessment,
        hypotheses: &[Hypothesis],
        modalities: &[ModalityChoice],
        c: &Constraints,
    ) -> String {
        let m = &self.run.manifest;
        let mut s = String::new();
        let _ = writeln!(s, "{}", m.prompting.persona.trim());
        let chosen: Vec<&Arc<dyn Module>> = modalities
            .iter()
            .filter(|x| x.chosen)
            .filter_map(|x| self.modalities.iter().find(|y| y.spec().module.id == x.id))
            .collect();

        // DSM-5-TR and ICD-11 modules share most guidelines: each line is said once.
        let mut diagnostic_lines: Vec<&String> = Vec::new();
        for g in self.diagnostic.iter().flat_map(|x| &x.spec().guidelines) {
            if !diagnostic_lines.contains(&g) {
                diagnostic_lines.push(g);
            }
        }
        if !diagnostic_lines.is_empty() {
            let _ = writeln!(s, "\nDiagnostic guidelines (for your private reasoning; never name a diagnosis to the client):");
            for g in diagnostic_lines {
                let _ = writeln!(s, "- {g}");
            }
        }
        if !chosen.is_empty() {
            // Why the approach fits and when to hold it back, for the private reasoning.
            let sections: [(&str, SpecLines); 3] = [
                ("Core ideas of the approach", |x| &x.principles),
                ("When the approach fits", |x| &x.indications),
                ("When to hold it back", |x| &x.contraindications),
            ];
            for (title, lines) in sections {
                if chosen.iter().all(|x| lines(x.spec()).is_empty()) {
                    continue;
                }
                let _ = writeln!(s, "\n{title}:");
                for x in &chosen {
                    for line in lines(x.spec()) {
                        let _ = writeln!(s, "- [{}] {line}", x.spec().module.name);
                    }
                }
            }
            let _ = writeln!(s, "\nTherapeutic guidelines:");
            for x in &chosen {
                for g in &x.spec().guidelines {
                    let _ = writeln!(s, "- [{}] {g}", x.spec().module.name);
                }
            }
            let _ = writeln!(s, "\nHow to speak with the client:");
            for x in &chosen {
                for g in &x.spec().response_guidelines {
                    let _ = writeln!(s, "- {g}");
                }
            }
        }
        let _ = writeln!(s, "\nSafety:");
        for x in &self.safety {
            for g in &x.spec().guidelines {
                let _ = writeln!(s, "- {g}");
            }
        }
        let _ = writeln!(s, "\n{FORMULATION_HEADING}");
        let _ = writeln!(s, "- Risk: {}", risk_context(risk));
        let _ = writeln!(s, "{DIAGNOSTIC_LINE} {}", diagnostic_context(hypotheses));
        let chosen_names: Vec<String> = modalities
            .iter()
            .filter(|x| x.chosen)
            .map(|x| {
                format!(
                    "{} ({})",
                    x.name,
                    x.techniques
                        .first()
                        .map(|t| t.name.as_str())
                        .unwrap_or("listening")
                )
            })
            .collect();
        let _ = writeln!(s, "- Approach: {}", list_or_none(&chosen_names));
        let held_back: Vec<String> = modalities
            .iter()
            .filter(|x| !x.chosen && !x.contraindicated.is_empty())
            .map(|x| {
                format!(
                    "{} ({})",
                    x.name,
                    quotes(x.contraindicated.iter().map(|e| e.text.as_str()).take(2))
                )
            })
            .collect();
        if !held_back.is_empty() {
            let _ = writeln!(s, "- Held back (contraindicated): {}", held_back.join("; "));
        }
        let _ = writeln!(s, "\nReply: {}", response_context(c));
        if c.crisis_protocol_required {
            let _ = writeln!(s, "Crisis protocol (required now):");
            for p in &risk.protocol {
                let _ = writeln!(s, "- {p}");
            }
            for r in &risk.resources {
                let _ = writeln!(s, "- Resource: {} — {}", r.name, r.contact);
            }
        }
        s
    }
}

/// Picks one list of prose lines from a module spec (principles, indications, ...).
type SpecLines = fn(&ModuleSpec) -> &Vec<String>;

fn merge_risk(safe: &[Assessment]) -> RiskAssessment {
    let mut out = RiskAssessment::default();
    for a in safe {
        if let Some(r) = &a.risk {
            if r.level > out.level || out.rationale.is_empty() {
                out.level = out.level.max(r.level);
                if r.level >= out.level {
                    out.rationale = r.rationale.clone();
                    out.protocol = r.protocol.clone();
                    out.resources = r.resources.clone();
                }
            }
            // Without a safety module that tells them apart, the client's level is the level.
            out.client_level = Some(out.client_level.unwrap_or_default().max(r.client_level()));
            out.evidence.extend(r.evidence.iter().cloned());
            // Per client turn, the highest level any safety module gave.
            for t in &r.trajectory {
                match out.trajectory.iter_mut().find(|x| x.message == t.message) {
                    Some(x) => x.level = x.level.max(t.level),
                    None => out.trajectory.push(t.clone()),
                }
            }
            for d in &r.detectors {
                if !out.detectors.contains(d) {
                    out.detectors.push(d.clone());
                }
            }
        }
    }
    out.trajectory.sort_by_key(|t| t.message);
    if out.rationale.is_empty() {
        out.rationale = "no risk indicators found".into();
    }
    out
}

/// Merges hypotheses of several diagnostic modules by condition id; DSM-5-TR and ICD-11
/// views of the same condition become one hypothesis that lists both systems.
fn merge_hypotheses(diag: &[Assessment], keep: usize) -> Vec<Hypothesis> {
    let mut merged: Vec<Hypothesis> = Vec::new();
    for a in diag {
        for h in &a.hypotheses {
            match merged.iter_mut().find(|m| m.id == h.id) {
                Some(m) => {
                    for s in &h.systems {
                        if !m.systems.contains(s) {
                            m.systems.push(s.clone());
                        }
                    }
                    m.confidence = m.confidence.max(h.confidence);
                    m.threshold_met |= h.threshold_met;
                }
                None => merged.push(h.clone()),
            }
        }
    }
    merged.retain(|h| !h.criteria_met.is_empty());
    merged.sort_by(|a, b| b.confidence.total_cmp(&a.confidence).then(a.id.cmp(&b.id)));
    merged.truncate(keep);
    merged
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

fn quotes<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<String> = items.map(|t| format!("\"{t}\"")).collect();
    if v.is_empty() {
        "-".into()
    } else {
        v.join(", ")
    }
}

fn diagnostic_context(hypotheses: &[Hypothesis]) -> String {
    if hypotheses.is_empty() {
        return "no diagnostic pattern stands out; keep exploring".into();
    }
    hypotheses
        .iter()
        .map(|h| {
            let met: Vec<&str> = h.criteria_met.iter().map(|c| c.symptom.as_str()).collect();
            let ask = h
                .follow_up_questions
                .first()
                .map(|q| format!("; ask: {q}"))
                .unwrap_or_default();
            format!(
                "{} [DSM-5-TR {}, ICD-11 {}] confidence {} (met: {}; {} unknown{}){ask}",
                h.name,
                h.dsm5,
                h.icd11,
                h.confidence,
                met.join(", "),
                h.criteria_unknown.len(),
                match (h.duration.known, h.duration.met) {
                    (true, Some(true)) => ", duration met",
                    (true, Some(false)) => ", duration too short",
                    _ => ", duration unknown",
                }
            )
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

fn risk_context(risk: &RiskAssessment) -> String {
    let ev = quotes(
        risk.evidence
            .iter()
            .map(|e| e.evidence.text.as_str())
            .take(3),
    );
    format!(
        "{} — {}{}",
        risk.level.as_str(),
        risk.rationale,
        if risk.evidence.is_empty() {
            String::new()
        } else {
            format!(" ({ev})")
        }
    )
}

fn response_context(c: &Constraints) -> String {
    if c.crisis_protocol_required {
        // The model's own words; the protocol's text has its room in the budget already.
        let own =
            (c.max_words as usize).saturating_sub(reserved_words(c.rules.iter().map(|r| &r.rule)));
        return format!(
            "a few sentences that stay with the person, about {} words (at most {own}); plain, \
             warm language; no lists or headings; no diagnostic labels or clinical jargon; \
             follow the crisis protocol",
            c.target_words
        );
    }
    // Counseling is a conversation: small instruct models default to advice lists otherwise.
    format!(
        "about {} words (at most {}); plain, warm language in conversational sentences (no lists \
         or headings); no diagnostic labels or clinical jargon",
        c.target_words, c.max_words
    )
}

fn outline(steps: &[PlanStep]) -> String {
    let mut s = String::new();
    for (i, step) in steps.iter().enumerate() {
        let _ = writeln!(s, "{}. {} {}", i + 1, step.title, step.instruction);
        if !step.context.is_empty() {
            let _ = writeln!(s, "   Findings: {}", step.context);
        }
    }
    s
}

impl Plan {
    /// A short readable rendering for terminals.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "run: {}   turn: {}", self.run, self.turn);
        let _ = writeln!(
            s,
            "risk: {} — {}",
            self.risk.level.as_str(),
            self.risk.rationale
        );
        for e in &self.risk.evidence {
            let _ = writeln!(
                s,
                "  [{}] {} \"{}\"",
                e.level.as_str(),
                e.rule,
                e.evidence.text
            );
        }
        let _ = writeln!(
            s,
            "affect: {:?} ({})",
            self.affect.intensity,
            self.affect.emotions.join(", ")
        );
        let _ = writeln!(s, "hypotheses:");
        if self.hypotheses.is_empty() {
            let _ = writeln!(s, "  (none)");
        }
        for h in &self.hypotheses {
            let _ = writeln!(
                s,
                "  {:.2}  {} (DSM-5-TR {}, ICD-11 {})  met {} / missing {} / unknown {}",
                h.confidence,
                h.name,
                h.dsm5,
                h.icd11,
                h.criteria_met.len(),
                h.criteria_missing.len(),
                h.criteria_unknown.len()
            );
            for q in h.follow_up_questions.iter().take(2) {
                let _ = writeln!(s, "        ask: {q}");
            }
        }
        if !self.patterns.is_empty() {
            let _ = writeln!(s, "patterns:");
            for p in &self.patterns {
                let _ = writeln!(s, "  {} \"{}\"", p.label, p.text);
            }
        }
        let _ = writeln!(s, "modalities:");
        for m in &self.modalities {
            let _ = writeln!(
                s,
                "  {} {:.2}  {}",
                if m.chosen { "*" } else { " " },
                m.score,
                m.id
            );
        }
        let _ = writeln!(s, "reasoning steps:");
        for (i, st) in self.reasoning_steps.iter().enumerate() {
            let _ = write!(s, "  {}. [{}] {}", i + 1, st.source, st.title);
            if !st.context.is_empty() {
                let short: String = st.context.chars().take(160).collect();
                let more = if short.len() < st.context.len() {
                    "…"
                } else {
                    ""
                };
                let _ = write!(s, " — {short}{more}");
            }
            let _ = writeln!(s);
        }
        let _ = writeln!(
            s,
            "constraints: {} words target, {} max; crisis protocol: {}",
            self.constraints.target_words,
            self.constraints.max_words,
            self.constraints.crisis_protocol_required
        );
        s
    }
}
