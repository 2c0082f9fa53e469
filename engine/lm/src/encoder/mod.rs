//! Sentence encoder: a BERT-family model in the Burn runtime with sentence-transformers'
//! pooling, for the crisis risk screen and for evaluation (similarity of replies).
//!
//! An encoder directory is what sentence-transformers saves (`modules.json`, `config.json`,
//! `model.safetensors`, `tokenizer.json`, `1_Pooling/config.json`, ...); the default is
//! all-MiniLM-L6-v2 from `scripts/setup.sh`. [`Encoder::load`] reads one; [`shared`] keeps one
//! copy per directory for the whole process.

pub mod adapter;
pub mod bottom_states;
pub mod config;
pub mod embedder;
pub mod error;
pub mod gelu;
pub mod host_forward;
pub mod key_major;
pub mod layer_norm;
pub mod model;
pub mod modules;
pub mod pooling;
pub mod precision;
pub mod sentence_encoder;
pub mod shared;
pub mod split_bf16_gemm;
pub mod vector_cache_file;

pub use config::BertConfig;
pub use embedder::{shared_embedder, CachedEmbedder};
pub use error::EncoderError;
pub use pooling::Pooling;
pub use precision::EncoderPrecision;
pub use sentence_encoder::{cosine, Encoder, MAX_BATCH};
pub use shared::{default_encoder_dir, shared, DEFAULT_ENCODER};
