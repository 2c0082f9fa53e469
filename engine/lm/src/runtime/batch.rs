//! Continuous batching: sequences decode together, one forward pass per step for all of them
//! ([`CausalLm::next_logits_batch`](super::model::CausalLm::next_logits_batch)), each with its own
//! KV cache, sampler, grammar and stop conditions. A sequence leaves the batch when it finishes
//! and a waiting one joins before the next step (prefilled on its own), so a short request
//! never waits for a long one to end.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use super::error::{Result, RuntimeError};
use super::generate::{GenerationConfig, GenerationOutput, StreamEvent, TextCodec};
use super::load::LoadedModel;
use super::model::KvCache;
use super::sequence::{Rules, Sequence, Step};

/// The text of a panic's payload (`panic!` with a literal or a formatted message).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".into()
    }
}

/// One request of a batch: its prompt ids and how to generate.
#[derive(Debug, Clone)]
pub struct BatchRequest {
    pub prompt: Vec<u32>,
    pub config: GenerationConfig,
}

struct Active {
    id: usize,
    config: GenerationConfig,
    rules: Rules,
    seq: Sequence,
    cache: KvCache,
    next: u32,
}

/// The sequences decoding together on one model. Ids are the caller's (they come back in
/// [`StreamEvent::prompt_index`] and with each finished output).
pub struct Batcher<'m> {
    model: &'m LoadedModel,
    codec: Option<&'m dyn TextCodec>,
    active: Vec<Active>,
}

impl<'m> Batcher<'m> {
    pub fn new(model: &'m LoadedModel, codec: Option<&'m dyn TextCodec>) -> Self {
        Batcher {
            model,
            codec,
            active: Vec::new(),
        }
    }

    /// Sequences decoding now.
    pub fn len(&self) -> usize {
        self.active.len()
    }

    pub fn is_empty(&self) -> bool {
        self.active.is_empty()
    }

    /// Checks and prefills `request` and samples its first token. `Some(output)` when it is
    /// already finished (a stop token first, or `max_new_tokens` of 0 or 1); otherwise it
    /// decodes with the others from the next [`Self::step`].
    pub fn admit(
        &mut self,
        id: usize,
        request: BatchRequest,
        on_event: &mut dyn FnMut(&StreamEvent),
    ) -> Result<Option<GenerationOutput>> {
        let BatchRequest { prompt, config } = request;
        let rules = Rules::new(self.model, self.codec, &[&prompt], &config)?;
        let capacity = prompt.len() + config.max_new_tokens;
        let mut cache = KvCache::new(&self.model.config, 1, capacity, &self.model.device);
        let mut seq = Sequence::new(id, &prompt, 0, &config, &rules);
        let t0 = Instant::now();
        let mut logits = self.model.model.next_logits(&prompt, &mut cache);
        seq.prefilled(t0.elapsed().as_secs_f64());
        match seq.step(&mut logits, &config, &rules, self.codec, on_event)? {
            Step::Done => Ok(Some(seq.finish(&config, &rules, self.codec)?)),
            Step::Feed(next) => {
                self.active.push(Active {
                    id,
                    config,
                    rules,
                    seq,
                    cache,
                    next,
                });
                Ok(None)
            }
        }
    }

    /// One decode step of every active sequence, in one forward pass. Returns the sequences
    /// that finished, by id; an error (e.g. a grammar with no way on) ends only its own.
    pub fn step(
        &mut self,
        on_event: &mut dyn FnMut(&StreamEvent),
    ) -> Vec<(usize, Result<GenerationOutput>)> {
        if self.active.is_empty() {
            return Vec::new();
        }
        let ids: Vec<u32> = self.active.iter().map(|a| a.next).collect();
        let logits = {
            let mut caches: Vec<&mut KvCache> =
                self.active.iter_mut().map(|a| &mut a.cache).collect();
            self.model.model.next_logits_batch(&ids, &mut caches)
        };
        let mut finished = Vec::new();
        let rows = self.active.len();
        let mut still = Vec::with_capacity(rows);
        for (mut a, mut lg) in self.active.drain(..).zip(logits) {
            a.seq.timings.decode_tokens += 1;
            a.seq.timings.batch_peak = a.seq.timings.batch_peak.max(rows);
            // A panic in one sequence's sampling or checks ends that sequence alone.
            let stepped = catch_unwind(AssertUnwindSafe(|| {
                a.seq
                    .step(&mut lg, &a.config, &a.rules, self.codec, on_event)
            }))
            .unwrap_or_else(|p| Err(RuntimeError::Panicked(panic_message(p.as_ref()))));
            match stepped {
                Ok(Step::Feed(next)) => {
                    a.next = next;
                    still.push(a);
                }
                Ok(Step::Done) => {
                    let out = a.seq.finish(&a.config, &a.rules, self.codec);
                    finished.push((a.id, out));
                }
                Err(e) => finished.push((a.id, Err(e))),
            }
        }
        self.active = still;
        finished
    }

    /// Drops every active sequence (after a failed forward pass) and returns their ids.
    pub fn clear(&mut self) -> Vec<usize> {
        self.active.drain(..).map(|a| a.id).collect()
    }
}

/// Generates every request, up to `max_batch` decoding together; results in request order.
/// Each request's output equals what [`super::generate`] gives it alone, up to the rounding of
/// the batched matrix products (so greedy outputs may part where two tokens nearly tie).
pub fn generate_batched(
    model: &LoadedModel,
    codec: Option<&dyn TextCodec>,
    requests: Vec<BatchRequest>,
    max_batch: usize,
    on_event: &mut dyn FnMut(&StreamEvent),
) -> Vec<Result<GenerationOutput>> {
    let n = requests.len();
    let mut results: Vec<Option<Result<GenerationOutput>>> = (0..n).map(|_| None).collect();
    let mut waiting = requests.into_iter().enumerate();
    let mut batcher = Batcher::new(model, codec);
    loop {
        while batcher.len() < max_batch.max(1) {
            let Some((id, request)) = waiting.next() else {
                break;
            };
            match batcher.admit(id, request, on_event) {
                Ok(None) => {}
                Ok(Some(out)) => results[id] = Some(Ok(out)),
                Err(e) => results[id] = Some(Err(e)),
            }
        }
        if batcher.is_empty() {
            break;
        }
        for (id, out) in batcher.step(on_event) {
            results[id] = Some(out);
        }
    }
    results
        .into_iter()
        .map(|r| r.expect("every request finishes"))
        .collect()
}
