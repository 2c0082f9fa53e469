//! Server-sent events of a streamed chat completion, read line by line from a blocking body.

use std::io::BufRead;

use serde_json::Value;

/// One `data:` event of the stream.
#[derive(Debug)]
pub(crate) enum Event {
    Chunk(Value),
    Done,
}

/// Reads the next `data:` event; `None` at the end of the body. Comments, `event:` and `id:`
/// lines are skipped; a `data:` line that is not JSON is an error quoting it.
pub(crate) fn next_event(body: &mut impl BufRead) -> Result<Option<Event>, String> {
    let mut line = String::new();
    loop {
        line.clear();
        let n = body
            .read_line(&mut line)
            .map_err(|e| format!("reading the stream: {e}"))?;
        if n == 0 {
            return Ok(None);
        }
        let Some(data) = line.trim_end().strip_prefix("data:") else {
            continue;
        };
        let data = data.trim_start();
        if data == "[DONE]" {
            return Ok(Some(Event::Done));
        }
        return serde_json::from_str(data)
            .map(|v| Some(Event::Chunk(v)))
            .map_err(|e| format!("a stream event is not JSON ({e}): {}", clip(data)));
    }
}

fn clip(s: &str) -> String {
    match s.char_indices().nth(200) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_chunks_skips_comments_and_ends_at_done() {
        let text =
            ": keep-alive\n\ndata: {\"a\":1}\n\nevent: x\ndata:{\"b\":2}\n\ndata: [DONE]\n\n";
        let mut r = std::io::Cursor::new(text);
        let mut seen = Vec::new();
        while let Some(ev) = next_event(&mut r).unwrap() {
            match ev {
                Event::Chunk(v) => seen.push(v),
                Event::Done => break,
            }
        }
        assert_eq!(
            seen,
            [serde_json::json!({"a": 1}), serde_json::json!({"b": 2})]
        );
        let mut bad = std::io::Cursor::new("data: {oops\n");
        assert!(next_event(&mut bad).unwrap_err().contains("{oops"));
    }
}
