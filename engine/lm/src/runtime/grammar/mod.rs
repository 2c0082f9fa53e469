//! Grammar-constrained decoding: a JSON schema becomes a token mask, so that every output of
//! [`generate`](crate::runtime::generate) parses as JSON and validates against the schema.
//! Set [`GenerationConfig::json_schema`](crate::runtime::GenerationConfig::json_schema).
//!
//! # Supported subset
//! Exactly what rubric verdicts need; any other keyword is an error naming it and its path.
//! - `{"type": "object", "properties": {...}, "required": [...], "additionalProperties": false}`:
//!   **every declared property is emitted, in declared order**, whatever `required` says
//!   (`required` must name declared properties; `additionalProperties` may be `true` or `false`,
//!   since nothing undeclared is ever written). Objects nest.
//! - `{"type": "object"}` without `properties`: any JSON object (free keys, values of any
//!   type, at most 16 containers deep), for `response_format: {"type": "json_object"}`.
//! - `{"type": "array", "items": {...}, "minItems": n, "maxItems": m}`.
//! - `{"type": "string", "maxLength": n}`: `maxLength` counts characters (an escape is the one
//!   character it stands for); escapes `\" \\ \/ \b \f \n \r \t \uXXXX` (no lone surrogates);
//!   no raw control characters; well-formed UTF-8.
//! - `{"type": "integer", "minimum": a, "maximum": b}`: no digit that leaves the range is ever
//!   allowed (nor leading zeros, `-0`, or `-` when no negative is in range); without bounds,
//!   the `i64` range.
//! - `{"type": "number"}`: `-?(0|[1-9][0-9]*)(\.[0-9]+)?` with at most 15 integer and 15
//!   fraction digits (no exponent), so a number always ends.
//! - `{"type": "boolean"}`; `{"enum": [...]}` of strings and integers (at most 64 values,
//!   optionally with a matching `type`).
//! - Annotations (`title`, `description`, `$schema`, `$id`, `$comment`, `examples`,
//!   `default`) are accepted and ignored.
//!
//! Output is compact JSON: no whitespace except at most one space after a structural `:` or
//! `,`, so a model cannot loop on whitespace.
//!
//! # Bytes, not characters
//! The recogniser works on bytes and checks UTF-8 itself: a byte-level BPE token holding part
//! of a character is allowed when its bytes can start or continue a well-formed character at
//! that point, and the rest stays pending until the next token completes it.
//!
//! # Termination
//! A string without `maxLength` or an array without `maxItems` could run until
//! `max_new_tokens`. When the tokens left fall below the schema's worst-case completion
//! length, the mask also drops every token after which the value could no longer be
//! completed in the remaining tokens (one byte per token), so an output cut by the budget
//! still closes. When the tokens left are fewer than the shortest completion's bytes, every
//! token must shorten that completion (strings close, optional parts are skipped), which
//! closes the value whenever the model's multi-byte tokens make up the difference.

pub mod any_json;
pub mod lexers;
pub mod machine;
pub mod program;
pub mod recognizer;
pub mod schema;
pub mod token_mask;
pub mod token_trie;

pub use recognizer::{JsonRecognizer, JsonSchema};
pub use schema::{parse_schema, EnumValue, SchemaError, SchemaNode};
pub use token_mask::allowed_tokens;
pub use token_trie::TokenTrie;
