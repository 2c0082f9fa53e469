//! The judge loop: cache lookup, request, parse, validate, repair, store; and many calls at
//! once under a concurrency bound.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};

use serde_json::Value;

use super::backend::JudgeBackend;
use super::cache::{cache_key, JudgeCache};
use super::call::{ChatMessage, JudgeCall};
use super::error::JudgeError;
use super::extract::parse_verdict;
use super::usage::TokenUsage;
use crate::think::strip_think;

/// A validated verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged<T> {
    /// What the validator made of the verdict.
    pub value: T,
    /// The verdict JSON.
    pub verdict: Value,
    /// The judge's reply the verdict came from, verbatim.
    pub raw: String,
    /// Backend replies this verdict took (1 when the first answer validated, more after
    /// repairs, 0 when it came from the cache).
    pub attempts: u32,
    /// Whether it came from the cache.
    pub cached: bool,
    /// Tokens of every reply this verdict took, repairs included, as the backend reported them
    /// (zero from the cache); `None` when a reply came without a count.
    pub usage: Option<TokenUsage>,
}

/// Counters for the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JudgeStats {
    /// Verdicts served from the cache.
    pub cache_hits: u64,
    /// Lookups that found nothing usable (calls judged fresh while a cache was attached and
    /// `no_cache` was off).
    pub cache_misses: u64,
    /// Replies obtained from the backend (repairs included).
    pub backend_calls: u64,
    /// Repair requests sent after a reply failed to parse or validate.
    pub repairs: u64,
    /// Calls that ended in [`JudgeError::Invalid`].
    pub invalid: u64,
    /// Calls that ended in any other error (endpoint unavailable, rejected, ...).
    pub failed: u64,
    /// Validated verdicts the cache could not store (logged; the verdict itself was kept).
    pub cache_write_errors: u64,
    /// Prompt and completion tokens of the replies whose backend reported them (failed calls'
    /// replies included).
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Replies that came without a token count.
    pub replies_without_usage: u64,
}

/// Progress of [`Judge::judge_all`], reported after each finished call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JudgeProgress {
    /// Calls finished so far.
    pub done: usize,
    /// Calls in the batch.
    pub total: usize,
    /// Input index of the call that just finished.
    pub index: usize,
    /// Whether it finished with a verdict.
    pub ok: bool,
    /// Whether the verdict came from the cache.
    pub cached: bool,
}

#[derive(Default)]
struct Counters {
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    backend_calls: AtomicU64,
    repairs: AtomicU64,
    invalid: AtomicU64,
    failed: AtomicU64,
    cache_write_errors: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    replies_without_usage: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Obtains validated verdicts from a [`JudgeBackend`], through an optional [`JudgeCache`].
pub struct Judge {
    backend: Arc<dyn JudgeBackend>,
    backend_id: String,
    cache: Option<JudgeCache>,
    repair_attempts: u32,
    no_cache: bool,
    counters: Counters,
}

impl Judge {
    /// A judge over `backend`: no cache, 2 repair attempts.
    pub fn new(backend: Arc<dyn JudgeBackend>) -> Self {
        let backend_id = backend.id();
        Self {
            backend,
            backend_id,
            cache: None,
            repair_attempts: 2,
            no_cache: false,
            counters: Counters::default(),
        }
    }

    /// Looks verdicts up in, and stores them to, `cache`.
    pub fn with_cache(mut self, cache: JudgeCache) -> Self {
        self.cache = Some(cache);
        self
    }

    /// How many times an unparsable or invalid verdict is sent back for correction.
    pub fn with_repair_attempts(mut self, repair_attempts: u32) -> Self {
        self.repair_attempts = repair_attempts;
        self
    }

    /// When true, every call goes to the backend and its verdict overwrites the cached one.
    pub fn with_no_cache(mut self, no_cache: bool) -> Self {
        self.no_cache = no_cache;
        self
    }

    /// The backend's id (as it enters the cache key).
    pub fn backend_id(&self) -> &str {
        &self.backend_id
    }

    /// The attached cache, if any.
    pub fn cache(&self) -> Option<&JudgeCache> {
        self.cache.as_ref()
    }

    /// Counters since this judge was built.
    pub fn stats(&self) -> JudgeStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        JudgeStats {
            cache_hits: get(&c.cache_hits),
            cache_misses: get(&c.cache_misses),
            backend_calls: get(&c.backend_calls),
            repairs: get(&c.repairs),
            invalid: get(&c.invalid),
            failed: get(&c.failed),
            cache_write_errors: get(&c.cache_write_errors),
            prompt_tokens: get(&c.prompt_tokens),
            completion_tokens: get(&c.completion_tokens),
            replies_without_usage: get(&c.replies_without_usage),
        }
    }

    /// A validated verdict for `call`.
    ///
    /// `validate` checks the parsed JSON against the rubric and converts it; its error is sent
    /// back to the judge (with the reply) for up to `repair_attempts` corrections, after which
    /// the result is [`JudgeError::Invalid`]. Errors carry `call.item` when it is set.
    pub fn judge<T>(
        &self,
        call: &JudgeCall,
        validate: &dyn Fn(&Value) -> Result<T, String>,
    ) -> Result<Judged<T>, JudgeError> {
        let result = self.judge_inner(call, validate);
        if let Err(error) = &result {
            bump(if error.is_invalid_verdict() {
                &self.counters.invalid
            } else {
                &self.counters.failed
            });
        }
        result.map_err(|error| error.for_item(&call.item))
    }

