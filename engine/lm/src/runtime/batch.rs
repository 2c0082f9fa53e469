//! Continuous batching: sequences decode together, one forward pass per step for all of them
//! ([`CausalLm::forward_feeds`](super::model::CausalLm::forward_feeds)), each with its own KV
//! cache, sampler, grammar and stop conditions. A sequence leaves the batch when it finishes
//! and a waiting one joins before the next step, so a short request never waits for a long one
//! to end. A joining sequence's prompt is fed in the steps themselves, up to
//! [`PREFILL_ROWS_PER_STEP`] prompt tokens per step beside one token of every decoding sequence:
//! the running batch does not stop while a newcomer prefills, and joiners prefill together.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::batch_forward::{Feed, PREFILL_ROWS_PER_STEP};
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
    /// The prompt, and how many of its tokens the cache holds (all once it decodes).
    prompt: Vec<u32>,
    fed: usize,
    /// The token to feed next while decoding.
    next: u32,
    admitted: Instant,
}

impl Active {
    fn prefilling(&self) -> bool {
        self.fed < self.prompt.len()
    }
}

/// The last prompt the batch prefilled, with its keys and values: a joining prompt that starts
/// with the same tokens (the system prompt of every request, the history of a session's next
/// turn) copies them instead of computing them again.
struct Donor {
    ids: Vec<u32>,
    cache: KvCache,
}

/// The sequences decoding together on one model. Ids are the caller's (they come back in
/// [`StreamEvent::prompt_index`] and with each finished output).
pub struct Batcher<'m> {
    model: &'m LoadedModel,
    codec: Option<&'m dyn TextCodec>,
    active: Vec<Active>,
    /// Kept only where copied keys and values are the bits a cold prefill computes
    /// ([`super::model::CausalLm::rows_are_independent`]), so a reply does not depend on which
    /// request came before it.
    donor: Option<Donor>,
    reuse_prefixes: bool,
}

impl<'m> Batcher<'m> {
    pub fn new(model: &'m LoadedModel, codec: Option<&'m dyn TextCodec>) -> Self {
        Batcher {
            model,
            codec,
            active: Vec::new(),
            donor: None,
            reuse_prefixes: model.model.rows_are_independent(),
        }
    }

    /// Sequences decoding now.
    pub fn len(&self) -> usize {
        self.active.len()
    }

    pub fn is_empty(&self) -> bool {
        self.active.is_empty()
    }

