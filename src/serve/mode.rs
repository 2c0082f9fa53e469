//! Which kind of server is running: the counseling one or the raw one.

use serde::Serialize;

/// Which kind of server this is; `/v1/models` and every response say so in `psy.mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServeMode {
    /// Counseling turns: planned, streamed through the crisis guard, repaired.
    Counsel,
    /// Straight to the model: the request's messages, sampling and `response_format`, no
    /// plan, no guard, no repairs. For judges and data-synthesis teachers, not for people.
    Raw,
}

impl ServeMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ServeMode::Counsel => "counsel",
            ServeMode::Raw => "raw",
        }
    }
}
