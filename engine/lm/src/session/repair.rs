//! The repair policy: what a turn does when a draft breaks a rule, and how it is recorded.
//!
//! - A sentence naming a forbidden label is never emitted. The first draft stops there and is
//!   continued after its clean text, told more firmly, with the labels' tokens banned; in a
//!   later draft such sentences are withheld.
//! - Reasoning past its budget is stopped (drafted alone) or closed, and the reply drafted
//!   after it.
//! - A reply past its word budget stops at the last sentence end within it.
//! - Required text the draft left out (the crisis protocol) is appended, never cut.
//! - At high risk and above the draft is held back whole and kept only if it passes the
//!   checks of [`crisis_draft`](super::crisis_draft); otherwise the reply is the protocol
//!   text alone.
//! - Whatever slipped through the sentence split gets the text-level repairs of
//!   [`enforce`].

use psy_core::manifest::CrisisDrafts;
use psy_core::module::ReplyRule;
use psy_core::planner::{Constraints, Plan};
use psy_core::reply_rules::{check, enforce, missing_required, word_count, word_limit};
use psy_core::reply_rules::{Repair, Violation};

use super::crisis_draft::crisis_reply;
use super::guard::ReplyGuard;
use super::record::TurnRecord;
use super::{Delta, DraftRequest, OnDelta, Result, SessionError};
use crate::runtime::FinishReason;

/// The rule id under which a crisis draft that was not kept is recorded.
pub(crate) const CRISIS_DRAFT: &str = "crisis-draft";
/// Repair id of a reply whose last sentence the token cap cut off (dropped).
pub(crate) const UNFINISHED_SENTENCE: &str = "unfinished-sentence";

/// The repair action of a crisis turn the model did not draft (`[safety] crisis_drafts`).
pub(crate) const PROTOCOL_ONLY: &str = "protocol-only";

/// Reply drafts a turn makes at most: the first and its redrafts (after closed reasoning or
/// named labels).
pub(crate) const MAX_DRAFTS: usize = 3;

/// A crisis turn answered with the protocol text alone, without asking the model for a draft
/// (`policy` with a model of `parameters`, at `imminent` risk or `high`).
pub(crate) fn protocol_only(
    policy: CrisisDrafts,
    parameters: Option<u64>,
    imminent: bool,
    record: &mut TurnRecord,
) {
    let why = match (policy, parameters) {
        (CrisisDrafts::Auto, _) if imminent => {
            "no draft: crisis_drafts = \"auto\" and the risk is imminent (emergency help first)"
                .to_string()
        }
        (CrisisDrafts::Auto, Some(p)) => format!(
            "no draft: crisis_drafts = \"auto\" and the model has {:.2}B parameters (< {:.0}B)",
            p as f64 / 1e9,
            CrisisDrafts::MIN_PARAMETERS as f64 / 1e9
        ),
        _ => "no draft: crisis_drafts = \"protocol-only\"".to_string(),
    };
    record.repairs.push(Repair {
        rule: CRISIS_DRAFT.into(),
        action: PROTOCOL_ONLY.into(),
        detail: why,
    });
}

/// The reasoning ran past its budget and was cut there (`how`: `stopped` or `closed`).
pub(crate) fn reasoning_cut(record: &mut TurnRecord, how: &str) {
    let budget = record.reasoning.budget;
    record.repaired(
        Violation {
            rule: "reasoning-budget".into(),
            source: "psy".into(),
            detail: format!("reasoning ran past {budget} words"),
        },
        Repair {
            rule: "reasoning-budget".into(),
            action: "truncate".into(),
            detail: format!("{how} the reasoning at {budget} words"),
        },
    );
}

/// A draft's sentences named `labels`: one violation per rule that forbids them.
pub(crate) fn labels_named(c: &Constraints, labels: &[String], record: &mut TurnRecord) {
    for (rule, source) in forbid_rules(c, labels) {
        record.violations.push(Violation {
            rule,
            source,
            detail: format!("draft says {}", labels.join(", ")),
        });
    }
}

