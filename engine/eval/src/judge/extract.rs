//! From a judge's raw reply to the JSON verdict: drop reasoning, unwrap a code fence, parse.

use serde_json::Value;

/// The reply without `<think>…</think>` reasoning.
///
/// Reasoning judges (Qwen3, DeepSeek-R1) write their thoughts before the answer; some chat
/// templates open the `<think>` in the prompt, so only the closing tag shows. Everything up to
/// the last `</think>` is dropped; an unclosed `<think>` (reasoning cut off by `max_tokens`)
/// drops the rest of the text.
pub fn strip_think(text: &str) -> &str {
    let after = match text.rfind("</think>") {
        Some(end) => &text[end + "</think>".len()..],
        None => text,
    };
    match after.find("<think>") {
        Some(start) => &after[..start],
        None => after,
    }
}

/// The JSON verdict in a judge's reply: reasoning stripped, a ```` ```json ```` fence tolerated,
/// prose before the first `{` and after the value it opens ignored.
///
/// The error says what was wrong (e.g. `EOF while parsing an object at line 1 column 40`); it
/// is sent back to the judge on a repair attempt.
pub fn parse_verdict(text: &str) -> Result<Value, String> {
    let answer = strip_think(text).trim();
    let body = fenced(answer).unwrap_or(answer);
    let start = body
        .find('{')
        .ok_or_else(|| "the reply holds no JSON object".to_string())?;
    let mut values = serde_json::Deserializer::from_str(&body[start..]).into_iter::<Value>();
    match values.next() {
        Some(Ok(value)) => Ok(value),
        Some(Err(e)) => Err(format!("the reply is not valid JSON: {e}")),
        None => Err("the reply holds no JSON object".to_string()),
    }
}

/// The content of the first Markdown code fence, if the answer has one.
fn fenced(answer: &str) -> Option<&str> {
    let open = answer.find("```")?;
    let rest = &answer[open + 3..];
    // The info string (`json`, `JSON`, nothing) runs to the end of the fence's first line.
    let content = match rest.find('\n') {
        Some(newline) => &rest[newline + 1..],
        None => rest.trim_start_matches(|c: char| c.is_ascii_alphabetic()),
    };
    // A fence never closed (truncated reply) still yields its content for a precise JSON error.
    Some(match content.find("```") {
        Some(close) => &content[..close],
        None => content,
    })
}
