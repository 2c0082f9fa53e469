//! The [`Drafter`] over HTTP: one streamed chat completion per draft.

use std::io::BufReader;
use std::ops::ControlFlow;
use std::time::Instant;

use psy_lm::runtime::tokenizer::Tokenizer;
use psy_lm::runtime::FinishReason;
use psy_lm::session::{Draft, DraftEvent, DraftRequest, Drafter, SessionError};
use reqwest::blocking::Client;
use serde_json::{json, Map, Value};

use super::config::UpstreamConfig;
use super::label_bias::label_bias;
use super::sse::{next_event, Event};

/// A remote model behind an OpenAI-compatible `/chat/completions` endpoint, streamed.
///
/// Uses a blocking HTTP client: call it from plain threads (the server's worker, the CLI),
/// not from inside an async runtime.
pub struct UpstreamDrafter {
    config: UpstreamConfig,
    endpoint: String,
    api_key: Option<String>,
    tokenizer: Option<Tokenizer>,
    client: Client,
}

impl UpstreamDrafter {
    /// Checks the URL, reads the API key from the variable `config` names and loads the
    /// tokenizer, each failure naming what is wrong.
    pub fn new(config: UpstreamConfig) -> Result<UpstreamDrafter, SessionError> {
        let fail = |message: String| SessionError::Upstream {
            url: config.base_url.clone(),
            message,
        };
        let base = config.base_url.trim_end_matches('/');
        let endpoint = if base.ends_with("/chat/completions") {
            base.to_string()
        } else {
            format!("{base}/chat/completions")
        };
        reqwest::Url::parse(&endpoint).map_err(|e| fail(format!("not a URL ({endpoint}): {e}")))?;
        let api_key = match &config.api_key_env {
            Some(var) => match std::env::var(var) {
                Ok(k) if !k.is_empty() => Some(k),
                _ => return Err(fail(format!("the API key variable {var} is not set"))),
            },
            None => None,
        };
        let tokenizer = match &config.tokenizer {
            Some(p) => Some(Tokenizer::from_path(p)?),
            None => None,
        };
        let client = Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(std::time::Duration::from_secs(10)))
            .build()
            .map_err(|e| fail(format!("cannot build the HTTP client: {e}")))?;
        Ok(UpstreamDrafter {
            config,
            endpoint,
            api_key,
            tokenizer,
            client,
        })
    }

    fn fail(&self, message: impl Into<String>) -> SessionError {
        SessionError::Upstream {
            url: self.endpoint.clone(),
            message: message.into(),
        }
    }

    /// The chat-completions body of `req`: its messages, the assistant prefix as a final
    /// assistant message to continue (vLLM's `continue_final_message`, which `psy serve
    /// --raw` honours too), sampling, stop strings and the label ban as `logit_bias`.
    fn body(&self, req: &DraftRequest, bias: &[u32]) -> Value {
        let mut messages: Vec<Value> = req
            .messages
            .iter()
            .map(|m| json!({"role": m.role, "content": m.content}))
            .collect();
        let mut body = Map::new();
        if !req.assistant_prefix.is_empty() {
            messages.push(json!({"role": "assistant", "content": req.assistant_prefix}));
            body.insert("continue_final_message".into(), json!(true));
            body.insert("add_generation_prompt".into(), json!(false));
        }
        let s = &req.sampling;
        body.insert("model".into(), json!(self.config.model));
        body.insert("messages".into(), Value::Array(messages));
        body.insert("stream".into(), json!(true));
        body.insert("stream_options".into(), json!({"include_usage": true}));
        body.insert("max_tokens".into(), json!(req.max_new_tokens.max(1)));
        body.insert("temperature".into(), json!(s.temperature));
        body.insert("top_p".into(), json!(s.top_p));
        body.insert("seed".into(), json!(s.seed));
        if !req.stop.is_empty() {
            body.insert("stop".into(), json!(req.stop));
        }
        if req.thinking {
            body.insert(
                "chat_template_kwargs".into(),
                json!({"enable_thinking": true}),
            );
        }
        if !bias.is_empty() {
            let map: Map<String, Value> = bias
                .iter()
                .map(|id| (id.to_string(), json!(-100)))
                .collect();
            body.insert("logit_bias".into(), Value::Object(map));
        }
        Value::Object(body)
    }
}

/// Splits streamed content at `<think>` tags for servers that leave reasoning inline.
#[derive(Default)]
struct ThinkTags {
    inside: bool,
}