    /// Checks `request` and adds it to the batch. On the flex backend its prompt is fed in the
    /// coming [`Self::step`]s (`Ok(None)`); elsewhere it is prefilled here, alone, and its first
    /// token sampled, with `Some(output)` when it is already finished (a stop token first, or
    /// `max_new_tokens` of 0 or 1).
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
        let admitted = Instant::now();
        if self.model.model.feeds_prompts() {
            let fed = self.reuse_prefix(&prompt, &mut cache);
            let seq = Sequence::new(id, &prompt, fed, &config, &rules);
            self.active.push(Active {
                id,
                config,
                rules,
                seq,
                cache,
                prompt,
                fed,
                next: 0,
                admitted,
            });
            return Ok(None);
        }
        let mut seq = Sequence::new(id, &prompt, 0, &config, &rules);
        let mut logits = self.model.model.next_logits(&prompt, &mut cache);
        seq.prefilled(admitted.elapsed().as_secs_f64());
        match seq.step(&mut logits, &config, &rules, self.codec, on_event)? {
            Step::Done => Ok(Some(seq.finish(&config, &rules, self.codec)?)),
            Step::Feed(next) => {
                let fed = prompt.len();
                self.active.push(Active {
                    id,
                    config,
                    rules,
                    seq,
                    cache,
                    prompt,
                    fed,
                    next,
                    admitted,
                });
                Ok(None)
            }
        }
    }

    /// Copies into `cache` the keys and values of the longest prefix `prompt` shares with the
    /// donor, leaving at least its last token to feed (its logits are needed); returns how
    /// many positions were copied.
    fn reuse_prefix(&self, prompt: &[u32], cache: &mut KvCache) -> usize {
        let Some(donor) = self.donor.as_ref().filter(|_| self.reuse_prefixes) else {
            return 0;
        };
        let common = shared_prefix(&donor.ids, prompt).min(prompt.len() - 1);
        if common == 0 || cache.copy_prefix(&donor.cache, common).is_none() {
            return 0;
        }
        common
    }

    /// One step of every active sequence, in one forward pass: the next token of each decoding
    /// sequence and the next piece of the prefilling ones' prompts (see
    /// [`PREFILL_ROWS_PER_STEP`]). Returns the sequences that finished, by id; an error (e.g.
    /// a grammar with no way on) ends only its own.
    pub fn step(
        &mut self,
        on_event: &mut dyn FnMut(&StreamEvent),
    ) -> Vec<(usize, Result<GenerationOutput>)> {
        let mut finished = Vec::new();
        // A prefilling sequence whose caller has gone stops before more of its prompt is fed.
        let (gone, active): (Vec<Active>, Vec<Active>) = self.active.drain(..).partition(|a| {
            a.prefilling()
                && a.config
                    .cancel
                    .as_ref()
                    .is_some_and(|c| c.load(Ordering::Relaxed))
        });
        self.active = active;
        for mut a in gone {
            a.seq.cancel();
            finished.push((a.id, a.seq.finish(&a.config, &a.rules, self.codec)));
        }
        if self.active.is_empty() {
            return finished;
        }
        // Tokens each sequence feeds in this step (0: its prompt waits for the next one).
        let mut budget = PREFILL_ROWS_PER_STEP;
        let pieces: Vec<usize> = self
            .active
            .iter()
            .map(|a| {
                if a.prefilling() {
                    let n = (a.prompt.len() - a.fed).min(budget);
                    budget -= n;
                    n
                } else {
                    1
                }
            })
            .collect();
        let logits = {
            let mut feeds: Vec<Feed> = self
                .active
                .iter_mut()
                .zip(&pieces)
                .filter(|(_, n)| **n > 0)
                .map(|(a, &n)| {
                    let Active {
                        prompt,
                        fed,
                        next,
                        cache,
                        ..
                    } = a;
                    let (ids, logits) = if *fed < prompt.len() {
                        (&prompt[*fed..*fed + n], *fed + n == prompt.len())
                    } else {
                        (std::slice::from_ref(&*next), true)
                    };
                    Feed { ids, cache, logits }
                })
                .collect();
            self.model.model.forward_feeds(&mut feeds)
        };
        let rows = logits.len();
        let mut logits = logits.into_iter();
        let mut still = Vec::with_capacity(self.active.len());
        for (mut a, n) in self.active.drain(..).zip(pieces) {
            if n == 0 {
                still.push(a);
                continue;
            }
            let prefilling = a.prefilling();
            if prefilling {
                a.fed += n;
            }
            let Some(mut lg) = logits.next().expect("one result per feed") else {
                // A piece of a prompt that goes on in the next step.
                still.push(a);
                continue;
            };
            if prefilling {
                a.seq.prefilled(a.admitted.elapsed().as_secs_f64());
                if self.reuse_prefixes {
                    keep_donor(&mut self.donor, self.model, &a.prompt, &a.cache);
                }
            } else {
                a.seq.timings.decode_tokens += 1;
            }
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

/// Keeps `prompt`, just prefilled into `cache`, as the donor unless the donor already holds
/// all of it.
fn keep_donor(donor: &mut Option<Donor>, model: &LoadedModel, prompt: &[u32], cache: &KvCache) {
    if donor
        .as_ref()
        .is_some_and(|d| shared_prefix(&d.ids, prompt) == prompt.len())
    {
        return;
    }
    let mut kept = KvCache::new(&model.config, 1, prompt.len(), &model.device);
    *donor = kept.copy_prefix(cache, prompt.len()).map(|_| Donor {
        ids: prompt.to_vec(),
        cache: kept,
    });
}

/// How many leading ids `a` and `b` share.
fn shared_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
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
