//! The counselor: a planner and a drafter, and the short loop of a turn that composes the
//! stages: plan -> prompt for the mode -> stream with the guard -> repair -> record.

use std::ops::ControlFlow;
use std::time::Instant;

use psy_core::dialogue::Dialogue;
use psy_core::manifest::DecodingSection;
use psy_core::module::RiskLevel;
use psy_core::planner::{Constraints, Planner};

use crate::runtime::FinishReason;

use super::guard::ReplyGuard;
use super::modes::{strategy_for, AfterDraft, PromptingStrategy, Routed};
use super::prompt::{PromptStyle, TurnPrompt};
use super::reasoning;
use super::record::TurnRecord;
use super::repair::{self, MAX_DRAFTS};
use super::{
    Delta, DraftRequest, Drafter, OnDelta, Result, SessionError, TranscriptTurn, TurnOptions,
    TurnTimings,
};

/// The counselor: a planner and a drafter, with the manifest's decoding settings.
pub struct Counselor {
    planner: Planner,
    drafter: Box<dyn Drafter + Send>,
    decoding: DecodingSection,
    style: PromptStyle,
}

impl Counselor {
    pub fn new(planner: Planner, drafter: Box<dyn Drafter + Send>) -> Counselor {
        let decoding = planner.run().manifest.decoding.clone();
        Counselor {
            planner,
            drafter,
            decoding,
            style: PromptStyle::default(),
        }
    }

    pub fn with_prompt_style(mut self, style: PromptStyle) -> Counselor {
        self.style = style;
        self
    }

    pub fn planner(&self) -> &Planner {
        &self.planner
    }

    pub fn drafter(&self) -> &(dyn Drafter + Send) {
        self.drafter.as_ref()
    }

    /// Answers the last client message of `dialogue`. Deltas stream through `on_delta`;
    /// `Break` from it cancels the turn ([`SessionError::Cancelled`]).
    pub fn respond(
        &mut self,
        dialogue: &Dialogue,
        opts: &TurnOptions,
        on_delta: &mut dyn FnMut(Delta) -> ControlFlow<()>,
    ) -> Result<TranscriptTurn> {
        let started = Instant::now();
        let user = dialogue
            .last_client_turn()
            .ok_or(SessionError::NoClientMessage)?
            .text
            .to_string();
        let plan = self.planner.plan(dialogue);
        let mut timings = TurnTimings {
            plan_ms: ms(started),
            ..Default::default()
        };

        // The prompt for the mode; `two-phase` drafts its reasoning first.
        let turn = TurnPrompt::new(&plan, dialogue, self.style, &self.decoding, opts);
        let mut strategy = strategy_for(plan.prompt.mode);
        let mut record = TurnRecord::new(turn.reasoning_words);
        let c = &plan.constraints;
        let mut guard = ReplyGuard::new(c);
        let policy = self.planner.run().manifest.safety.crisis_drafts;
        let parameters = self.drafter.parameters();
        let mut t0 = Instant::now();
        let imminent = plan.risk.level >= RiskLevel::Imminent;
        if c.crisis_protocol_required && !policy.model_drafts(parameters, imminent) {
            // No draft to wait for: the protocol text alone, at once.
            repair::protocol_only(policy, parameters, imminent, &mut record);
        } else {
            if let Some(req) = strategy.reasoning_request(&turn) {
                let t_reasoning = Instant::now();
                reasoning::draft_alone(self.drafter.as_mut(), &req, &mut record, opts, on_delta)?;
                timings.reasoning_ms = ms(t_reasoning);
            }

            // The reply, streamed through the guard, then repaired.
            t0 = Instant::now();
            let req = strategy.reply_request(&turn, &record.reasoning);
            let stream = ReplyStream {
                drafter: self.drafter.as_mut(),
                strategy: strategy.as_mut(),
                guard: &mut guard,
                c,
                record: &mut record,
                opts,
            };
            stream.draft(req, on_delta)?;
        }
        let t_guard = Instant::now();
        let reply = repair::complete_reply(&plan, &user, &mut guard, &mut record, on_delta)?;
        timings.guard_ms = ms(t_guard);
        // Stopping at a sentence end within the word budget is a deliberate stop.
        let cut_by_cap = record.finish == Some(FinishReason::Length) && !guard.budget_reached();

        // The record: what streamed is what the transcript holds.
        timings.reply_ms = ms(t0);
        timings.total_ms = ms(started);
        timings.prompt_tokens = record.prompt_tokens;
        timings.prompt_tokens_cached = record.prompt_tokens_cached;
        timings.completion_tokens = record.completion_tokens;
        timings.decode_tokens_per_second = record.decode_tokens_per_second;
        timings.prefill_ms = record.prefill_ms;
        timings.decode_ms = record.decode_ms;
        timings.drafts = record.drafts;
        Ok(TranscriptTurn {
            turn: plan.turn,
            user,
            reply,
            reasoning: record.reasoning.text.trim().to_string(),
            risk_level: plan.risk.level,
            mode: plan.prompt.mode,
            violations: record.violations,
            repairs: record.repairs,
            timings,
            finish_reason: if cut_by_cap { "length" } else { "stop" }.into(),
            plan,
        })
    }
}