impl ThinkTags {
    /// Pieces of `text` with whether each is inside `<think>...</think>` (tags dropped).
    fn split<'t>(&mut self, mut text: &'t str) -> Vec<(&'t str, bool)> {
        let mut out = Vec::new();
        loop {
            let tag = if self.inside { "</think>" } else { "<think>" };
            match text.find(tag) {
                Some(i) => {
                    out.push((&text[..i], self.inside));
                    self.inside = !self.inside;
                    text = &text[i + tag.len()..];
                }
                None => {
                    out.push((text, self.inside));
                    return out;
                }
            }
        }
    }
}

fn error_message(body: &str) -> String {
    let v: Option<Value> = serde_json::from_str(body).ok();
    v.as_ref()
        .and_then(|v| v.pointer("/error/message").or_else(|| v.get("error")))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| body.chars().take(300).collect())
}

impl Drafter for UpstreamDrafter {
    fn draft(
        &mut self,
        req: &DraftRequest,
        on_event: &mut dyn FnMut(DraftEvent) -> ControlFlow<()>,
    ) -> Result<Draft, SessionError> {
        let (bias, banned_words) = match (&self.tokenizer, req.banned_phrases.is_empty()) {
            (Some(tok), false) => (
                label_bias(tok, &req.banned_phrases)?,
                psy_lm::session::ModelDrafter::banned_words(&req.banned_phrases),
            ),
            _ => (Vec::new(), Vec::new()),
        };
        let mut request = self
            .client
            .post(&self.endpoint)
            .json(&self.body(req, &bias));
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let started = Instant::now();
        let response = request
            .send()
            .map_err(|e| self.fail(format!("request failed: {e}")))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().unwrap_or_default();
            return Err(self.fail(format!(
                "HTTP {}: {}",
                status.as_u16(),
                error_message(&text)
            )));
        }
        let mut body = BufReader::new(response);
        let mut draft = Draft {
            banned_words,
            ..Default::default()
        };
        let mut tags = ThinkTags::default();
        let mut deltas = 0usize;
        let mut first_token: Option<Instant> = None;
        'stream: while let Some(event) = next_event(&mut body).map_err(|m| self.fail(m))? {
            let chunk = match event {
                Event::Done => break,
                Event::Chunk(c) => c,
            };
            if let Some(e) = chunk.get("error") {
                return Err(self.fail(format!("the stream ended with an error: {e}")));
            }
            if let Some(u) = chunk.get("usage").filter(|u| u.is_object()) {
                let n = |k: &str| u[k].as_u64().unwrap_or(0) as usize;
                draft.prompt_tokens = n("prompt_tokens");
                draft.completion_tokens = n("completion_tokens");
            }
            let Some(choice) = chunk["choices"].get(0) else {
                continue;
            };
            match choice["finish_reason"].as_str() {
                Some("length") => draft.finish = Some(FinishReason::Length),
                Some(_) => draft.finish = Some(FinishReason::StopToken),
                None => {}
            }
            let delta = &choice["delta"];
            let mut pieces: Vec<(String, bool)> = Vec::new();
            for key in ["reasoning_content", "reasoning"] {
                if let Some(r) = delta[key].as_str().filter(|r| !r.is_empty()) {
                    pieces.push((r.to_string(), true));
                }
            }
            if let Some(c) = delta["content"].as_str() {
                for (text, inside) in tags.split(c) {
                    if !text.is_empty() {
                        pieces.push((text.to_string(), inside));
                    }
                }
            }
            for (text, in_think) in pieces {
                first_token.get_or_insert_with(Instant::now);
                deltas += 1;
                if in_think {
                    draft.reasoning.push_str(&text);
                } else {
                    draft.content.push_str(&text);
                }
                let flow = on_event(DraftEvent {
                    delta: &text,
                    in_think,
                });
                if flow.is_break() {
                    // Dropping the body closes the connection: the upstream stops generating.
                    draft.finish = Some(FinishReason::Cancelled);
                    break 'stream;
                }
            }
        }
        if draft.completion_tokens == 0 {
            // No usage reported: count streamed pieces (about one token each).
            draft.completion_tokens = deltas;
        }
        if let Some(t0) = first_token {
            let secs = t0.elapsed().as_secs_f64();
            if secs > 0.0 && deltas > 1 {
                draft.decode_tokens_per_second = (deltas - 1) as f64 / secs;
            }
        }
        tracing::debug!(ms = started.elapsed().as_millis() as u64, "upstream draft");
        Ok(draft)
    }

    fn bans_tokens(&self) -> bool {
        self.tokenizer.is_some()
    }

    fn model_id(&self) -> String {
        self.config.model.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_think_tags_split_content_from_reasoning() {
        let mut t = ThinkTags::default();
        assert_eq!(t.split("<think>plan"), [("", false), ("plan", true)]);
        assert_eq!(t.split(" more</think>Hi"), [(" more", true), ("Hi", false)]);
        assert_eq!(t.split(" there"), [(" there", false)]);
    }
}
