//! The files of a synth run directory: one append-only JSONL per stage, the kept records, the
//! failure log, the inputs' hashes and the report.

use psy_core::synth_spec::StageId;

/// The stage files, in pipeline order.
pub const STAGE_FILES: [(StageId, &str); 4] = [
    (StageId::Plan, "plan.jsonl"),
    (StageId::Client, "client.jsonl"),
    (StageId::Counselor, "counselor.jsonl"),
    (StageId::Filter, "filter.jsonl"),
];
/// Kept conversations in the pipeline record format.
pub const RECORDS_FILE: &str = "records.jsonl";
/// Every failed teacher call.
pub const FAILURES_FILE: &str = "failures.jsonl";
/// Hashes of the manifest and posts the run started from.
pub const INPUTS_FILE: &str = "inputs.json";
pub const REPORT_FILE: &str = "report.json";
