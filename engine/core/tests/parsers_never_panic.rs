//! Property tests: whatever text reaches psy-core's readers (run manifests, module manifests,
//! dialogue files, client messages, cue phrases) gives a value or a typed error, never a
//! panic. Inputs are arbitrary strings and mutations of the shipped files, so the parsers are
//! also exercised past their first line. 256 cases per property keep CI fast.

use std::path::Path;

use proptest::prelude::*;
use psy_core::dialogue::Dialogue;
use psy_core::lexicon::{Lexicon, Pattern, Text};
use psy_core::manifest::parse_run;
use psy_core::manifest_error::line_col;
use psy_core::module::{lexicon_assessment, ModuleSpec};

const RUN: &str = include_str!("../../../manifests/psyllm.toml");
const MODULE: &str = include_str!("../../../manifests/modules/sfbt.toml");

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

/// `base` with a slice replaced by arbitrary text (at char boundaries).
fn mutated(base: &'static str) -> impl Strategy<Value = String> {
    (0..=base.len(), 0usize..64, ".{0,24}").prop_map(move |(at, cut, insert)| {
        let mut start = at.min(base.len());
        while !base.is_char_boundary(start) {
            start -= 1;
        }
        let mut end = (start + cut).min(base.len());
        while !base.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}{insert}{}", &base[..start], &base[end..])
    })
}

/// Text that looks like a dialogue file: JSON messages with odd roles and contents, or not.
fn dialogue_like() -> impl Strategy<Value = String> {
    let message = (
        prop_oneof![
            Just("user"),
            Just("assistant"),
            Just("system"),
            Just("robot"),
            Just("")
        ],
        ".{0,30}",
    )
        .prop_map(|(role, content)| {
            serde_json::json!({"role": role, "content": content}).to_string()
        });
    (
        prop::collection::vec(message, 0..5),
        prop_oneof![Just("\n"), Just(","), Just("")],
        prop_oneof![Just(0u8), Just(1), Just(2)],
        ".{0,8}",
    )
        .prop_map(|(messages, sep, shape, noise)| {
            let body = messages.join(sep);
            match shape {
                0 => format!("[{body}]{noise}"),
                1 => format!("{{\"messages\": [{body}]}}{noise}"),
                _ => format!("{body}{noise}"),
            }
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn run_manifest_text_gives_a_value_or_an_error(text in prop_oneof![".*", mutated(RUN)]) {
        let _ = parse_run(&text, Path::new("fuzz.toml"));
    }

    #[test]
    fn module_manifest_text_gives_a_value_or_an_error(text in prop_oneof![".*", mutated(MODULE)]) {
        if let Ok(spec) = ModuleSpec::from_toml(&text, "fuzz.toml") {
            // A spec that validates also compiles and scores its cues.
            let _ = lexicon_assessment(&spec, &Dialogue::from_message("I feel stuck and alone."));
        }
    }

    #[test]
    fn dialogue_text_gives_a_value_or_an_error(text in prop_oneof![".*", dialogue_like()]) {
        if let Ok(d) = Dialogue::parse(&text, "fuzz.jsonl") {
            prop_assert!(d.client_turns().count() > 0);
        }
    }

    #[test]
    fn any_client_message_and_cue_phrase_can_be_matched(
        message in ".{0,200}",
        phrase in "[a-z_*?. ']{1,24}",
    ) {
        if let Ok(lexicon) = Lexicon::new([(0, phrase.as_str())]) {
            let text = Text::new(&message);
            for hit in lexicon.find(&text) {
                prop_assert!(hit.start <= hit.end && hit.end <= message.len());
                prop_assert_eq!(&message[hit.start..hit.end], hit.text.as_str());
            }
        } else {
            prop_assert!(Pattern::compile(&phrase).is_err());
        }
    }

    #[test]
    fn error_positions_never_split_a_character(text in ".{0,40}", offset in 0usize..200) {
        let (line, column) = line_col(&text, offset);
        prop_assert!(line >= 1 && column >= 1);
    }
}
