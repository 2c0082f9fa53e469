//! Decoding one cell: every eval item answered by the cell's counselor, resumably, with the
//! automatic measures of each reply.

use std::collections::{BTreeMap, VecDeque};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use anyhow::{Context, Result};
use psy_core::eval_spec::EvalProtocol;
use psy_core::module::RiskLevel;
use psy_lm::encoder::Encoder;
use psy_lm::session::{Counselor, TurnOptions};
use serde::{Deserialize, Serialize};

use super::cell_store::CellStore;
use super::items::{dialogue_for, judge_history, EvalData, EvalItem};
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

/// The counselor's answer to `item`, with `mine` the model's own earlier replies in its
/// dialogue (the `session` protocol's history).
fn answer(
    counselor: &mut Counselor,
    item: &EvalItem,
    data: &EvalData,
    mine: &[String],
    encoder: Option<&Encoder>,
) -> Result<ReplyRecord> {
    let dialogue = dialogue_for(item, data.protocol, mine);
    let turn = counselor
        .respond(&dialogue, &TurnOptions::default(), &mut |_| {
            ControlFlow::Continue(())
        })
        .with_context(|| format!("item {}", item.key))?;
    Ok(ReplyRecord {
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
    })
}

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
                let record = answer(counselor, item, data, &mine, encoder)?;
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

/// [`decode`] with one thread per counselor, their drafts decoding together on the engine
/// they share. Under the `session` protocol a dialogue's turns stay in order on one thread
/// (each needs the model's previous replies); otherwise every item is independent. Records
/// are appended as they finish and returned in item order; the first failure stops the rest.
pub fn decode_batched(
    store: &CellStore,
    counselors: Vec<Counselor>,
    encoder: Option<&Encoder>,
    data: &EvalData,
    tick: &(dyn Fn() + Sync),
) -> Result<Vec<ReplyRecord>> {
    let done: BTreeMap<String, ReplyRecord> = store
        .read::<ReplyRecord>(REPLIES)?
        .into_iter()
        .map(|r| (r.key.clone(), r))
        .collect();
    // Units of work: item indices decoded in order by one thread.
    let mut units: Vec<Vec<usize>> = Vec::new();
    let mut unit_of: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, item) in data.items.iter().enumerate() {
        match data.protocol {
            EvalProtocol::Session => {
                let u = *unit_of.entry(&item.dialogue_id).or_insert_with(|| {
                    units.push(Vec::new());
                    units.len() - 1
                });
                units[u].push(i);
            }
            _ => units.push(vec![i]),
        }
    }
    let queue = Mutex::new(units.into_iter().collect::<VecDeque<_>>());
    let out = Mutex::new(store.appender(REPLIES)?);
    let results: Mutex<BTreeMap<usize, ReplyRecord>> = Mutex::new(BTreeMap::new());
    let failed = AtomicBool::new(false);
    let work = |mut counselor: Counselor| -> Result<()> {
        loop {
            if failed.load(Ordering::Relaxed) {
                return Ok(());
            }
            let Some(unit) = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front() else {
                return Ok(());
            };
            let mut mine: Vec<String> = Vec::new();
            for i in unit {
                let item = &data.items[i];
                let record = match done.get(&item.key) {
                    Some(r) => r.clone(),
                    None => {
                        let r = answer(&mut counselor, item, data, &mine, encoder)
                            .inspect_err(|_| failed.store(true, Ordering::Relaxed))?;
                        out.lock().unwrap_or_else(|p| p.into_inner()).push(&r)?;
                        r
                    }
                };
                mine.push(record.reply.clone());
                results
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(i, record);
                tick();
            }
        }
    };
    std::thread::scope(|s| {
        let threads: Vec<_> = counselors
            .into_iter()
            .map(|c| s.spawn(|| work(c)))
            .collect();
        threads
            .into_iter()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("an eval decoding thread panicked")))
            })
            .collect::<Result<Vec<()>>>()
    })?;
    Ok(results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_values()
        .collect())
}