/// The first draft named `labels`: the next one continues after the clean text, with a
/// stronger instruction and the labels banned (when the drafter `bans_tokens`; otherwise the
/// instruction naming them is the whole repair, and the record says so). Only the first
/// draft is redrafted so, which is why the last system message (the turn's guidance, after
/// the cached dialogue) gets the instruction once.
pub(crate) fn redraft_without(
    c: &Constraints,
    labels: &[String],
    req: &mut DraftRequest,
    guard: &mut ReplyGuard,
    record: &mut TurnRecord,
    bans_tokens: bool,
) {
    let rule_id = forbid_rules(c, labels)
        .first()
        .map(|r| r.0.clone())
        .unwrap_or_else(|| "no-diagnostic-labels".into());
    if let Some(system) = req.messages.iter_mut().rev().find(|m| m.role == "system") {
        system.content = format!(
            "{}\n\nIMPORTANT: speak to the client in plain, everyday words. Never name a \
             diagnosis, disorder or clinical term (do not say: {}).",
            system.content,
            labels.join(", ")
        );
    }
    req.assistant_prefix = format!("{}{}", req.assistant_prefix, guard.clean_text());
    req.banned_phrases.extend(labels.iter().cloned());
    guard.discard_pending();
    if !bans_tokens {
        record.repairs.push(Repair {
            rule: rule_id,
            action: "regenerate".into(),
            detail: format!(
                "continued after the clean text with an instruction to avoid {} (the model \
                 cannot ban tokens)",
                labels.join(", ")
            ),
        });
        return;
    }
    record.repairs.push(Repair {
        rule: rule_id.clone(),
        action: "regenerate".into(),
        detail: "continued after the clean text with a stronger instruction".into(),
    });
    record.repairs.push(Repair {
        rule: rule_id,
        action: "logit-bias".into(),
        detail: format!("banned the tokens of {}", labels.join(", ")),
    });
}

/// Sentences naming `labels` were withheld from the reply.
pub(crate) fn withheld(
    c: &Constraints,
    labels: &[String],
    detail: String,
    record: &mut TurnRecord,
) {
    record.repairs.push(Repair {
        rule: forbid_rules(c, labels)
            .first()
            .map(|r| r.0.clone())
            .unwrap_or_default(),
        action: "drop-sentence".into(),
        detail,
    });
}

/// Ends the reply once drafting is over: flushes the guard, records a budget cut, appends
/// missing required text (streamed too) and applies the last-resort text repairs. A crisis
/// reply, held back whole, is the checked draft with the protocol or the protocol alone
/// ([`crisis_reply`]), streamed at once.
pub(crate) fn complete_reply(
    plan: &Plan,
    client: &str,
    guard: &mut ReplyGuard,
    record: &mut TurnRecord,
    on_delta: &mut OnDelta,
) -> Result<String> {
    let c = &plan.constraints;
    // The token cap stopped the draft mid-sentence: a counselor does not send half a sentence,
    // so the unfinished one is dropped (kept when it is all there is). A crisis reply, held
    // back whole, is cut the same way by `crisis_reply`.
    if record.finish == Some(FinishReason::Length)
        && !guard.budget_reached()
        && !guard.holds()
        && guard.has_unfinished()
        && !guard.emitted().trim().is_empty()
    {
        guard.discard_pending();
        record.repairs.push(Repair {
            rule: UNFINISHED_SENTENCE.into(),
            action: "truncate".into(),
            detail: "dropped the sentence the token cap cut off".into(),
        });
    }
    let step = guard.finish();
    if !step.emit.is_empty() && on_delta(Delta::Content(&step.emit)).is_break() {
        return Err(SessionError::Cancelled);
    }
    if !step.labels.is_empty() {
        let detail = format!("withheld a sentence naming {}", step.labels.join(", "));
        withheld(c, &step.labels, detail, record);
    }
    if guard.budget_reached() {
        let max = word_limit(c).unwrap_or(0);
        record.repaired(
            Violation {
                rule: "word-budget".into(),
                source: "psy".into(),
                detail: format!("draft ran past {max} words"),
            },
            Repair {
                rule: "word-budget".into(),
                action: "truncate".into(),
                detail: format!(
                    "stopped at a sentence end, {} words",
                    word_count(guard.emitted())
                ),
            },
        );
    }
    if guard.holds() {
        return held_crisis_reply(plan, client, guard.emitted(), record, on_delta);
    }
    let mut reply = guard.emitted().trim().to_string();
    for (id, text) in missing_required(c, &reply) {
        record.violations.push(Violation {
            rule: id.clone(),
            source: source_of(c, &id),
            detail: "draft left out the required text".into(),
        });
        let piece = if reply.is_empty() {
            text.clone()
        } else {
            format!("\n\n{text}")
        };
        if on_delta(Delta::Content(&piece)).is_break() {
            return Err(SessionError::Cancelled);
        }
        reply.push_str(&piece);
        record.repairs.push(Repair {
            rule: id,
            action: "append".into(),
            detail: "added the required text".into(),
        });
    }
    if !check(c, &reply).is_empty() {
        let (fixed, more) = enforce(c, &reply);
        tracing::warn!(?more, "reply needed text-level repairs after streaming");
        reply = fixed;
        record.repairs.extend(more);
    }
    Ok(reply)
}

