//! The one thread pool that every CPU tensor kernel runs on: rayon's global pool, which Burn's
//! flex backend (row-parallel softmax and norms), the `gemm` crate (its `Parallelism::Rayon`
//! splits) and psy's own kernels (fused cross-entropy, LoRA dropout masks) all use. Its size is
//! set once, by `RAYON_NUM_THREADS` or else the number of logical CPUs.
//!
//! A thread outside the pool that calls a parallel kernel hands the work to the pool and sleeps
//! until the pool is done: a futex wait and a wake-up for every matrix product of a training step
//! (~14,000 a LoRA step), with the caller's thread as one more runnable thread beside the
//! workers. [`on_pool`] runs a whole step on a worker instead: the worker that runs the step
//! splits each kernel with the others itself and keeps its share of the work.

use crate::runtime::lora::{dropout_position, with_dropout_at};

/// Runs `f` on a worker of the global pool and returns its result (directly when the caller
/// already is a worker of a pool). Results are the same as calling `f` on this thread: the
/// kernels split their work by the pool's size, not by which thread calls them.
///
/// Do not block inside `f` on threads that themselves wait for this pool (with a one-thread
/// pool they could never run).
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if is_pool_worker() {
        return f();
    }
    // `scope` runs its body on a worker; the caller waits once, for the whole of `f`. The body
    // takes the caller's LoRA dropout stream, not the one of the worker that runs it: a worker
    // inside another thread's training step, waiting for its kernels, can pick this body up, and
    // reading its stream there shifted that step's masks (tests/lora.rs's resume check failed
    // about one run in six with the file's tests in parallel, on 2026-12-04).
    let dropout = dropout_position();
    rayon::scope(|_| with_dropout_at(dropout, f))
}

/// Whether the calling thread is a worker of a rayon pool.
pub fn is_pool_worker() -> bool {
    rayon::current_thread_index().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::lora::with_dropout;

    /// A step handed to the pool draws the caller's dropout masks (and a caller without a
    /// stream hands none over, whatever the worker that runs the body was doing).
    #[test]
    fn a_body_sent_to_the_pool_carries_its_callers_dropout_stream() {
        assert!(!is_pool_worker());
        assert_eq!(with_dropout(7, || on_pool(dropout_position)), Some((7, 0)));
        assert_eq!(on_pool(dropout_position), None);
    }
}
