//! A thread that owns a model and a [`Batcher`]: callers on any thread submit a prompt and a
//! configuration through an [`EngineHandle`] and get its streamed tokens and output back, while
//! every request in flight decodes together, one forward pass per step. Requests join between
//! steps up to `max_batch` (the rest wait in arrival order) and leave as they finish.
//!
//! Failures stay with their request: an invalid request or a sequence that errs or panics
//! (sampling, grammar, stop checks) ends that request only. A panic in the shared forward pass
//! (which also feeds the joining requests' prompts) ends the requests of that step; the engine
//! goes on with the next ones.

use std::collections::{HashMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::batch::{panic_message, BatchRequest, Batcher};
use super::error::{Result, RuntimeError};
use super::generate::{GenerationOutput, StreamEvent, TextCodec};
use super::load::LoadedModel;

/// What the engine sends back for one request.
enum Message {
    Token(StreamEvent),
    Done(Result<GenerationOutput>),
}

/// A request on its way to the engine.
struct Job {
    request: BatchRequest,
    replies: Sender<Message>,
}

/// Facts about the engine's model that callers need without touching it.
#[derive(Debug, Clone)]
pub struct EngineInfo {
    /// The model file's stem.
    pub model_id: String,
    /// Positions the model supports (prompt + generated tokens).
    pub context: usize,
    pub vocab_size: usize,
    /// Sequences decoding together at most.
    pub max_batch: usize,
    /// The model's parameter count.
    pub parameters: u64,
}

/// A cheap, cloneable way to submit requests to a running engine. The engine thread ends once
/// every handle is dropped and its requests are finished.
#[derive(Clone)]
pub struct EngineHandle {
    jobs: Sender<Job>,
    info: Arc<EngineInfo>,
}

impl EngineHandle {
    /// Starts the engine thread with `model` and `codec` (the tokenizer that decodes streamed
    /// text; `None` runs on ids alone), decoding up to `max_batch` sequences together.
    pub fn spawn<C>(model: LoadedModel, codec: Option<C>, max_batch: usize) -> Result<EngineHandle>
    where
        C: TextCodec + Send + 'static,
    {
        let max_batch = max_batch.max(1);
        let info = Arc::new(EngineInfo {
            model_id: model
                .path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "model".into()),
            context: model.model.max_positions(),
            vocab_size: model.config.vocab_size,
            max_batch,
            parameters: model.config.num_params(),
        });
        let (jobs, rx) = mpsc::channel();
        let _thread: JoinHandle<()> = std::thread::Builder::new()
            .name("psy-batch-engine".into())
            .spawn(move || {
                let codec = codec.as_ref().map(|c| c as &dyn TextCodec);
                run(&model, codec, max_batch, rx)
            })
            .map_err(|e| RuntimeError::Unsupported(format!("cannot start the engine: {e}")))?;
        Ok(EngineHandle { jobs, info })
    }

    pub fn info(&self) -> &EngineInfo {
        &self.info
    }

    /// Generates `request` with the others in flight, calling `on_event` on this thread for
    /// each streamed token. Stops early when `request.config.cancel` is raised (e.g. by
    /// `on_event`'s caller), like [`super::generate`].
    pub fn generate(
        &self,
        request: BatchRequest,
        on_event: &mut dyn FnMut(&StreamEvent),
    ) -> Result<GenerationOutput> {
        let (replies, rx) = mpsc::channel();
        self.jobs
            .send(Job { request, replies })
            .map_err(|_| RuntimeError::EngineStopped)?;
        loop {
            match rx.recv() {
                Ok(Message::Token(ev)) => on_event(&ev),
                Ok(Message::Done(out)) => return out,
                Err(_) => return Err(RuntimeError::EngineStopped),
            }
        }
    }
}

/// One request the engine is working on: where its messages go, and the flag that stops it
/// when its caller has gone.
struct Route {
    replies: Sender<Message>,
    cancel: Arc<AtomicBool>,
}

/// Sends a token to its request's caller; a caller that has gone cancels its sequence.
fn send_token(routes: &HashMap<usize, Route>, ev: &StreamEvent) {
    if let Some(r) = routes.get(&ev.prompt_index) {
        if r.replies.send(Message::Token(ev.clone())).is_err() {
            r.cancel.store(true, Ordering::Relaxed);
        }
    }
}

fn finish(routes: &mut HashMap<usize, Route>, id: usize, out: Result<GenerationOutput>) {
    if let Some(r) = routes.remove(&id) {
        let _ = r.replies.send(Message::Done(out));
    }
}

/// The engine loop: wait for work when idle, take what arrived, admit while there is room,
/// step every live sequence once, hand back the finished ones.
fn run(model: &LoadedModel, codec: Option<&dyn TextCodec>, max_batch: usize, jobs: Receiver<Job>) {
    let mut batcher = Batcher::new(model, codec);
    let mut routes: HashMap<usize, Route> = HashMap::new();
    let mut waiting: VecDeque<Job> = VecDeque::new();
    let mut next_id = 0usize;
    let mut open = true;
    loop {
        if batcher.is_empty() && waiting.is_empty() {
            match jobs.recv() {
                Ok(j) => waiting.push_back(j),
                Err(_) => return,
            }
        }
        while open {
            match jobs.try_recv() {
                Ok(j) => waiting.push_back(j),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => open = false,
            }
        }
        while batcher.len() < max_batch {
            let Some(Job {
                mut request,
                replies,
            }) = waiting.pop_front()
            else {
                break;
            };
            let id = next_id;
            next_id += 1;
            let cancel = request
                .config
                .cancel
                .get_or_insert_with(|| Arc::new(AtomicBool::new(false)))
                .clone();
            routes.insert(id, Route { replies, cancel });
            // A panic in admit leaves the batcher as it was (the sequence joins last).
            let admitted = catch_unwind(AssertUnwindSafe(|| {
                batcher.admit(id, request, &mut |e| send_token(&routes, e))
            }));
            match admitted {
                Ok(Ok(None)) => {}
                Ok(Ok(Some(out))) => finish(&mut routes, id, Ok(out)),
                Ok(Err(e)) => finish(&mut routes, id, Err(e)),
                Err(p) => {
                    let message = panic_message(p.as_ref());
                    tracing::error!(panic = %message, "prefill panicked; that request fails");
                    finish(&mut routes, id, Err(RuntimeError::Panicked(message)));
                }
            }
        }
        if batcher.is_empty() {
            if !open && waiting.is_empty() {
                return;
            }
            continue;
        }
        let stepped = catch_unwind(AssertUnwindSafe(|| {
            batcher.step(&mut |e| send_token(&routes, e))
        }));
        match stepped {
            Ok(done) => {
                for (id, out) in done {
                    finish(&mut routes, id, out);
                }
            }
            Err(p) => {
                // The shared forward pass failed: every sequence of this step goes with it.
                let message = panic_message(p.as_ref());
                tracing::error!(panic = %message, "a batched step panicked; its requests fail");
                batcher.clear();
                let ids: Vec<usize> = routes.keys().copied().collect();
                for id in ids {
                    finish(
                        &mut routes,
                        id,
                        Err(RuntimeError::Panicked(message.clone())),
                    );
                }
            }
        }
    }
}