/// The crisis reply for a held-back draft, recorded and streamed whole.
fn held_crisis_reply(
    plan: &Plan,
    client: &str,
    draft: &str,
    record: &mut TurnRecord,
    on_delta: &mut OnDelta,
) -> Result<String> {
    let c = &plan.constraints;
    let composed = crisis_reply(draft, client, plan);
    if let Some(fault) = &composed.fault {
        record.repaired(
            Violation {
                rule: CRISIS_DRAFT.into(),
                source: "psy".into(),
                detail: fault.to_string(),
            },
            Repair {
                rule: CRISIS_DRAFT.into(),
                action: "replace".into(),
                detail: "replied with the protocol text alone".into(),
            },
        );
    } else if composed.kept.len() < draft.trim().len() {
        record.repairs.push(Repair {
            rule: CRISIS_DRAFT.into(),
            action: "truncate".into(),
            detail: "dropped an unfinished last sentence".into(),
        });
    }
    // Without a draft nothing was left out: the protocol is the reply.
    let drafted = !record
        .repairs
        .iter()
        .any(|r| r.rule == CRISIS_DRAFT && r.action == PROTOCOL_ONLY);
    for id in composed.added {
        if drafted {
            record.violations.push(Violation {
                rule: id.clone(),
                source: source_of(c, &id),
                detail: "draft left out the required text".into(),
            });
        }
        record.repairs.push(Repair {
            rule: id,
            action: "append".into(),
            detail: "added the required text".into(),
        });
    }
    let reply = composed.text;
    if !reply.is_empty() && on_delta(Delta::Content(&reply)).is_break() {
        return Err(SessionError::Cancelled);
    }
    Ok(reply)
}

/// `(id, source)` of the `Forbid` rules that list any of `labels`.
fn forbid_rules(c: &Constraints, labels: &[String]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for r in &c.rules {
        if let ReplyRule::Forbid { id, phrases, .. } = &r.rule {
            if labels.iter().any(|l| phrases.contains(l)) && !out.iter().any(|o| &o.0 == id) {
                out.push((id.clone(), r.source.clone()));
            }
        }
    }
    out
}

