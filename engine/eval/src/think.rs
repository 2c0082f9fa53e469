//! Hidden reasoning is never judged or scored: replies and judge answers lose their `<think>`
//! blocks before anything reads them.

/// The reply without hidden reasoning: every `<think>...</think>` block is removed; an
/// unclosed `<think>` drops everything after it (the model never finished thinking); a
/// `</think>` with no opening tag (templates that open the block in the prompt) drops
/// everything before it. The result is trimmed.
pub fn strip_think(text: &str) -> String {
    const OPEN: &str = "<think>";
    const CLOSE: &str = "</think>";
    let mut rest = text;
    // A closing tag before any opening tag: the block was opened by the prompt.
    if let Some(close) = rest.find(CLOSE) {
        if rest.find(OPEN).is_none_or(|open| open > close) {
            rest = &rest[close + CLOSE.len()..];
        }
    }
    let mut out = String::new();
    while let Some(open) = rest.find(OPEN) {
        out.push_str(&rest[..open]);
        let after = &rest[open + OPEN.len()..];
        match after.find(CLOSE) {
            Some(close) => rest = &after[close + CLOSE.len()..],
            None => {
                rest = "";
                break;
            }
        }
    }
    out.push_str(rest);
    out.trim().to_string()
}
