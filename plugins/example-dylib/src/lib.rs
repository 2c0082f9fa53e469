//! A complete psy plugin as a dynamic library: a behavioural-activation modality.
//!
//! Copy this crate to write your own. It does not depend on psy-core at all: the host and
//! the plugin speak a small C ABI with JSON strings (see `psy_core::dylib` for the table).
//!
//! 1. `psy_plugin_abi_version` — the host refuses any other value than the one it speaks.
//! 2. `psy_plugin_engine_requirement` — a semver requirement on psy-core.
//! 3. `psy_plugin_spec` — the module spec as JSON: the same schema as a TOML module manifest
//!    (`psy manifest check` documents it; see `manifests/modules/sfbt.toml`).
//! 4. `psy_plugin_assess` (optional) — your own code: dialogue JSON in, assessment JSON out.
//!    Without it the host scores the spec's cue lexicon, as for a TOML-only module.
//! 5. `psy_plugin_free` — frees what `psy_plugin_assess` returned.
//!
//! Build: `cargo build --release -p psy-example-dylib`, then list the library under
//! `modules.plugins` of a run manifest (`manifests/examples/with-dylib.toml`).

use std::ffi::{c_char, CStr, CString};
use std::sync::OnceLock;

use serde_json::{json, Value};

/// The C ABI version this plugin was written for.
const ABI_VERSION: u32 = 1;

#[no_mangle]
pub extern "C" fn psy_plugin_abi_version() -> u32 {
    ABI_VERSION
}

#[no_mangle]
pub extern "C" fn psy_plugin_engine_requirement() -> *const c_char {
    c">=0.1, <0.2".as_ptr()
}

/// Withdrawal cues: what the client stopped doing. Each (id, label, phrases).
const WITHDRAWAL: &[(&str, &str, &[&str])] = &[
    (
        "stopped-activities",
        "stopped doing things they used to do",
        &[
            "stopped going",
            "stopped seeing",
            "gave up",
            "quit going",
            "don't go out",
            "no longer go",
        ],
    ),
    (
        "inactivity",
        "staying in bed or on the couch",
        &[
            "stay in bed",
            "stayed in bed",
            "lie in bed",
            "on the couch",
            "on the sofa",
            "all day in bed",
        ],
    ),
    (
        "isolation",
        "withdrawing from people",
        &[
            "cancel plans",
            "cancelled plans",
            "avoid my friends",
            "ignore my texts",
            "ignore messages",
        ],
    ),
    (
        "low-motivation",
        "waiting to feel motivated first",
        &[
            "no motivation",
            "not motivated",
            "can't get myself to",
            "can't make myself",
        ],
    ),
];

fn spec() -> &'static CString {
    static SPEC: OnceLock<CString> = OnceLock::new();
    SPEC.get_or_init(|| {
        let cues: Vec<Value> = WITHDRAWAL
            .iter()
            .map(|(id, label, phrases)| json!({ "id": id, "label": label, "weight": 1.0, "phrases": phrases }))
            .collect();
        let spec = json!({
            "schema": 1,
            "module": {
                "id": "behavioural-activation",
                "name": "Behavioural activation",
                "version": "0.1.0",
                "kind": "modality",
                "description": "Re-engage with rewarding and meaningful activity before waiting for mood to lift.",
                "references": ["Martell, Dimidjian & Herman-Dunn, Behavioral Activation for Depression (2010), paraphrased"]
            },
            "principles": ["Action often comes before motivation: small rewarding steps lift mood."],
            "guidelines": ["Link the client's low mood with what they have stopped doing, and plan one small, concrete, enjoyable or meaningful activity."],
            "response_guidelines": ["Suggest one small step the client can try this week, in their own terms; never lecture."],
            "reasoning_steps": [{
                "id": "activity-link", "stage": "modality",
                "title": "What has the client stopped doing?",
                "instruction": "Notice withdrawal from activities and people, and how it feeds the low mood."
            }],
            "techniques": [{
                "id": "activity-scheduling", "name": "Activity scheduling",
                "when": "Withdrawal or inactivity keeps mood low.",
                "how": "Pick one small thing you used to enjoy and put it in your week, even for ten minutes.",
                "cues": ["stopped-activities", "inactivity"]
            }],
            "cues": cues,
            "rubric": [{
                "id": "ba-activity-plan", "name": "Concrete activity plan",
                "description": "The counselor helps the client choose a specific, small, scheduled activity.",
                "scale": [0, 6]
            }]
        });
        CString::new(spec.to_string()).expect("JSON has no NUL bytes")
    })
}

