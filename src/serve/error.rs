//! The OpenAI error shape every failure of the server answers with.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use psy_lm::session::SessionError;
use serde_json::{json, Value};

/// An OpenAI-style error: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    kind: &'static str,
    param: Option<String>,
    code: &'static str,
}

impl ApiError {
    /// A 400 about the field `param` (none when the body as a whole is wrong).
    pub(crate) fn invalid(
        param: Option<&str>,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param: param.map(str::to_string),
            code,
        }
    }

    /// A client-side failure with another status than 400 (413, 408).
    pub(crate) fn request(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            message: message.into(),
            kind: "invalid_request_error",
            param: None,
            code,
        }
    }

    /// A failure of the server itself (5xx).
    pub(crate) fn server(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            message: message.into(),
            kind: "server_error",
            param: None,
            code,
        }
    }

    pub(crate) fn queue_full() -> Self {
        ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: "the request queue is full; retry shortly".into(),
            kind: "requests",
            param: None,
            code: "rate_limit_exceeded",
        }
    }

    pub fn status(&self) -> u16 {
        self.status.as_u16()
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// The request field at fault, e.g. `messages[2].content` or `stop[0]`.
    pub fn param(&self) -> Option<&str> {
        self.param.as_deref()
    }

    /// The machine-readable code, e.g. `invalid_type` or `array_above_max_length`.
    pub fn code(&self) -> &str {
        self.code
    }

    pub(crate) fn body(&self) -> Value {
        json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}})
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(self.body())).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::PromptTooLong { .. } => {
                ApiError::invalid(Some("messages"), "context_length_exceeded", e.to_string())
            }
            SessionError::NoClientMessage => {
                ApiError::invalid(Some("messages"), "invalid_value", e.to_string())
            }
            SessionError::Upstream { .. } => {
                ApiError::server(StatusCode::BAD_GATEWAY, "upstream_error", e.to_string())
            }
            other => ApiError::server(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                other.to_string(),
            ),
        }
    }
}
