//! The counseling server's responder: every request is a counseling turn of a [`Counselor`].

use std::ops::ControlFlow;

use psy_lm::session::{CancelCheck, Counselor, Delta, SessionError, TranscriptTurn};
use serde_json::{json, Value};

use super::error::ApiError;
use super::mode::ServeMode;
use super::request::ChatRequest;
use super::responder::{Finished, Responder};

/// The plan summary every counseling response carries.
fn psy_extension(t: &TranscriptTurn) -> Value {
    json!({
        "risk_level": t.risk_level,
        "hypotheses": t.plan.hypotheses.iter().map(|h| &h.id).collect::<Vec<_>>(),
        "modalities": t.plan.modalities.iter().filter(|m| m.chosen).map(|m| &m.id).collect::<Vec<_>>(),
        "mode": t.mode,
        "crisis_protocol_required": t.plan.constraints.crisis_protocol_required,
        "violations": t.violations,
        "repairs": t.repairs,
        "timings": t.timings,
    })
}

impl Responder for Counselor {
    fn mode(&self) -> ServeMode {
        ServeMode::Counsel
    }

    fn model_id(&self) -> String {
        self.drafter().model_id()
    }

    fn context_length(&self) -> usize {
        self.drafter().context_length().unwrap_or(8192)
    }

    fn respond(
        &mut self,
        req: ChatRequest,
        cancel: CancelCheck,
        on_delta: &mut dyn FnMut(Delta) -> ControlFlow<()>,
    ) -> Result<Option<Finished>, ApiError> {
        let mut opts = req.opts;
        opts.cancel = Some(cancel);
        match Counselor::respond(self, &req.dialogue, &opts, on_delta) {
            Ok(t) => Ok(Some(Finished {
                psy: psy_extension(&t),
                content: t.reply,
                reasoning: t.reasoning,
                finish_reason: t.finish_reason,
                prompt_tokens: t.timings.prompt_tokens,
                completion_tokens: t.timings.completion_tokens,
            })),
            Err(SessionError::Cancelled) => Ok(None),
            Err(e) => {
                tracing::warn!(error = %e, "request failed");
                Err(ApiError::from(e))
            }
        }
    }
}
