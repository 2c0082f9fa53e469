//! Judge client against a scripted OpenAI-compatible endpoint on loopback: retries (429 with
//! Retry-After, 500, timeouts, refused connections), repair of invalid verdicts, failing fast
//! on 400, bounded concurrency in input order, and the SQLite cache.

mod judge_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use judge_support::{call_about, fast_config, validate_score, Reply, ScriptedServer};
use psy_eval::judge::{Judge, JudgeCache, JudgeError, JudgeProgress, OpenAiBackend, OpenAiConfig};
use serde_json::{json, Value};

const VALID: &str = r#"{"score": 4, "reason": "reflects the feeling before advising"}"#;

fn judge_for(config: OpenAiConfig) -> Judge {
    Judge::new(Arc::new(OpenAiBackend::new(config).unwrap()))
}

fn user_text(body: &Value) -> String {
    body["messages"][1]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_429_with_retry_after_is_waited_out_then_the_verdict_arrives() {
    let server = ScriptedServer::start(|index, _| match index {
        0 => Reply::error(429, "rate limited").with_header("retry-after", "1"),
        _ => Reply::completion(VALID),
    });
    let judge = judge_for(fast_config(&server));
    let started = Instant::now();
    let judged = judge.judge(&call_about("turn-1"), &validate_score).unwrap();
    let elapsed = started.elapsed();
    assert_eq!(judged.value, 4);
    assert_eq!(server.request_count(), 2);
    // The jittered backoff alone would wait at most 20 ms: only the header explains a second.
    assert!(
        elapsed >= Duration::from_secs(1),
        "retried after {elapsed:?}, before Retry-After: 1"
    );
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
}

#[test]
fn a_500_is_retried_and_the_request_carries_model_and_schema() {
    let server = ScriptedServer::start(|index, _| match index {
        0 => Reply::error(500, "upstream exploded"),
        _ => Reply::completion(VALID),
    });
    let judge = judge_for(fast_config(&server));
    let call = call_about("turn-2");
    let judged = judge.judge(&call, &validate_score).unwrap();
    assert_eq!(
        (judged.value, judged.attempts, judged.cached),
        (4, 1, false)
    );
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    let body = &seen[1].body;
    assert_eq!(body["model"], "judge-model-x");
    assert_eq!(body["messages"], json!(call.messages));
    assert_eq!(body["temperature"], json!(0.2));
    assert_eq!(body["max_tokens"], 256);
    assert_eq!(body["seed"], 7);
    assert_eq!(
        body["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "empathy_verdict", "schema": call.schema, "strict": true}})
    );
    // No api_key_env configured: no Authorization header.
    assert!(seen[1].headers.get("authorization").is_none());
}

#[test]
fn reported_usage_is_summed_over_repairs_and_a_missing_count_is_not_read_as_zero() {
    let server = ScriptedServer::start(|index, body| {
        if user_text(body).contains("no usage") {
            return Reply::completion(VALID);
        }
        match index {
            0 => Reply::completion_with_usage(r#"{"score": 9, "reason": "x"}"#, 120, 14),
            _ => Reply::completion_with_usage(VALID, 171, 19),
        }
    });
    let judge = judge_for(fast_config(&server));
    let judged = judge.judge(&call_about("turn-u"), &validate_score).unwrap();
    assert_eq!(judged.attempts, 2);
    // 120 + 171 prompt tokens, 14 + 19 completion tokens: what the two replies said.
    let usage = judged.usage.expect("both replies reported usage");
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (291, 33));
    let without = judge
        .judge(&call_about("no usage"), &validate_score)
        .unwrap();
    assert_eq!(
        without.usage, None,
        "an endpoint that says nothing is not 0 tokens"
    );
    let stats = judge.stats();
    assert_eq!(
        (
            stats.prompt_tokens,
            stats.completion_tokens,
            stats.replies_without_usage
        ),
        (291, 33, 1)
    );
}

#[test]
fn truncated_json_is_sent_back_and_the_repair_validates() {
    let truncated = r#"```json
{"score": 3, "reason": "names the"#;
    let server = ScriptedServer::start(move |index, _| match index {
        0 => Reply::completion(truncated),
        _ => Reply::completion(&format!(
            "<think>fix the closing brace</think>\n```json\n{VALID}\n```"
        )),
    });
    let judge = judge_for(fast_config(&server));
    let judged = judge.judge(&call_about("turn-3"), &validate_score).unwrap();
    assert_eq!((judged.value, judged.attempts), (4, 2));
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    let repair = seen[1].body["messages"].as_array().unwrap();
    assert_eq!(
        repair.len(),
        4,
        "system, user, the bad reply, the repair request"
    );
    assert_eq!(
        repair[2],
        json!({"role": "assistant", "content": truncated})
    );
    assert_eq!(repair[3]["role"], "user");
    let ask = repair[3]["content"].as_str().unwrap();
    assert!(
        ask.contains("not valid JSON") && ask.contains("EOF"),
        "repair request: {ask}"
    );
    let stats = judge.stats();
    assert_eq!(
        (stats.backend_calls, stats.repairs, stats.invalid),
        (2, 1, 0)
    );
}

#[test]
fn a_reply_slower_than_the_timeout_is_abandoned_and_retried() {
    let server = ScriptedServer::start(|index, _| match index {
        0 => Reply::completion(VALID).after(Duration::from_secs(3)),
        _ => Reply::completion(VALID),
    });
    let mut config = fast_config(&server);
    config.timeout = Duration::from_millis(300);
    let judge = judge_for(config);
    let started = Instant::now();
    let judged = judge.judge(&call_about("turn-4"), &validate_score).unwrap();
    let elapsed = started.elapsed();
    assert_eq!(judged.value, 4);
    assert_eq!(server.request_count(), 2);
    assert!(
        elapsed >= Duration::from_millis(300),
        "gave up before the timeout: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(2500),
        "waited for the slow reply: {elapsed:?}"
    );
}

#[test]
fn a_verdict_that_never_validates_ends_invalid_after_the_repairs() {
    let server =
        ScriptedServer::start(|_, _| Reply::completion(r#"{"score": 9, "reason": "very good"}"#));
    let judge = judge_for(fast_config(&server)).with_repair_attempts(2);
    let error = judge
        .judge(&call_about("dialogue-7/turn-2"), &validate_score)
        .unwrap_err();
    assert_eq!(server.request_count(), 3, "first answer plus two repairs");
    assert!(error.is_invalid_verdict());
    match error.innermost() {
        JudgeError::Invalid {
            attempts,
            last_error,
            last_text,
            ..
        } => {
            assert_eq!(*attempts, 3);
            assert_eq!(last_error, "`score` must be between 1 and 5, got 9");
            assert_eq!(last_text, r#"{"score": 9, "reason": "very good"}"#);
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    let message = error.to_string();
    assert!(
        message.starts_with("item dialogue-7/turn-2: verdict invalid after 3 attempts"),
        "{message}"
    );
    let stats = judge.stats();
    assert_eq!(
        (
            stats.backend_calls,
            stats.repairs,
            stats.invalid,
            stats.failed
        ),
        (3, 2, 1, 0)
    );
}

#[test]
fn a_400_fails_at_once_with_the_endpoint_and_the_body_message() {
    let server = ScriptedServer::start(|_, _| {
        Reply::error(400, "response_format json_schema is not supported")
    });
    let judge = judge_for(fast_config(&server));
    let error = judge
        .judge(&call_about("turn-5"), &validate_score)
        .unwrap_err();
    assert_eq!(server.request_count(), 1);
    match error.innermost() {
        JudgeError::Rejected {
            status,
            message,
            model,
            base_url,
        } => {
            assert_eq!(*status, 400);
            assert_eq!(message, "response_format json_schema is not supported");
            assert_eq!(model, "judge-model-x");
            assert_eq!(base_url, &server.base_url);
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    let message = error.to_string();
    for part in [
        server.base_url.as_str(),
        "judge-model-x",
        "HTTP 400",
        "turn-5",
    ] {
        assert!(message.contains(part), "`{message}` lacks `{part}`");
    }
    assert_eq!(judge.stats().failed, 1);
}

#[test]
fn persistent_503_gives_up_after_max_attempts() {
    let server = ScriptedServer::start(|_, _| Reply::error(503, "overloaded"));
    let mut config = fast_config(&server);
    config.max_attempts = 3;
    let error = judge_for(config)
        .judge(&call_about("turn-6"), &validate_score)
        .unwrap_err();
    assert_eq!(server.request_count(), 3);
    match error.innermost() {
        JudgeError::Unavailable { attempts, last, .. } => {
            assert_eq!(*attempts, 3);
            assert_eq!(last, "HTTP 503: overloaded");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[test]
fn a_refused_connection_is_retried_then_reported() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = OpenAiConfig::new(format!("http://127.0.0.1:{port}/v1"), "judge-model-x");
    config.max_attempts = 2;
    config.backoff.base = Duration::from_millis(5);
    let error = judge_for(config)
        .judge(&call_about("turn-7"), &validate_score)
        .unwrap_err();
    match error.innermost() {
        JudgeError::Unavailable { attempts, last, .. } => {
            assert_eq!(*attempts, 2);
            assert!(last.starts_with("cannot connect"), "{last}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[test]
fn judge_all_bounds_requests_in_flight_and_keeps_input_order() {
    // The reply's score is read off the prompt, and early items are slowest, so completion
    // order differs from input order.
    let server = ScriptedServer::start(|_, body| {
        let item: i64 = user_text(body)
            .trim_start_matches("Rate item-")
            .trim_end_matches('.')
            .parse()
            .unwrap();
        let content = json!({"score": item % 5 + 1, "reason": format!("item {item}")}).to_string();
        Reply::completion(&content).after(Duration::from_millis(120 - 8 * item as u64))
    });
    let judge = judge_for(fast_config(&server));
    let calls: Vec<_> = (0..12).map(|i| call_about(&format!("item-{i}"))).collect();
    let mut progress: Vec<JudgeProgress> = Vec::new();
    let results = judge.judge_all(&calls, 3, &validate_score, &mut |p| progress.push(p));
    assert_eq!(server.request_count(), 12);
    assert!(
        server.max_in_flight() <= 3,
        "{} requests in flight",
        server.max_in_flight()
    );
    assert!(server.max_in_flight() >= 2, "the calls ran one at a time");
    let scores: Vec<i64> = results.into_iter().map(|r| r.unwrap().value).collect();
    let expected: Vec<i64> = (0..12).map(|i| i % 5 + 1).collect();
    assert_eq!(scores, expected);
    assert_eq!(
        progress.iter().map(|p| p.done).collect::<Vec<_>>(),
        (1..=12).collect::<Vec<_>>()
    );
    let mut indices: Vec<usize> = progress.iter().map(|p| p.index).collect();
    indices.sort_unstable();
    assert_eq!(indices, (0..12).collect::<Vec<_>>());
    assert!(progress.iter().all(|p| p.ok && !p.cached && p.total == 12));
}

#[test]
fn judge_all_reports_each_failure_in_its_slot() {
    let server = ScriptedServer::start(|_, body| {
        if user_text(body).contains("item-1.") {
            Reply::error(422, "unprocessable")
        } else {
            Reply::completion(VALID)
        }
    });
    let judge = judge_for(fast_config(&server));
    let calls: Vec<_> = (0..3).map(|i| call_about(&format!("item-{i}"))).collect();
    let results = judge.judge_all(&calls, 2, &validate_score, &mut |_| {});
    assert_eq!(results[0].as_ref().unwrap().value, 4);
    let error = results[1].as_ref().unwrap_err();
    assert!(
        matches!(error.innermost(), JudgeError::Rejected { status: 422, .. }),
        "{error}"
    );
    assert!(error.to_string().starts_with("item item-1: "), "{error}");
    assert_eq!(results[2].as_ref().unwrap().value, 4);
}

#[test]
fn the_cache_answers_reruns_and_misses_on_any_change() {
    let server = ScriptedServer::start(|_, body| {
        let score = if user_text(body).contains("changed") {
            2
        } else {
            4
        };
        Reply::completion(&json!({"score": score, "reason": "cached?"}).to_string())
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runs/judge-cache.sqlite");
    let calls: Vec<_> = (0..3).map(|i| call_about(&format!("item-{i}"))).collect();
    let fresh_judge =
        || judge_for(fast_config(&server)).with_cache(JudgeCache::open(&path).unwrap());

    let first = fresh_judge();
    let results = first.judge_all(&calls, 2, &validate_score, &mut |_| {});
    assert!(results.iter().all(|r| !r.as_ref().unwrap().cached));
    assert_eq!(server.request_count(), 3);
    assert_eq!(
        (first.stats().cache_hits, first.stats().cache_misses),
        (0, 3)
    );
    assert_eq!(first.cache().unwrap().len().unwrap(), 3);
    drop(first);

    // A new process-like start: same file, same calls, no request at all.
    let second = fresh_judge();
    let mut cached_flags = Vec::new();
    let results = second.judge_all(&calls, 2, &validate_score, &mut |p| {
        cached_flags.push(p.cached)
    });
    assert_eq!(server.request_count(), 3);
    assert_eq!(cached_flags, vec![true; 3]);
    for result in &results {
        let judged = result.as_ref().unwrap();
        assert_eq!((judged.value, judged.attempts, judged.cached), (4, 0, true));
        assert_eq!(
            judged.raw,
            json!({"score": 4, "reason": "cached?"}).to_string()
        );
        assert_eq!(judged.verdict, json!({"score": 4, "reason": "cached?"}));
    }
    assert_eq!(
        (
            second.stats().cache_hits,
            second.stats().cache_misses,
            second.stats().backend_calls
        ),
        (3, 0, 0)
    );

    // no_cache: every call goes out again.
    let forced = fresh_judge().with_no_cache(true);
    forced.judge_all(&calls, 2, &validate_score, &mut |_| {});
    assert_eq!(server.request_count(), 6);
    assert_eq!(
        (forced.stats().cache_hits, forced.stats().backend_calls),
        (0, 3)
    );

    // A changed prompt and a new repeat index are new judgements; the item label is not.
    let third = fresh_judge();
    let mut changed = call_about("item-0");
    changed.messages[1].content = "Rate item-0 (changed).".into();
    assert_eq!(third.judge(&changed, &validate_score).unwrap().value, 2);
    assert_eq!(server.request_count(), 7);
    let mut repeat = call_about("item-0");
    repeat.repeat = 1;
    assert!(!third.judge(&repeat, &validate_score).unwrap().cached);
    assert_eq!(server.request_count(), 8);
    let mut relabelled = call_about("item-0");
    relabelled.item = "another-label".into();
    assert!(third.judge(&relabelled, &validate_score).unwrap().cached);
    assert_eq!(server.request_count(), 8);
    assert_eq!(
        (third.stats().cache_hits, third.stats().cache_misses),
        (1, 2)
    );
}

#[test]
fn invalid_verdicts_are_never_cached() {
    let server =
        ScriptedServer::start(|_, _| Reply::completion(r#"{"score": 0, "reason": "bad"}"#));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.sqlite");
    for run in 1..=2 {
        let judge = judge_for(fast_config(&server))
            .with_cache(JudgeCache::open(&path).unwrap())
            .with_repair_attempts(1);
        assert!(judge
            .judge(&call_about("turn-8"), &validate_score)
            .unwrap_err()
            .is_invalid_verdict());
        assert_eq!(server.request_count(), 2 * run);
        assert!(judge.cache().unwrap().is_empty().unwrap());
    }
}

/// DeepSeek-style reasoning models return their reasoning apart from the answer: it comes back
/// in front of the answer as `<think>...</think>` (a caller such as `psy synth` records it),
/// and the verdict still parses from the answer alone.
#[test]
fn reasoning_content_is_kept_in_front_of_the_answer_and_the_verdict_still_parses() {
    let server = ScriptedServer::start(|_, _| {
        let body = json!({
            "id": "x", "object": "chat.completion", "model": "reasoner",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {
                "role": "assistant",
                "reasoning_content": "The reply reflects first {not JSON}.",
                "content": VALID,
            }}],
        });
        Reply {
            status: 200,
            headers: vec![],
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    });
    let judge = judge_for(fast_config(&server));
    let judged = judge.judge(&call_about("turn-1"), &validate_score).unwrap();
    assert_eq!(judged.value, 4);
    assert_eq!(
        judged.raw,
        format!("<think>The reply reflects first {{not JSON}}.</think>{VALID}")
    );
}
