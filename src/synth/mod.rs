//! `psy synth`: the data-synthesis pipeline (PsyLLM's OpenR1-Psy construction) from a synth
//! manifest, and `psy data stats` over its records.
//!
//! posts (JSONL/CSV) → 1 plan the rounds → 2 client turns → 3 counselor reasoning and reply,
//! round by round with the history in order → 4 filter (judge verdict + modules' filters) →
//! `records.jsonl`. Prompts come from the manifest's templates filled by the planner; every
//! answer is requested under a JSON schema and validated before it becomes a line.

mod csv;
mod dry_run;
mod error;
mod failures;
mod layout;
mod pipeline;
mod posts;
mod prompts;
mod report;
mod schemas;
mod stats;
mod store;

pub use dry_run::dry_run;
pub use error::SynthError;
pub use layout::{RECORDS_FILE, STAGE_FILES};
pub use pipeline::{output_dir, synthesize, SynthOptions};
pub use posts::{read_posts, Post, PostSet, SkippedPost};
pub use report::SynthReport;
pub use stats::{data_stats, DataStats};
pub use store::Store;

mod teacher;

/// `psy synth M --report`: the totals of a run, recomputed from its files.
pub fn report(
    manifest: &std::path::Path,
    output: Option<&std::path::Path>,
) -> Result<SynthReport, SynthError> {
    let synth = psy_core::synth_spec::load_synth(manifest)?;
    let dir = output_dir(&synth, output);
    if !dir.join(layout::INPUTS_FILE).exists() {
        return Err(SynthError::Io {
            path: dir,
            message: "no synth run here (no inputs.json)".into(),
        });
    }
    let posts = read_posts(&synth.input, &synth.manifest.input)?;
    let used = match synth.manifest.synth.max_posts {
        0 => posts.posts.len(),
        n => n.min(posts.posts.len()),
    };
    let old: Option<SynthReport> = std::fs::read_to_string(dir.join(layout::REPORT_FILE))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let (teachers, tokens) = old
        .map(|r| (r.teachers, (r.tokens_reported, r.tokens_estimated)))
        .unwrap_or_default();
    SynthReport::collect(&dir, &synth, &posts, used, &teachers, tokens)
}