    fn judge_inner<T>(
        &self,
        call: &JudgeCall,
        validate: &dyn Fn(&Value) -> Result<T, String>,
    ) -> Result<Judged<T>, JudgeError> {
        let key = cache_key(&self.backend_id, call);
        if let Some(cache) = self.cache.as_ref().filter(|_| !self.no_cache) {
            if let Some(hit) = self.lookup(cache, &key, validate) {
                bump(&self.counters.cache_hits);
                return Ok(hit);
            }
            bump(&self.counters.cache_misses);
        }
        let judged = self.ask(call, validate)?;
        if let Some(cache) = &self.cache {
            if let Err(error) =
                cache.put(&key, call, &self.backend_id, &judged.raw, &judged.verdict)
            {
                bump(&self.counters.cache_write_errors);
                tracing::warn!(item = %call.item, %error, "judge verdict kept but not cached");
            }
        }
        Ok(judged)
    }

    /// A cached verdict that still validates (a validator grown stricter turns old entries into
    /// misses rather than errors).
    fn lookup<T>(
        &self,
        cache: &JudgeCache,
        key: &str,
        validate: &dyn Fn(&Value) -> Result<T, String>,
    ) -> Option<Judged<T>> {
        let hit = match cache.get(key) {
            Ok(hit) => hit?,
            Err(error) => {
                tracing::warn!(%error, "judge cache unreadable for this call; judging afresh");
                return None;
            }
        };
        let value = validate(&hit.verdict).ok()?;
        Some(Judged {
            value,
            verdict: hit.verdict,
            raw: hit.raw,
            attempts: 0,
            cached: true,
            usage: Some(TokenUsage::default()),
        })
    }

    /// The backend's verdict, repaired until it validates or the repairs run out.
    fn ask<T>(
        &self,
        call: &JudgeCall,
        validate: &dyn Fn(&Value) -> Result<T, String>,
    ) -> Result<Judged<T>, JudgeError> {
        let mut current = call.clone();
        let mut previous_error: Option<String> = None;
        let mut attempts = 0;
        let mut usage = Some(TokenUsage::default());
        loop {
            let reply = self.backend.complete(&current, previous_error.as_deref())?;
            let raw = reply.text;
            attempts += 1;
            bump(&self.counters.backend_calls);
            match reply.usage {
                Some(u) => {
                    let c = &self.counters;
                    c.prompt_tokens
                        .fetch_add(u.prompt_tokens, Ordering::Relaxed);
                    c.completion_tokens
                        .fetch_add(u.completion_tokens, Ordering::Relaxed);
                    if let Some(total) = usage.as_mut() {
                        total.add(u);
                    }
                }
                None => {
                    bump(&self.counters.replies_without_usage);
                    usage = None;
                }
            }
            let checked = parse_verdict(&raw)
                .and_then(|verdict| validate(&verdict).map(|value| (verdict, value)));
            let error = match checked {
                Ok((verdict, value)) => {
                    return Ok(Judged {
                        value,
                        verdict,
                        raw,
                        attempts,
                        cached: false,
                        usage,
                    })
                }
                Err(error) => error,
            };
            if attempts > self.repair_attempts {
                return Err(JudgeError::Invalid {
                    attempts,
                    last_error: error,
                    last_text: raw,
                    usage,
                });
            }
            bump(&self.counters.repairs);
            current
                .messages
                .push(ChatMessage::assistant(strip_think(&raw)));
            current
                .messages
                .push(ChatMessage::user(repair_request(&error, &call.schema)));
            previous_error = Some(error);
        }
    }

    /// Verdicts for every call, in input order, with at most `concurrency` calls in flight.
    /// `progress` runs on the calling thread after each call finishes (e.g. to advance a
    /// progress bar). One failed call does not stop the others.
    pub fn judge_all<T: Send>(
        &self,
        calls: &[JudgeCall],
        concurrency: usize,
        validate: &(dyn Fn(&Value) -> Result<T, String> + Sync),
        progress: &mut dyn FnMut(JudgeProgress),
    ) -> Vec<Result<Judged<T>, JudgeError>> {
        let total = calls.len();
        let workers = concurrency.max(1).min(total);
        let next = AtomicUsize::new(0);
        let mut results: Vec<Option<Result<Judged<T>, JudgeError>>> =
            (0..total).map(|_| None).collect();
        std::thread::scope(|scope| {
            let (sender, receiver) = mpsc::channel();
            for _ in 0..workers {
                let sender = sender.clone();
                let next = &next;
                scope.spawn(move || loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(call) = calls.get(index) else { break };
                    if sender.send((index, self.judge(call, validate))).is_err() {
                        break;
                    }
                });
            }
            drop(sender);
            for (done, (index, result)) in receiver.iter().enumerate() {
                let (ok, cached) = match &result {
                    Ok(judged) => (true, judged.cached),
                    Err(_) => (false, false),
                };
                results[index] = Some(result);
                progress(JudgeProgress {
                    done: done + 1,
                    total,
                    index,
                    ok,
                    cached,
                });
            }
        });
        // Every index below `total` was claimed by a worker and sent back before it exited.
        results
            .into_iter()
            .enumerate()
            .map(|(index, result)| {
                result.unwrap_or_else(|| {
                    Err(JudgeError::Backend {
                        backend: self.backend_id.clone(),
                        message: format!("call {index} finished without a result"),
                    })
                })
            })
            .collect()
    }
}

/// The follow-up turn asking for a corrected verdict.
fn repair_request(error: &str, schema: &Value) -> String {
    format!(
        "Your reply could not be used: {error}.\n\
         Reply again with only the corrected JSON object, no other text. \
         It must satisfy this JSON schema: {schema}"
    )
}