/// The module that asked for rule `id`.
fn source_of(c: &Constraints, id: &str) -> String {
    c.rules
        .iter()
        .find(|r| r.rule.id() == id)
        .map(|r| r.source.clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::ops::ControlFlow;

    use super::*;
    use crate::runtime::chat_template::ChatMessage;
    use crate::session::fixtures::{
        constraints, crisis_protocol, forbid_labels, max_words, plan, CLIENT,
    };
    use psy_core::manifest::PromptingMode;
    use psy_core::module::RiskLevel;

    /// The fixture plan with `rules` as its constraints.
    fn plan_with(rules: Vec<psy_core::planner::SourcedRule>) -> Plan {
        let mut p = plan(PromptingMode::Direct);
        p.constraints = constraints(rules);
        p
    }

    /// The fixture plan at high risk: the reply is held back and checked whole.
    fn crisis_plan() -> Plan {
        let mut p = plan_with(vec![max_words(60), crisis_protocol()]);
        p.risk.level = RiskLevel::High;
        p.constraints.crisis_protocol_required = true;
        p
    }

    fn finish_crisis(draft: &str) -> (String, TurnRecord, Vec<String>) {
        let p = crisis_plan();
        let mut guard = ReplyGuard::new(&p.constraints);
        assert!(guard.push(draft, false, true).emit.is_empty());
        let mut record = TurnRecord::new(12);
        let mut streamed = Vec::new();
        let reply = complete_reply(&p, CLIENT, &mut guard, &mut record, &mut |d| {
            streamed.push(format!("{d:?}"));
            ControlFlow::Continue(())
        })
        .unwrap();
        (reply, record, streamed)
    }

    #[test]
    fn a_failing_crisis_draft_is_replaced_by_the_protocol_alone() {
        let (reply, record, streamed) = finish_crisis("Just smile and go for a walk. It helps.");
        assert_eq!(reply, "Please call or text 988 now.");
        assert_eq!(streamed, ["Content(\"Please call or text 988 now.\")"]);
        let v = &record.violations[0];
        assert_eq!(
            (v.rule.as_str(), v.detail.as_str()),
            (
                CRISIS_DRAFT,
                "draft minimises or romanticises: \"just smile\""
            )
        );
        let actions: Vec<(&str, &str)> = record
            .repairs
            .iter()
            .map(|r| (r.rule.as_str(), r.action.as_str()))
            .collect();
        assert_eq!(
            actions,
            [(CRISIS_DRAFT, "replace"), ("crisis-protocol", "append")]
        );
    }

    #[test]
    fn a_passing_crisis_draft_keeps_its_complete_sentences_and_gets_the_protocol() {
        let (reply, record, streamed) =
            finish_crisis("It sounds like sleep has been so hard. I'm here. And wh");
        assert_eq!(
            reply,
            "It sounds like sleep has been so hard. I'm here.\n\nPlease call or text 988 now."
        );
        // Streamed once, whole, after the checks.
        assert_eq!(streamed.len(), 1);
        assert_eq!(record.repairs[0].action, "truncate");
        assert_eq!(record.repairs[1].action, "append");
    }

    #[test]
    fn the_first_draft_naming_a_label_is_continued_after_its_clean_text_with_the_label_banned() {
        let c = constraints(vec![forbid_labels(), max_words(20)]);
        let mut guard = ReplyGuard::new(&c);
        guard.push("I hear you. It sounds like insomnia. Wh", false, true);
        let mut req = DraftRequest {
            messages: vec![
                ChatMessage::new("system", "Persona."),
                ChatMessage::new("system", "Be kind."),
                ChatMessage::new("user", "I can't sleep."),
            ],
            assistant_prefix: "<think>\nok\n</think>\n\n".into(),
            ..Default::default()
        };
        let mut record = TurnRecord::new(12);
        let labels = ["insomnia".to_string()];
        labels_named(&c, &labels, &mut record);
        redraft_without(&c, &labels, &mut req, &mut guard, &mut record, true);
        // The run's system prompt stays as it was, so the cached prefix still matches.
        assert_eq!(req.messages[0].content, "Persona.");
        assert_eq!(
            req.messages[1].content,
            "Be kind.\n\nIMPORTANT: speak to the client in plain, everyday words. Never name a \
             diagnosis, disorder or clinical term (do not say: insomnia)."
        );
        assert_eq!(req.messages[2].content, "I can't sleep.");
        assert_eq!(
            req.assistant_prefix,
            "<think>\nok\n</think>\n\nI hear you. "
        );
        assert_eq!(req.banned_phrases, ["insomnia"]);
        let v = &record.violations[0];
        assert_eq!(
            (v.rule.as_str(), v.source.as_str(), v.detail.as_str()),
            ("no-diagnostic-labels", "diagnostic", "draft says insomnia")
        );
        let actions: Vec<(&str, &str)> = record
            .repairs
            .iter()
            .map(|r| (r.rule.as_str(), r.action.as_str()))
            .collect();
        assert_eq!(
            actions,
            [
                ("no-diagnostic-labels", "regenerate"),
                ("no-diagnostic-labels", "logit-bias")
            ]
        );
        // The abandoned draft's half sentence is gone.
        assert_eq!(guard.finish(), Default::default());
    }

    #[test]
    fn a_reply_without_the_required_text_gets_it_appended_and_streamed() {
        let plan = plan_with(vec![forbid_labels(), max_words(20), crisis_protocol()]);
        let c = &plan.constraints;
        let mut guard = ReplyGuard::new(c);
        guard.push("I am here with you. Tell me", false, true);
        let mut record = TurnRecord::new(12);
        let mut streamed = Vec::new();
        let reply = complete_reply(&plan, CLIENT, &mut guard, &mut record, &mut |d| {
            streamed.push(format!("{d:?}"));
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(
            reply,
            "I am here with you. Tell me\n\nPlease call or text 988 now."
        );
        assert_eq!(
            streamed,
            [
                "Content(\" Tell me\")",
                "Content(\"\\n\\nPlease call or text 988 now.\")"
            ]
        );
        assert_eq!(record.violations[0].source, "safety");
        assert_eq!(
            (
                record.repairs[0].rule.as_str(),
                record.repairs[0].action.as_str()
            ),
            ("crisis-protocol", "append")
        );
    }

    #[test]
    fn a_reply_stopped_at_its_budget_records_the_cut() {
        let plan = plan_with(vec![max_words(5)]);
        let c = &plan.constraints;
        let mut guard = ReplyGuard::new(c);
        guard.push("One two three. Four five six. Seven", false, true);
        let mut record = TurnRecord::new(12);
        let reply = complete_reply(&plan, CLIENT, &mut guard, &mut record, &mut |_| {
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(reply, "One two three.");
        assert_eq!(record.violations[0].detail, "draft ran past 5 words");
        assert_eq!(
            record.repairs[0].detail,
            "stopped at a sentence end, 3 words"
        );
    }

    #[test]
    fn a_draft_the_token_cap_cut_mid_sentence_loses_only_that_sentence() {
        let plan = plan_with(vec![max_words(150)]);
        let finish = |draft: &str, why: Option<FinishReason>| {
            let mut guard = ReplyGuard::new(&plan.constraints);
            guard.push(draft, false, true);
            let mut record = TurnRecord::new(12);
            record.finish = why;
            let mut streamed = String::new();
            let reply = complete_reply(&plan, CLIENT, &mut guard, &mut record, &mut |d| {
                if let Delta::Content(t) = d {
                    streamed.push_str(t);
                }
                ControlFlow::Continue(())
            })
            .unwrap();
            let repairs: Vec<String> = record.repairs.iter().map(|r| r.rule.clone()).collect();
            (reply, streamed, repairs)
        };
        let draft = "That sounds exhausting. Avoid screens, which can interfere with your";
        // Cut by the cap: the half sentence is neither streamed nor kept.
        let (reply, streamed, repairs) = finish(draft, Some(FinishReason::Length));
        assert_eq!(reply, "That sounds exhausting.");
        assert_eq!(streamed, "");
        assert_eq!(repairs, [UNFINISHED_SENTENCE]);
        // The model stopped there itself: its words stand.
        let (reply, streamed, repairs) = finish(draft, Some(FinishReason::StopToken));
        assert_eq!(reply, draft);
        assert_eq!(streamed, " Avoid screens, which can interfere with your");
        assert!(repairs.is_empty());
        // Half a sentence is all there is: better than nothing.
        let (reply, _, repairs) = finish("Avoid screens, which", Some(FinishReason::Length));
        assert_eq!(reply, "Avoid screens, which");
        assert!(repairs.is_empty());
        // A whole last sentence at the cap: nothing to drop.
        let (reply, _, repairs) = finish("I hear you. Go on.", Some(FinishReason::Length));
        assert_eq!(reply, "I hear you. Go on.");
        assert!(repairs.is_empty());
    }

    #[test]
    fn cancelling_while_the_required_text_streams_cancels_the_turn() {
        let plan = plan_with(vec![crisis_protocol()]);
        let c = &plan.constraints;
        let mut guard = ReplyGuard::new(c);
        let mut record = TurnRecord::new(12);
        let err = complete_reply(&plan, CLIENT, &mut guard, &mut record, &mut |_| {
            ControlFlow::Break(())
        });
        assert!(matches!(err, Err(SessionError::Cancelled)));
    }
}
