//! A fixed plan for unit tests of the stages: written out by hand, so that each stage can be
//! checked on exact text without a planner or a model.

use psy_core::affect::{AffectReading, Intensity};
use psy_core::dialogue::Dialogue;
use psy_core::manifest::{DecodingSection, PromptingMode};
use psy_core::module::{ReplyRule, RiskAssessment, Stage};
use psy_core::planner::{Constraints, Plan, PlanStep, Prompts, SourcedRule};

use super::prompt::{PromptStyle, TurnPrompt};
use super::TurnOptions;

pub const CLIENT: &str = "I can't sleep and I'm exhausted at work.";

/// Persona, a general guideline (left out of compact prompts), the case formulation and the
/// reply constraints.
pub const SYSTEM: &str = "You are a calm counselor.\n\nGuidelines: listen first.\n\n\
Case formulation: poor sleep, work strain.\n\nReply: at most 20 words.";

pub fn forbid_labels() -> SourcedRule {
    SourcedRule {
        source: "diagnostic".into(),
        rule: ReplyRule::Forbid {
            id: "no-diagnostic-labels".into(),
            reason: "labels stay private".into(),
            phrases: vec!["insomnia".into(), "panic disorder".into()],
        },
    }
}

pub fn max_words(max: u32) -> SourcedRule {
    SourcedRule {
        source: "psy".into(),
        rule: ReplyRule::MaxWords {
            id: "reply-length".into(),
            reason: "short replies".into(),
            max,
        },
    }
}

pub fn crisis_protocol() -> SourcedRule {
    SourcedRule {
        source: "safety".into(),
        rule: ReplyRule::Require {
            id: "crisis-protocol".into(),
            reason: "risk is high".into(),
            any_of: vec![vec!["988".into()]],
            repair: "Please call or text 988 now.".into(),
        },
    }
}

/// Constraints with `rules`, a reasoning budget of 12 words.
pub fn constraints(rules: Vec<SourcedRule>) -> Constraints {
    Constraints {
        intensity: Intensity::Moderate,
        target_words: 15,
        max_words: 20,
        reasoning_max_words: 12,
        no_labels_to_client: true,
        crisis_protocol_required: false,
        rules,
    }
}

/// The plan for [`CLIENT`] in `mode`: two reasoning steps, no labels, at most 20 words.
pub fn plan(mode: PromptingMode) -> Plan {
    let step = |id: &str, title: &str, context: &str| PlanStep {
        id: id.into(),
        stage: Stage::Emotion,
        title: title.into(),
        instruction: format!("Name the {id}."),
        source: "psy".into(),
        context: context.into(),
    };
    Plan {
        run: "fixture".into(),
        turn: 0,
        active_modules: Vec::new(),
        affect: AffectReading {
            intensity: Intensity::Moderate,
            score: 0.5,
            emotions: vec!["exhaustion".into()],
            evidence: Vec::new(),
        },
        risk: RiskAssessment::default(),
        hypotheses: Vec::new(),
        patterns: Vec::new(),
        modalities: Vec::new(),
        reasoning_steps: vec![
            step("feeling", "Feeling", "exhausted, worried about work"),
            step("risk", "Risk", "no sign of harm"),
        ],
        prompt: Prompts {
            mode,
            system: SYSTEM.into(),
            reasoning_outline: "1. Feeling: exhausted.\n2. Risk: none.".into(),
        },
        constraints: constraints(vec![forbid_labels(), max_words(20)]),
        findings: Vec::new(),
    }
}

/// The compact prompt of [`plan`] for [`CLIENT`], capped at `cap` tokens.
pub fn turn(mode: PromptingMode, cap: usize) -> TurnPrompt {
    let opts = TurnOptions {
        max_new_tokens: Some(cap),
        stop: vec!["STOP".into()],
        ..Default::default()
    };
    TurnPrompt::new(
        &plan(mode),
        &Dialogue::from_message(CLIENT),
        PromptStyle::Compact,
        &DecodingSection::default(),
        &opts,
    )
}

/// The run's part of [`plan`]'s system prompt: the persona.
pub const RUN_SYSTEM: &str = "You are a calm counselor.";

/// The turn's part of [`plan`]'s compact system prompt.
pub const COMPACT_GUIDANCE: &str =
    "Case formulation: poor sleep, work strain.\n\nReply: at most 20 words.";

/// The compact outline of [`plan`].
pub const COMPACT_OUTLINE: &str =
    "1. Feeling (exhausted, worried about work)\n2. Risk (no sign of harm)";
