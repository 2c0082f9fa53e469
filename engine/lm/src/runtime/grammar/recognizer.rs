//! The public face of the grammar: a schema compiled once, and a recogniser that follows an
//! output byte by byte.

use std::sync::Arc;

use serde_json::Value;

use super::machine::JsonState;
use super::program::Program;
use super::schema::{parse_schema, SchemaError};

/// A JSON schema of the supported subset, compiled for constrained decoding. Serialises as
/// the schema it was parsed from, so a [`crate::runtime::GenerationConfig`] round-trips.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "Value", into = "Value")]
pub struct JsonSchema {
    source: Value,
    program: Arc<Program>,
}

impl JsonSchema {
    /// Parses and compiles `schema`; anything outside the subset is an error naming its path.
    pub fn parse(schema: &Value) -> Result<JsonSchema, SchemaError> {
        let node = parse_schema(schema)?;
        Ok(JsonSchema {
            source: schema.clone(),
            program: Arc::new(Program::compile(&node)?),
        })
    }

    /// Any JSON object (`response_format: {"type": "json_object"}`).
    pub fn any_object() -> JsonSchema {
        Self::parse(&serde_json::json!({"type": "object"}))
            .expect("the any-object schema is in the subset")
    }

    /// The schema as given.
    pub fn source(&self) -> &Value {
        &self.source
    }

    /// A recogniser at the start of a value.
    pub fn recognizer(&self) -> JsonRecognizer {
        JsonRecognizer {
            state: JsonState::new(&self.program),
            program: self.program.clone(),
        }
    }
}

impl std::fmt::Debug for JsonSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JsonSchema({})", self.source)
    }
}

impl PartialEq for JsonSchema {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl TryFrom<Value> for JsonSchema {
    type Error = SchemaError;
    fn try_from(v: Value) -> Result<Self, SchemaError> {
        JsonSchema::parse(&v)
    }
}

impl From<JsonSchema> for Value {
    fn from(s: JsonSchema) -> Value {
        s.source
    }
}

/// Follows an output through a schema: which bytes may come next, and whether it is complete.
#[derive(Debug, Clone)]
pub struct JsonRecognizer {
    program: Arc<Program>,
    state: JsonState,
}

impl JsonRecognizer {
    /// Consumes `bytes` if all of them may come next; otherwise returns `false` and leaves the
    /// recogniser unchanged.
    pub fn feed(&mut self, bytes: &[u8]) -> bool {
        let mut s = self.state;
        if s.advance_all(&self.program, bytes) {
            self.state = s;
            true
        } else {
            false
        }
    }

    /// Whether `bytes` may come next (nothing is consumed).
    pub fn allows(&self, bytes: &[u8]) -> bool {
        let mut s = self.state;
        s.advance_all(&self.program, bytes)
    }

    /// The output so far is a complete value (it may still go on, as `12` may become `125`).
    pub fn is_complete(&self) -> bool {
        self.state.is_complete(&self.program)
    }

    /// The value is complete and nothing may follow it.
    pub fn is_finished(&self) -> bool {
        self.state.is_finished(&self.program)
    }

    /// Fewest bytes that complete the value.
    pub fn min_bytes_to_complete(&self) -> u32 {
        self.state.min_to_end(&self.program)
    }

    pub(super) fn parts(&self) -> (&Program, &JsonState) {
        (&self.program, &self.state)
    }
}