#[no_mangle]
pub extern "C" fn psy_plugin_spec() -> *const c_char {
    spec().as_ptr()
}

/// Scores withdrawal in the client's turns: each cue found in a client message counts once,
/// and the score is 1 - exp(-hits / 2), the same shape as the engine's lexicon score.
fn assess(dialogue: &Value) -> Value {
    let mut cues = Vec::new();
    let mut hits = 0u32;
    let messages = dialogue["messages"].as_array().cloned().unwrap_or_default();
    for (index, m) in messages.iter().enumerate() {
        if m["role"] != "user" {
            continue;
        }
        let text = m["content"].as_str().unwrap_or_default();
        let lower = text.to_lowercase();
        for (id, label, phrases) in WITHDRAWAL {
            if let Some((p, start)) = phrases.iter().find_map(|p| lower.find(p).map(|s| (p, s))) {
                hits += 1;
                // Lower-casing ASCII keeps byte offsets; the phrases are ASCII.
                let end = start + p.len();
                cues.push(json!({
                    "id": id, "label": label, "message": index,
                    "start": start, "end": end, "text": text.get(start..end).unwrap_or(p)
                }));
            }
        }
    }
    let score = ((1.0 - (-(hits as f64) / 2.0).exp()) * 10_000.0).round() / 10_000.0;
    json!({
        "module": "behavioural-activation",
        "indication": { "score": score, "cues": cues, "contraindications": [], "techniques": ["activity-scheduling"] }
    })
}

/// # Safety
/// `dialogue_json` must be a valid NUL-terminated string (the host guarantees it).
#[no_mangle]
pub unsafe extern "C" fn psy_plugin_assess(dialogue_json: *const c_char) -> *mut c_char {
    if dialogue_json.is_null() {
        return std::ptr::null_mut();
    }
    // Never unwind across the C boundary.
    let result = std::panic::catch_unwind(|| {
        let text = unsafe { CStr::from_ptr(dialogue_json) }.to_str().ok()?;
        let dialogue: Value = serde_json::from_str(text).ok()?;
        CString::new(assess(&dialogue).to_string()).ok()
    });
    match result {
        Ok(Some(s)) => s.into_raw(),
        _ => std::ptr::null_mut(),
    }
}

/// # Safety
/// `s` must come from `psy_plugin_assess` and be freed once.
#[no_mangle]
pub unsafe extern "C" fn psy_plugin_free(s: *mut c_char) {
    if !s.is_null() {
        drop(unsafe { CString::from_raw(s) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_withdrawal_with_spans() {
        let d = json!({"messages": [{"role": "user", "content": "I stopped going to the gym and I stay in bed all weekend."}]});
        let a = assess(&d);
        let cues = a["indication"]["cues"].as_array().unwrap();
        assert_eq!(cues.len(), 2);
        assert_eq!(cues[0]["text"], "stopped going");
        let expected = ((1.0 - (-1.0f64).exp()) * 10_000.0).round() / 10_000.0;
        assert_eq!(a["indication"]["score"].as_f64().unwrap(), expected);
    }

    #[test]
    fn counselor_turns_are_not_evidence() {
        let d = json!({"messages": [{"role": "assistant", "content": "Have you stopped going out?"}, {"role": "user", "content": "Not really."}]});
        assert_eq!(assess(&d)["indication"]["score"].as_f64().unwrap(), 0.0);
    }
}
