//! Eval sets: the psy pipeline record format, OpenAI-style messages and ShareGPT, read into
//! [`EvalDialogue`]s; the `turn` protocol's items; the held-out split by id hash.

pub mod dialogue;
pub mod error;
pub mod fields;
pub mod openai;
pub mod read;
pub mod record;
pub mod sharegpt;
pub mod split;
pub mod turns;

pub use dialogue::{check_turns, split_inline_trace, EvalDialogue, Role, Turn};
pub use error::{BadLine, DatasetError, LineProblem};
pub use read::{
    detect_format, read_eval_bytes, read_eval_file, DataFormat, EvalSet, OnBadRecord, ReadOptions,
};
pub use split::{fnv1a64, held_out_split, is_held_out};
pub use turns::{turn_items, TurnItem};
