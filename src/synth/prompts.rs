//! Stage prompts: the manifest's templates filled from the post, the earlier stages and the
//! planner (system prompt with the active modules' diagnostic and therapeutic guidelines and
//! the crisis protocol, reasoning outline, word budgets). An ablation changes modules, and the
//! prompts follow; the templates stay the same.

use psy_core::planner::Plan;
use psy_core::synth_spec::{render_template, StageId, FILTER_CRITERIA, SCENES};
use serde_json::{json, Value};

/// A round of a synthesised conversation, as stage 3 wrote it.
#[derive(Debug, Clone)]
pub struct Round {
    pub patient: String,
    pub think: String,
    pub reply: String,
}

/// Stage 1: plan the rounds of a post.
pub fn plan_prompt(template: &str, post: &str, min: usize, max: usize, plan: &Plan) -> String {
    render_template(template, &|name| match name {
        "post" => post.trim().to_string(),
        "min_rounds" => min.to_string(),
        "max_rounds" => max.to_string(),
        "scenes" => SCENES.join(", "),
        "risk" => plan.risk.level.as_str().to_string(),
        "hypotheses" => hypotheses_text(plan),
        _ => String::new(),
    })
}

/// Stage 2: the client's turns from the focuses.
pub fn client_prompt(template: &str, post: &str, focuses: &[String], plan: &Plan) -> String {
    render_template(template, &|name| match name {
        "post" => post.trim().to_string(),
        "rounds" => focuses.len().to_string(),
        "focuses" => numbered(focuses),
        "risk" => plan.risk.level.as_str().to_string(),
        _ => String::new(),
    })
}

/// Stage 3: the counselor's system prompt for one round, from that round's plan.
pub fn counselor_prompt(template: &str, plan: &Plan, focus: &str) -> String {
    render_template(template, &|name| match name {
        "system" => plan.prompt.system.trim().to_string(),
        "reasoning_outline" => plan.prompt.reasoning_outline.trim().to_string(),
        "modality" => chosen_modalities(plan).join(", "),
        "target_words" => plan.constraints.target_words.to_string(),
        "reasoning_words" => plan.constraints.reasoning_max_words.to_string(),
        "focus" => focus.trim().to_string(),
        _ => String::new(),
    })
}

/// Stage 4: the judge's prompt over the whole conversation.
pub fn filter_prompt(template: &str, rounds: &[Round], modalities: &[String]) -> String {
    render_template(template, &|name| match name {
        "dialogue" => dialogue_text(rounds),
        "modalities" => {
            if modalities.is_empty() {
                "any fitting one".to_string()
            } else {
                modalities.join(", ")
            }
        }
        "criteria" => FILTER_CRITERIA
            .iter()
            .map(|(n, q)| format!("- {n}: {q}"))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    })
}

/// The names of the modalities the plan chose.
pub fn chosen_modalities(plan: &Plan) -> Vec<String> {
    plan.modalities
        .iter()
        .filter(|m| m.chosen)
        .map(|m| m.id.clone())
        .collect()
}

/// The per-turn `plan` metadata of a record: modalities used, hypotheses considered, risk.
pub fn plan_metadata(plan: &Plan) -> Value {
    json!({
        "modalities": chosen_modalities(plan),
        "hypotheses": plan.hypotheses.iter().map(|h| json!({
            "id": h.id,
            "name": h.name,
            "confidence": h.confidence,
        })).collect::<Vec<_>>(),
        "risk": plan.risk.level.as_str(),
        "intensity": plan.constraints.intensity,
        "crisis_protocol_required": plan.constraints.crisis_protocol_required,
    })
}

fn hypotheses_text(plan: &Plan) -> String {
    if plan.hypotheses.is_empty() {
        return "none".into();
    }
    plan.hypotheses
        .iter()
        .map(|h| h.name.clone())
        .collect::<Vec<_>>()
        .join("; ")
}

fn numbered(items: &[String]) -> String {
    items
        .iter()
        .enumerate()
        .map(|(i, f)| format!("{}. {}", i + 1, f.trim()))
        .collect::<Vec<_>>()
        .join("\n")
}

fn dialogue_text(rounds: &[Round]) -> String {
    rounds
        .iter()
        .enumerate()
        .map(|(i, r)| {
            format!(
                "Round {}\nCLIENT: {}\nTHINK: {}\nREPLY: {}",
                i + 1,
                r.patient.trim(),
                r.think.trim(),
                r.reply.trim()
            )
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// The stage a template belongs to, for callers that print prompts.
pub fn stage_title(stage: StageId) -> &'static str {
    match stage {
        StageId::Plan => "stage 1 (plan the rounds)",
        StageId::Client => "stage 2 (client turns)",
        StageId::Counselor => "stage 3 (counselor reasoning and reply)",
        StageId::Filter => "stage 4 (filter verdict)",
    }
}
