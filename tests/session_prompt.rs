//! The session prompt's layout on the shipped chat templates: the run's system message first,
//! the dialogue as it was, and the turn's guidance as a second system message just before the
//! latest client message, so that the next turn's prompt starts with this one's up to it.

mod common;

use std::path::Path;

use psy_lm::runtime::chat_template::{ChatMessage, ChatTemplate, RenderOptions};
use psy_lm::runtime::tokenizer::Tokenizer;

fn render(tok: &Tokenizer, messages: &[ChatMessage]) -> String {
    let template = ChatTemplate::for_tokenizer(tok).unwrap().unwrap();
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

fn check(tokenizer: &Path) {
    let tok = Tokenizer::from_path(tokenizer).unwrap();
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
    let (a, b) = (render(&tok, &turn2), render(&tok, &turn3));
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
    check(&common::asset("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"));
}

#[test]
fn qwen3_renders_the_turns_guidance_in_place_and_keeps_the_history_a_prefix() {
    check(&common::asset("qwen3-tokenizer"));
}

#[test]
#[ignore = "needs the Qwen2.5-Coder 1.5B GGUF, which `scripts/setup.sh --test` (CI) does not fetch: scripts/setup.sh"]
fn qwen2_5_renders_the_turns_guidance_in_place_and_keeps_the_history_a_prefix() {
    check(&common::asset(
        "qwen2.5-coder/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    ));
}
