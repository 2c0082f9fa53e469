//! From a judge's raw reply to the JSON verdict: drop reasoning, unwrap a code fence, parse.

use serde_json::Value;

use crate::think::strip_think;

/// The JSON verdict in a judge's reply: reasoning stripped, a ```` ```json ```` fence tolerated,
/// prose before the first `{` and after the value it opens ignored.
///
/// The error says what was wrong (e.g. `EOF while parsing an object at line 1 column 40`); it
/// is sent back to the judge on a repair attempt.
pub fn parse_verdict(text: &str) -> Result<Value, String> {
    let answer = strip_think(text);
    let answer = answer.as_str();
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
