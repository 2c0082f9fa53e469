//! The worker threads that answer requests, and the health they report.
//!
//! One worker (`--max-batch 1`) owns the model and answers one request at a time. With
//! `--max-batch N` there are N workers, each with its own responder (planner, guard,
//! repairs), all drafting on one shared batch engine that decodes their requests together.
//!
//! Each request runs under `catch_unwind`: a panic anywhere in a turn (planning, decoding,
//! repair) fails that request with a 500 and its worker rebuilds its [`Responder`] from the
//! factory before the next one, since a panic may have left the model's prompt cache half
//! written. `/health` reads the [`Health`] the workers keep.

use std::ops::ControlFlow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;

use anyhow::Result;
use axum::http::StatusCode;
use psy_lm::runtime::panic_message;
use psy_lm::session::{CancelCheck, Delta};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::clock::now;
use super::error::ApiError;
use super::mode::ServeMode;
use super::request::ChatRequest;
use super::responder::{Finished, Responder};

/// What the worker sends back for one request.
pub(crate) enum Reply {
    Reasoning(String),
    Content(String),
    Done(Box<Finished>),
    Failed(ApiError),
}

pub(crate) struct Job {
    pub request: ChatRequest,
    pub events: mpsc::UnboundedSender<Reply>,
}

/// What the worker reports once its first responder is built.
pub(crate) struct Ready {
    pub model_id: String,
    pub context: usize,
    pub mode: ServeMode,
}

/// What the worker is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    Idle,
    Busy,
    /// Rebuilding the responder after a panic; queued requests wait for it.
    Restarting,
    /// The responder could not be rebuilt; the next request tries again.
    Failed,
}

/// The worker's state and failure record, shared with `/health`.
#[derive(Debug)]
pub(crate) struct Health {
    inner: Mutex<HealthRecord>,
    /// Requests accepted but not yet taken by a worker.
    pub waiting: AtomicUsize,
    /// Workers answering a request now.
    busy: AtomicUsize,
}

#[derive(Debug)]
struct HealthRecord {
    state: WorkerState,
    served: u64,
    panics: u64,
    restarts: u64,
    last_failure: Option<Value>,
}

impl Health {
    pub fn new() -> Health {
        Health {
            inner: Mutex::new(HealthRecord {
                state: WorkerState::Idle,
                served: 0,
                panics: 0,
                restarts: 0,
                last_failure: None,
            }),
            waiting: AtomicUsize::new(0),
            busy: AtomicUsize::new(0),
        }
    }

    /// The record stays readable even if a thread panicked while holding the lock: it
    /// holds plain counters, never a half-made value.
    fn lock(&self) -> MutexGuard<'_, HealthRecord> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, state: WorkerState) {
        self.lock().state = state;
    }

    /// A worker took a request.
    fn started(&self) {
        self.busy.fetch_add(1, Ordering::SeqCst);
        self.set(WorkerState::Busy);
    }

    /// A worker finished one: counted as served (or not), idle once no worker is busy.
    fn ended(&self, served: bool) {
        let left = self.busy.fetch_sub(1, Ordering::SeqCst) - 1;
        let mut h = self.lock();
        if served {
            h.served += 1;
        }
        if left == 0 && h.state == WorkerState::Busy {
            h.state = WorkerState::Idle;
        }
    }

    fn fail(&self, what: &str, message: &str) {
        let mut h = self.lock();
        h.last_failure = Some(json!({"kind": what, "message": message, "at": now()}));
    }

    /// The HTTP status of `/health` (503 unless the worker can take requests now) and its body.
    pub fn report(&self, model: &str) -> (StatusCode, Value) {
        let h = self.lock();
        let ready = matches!(h.state, WorkerState::Idle | WorkerState::Busy);
        let status = if ready { "ok" } else { "unavailable" };
        let body = json!({
            "status": status,
            "model": model,
            "worker": h.state,
            "queued": self.waiting.load(Ordering::SeqCst),
            "served": h.served,
            "panics": h.panics,
            "restarts": h.restarts,
            "last_failure": h.last_failure,
        });
        let code = if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        (code, body)
    }
}

/// The responder factory, shared by the workers (each builds its own responder with it).
type Factory<F> = Arc<Mutex<F>>;

/// The request queue, shared by the workers.
type Queue = Arc<Mutex<mpsc::Receiver<Job>>>;

/// Builds a responder, turning a panic of the factory into an error.
fn build<F, R>(make: &Factory<F>) -> Result<R>
where
    F: FnMut() -> Result<R>,
{
    // The factory panicking is caught inside the lock, so the lock is never poisoned by it.
    let mut make = make.lock().unwrap_or_else(|p| p.into_inner());
    match catch_unwind(AssertUnwindSafe(|| (*make)())) {
        Ok(r) => r,
        Err(p) => Err(anyhow::anyhow!(
            "building the model panicked: {}",
            panic_message(p.as_ref())
        )),
    }
}

