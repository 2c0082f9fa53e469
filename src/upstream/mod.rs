//! `--upstream URL`: counseling sessions drafted by a remote model behind any
//! OpenAI-compatible streaming endpoint (vLLM, llama.cpp's server, `psy serve --raw`, a hosted
//! API). Planning, prompts, the streamed crisis guard and the repairs stay in psy: only the
//! [`Drafter`](psy_lm::session::Drafter) seam goes over HTTP ([`UpstreamDrafter`]).
//!
//! The label ban: given the upstream model's tokenizer, psy computes the token ids of the
//! words to avoid and sends them as `logit_bias` ([`label_bias`]); without it the redraft
//! relies on its instruction naming the words, and the turn's `repairs[]` says so.

mod config;
mod drafter;
mod label_bias;
mod sse;

pub use config::UpstreamConfig;
pub use drafter::UpstreamDrafter;
pub use label_bias::label_bias;
