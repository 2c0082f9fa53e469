//! psy core: everything a module author needs and nothing heavier — dialogues, the cue lexicon,
//! the module (plugin) API and registry, the dylib loader, manifests as plain data, the planner
//! and the reply rules. No tensor library and no async runtime: a module crate that depends on
//! `psy-core` alone builds from clean in seconds.
//!
//! Data flows one way: a dialogue is assessed by every active module (findings), the planner
//! turns findings into a [`planner::Plan`], and the plan drives prompts, training targets,
//! decoding rules and rubrics (the model side lives in `psy-lm`).

pub mod affect;
pub mod dialogue;
pub mod dylib;
pub mod eval_spec;
pub mod exemplar_match;
pub mod lexicon;
pub mod manifest;
pub mod manifest_error;
pub mod match_policy;
pub mod module;
pub mod planner;
pub mod registry;
pub mod reply_rules;
pub mod risk_eval;
pub mod semantic;
pub mod synth_spec;
/// Shared checks for module crates' tests (feature `testing`).
#[cfg(feature = "testing")]
pub mod testing;
pub mod train_spec;
pub mod variant_train;
pub mod words;

pub use inventory;
