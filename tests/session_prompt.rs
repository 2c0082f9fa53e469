//! The session prompt's layout on the shipped chat templates: the run's system message first,
//! the dialogue as it was, and the turn's guidance as a second system message just before the
//! latest client message, so that the next turn's prompt starts with this one's up to it.

mod common;

use std::path::Path;

use psy_lm::runtime::chat_template::{ChatMessage, ChatTemplate, RenderOptions};
use psy_lm::runtime::tokenizer::Tokenizer;

fn render(template: &ChatTemplate, messages: &[ChatMessage]) -> String {
    let opts = RenderOptions {
        add_generation_prompt: true,
        enable_thinking: Some(false),
        tools: None,
    };
    template.render(messages, &opts).unwrap()
}

fn m(role: &str, content: &str) -> ChatMessage {
    ChatMessage::new(role, content)
}

/// The template shipped with the tokenizer (or GGUF) at `path`.
fn shipped(path: &Path) -> ChatTemplate {
    let tok = Tokenizer::from_path(path).unwrap();
    ChatTemplate::for_tokenizer(&tok).unwrap().unwrap()
}

/// The Qwen2.5-Coder GGUF's template, as `scripts/reference/make_qwen25_template_fixture.py`
/// copied it into the fixtures (CI has no GGUF of that family).
fn qwen2_5_fixture() -> (String, ChatTemplate) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/qwen2.5-coder/chat_template.jinja");
    let src = std::fs::read_to_string(&path).unwrap();
    let template = ChatTemplate::from_named_source(
        &path.display().to_string(),
        &src,
        None,
        Some("<|im_end|>"),
    )
    .unwrap();
    (src, template)
}

fn check(template: &ChatTemplate) {
    let turn2 = [
        m("system", "RUN-SYSTEM"),
        m("user", "first message"),
        m("assistant", "first reply"),
        m("system", "GUIDANCE-2"),
        m("user", "second message"),
    ];
    let turn3 = [
        m("system", "RUN-SYSTEM"),
        m("user", "first message"),
        m("assistant", "first reply"),
        m("user", "second message"),
        m("assistant", "second reply"),
        m("system", "GUIDANCE-3"),
        m("user", "third message"),
    ];
    let (a, b) = (render(template, &turn2), render(template, &turn3));
    // Rendered in place, once each, in order.
    let at = |s: &str, x: &str| {
        assert_eq!(s.matches(x).count(), 1, "{x} in {s}");
        s.find(x).unwrap()
    };
    assert!(at(&b, "RUN-SYSTEM") < at(&b, "first message"));
    assert!(at(&b, "second reply") < at(&b, "GUIDANCE-3"));
    assert!(at(&b, "GUIDANCE-3") < at(&b, "third message"));
    // Turn 3 repeats turn 2's prompt up to turn 2's guidance: that prefix is reused.
    let shared = &a[..at(&a, "GUIDANCE-2")];
    let shared = &shared[..shared.rfind("<|im_start|>").unwrap()];
    assert!(b.starts_with(shared), "{shared:?} is not a prefix of {b:?}");
    assert!(shared.contains("first reply"));
}

#[test]
fn smollm2_renders_the_turns_guidance_in_place_and_keeps_the_history_a_prefix() {
    check(&shipped(&common::asset(
        "smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    )));
}

#[test]
fn qwen3_renders_the_turns_guidance_in_place_and_keeps_the_history_a_prefix() {
    check(&shipped(&common::asset("qwen3-tokenizer")));
}

#[test]
fn qwen2_5_renders_the_turns_guidance_in_place_and_keeps_the_history_a_prefix() {
    check(&qwen2_5_fixture().1);
}

#[test]
#[ignore = "needs the Qwen2.5-Coder 1.5B GGUF, which `scripts/setup.sh --test` (CI) does not fetch: scripts/setup.sh"]
fn the_qwen2_5_gguf_ships_the_fixtures_template() {
    let tok = Tokenizer::from_path(&common::asset(
        "qwen2.5-coder/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    ))
    .unwrap();
    assert_eq!(
        tok.chat_template_source(),
        Some(qwen2_5_fixture().0.as_str())
    );
}
