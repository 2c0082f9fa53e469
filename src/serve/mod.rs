//! `psy serve`: an OpenAI-compatible server in front of a [`Responder`]: a [`Counselor`] by
//! default, the model alone with `--raw` ([`RawResponder`]).
//!
//! Up to [`ServeOptions::max_batch`] requests are answered at once, each by its own worker
//! thread (planner, guard, repairs), their tokens decoded together by one batch engine that
//! owns the model ([`psy_lm::runtime::EngineHandle`]: one forward pass per step for every live
//! request, requests joining and leaving between steps); with `max_batch` 1 one worker owns
//! the model and answers one request at a time, with its prompt cache. Requests beyond the
//! workers wait in a bounded queue and get 429 with `Retry-After` beyond it. In the
//! counseling server every reply is a counseling turn: planned, streamed, held to the plan's
//! rules; the client's own system messages are not used (the plan writes the system prompt).
//! The raw server renders the request's messages with the chat template and generates with
//! its sampling, `stop`, `logit_bias` and `response_format`: for judges and data-synthesis
//! teachers, not for people. Responses carry `reasoning_content` beside `content` (as
//! DeepSeek's API does) and a `psy` object: the plan summary, or `{"mode": "raw"}`.
//!
//! What a client cannot do to it: send an unbounded or endless body (413, 408), trickle
//! headers or hold more than [`ServeOptions::max_connections`] connections, ask for unbounded
//! work ([`RequestLimits`], 400 naming the field), or take the worker down: a panic in a
//! turn is that request's 500, and the worker rebuilds its counselor and goes on (see
//! `/health`). This needs the default `panic = "unwind"`.

mod clock;
mod counsel_responder;
mod error;
mod handlers;
mod listener;
mod mode;
mod options;
mod raw_responder;
mod request;
mod responder;
pub mod shared_engine;
mod worker;

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::routing::{get, post};
use axum::Router;
#[cfg(doc)]
use psy_lm::session::Counselor;
use tokio::sync::{mpsc, oneshot};

pub use error::ApiError;
pub use mode::ServeMode;
pub use options::{RequestLimits, ServeOptions, DEFAULT_MAX_BATCH};
pub use raw_responder::RawResponder;
pub use request::{parse_chat_request, parse_request, ChatRequest};
pub use responder::{Finished, Responder};
pub use worker::WorkerState;

use handlers::AppState;
use worker::Health;

/// A running server.
pub struct Running {
    pub addr: std::net::SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops accepting, lets open requests finish, and waits.
    pub async fn shutdown(mut self) -> Result<()> {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        self.task.await?;
        Ok(())
    }
}

/// Starts the server on `addr` (port 0 picks one) with responders (a [`Counselor`] or a
/// [`RawResponder`]) built by `make` on each of the [`ServeOptions::max_batch`] worker threads
/// (a model a responder owns stays on its thread). `make` is called again to rebuild a
/// worker's responder after one of its requests panicked.
pub async fn start<F, R>(make: F, addr: &str, options: ServeOptions) -> Result<Running>
where
    F: FnMut() -> Result<R> + Send + 'static,
    R: Responder + 'static,
{
    let (jobs_tx, jobs_rx) = mpsc::channel(options.queue.max(1));
    let workers = options.max_batch.max(1);
    let health = Arc::new(Health::new());
    let (ready_tx, ready_rx) = oneshot::channel();
    let h = health.clone();
    std::thread::Builder::new()
        .name("psy-worker".into())
        .spawn(move || worker::start(make, workers, jobs_rx, h, ready_tx))?;
    let ready = ready_rx.await.context("worker thread died")??;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let addr = listener.local_addr()?;
    let state = Arc::new(AppState {
        jobs: jobs_tx,
        health,
        model_id: ready.model_id,
        context: ready.context,
        mode: ready.mode,
        next_id: AtomicU64::new(1),
        options: options.clone(),
    });
    let app = Router::new()
        .route("/v1/chat/completions", post(handlers::chat_completions))
        .route("/v1/models", get(handlers::models))
        .route("/health", get(handlers::health))
        .with_state(state);
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move { listener::serve(listener, app, &options, stop_rx).await });
    tracing::info!(%addr, "listening");
    Ok(Running {
        addr,
        shutdown: Some(stop_tx),
        task,
    })
}

async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// What `psy serve` answers with.
pub enum Backend {
    /// Counseling turns from the manifest's planner and this model (default: the manifest's),
    /// or drafted by an OpenAI-compatible `upstream`.
    Counsel {
        manifest: PathBuf,
        model: Option<PathBuf>,
        upstream: Option<crate::upstream::UpstreamConfig>,
    },
    /// The model alone (`--raw`); `tokenizer` when the model carries none.
    Raw {
        model: Option<PathBuf>,
        tokenizer: Option<PathBuf>,
    },
}

/// What `psy serve --raw` prints before it listens.
pub const RAW_WARNING: &str = "psy serve --raw: WARNING: requests go straight to the model: no \
plan, no crisis guard, no repairs. This endpoint is for judges, data-synthesis teachers and \
upstream use; never put it in front of people.";

/// `psy serve`: runs until SIGINT/SIGTERM, then drains open requests.
pub fn serve(backend: Backend, addr: &str, options: ServeOptions) -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    let batch = options.max_batch;
    rt.block_on(async move {
        let running = match backend {
            Backend::Counsel {
                manifest,
                model,
                upstream: None,
            } if batch > 1 => {
                start(
                    shared_engine::counselors(manifest, model, batch),
                    addr,
                    options,
                )
                .await?
            }
            Backend::Counsel {
                manifest,
                model,
                upstream,
            } => {
                start(
                    move || match &upstream {
                        Some(u) => crate::counselor_upstream(&manifest, u.clone()),
                        None => crate::counselor(&manifest, model.as_deref()),
                    },
                    addr,
                    options,
                )
                .await?
            }
            Backend::Raw { model, tokenizer } if batch > 1 => {
                eprintln!("{RAW_WARNING}");
                let model = crate::resolve_model(model.as_deref(), None)?;
                start(
                    shared_engine::raw_responders(model, tokenizer, batch),
                    addr,
                    options,
                )
                .await?
            }
            Backend::Raw { model, tokenizer } => {
                eprintln!("{RAW_WARNING}");
                let model = crate::resolve_model(model.as_deref(), None)?;
                start(
                    move || {
                        RawResponder::load(&model, tokenizer.as_deref())
                            .with_context(|| format!("loading model {}", model.display()))
                    },
                    addr,
                    options,
                )
                .await?
            }
        };
        eprintln!(
            "psy serve: http://{}/v1 (POST /chat/completions, GET /models, GET /health)",
            running.addr
        );
        signal().await;
        eprintln!("shutting down: finishing open requests");
        tokio::time::timeout(Duration::from_secs(30), running.shutdown())
            .await
            .unwrap_or(Ok(()))
    })
}
