//! Model runtime: loading decoder-only checkpoints (HF safetensors, GGUF) into a Burn model and
//! generating text from them.

/// Re-exported so that callers (tests, benches, CLI) use the same Burn version.
pub use burn;

pub mod config;
pub mod device;
pub mod error;
pub mod generate;
pub mod kernels;
pub mod model;
pub mod sampling;
pub mod weights;

pub use config::{Architecture, ModelConfig};
pub use device::{select_device, DevicePreference};
pub use error::RuntimeError;
pub use generate::{
    generate, load_model, load_model_on, FinishReason, GenerationConfig, GenerationOutput,
    LoadedModel, ModelFormat, StreamEvent, TextCodec, Timings,
};
pub use model::{CausalLm, KvCache};
pub use sampling::SamplingConfig;