/// Runs jobs one at a time on the calling thread, starting from `responder` (built by
/// `make`, which rebuilds it after a panic). A job whose client has gone is skipped, and a
/// client that goes mid-generation stops it (its channel closes, the cancel check sees it).
fn run<F, R>(responder: Option<R>, make: Factory<F>, jobs: Queue, health: Arc<Health>)
where
    F: FnMut() -> Result<R>,
    R: Responder,
{
    let mut responder = responder;
    loop {
        // The lock is held only while waiting: the worker that holds it takes the next job.
        let next = jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .blocking_recv();
        let Some(job) = next else { break };
        health.waiting.fetch_sub(1, Ordering::SeqCst);
        if job.events.is_closed() {
            tracing::info!("client left before its turn");
            continue;
        }
        let c = match responder.as_mut() {
            Some(c) => c,
            // The last rebuild failed: try again for this request.
            None => match rebuild(&make, &health) {
                Some(c) => responder.insert(c),
                None => {
                    let _ = job.events.send(Reply::Failed(ApiError::server(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "model_unavailable",
                        "the model could not be reloaded after a failure; see /health",
                    )));
                    continue;
                }
            },
        };
        health.started();
        let tx = job.events.clone();
        match catch_unwind(AssertUnwindSafe(|| respond(c, job))) {
            Ok(last) => {
                // Health first, so a client reading /health after its reply sees it counted.
                health.ended(true);
                if let Some(r) = last {
                    let _ = tx.send(r);
                }
            }
            Err(p) => {
                let message = panic_message(p.as_ref());
                tracing::error!(panic = %message, "request panicked; rebuilding the model");
                // Health first, so a client reading /health after its 500 sees the failure.
                health.ended(false);
                {
                    let mut h = health.lock();
                    h.panics += 1;
                    h.state = WorkerState::Restarting;
                }
                health.fail("panic", &message);
                let _ = tx.send(Reply::Failed(ApiError::server(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "the server failed while answering this request; it has recovered, retry",
                )));
                drop(tx);
                // Drop the possibly inconsistent responder before loading another model.
                drop(responder.take());
                responder = rebuild(&make, &health);
            }
        }
    }
}

/// A fresh responder, or `None` with the failure recorded in `health`.
fn rebuild<F, R>(make: &Factory<F>, health: &Health) -> Option<R>
where
    F: FnMut() -> Result<R>,
{
    health.set(WorkerState::Restarting);
    match build(make) {
        Ok(c) => {
            let mut h = health.lock();
            h.restarts += 1;
            h.state = WorkerState::Idle;
            Some(c)
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot rebuild the model");
            health.fail("restart", &format!("{e:#}"));
            health.set(WorkerState::Failed);
            None
        }
    }
}

/// One request, its deltas streamed into the job's channel; returns the last message to
/// send (none when the client has gone).
fn respond<R: Responder>(responder: &mut R, job: Job) -> Option<Reply> {
    let tx = job.events;
    let gone = tx.clone();
    let cancel = CancelCheck(Arc::new(move || gone.is_closed()));
    let result = responder.respond(job.request, cancel, &mut |d| {
        let r = match d {
            Delta::Reasoning(t) => Reply::Reasoning(t.to_string()),
            Delta::Content(t) => Reply::Content(t.to_string()),
        };
        match tx.send(r) {
            Ok(()) => ControlFlow::Continue(()),
            Err(_) => ControlFlow::Break(()),
        }
    });
    match result {
        Ok(Some(f)) => Some(Reply::Done(Box::new(f))),
        Ok(None) => {
            tracing::info!("client disconnected: generation stopped");
            None
        }
        Err(e) => Some(Reply::Failed(e)),
    }
}

/// Builds the first responder on the calling thread and reports what it serves (or why it
/// could not be built) through `ready`, starts `workers - 1` more worker threads (each builds
/// its own responder), then serves `jobs` with them until they close.
pub(crate) fn start<F, R>(
    make: F,
    workers: usize,
    jobs: mpsc::Receiver<Job>,
    health: Arc<Health>,
    ready: tokio::sync::oneshot::Sender<Result<Ready>>,
) where
    F: FnMut() -> Result<R> + Send + 'static,
    R: Responder + 'static,
{
    let make: Factory<F> = Arc::new(Mutex::new(make));
    let jobs: Queue = Arc::new(Mutex::new(jobs));
    match build(&make) {
        Ok(r) => {
            let _ = ready.send(Ok(Ready {
                model_id: r.model_id(),
                context: r.context_length(),
                mode: r.mode(),
            }));
            for i in 1..workers.max(1) {
                let (make, jobs, health) = (make.clone(), jobs.clone(), health.clone());
                let spawned = thread::Builder::new()
                    .name(format!("psy-worker-{i}"))
                    .spawn(move || {
                        // A worker whose responder cannot be built tries again per request.
                        let r = build(&make)
                            .map_err(|e| tracing::error!(error = %e, "cannot build a worker"))
                            .ok();
                        run(r, make, jobs, health)
                    });
                if let Err(e) = spawned {
                    tracing::error!(error = %e, "cannot start a worker thread");
                }
            }
            run(Some(r), make, jobs, health);
        }
        Err(e) => {
            let _ = ready.send(Err(e));
        }
    }
}
