//! The API key comes from the environment variable the config names. Its own test binary:
//! setting a variable must not race other tests' threads reading the environment.

mod judge_support;

use std::sync::Arc;

use judge_support::{call_about, fast_config, validate_score, Reply, ScriptedServer};
use psy_eval::judge::{Judge, JudgeBackend, JudgeError, OpenAiBackend};

#[test]
fn the_api_key_is_read_from_the_named_variable_and_a_missing_one_is_named() {
    let server = ScriptedServer::start(|_, _| Reply::completion(r#"{"score": 5, "reason": "ok"}"#));

    let mut missing = fast_config(&server);
    missing.api_key_env = Some("PSY_TEST_JUDGE_KEY_NEVER_SET".into());
    match OpenAiBackend::new(missing) {
        Err(error @ JudgeError::MissingApiKey { .. }) => {
            let message = error.to_string();
            assert!(
                message.contains("PSY_TEST_JUDGE_KEY_NEVER_SET"),
                "{message}"
            );
            assert!(
                message.contains("judge-model-x") && message.contains(&server.base_url),
                "{message}"
            );
        }
        Err(other) => panic!("expected MissingApiKey, got {other}"),
        Ok(_) => panic!("a backend was built without its API key"),
    }
    assert_eq!(server.request_count(), 0);

    std::env::set_var("PSY_TEST_JUDGE_KEY", "sk-test-0123");
    let mut config = fast_config(&server);
    config.api_key_env = Some("PSY_TEST_JUDGE_KEY".into());
    let backend = OpenAiBackend::new(config).unwrap();
    assert_eq!(
        backend.id(),
        format!("openai:{}:judge-model-x", server.base_url)
    );
    let judge = Judge::new(Arc::new(backend));
    assert_eq!(
        judge
            .judge(&call_about("turn-1"), &validate_score)
            .unwrap()
            .value,
        5
    );
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].headers.get("authorization").unwrap(),
        "Bearer sk-test-0123"
    );
    assert_eq!(seen[0].body["model"], "judge-model-x");
}
