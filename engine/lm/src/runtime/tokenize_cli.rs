//! `psy tokenize`: shows how a tokenizer splits a text (ids and their tokens).
//!
//! Lives in the engine (not main.rs) so the output format is tested with the tokenizer itself.

use std::path::Path;

use super::tokenizer::{Tokenizer, TokenizerError};

/// Encodes `text` (without special-token post-processing, as the chat path does) with the
/// tokenizer at `path` (tokenizer.json, model directory or GGUF) and formats the result: one
/// `id<TAB>token` line per token, or `{"ids": [...], "tokens": [...]}` with `json`.
pub fn run_tokenize(path: &Path, text: &str, json: bool) -> Result<String, TokenizerError> {
    let tok = Tokenizer::from_path(path)?;
    format_tokens(&tok, text, json)
}

/// As [`run_tokenize`], with an already loaded tokenizer.
pub fn format_tokens(tok: &Tokenizer, text: &str, json: bool) -> Result<String, TokenizerError> {
    let enc = tok.encode_full(text, false)?;
    let ids = enc.get_ids();
    let tokens = enc.get_tokens();
    if json {
        let v = serde_json::json!({ "ids": ids, "tokens": tokens });
        return Ok(format!("{v}\n"));
    }
    let mut out = String::new();
    for (id, t) in ids.iter().zip(tokens) {
        // Debug-escape so that whitespace and control tokens stay visible on one line.
        out.push_str(&format!("{id}\t{t:?}\n"));
    }
    out.push_str(&format!("{} tokens\n", ids.len()));
    Ok(out)
}
