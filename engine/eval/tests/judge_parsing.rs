//! Reading verdicts out of judge replies, Retry-After values and backoff bounds; no server.

use std::time::{Duration, SystemTime};

use psy_eval::judge::{
    cache_key, parse_retry_after, parse_verdict, strip_think, Backoff, ChatMessage, JudgeCall,
};
use serde_json::json;

#[test]
fn reasoning_is_stripped_before_the_verdict_is_read() {
    assert_eq!(
        strip_think("<think>the client sounds hopeless</think>\n{\"a\":1}"),
        "{\"a\":1}"
    );
    // The template opened <think> in the prompt: only the closing tag shows.
    assert_eq!(
        strip_think("weighing it {\"a\": 0}</think>{\"a\":2}"),
        "{\"a\":2}"
    );
    // Reasoning cut off by max_tokens leaves nothing to read.
    assert_eq!(strip_think("<think>still thinking {\"a\": 3}"), "");
    assert_eq!(strip_think("plain"), "plain");
    let reply = "<think>A brace { inside thoughts</think>{\"score\": 2, \"reason\": \"x\"}";
    assert_eq!(
        parse_verdict(reply).unwrap(),
        json!({"score": 2, "reason": "x"})
    );
}

#[test]
fn fences_and_surrounding_prose_are_tolerated() {
    let expected = json!({"score": 3, "reason": "ok"});
    for reply in [
        "```json\n{\"score\": 3, \"reason\": \"ok\"}\n```",
        "```JSON\n{\"score\": 3, \"reason\": \"ok\"}```",
        "```\n{\"score\": 3, \"reason\": \"ok\"}\n```\nHope this helps.",
        "Here is my verdict: {\"score\": 3, \"reason\": \"ok\"} (end)",
        "  {\"score\": 3, \"reason\": \"ok\"}  ",
    ] {
        assert_eq!(parse_verdict(reply).unwrap(), expected, "{reply}");
    }
}

#[test]
fn unreadable_replies_say_why() {
    let truncated = parse_verdict("```json\n{\"score\": 3, \"reason\": \"na").unwrap_err();
    assert!(
        truncated.starts_with("the reply is not valid JSON: EOF while parsing"),
        "{truncated}"
    );
    assert_eq!(
        parse_verdict("I cannot rate this.").unwrap_err(),
        "the reply holds no JSON object"
    );
    let broken = parse_verdict("{\"score\": 3,, }").unwrap_err();
    assert!(broken.contains("line 1 column 13"), "{broken}");
}

#[test]
fn retry_after_reads_seconds_and_http_dates() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_400); // 2015-10-21 07:26:40 UTC
    assert_eq!(parse_retry_after("1", now), Some(Duration::from_secs(1)));
    assert_eq!(
        parse_retry_after(" 120 ", now),
        Some(Duration::from_secs(120))
    );
    assert_eq!(
        parse_retry_after("1.5", now),
        Some(Duration::from_millis(1500))
    );
    assert_eq!(
        parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
        Some(Duration::from_secs(80))
    );
    assert_eq!(
        parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
        Some(Duration::ZERO)
    );
    assert_eq!(parse_retry_after("soon", now), None);
    assert_eq!(parse_retry_after("-3", now), None);
}

#[test]
fn backoff_waits_stay_under_the_exponential_ceiling_and_retry_after_is_capped() {
    let backoff = Backoff {
        base: Duration::from_millis(100),
        cap: Duration::from_millis(700),
        retry_after_cap: Duration::from_secs(10),
    };
    // Ceilings 100, 200, 400, then the 700 ms cap.
    for (retry, ceiling_ms) in [(0, 100), (1, 200), (2, 400), (3, 700), (10, 700), (40, 700)] {
        let waits: Vec<Duration> = (0..400).map(|_| backoff.delay(retry, None)).collect();
        let ceiling = Duration::from_millis(ceiling_ms);
        assert!(waits.iter().all(|w| *w <= ceiling), "retry {retry}");
        // Full jitter: the waits spread over the range rather than sitting at the ceiling.
        assert!(
            waits.iter().any(|w| *w < ceiling / 4),
            "retry {retry}: no short wait"
        );
        assert!(
            waits.iter().any(|w| *w > ceiling * 3 / 4),
            "retry {retry}: no long wait"
        );
    }
    assert_eq!(
        backoff.delay(0, Some(Duration::from_secs(3))),
        Duration::from_secs(3)
    );
    assert_eq!(
        backoff.delay(0, Some(Duration::from_secs(3600))),
        Duration::from_secs(10)
    );
}

#[test]
fn the_cache_key_covers_every_input_but_the_item_label() {
    let base = JudgeCall {
        messages: vec![ChatMessage::system("rate"), ChatMessage::user("reply A")],
        schema: json!({"type": "object"}),
        schema_name: "v".into(),
        temperature: 0.0,
        max_tokens: 64,
        seed: None,
        repeat: 0,
        rubric_key: "cpsycoun@1".into(),
        item: "a".into(),
    };
    let key = cache_key("openai:http://x/v1:m", &base);
    assert_eq!(key.len(), 64);
    assert!(key.chars().all(|c| c.is_ascii_hexdigit()));
    let mut relabelled = base.clone();
    relabelled.item = "b".into();
    assert_eq!(cache_key("openai:http://x/v1:m", &relabelled), key);
    let variants: [fn(&mut JudgeCall); 8] = [
        |c| c.messages[1].content.push('!'),
        |c| c.messages[0].role = "user".into(),
        |c| c.schema = json!({"type": "object", "required": []}),
        |c| c.temperature = 1e-6,
        |c| c.max_tokens = 65,
        |c| c.seed = Some(0),
        |c| c.repeat = 1,
        |c| c.rubric_key = "cpsycoun@2".into(),
    ];
    for (n, change) in variants.iter().enumerate() {
        let mut changed = base.clone();
        change(&mut changed);
        assert_ne!(
            cache_key("openai:http://x/v1:m", &changed),
            key,
            "change {n} kept the key"
        );
    }
    assert_ne!(cache_key("openai:http://x/v1:other", &base), key);
}
