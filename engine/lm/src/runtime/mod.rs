//! Model runtime: file formats (safetensors, GGUF), tokenisation, prompt rendering, and a Burn
//! decoder-only model that generates from them.

/// Re-exported so that callers (tests, benches, CLI) use the same Burn version.
pub use burn;

pub mod amx;
pub mod assets;
pub mod batch;
mod batch_attention;
pub mod batch_engine;
mod batch_forward;
pub mod chat_template;
pub mod config;
pub mod dense;
pub mod device;
pub mod error;
pub mod fused;
pub mod generate;
mod generation;
pub mod ggml_type;
pub mod gguf;
pub mod grammar;
mod host_attention;
mod host_decode;
mod host_feeds;
pub mod kernels;
pub mod load;
pub mod lora;
pub mod lora_attach;
pub mod memory_check;
pub mod model;
pub mod projection;
pub mod prompt_cache_file;
pub mod quant;
pub mod quantize_model;
pub mod quantize_source;
pub mod sampling;
pub(crate) mod sequence;
pub mod silu_mul;
mod span_attention;
pub mod tokenize_cli;
pub mod tokenizer;
pub mod weights;
mod word_bans;

pub use assets::{default_model_path, expand_assets};
pub use batch::{generate_batched, panic_message, BatchRequest, Batcher};
pub use batch_engine::{EngineHandle, EngineInfo};
pub use batch_forward::{Feed, PREFILL_ROWS_PER_STEP};
pub use config::{Architecture, ModelConfig};
pub use device::{select_device, DevicePreference};
pub use error::RuntimeError;
pub use generate::{
    generate, generate_cached, FinishReason, GenerationConfig, GenerationOutput, PromptCache,
    StreamEvent, TextCodec, Timings,
};
pub use load::{
    load_model, load_model_on, load_model_with, load_tokenizer, LoadedModel, ModelFormat,
    WeightFormat,
};
pub use lora::{LoraAdapter, LoraConfig};
pub use model::{CausalLm, KvCache};
pub use sampling::SamplingConfig;
