//! Generating from a loaded model: prefill, then per-token decoding with a pre-allocated KV
//! cache, sampling, stop conditions, streaming, and the `<think>` split.

use std::time::Instant;

pub use super::generation::{
    split_reasoning, FinishReason, GenerationConfig, GenerationOutput, StreamEvent, TextCodec,
    Timings,
};

use super::error::Result;
use super::load::LoadedModel;
use super::model::KvCache;
use super::sequence::{Rules, Sequence, Step};

/// A KV cache kept between generations with the ids it holds, so that a prompt sharing a
/// prefix with the previous one (the two phases of a turn share their system prompt; a
/// regenerated draft shares everything before its assistant prefix) prefills only the rest.
#[derive(Debug, Default)]
pub struct PromptCache {
    cache: Option<KvCache>,
    /// Token ids whose keys and values fill the cache's first positions.
    ids: Vec<u32>,
}

impl PromptCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Token ids whose keys and values the cache holds.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// Keys and values of the first `n` cached positions (see [`KvCache::export`]); `None`
    /// when the cache holds fewer.
    pub fn export_prefix(&self, n: usize) -> Option<Vec<[Vec<f32>; 2]>> {
        let cache = self.cache.as_ref()?;
        (n <= cache.len() && n <= self.ids.len()).then(|| cache.export(n))
    }

    /// Starts the cache from `ids` and their keys and values (e.g. read from disk); `false`
    /// (and an empty cache) when their shapes do not fit the model.
    pub fn seed(&mut self, model: &LoadedModel, ids: &[u32], layers: &[[Vec<f32>; 2]]) -> bool {
        let room = (ids.len() * 2).clamp(ids.len(), model.model.max_positions());
        let mut cache = KvCache::new(&model.config, 1, room, &model.device);
        if cache.import(layers, ids.len()).is_none() {
            *self = Self::default();
            return false;
        }
        self.cache = Some(cache);
        self.ids = ids.to_vec();
        true
    }
}

/// Generates a continuation for each prompt of the batch.
///
/// Prompts run one after another through the same weights and one KV cache sized for the
/// longest request, so prompts of different lengths need no padding. Each prompt's sampler is
/// seeded with `sampling.seed`, so a prompt's output does not depend on its batch neighbours.
pub fn generate(
    model: &LoadedModel,
    codec: Option<&dyn TextCodec>,
    prompts: &[Vec<u32>],
    cfg: &GenerationConfig,
    on_event: &mut dyn FnMut(&StreamEvent),
) -> Result<Vec<GenerationOutput>> {
    generate_cached(
        model,
        codec,
        prompts,
        cfg,
        &mut PromptCache::new(),
        on_event,
    )
}

/// [`generate`] reusing `reuse`'s keys and values for the longest prefix each prompt shares
/// with what the cache holds (mathematically the same output: attention over cached keys is
/// attention over recomputed ones).
pub fn generate_cached(
    model: &LoadedModel,
    codec: Option<&dyn TextCodec>,
    prompts: &[Vec<u32>],
    cfg: &GenerationConfig,
    reuse: &mut PromptCache,
    on_event: &mut dyn FnMut(&StreamEvent),
) -> Result<Vec<GenerationOutput>> {
    let refs: Vec<&[u32]> = prompts.iter().map(Vec::as_slice).collect();
    let rules = Rules::new(model, codec, &refs, cfg)?;
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let capacity = longest + cfg.max_new_tokens;
    if reuse.cache.as_ref().is_none_or(|c| c.capacity() < capacity) {
        // Room for a longer follow-up too, within the model's positions; what the smaller
        // cache held is carried over, so a growing session keeps its prefix.
        let room = (capacity * 2).clamp(capacity.max(1), model.model.max_positions());
        let mut grown = KvCache::new(&model.config, 1, room, &model.device);
        let held = match &reuse.cache {
            Some(old) if !old.is_empty() => {
                let n = old.len().min(reuse.ids.len());
                grown.import(&old.export(n), n).map_or(0, |_| n)
            }
            _ => 0,
        };
        reuse.cache = Some(grown);
        reuse.ids.truncate(held);
    }
    let PromptCache { cache, ids: fed } = reuse;
    let cache = cache.as_mut().expect("allocated above");
    let mut outputs = Vec::with_capacity(prompts.len());
    for (index, prompt) in prompts.iter().enumerate() {
        // Keep the shared prefix, but run the last prompt tokens again through the paths of a
        // cold prefill (`CausalLm::prompt_refeed_rows`), so that a cached prompt gives the
        // logits, and a greedy reply, of a cold one.
        let common = fed
            .iter()
            .zip(prompt)
            .take_while(|(a, b)| a == b)
            .count()
            .min(
                prompt
                    .len()
                    .saturating_sub(model.model.prompt_refeed_rows()),
            )
            .min(cache.len());
        cache.truncate(common);
        fed.truncate(common);
        let mut seq = Sequence::new(index, prompt, common, cfg, &rules);
        let t0 = Instant::now();
        let mut logits = model.model.prefill_logits(&prompt[common..], cache);
        fed.extend_from_slice(&prompt[common..]);
        seq.prefilled(t0.elapsed().as_secs_f64());
        while let Step::Feed(next) = seq.step(&mut logits, cfg, &rules, codec, on_event)? {
            logits = model.model.next_logits(&[next], cache);
            fed.push(next);
            seq.timings.decode_tokens += 1;
        }
        outputs.push(seq.finish(cfg, &rules, codec)?);
    }
    Ok(outputs)
}
