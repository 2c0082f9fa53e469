//! Decoding one cell: every eval item answered by the cell's counselor, resumably, with the
//! automatic measures of each reply.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use anyhow::{Context, Result};
use psy_core::eval_spec::EvalProtocol;
use psy_core::module::RiskLevel;
use psy_lm::encoder::Encoder;
use psy_lm::session::{Counselor, TurnOptions};
use serde::{Deserialize, Serialize};

use super::cell_store::CellStore;
use super::items::{dialogue_for, judge_history, EvalData};
use super::measures;

/// One decoded item, as `replies.jsonl` stores it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReplyRecord {
    pub key: String,
    pub dialogue_id: String,
    pub turn_index: usize,
    pub reply: String,
    pub reasoning: String,
    pub risk: RiskLevel,
    /// Modalities the plan chose (their fidelity items are judged when asked for).
    pub modalities: Vec<String>,
    /// The dialogue the reply answers, as the judge sees it.
    pub history: Vec<(String, String)>,
    pub measures: BTreeMap<String, f64>,
}

pub const REPLIES: &str = "replies.jsonl";

/// Decodes the items `store` does not hold yet; `tick` is called once per item (resumed ones
/// included). Returns every record in item order.
pub fn decode(
    store: &CellStore,
    counselor: &mut Counselor,
    encoder: Option<&Encoder>,
    data: &EvalData,
    tick: &mut dyn FnMut(),
) -> Result<Vec<ReplyRecord>> {
    let mut done: BTreeMap<String, ReplyRecord> = store
        .read::<ReplyRecord>(REPLIES)?
        .into_iter()
        .map(|r| (r.key.clone(), r))
        .collect();
    let mut out = store.appender(REPLIES)?;
    // The model's own replies by dialogue, for the `session` protocol's history.
    let mut own: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut records = Vec::with_capacity(data.items.len());
    for item in &data.items {
        let record = match done.remove(&item.key) {
            Some(r) => r,
            None => {
                let mine = own.get(&item.dialogue_id).cloned().unwrap_or_default();
                let dialogue = dialogue_for(item, data.protocol, &mine);
                let turn = counselor
                    .respond(&dialogue, &TurnOptions::default(), &mut |_| {
                        ControlFlow::Continue(())
                    })
                    .with_context(|| format!("item {}", item.key))?;
                let record = ReplyRecord {
                    key: item.key.clone(),
                    dialogue_id: item.dialogue_id.clone(),
                    turn_index: item.turn_index,
                    measures: measures::of_reply(
                        &turn.plan,
                        &turn.reply,
                        &turn.reasoning,
                        item.reference.as_deref(),
                        encoder,
                    ),
                    reply: turn.reply,
                    reasoning: turn.reasoning,
                    risk: turn.risk_level,
                    modalities: turn
                        .plan
                        .modalities
                        .iter()
                        .filter(|m| m.chosen)
                        .map(|m| m.id.clone())
                        .collect(),
                    history: judge_history(&dialogue),
                };
                out.push(&record)?;
                record
            }
        };
        if data.protocol == EvalProtocol::Session {
            own.entry(item.dialogue_id.clone())
                .or_default()
                .push(record.reply.clone());
        }
        records.push(record);
        tick();
    }
    Ok(records)
}
