//! Model runtime: file formats, tokenisation and prompt rendering.

pub mod chat_template;
pub mod gguf;
pub mod tokenize_cli;
pub mod tokenizer;
