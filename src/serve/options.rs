//! What a server operator can tune: the queue, connection handling and request bounds.

use std::time::Duration;

/// Requests decoding together by default: 8 rows keep every quantized projection on the
/// integer GEMM (up to 16 tokens for the 32-value types, `int_gemm_max_tokens`).
pub const DEFAULT_MAX_BATCH: usize = 8;

/// Options of [`start`](super::start). The defaults suit one CPU model behind a local proxy.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Requests waiting for a worker beyond this many get 429 with `Retry-After`.
    pub queue: usize,
    /// Requests answered at once (workers), their generations decoded together on one batch
    /// engine; 1 answers one at a time on the worker's own model, with its prompt cache.
    pub max_batch: usize,
    /// Open connections at most; further clients wait in the kernel's accept backlog. Keep it
    /// well above `queue` so that clients beyond the queue still reach the 429.
    pub max_connections: usize,
    /// A client must send a request's headers within this time of the connection opening or
    /// of its previous response (an idle keep-alive connection is closed after it too); this
    /// is what stops slowloris-style clients holding connections open.
    pub header_timeout: Duration,
    /// A client must send the whole body within this time of its headers (408 otherwise).
    pub body_timeout: Duration,
    pub limits: RequestLimits,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            queue: 64,
            // One worker: a factory that loads its own model per responder loads it once.
            // `psy serve` passes `--max-batch` (default [`DEFAULT_MAX_BATCH`]) with a factory
            // whose responders share one engine.
            max_batch: 1,
            max_connections: 256,
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(30),
            limits: RequestLimits::default(),
        }
    }
}

/// Bounds on one chat request, each a 400 (413 for the body) naming the field when exceeded.
///
/// The defaults are far beyond what a real client sends (OpenAI's own API accepts at most 4
/// stop strings, and the prompt must fit the model's context anyway): they exist so that one
/// request cannot make the server parse, store or scan unbounded input.
#[derive(Clone, Debug)]
pub struct RequestLimits {
    /// Bytes of the request body (413 beyond it, checked before the body is read when the
    /// client sends `Content-Length`).
    pub max_body_bytes: usize,
    /// Entries of `messages`.
    pub max_messages: usize,
    /// Characters of all message contents together (the model's context is checked too).
    pub max_total_chars: usize,
    /// Entries of `stop` (the generator searches the text for each after every token).
    pub max_stop_strings: usize,
    /// Characters of each `stop` string.
    pub max_stop_chars: usize,
    /// Largest `max_tokens` / `max_completion_tokens` (the model's context bounds it too).
    pub max_tokens: usize,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            max_body_bytes: 4 << 20,
            max_messages: 2048,
            max_total_chars: 1 << 20,
            max_stop_strings: 16,
            max_stop_chars: 1024,
            max_tokens: 4096,
        }
    }
}