/// The reply being drafted: each draft streams through the mode and the guard.
struct ReplyStream<'s, 'c> {
    drafter: &'s mut dyn Drafter,
    strategy: &'s mut dyn PromptingStrategy,
    guard: &'s mut ReplyGuard<'c>,
    c: &'c Constraints,
    record: &'s mut TurnRecord,
    opts: &'s TurnOptions,
}

impl ReplyStream<'_, '_> {
    /// Drafts until the reply stands: again after the mode closes its reasoning, and once
    /// more, without them, after the first draft names a label.
    fn draft(self, mut req: DraftRequest, on_delta: &mut OnDelta) -> Result<()> {
        let mut raw = String::new();
        for attempt in 0..MAX_DRAFTS {
            let first = attempt == 0;
            let mut labels: Vec<String> = Vec::new();
            let (mut reasoning_full, mut cancelled) = (false, false);
            let reasoning = &mut self.record.reasoning;
            let draft = self.drafter.draft(&req, &mut |ev| {
                if self.opts.cancelled() {
                    cancelled = true;
                    return ControlFlow::Break(());
                }
                let text = match self.strategy.read(ev, reasoning, on_delta) {
                    Routed::Content(text) => text,
                    Routed::Held => return ControlFlow::Continue(()),
                    Routed::ReasoningFull => {
                        reasoning_full = true;
                        return ControlFlow::Break(());
                    }
                    Routed::Cancelled => {
                        cancelled = true;
                        return ControlFlow::Break(());
                    }
                };
                raw.push_str(text);
                // The first draft stops at a label: it is continued without it.
                let step = self.guard.push(text, false, first);
                if !step.emit.is_empty() && on_delta(Delta::Content(&step.emit)).is_break() {
                    cancelled = true;
                    return ControlFlow::Break(());
                }
                if !step.labels.is_empty() {
                    labels.extend(step.labels);
                    if first {
                        return ControlFlow::Break(());
                    }
                }
                if self.guard.budget_reached() {
                    return ControlFlow::Break(());
                }
                ControlFlow::Continue(())
            })?;
            if cancelled {
                return Err(SessionError::Cancelled);
            }
            self.record.count(&draft);
            self.record.finish = draft.finish;
            let next =
                self.strategy
                    .after_draft(reasoning_full, self.record, &mut req, on_delta)?;
            if next == AfterDraft::DraftReply && attempt + 1 < MAX_DRAFTS {
                continue;
            }
            if labels.is_empty() {
                break;
            }
            labels.dedup();
            repair::labels_named(self.c, &labels, self.record);
            if first {
                let bans = self.drafter.bans_tokens();
                repair::redraft_without(self.c, &labels, &mut req, self.guard, self.record, bans);
                continue;
            }
            let detail = format!("withheld sentence(s) naming {}", labels.join(", "));
            repair::withheld(self.c, &labels, detail, self.record);
            break;
        }
        tracing::debug!(draft = %raw, "raw reply draft");
        Ok(())
    }
}

fn ms(t: Instant) -> f64 {
    (t.elapsed().as_secs_f64() * 1e5).round() / 100.0
}
