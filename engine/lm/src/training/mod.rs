//! Supervised fine-tuning: masked causal-LM loss, AdamW, schedules, gradient clipping and
//! accumulation on Burn's autodiff, plus the data readers and the training loop that drive them.
//!
//! The loop is custom (not Burn's `Learner`) because step-level checkpoints and exact resume need
//! the optimizer state, schedule position and data order in our hands.

pub mod adapter;
pub mod attention_blocked;
pub mod cast;
pub mod checkpoint;
pub mod checkpointing;
pub mod data;
pub mod data_parallel;
pub mod error;
pub mod export_job;
pub mod loss;
pub mod memory_estimate;
pub mod mixed_precision;
pub mod optim;
mod optim_kernels;
pub mod params;
pub mod plot;
pub mod prepare;
pub mod render;
pub mod run;
pub mod safetensors_io;
pub mod schedule;
pub mod screen_head;

pub use checkpointing::TrainMemory;
pub use error::TrainError;
pub use loss::{forward_logits, head_loss, lm_loss, masked_lm_loss, Batch, IGNORE_INDEX};
pub use optim::{AdamW, AdamWConfig, NamedGrads};
pub use run::{run, run_with, RunOptions, RunSummary};
pub use schedule::{LrSchedule, ScheduleKind};
