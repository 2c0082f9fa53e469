//! psy engine: manifests, the module (plugin) API and registry, the planner, and the model
//! runtime.
//!
//! Data flows one way: a dialogue is assessed by every active module (findings), the planner
//! turns findings into a [`planner::Plan`], and the plan drives prompts, training targets,
//! decoding rules and rubrics.

pub mod affect;
pub mod dialogue;
pub mod dylib;
pub mod lexicon;
pub mod manifest;
pub mod module;
pub mod planner;
pub mod registry;
pub mod reply_rules;
pub mod runtime;
pub mod session;
pub mod training;

pub use inventory;
