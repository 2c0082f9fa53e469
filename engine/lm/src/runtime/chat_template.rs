//! Chat-template rendering that matches transformers' `apply_chat_template` byte for byte.
//!
//! Why these settings: transformers renders with a Jinja2 `ImmutableSandboxedEnvironment(
//! trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])`, overrides `tojson` with
//! `json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)` (not
//! HTML-escaped), and adds the globals `raise_exception` and `strftime_now`. Templates also call
//! Python string methods (`.startswith`, `.split`, `.strip`…), which minijinja-contrib's pycompat
//! provides. Values are printed like Python's `str()` (`None`, `True`), as Jinja2 does.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use std::sync::Arc;

use minijinja::value::{Enumerator, Kwargs, Object, ValueKind};
use minijinja::{Environment, Error, ErrorKind, Value};
use serde::{Deserialize, Serialize};

/// Name of a template given as bare source (no file it came from).
const INLINE_NAME: &str = "chat_template";

/// Instructions (and ~64 bytes of allocation each) one render may spend by default. A 400-turn
/// Qwen3 conversation of ~4 kB turns with tools renders within a tenth of it (checked in
/// `tests/model_files.rs`); a template that loops (nested `range`s) stops here with
/// [`ChatTemplateError::Limit`] instead of holding a worker.
pub const RENDER_FUEL: u64 = 20_000_000;

/// Nesting depth (loops, conditionals, macro calls) a template may reach; real chat templates
/// nest a handful of levels, a self-recursive macro hits this.
pub const RECURSION_LIMIT: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum ChatTemplateError {
    #[error("chat template does not compile: {0}")]
    Syntax(String),
    #[error("chat template raised an exception: {0}")]
    Raised(String),
    #[error("chat template rendering failed: {0}")]
    Render(String),
    #[error("chat template `{template}` stopped: {reason}")]
    Limit { template: String, reason: String },
}

/// One chat turn, as transformers receives it (`{"role", "content", "reasoning_content"?}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
    /// Left out of the template context when `None`, so `is defined` checks behave as in HF.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: content.into(),
            reasoning_content: None,
        }
    }
}

/// Keyword arguments of `apply_chat_template` that psy uses.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RenderOptions {
    pub add_generation_prompt: bool,
    /// Qwen3's switch; absent (undefined in the template) when `None`.
    pub enable_thinking: Option<bool>,
    /// JSON tool schemas; `None` renders as Python `None` (transformers always passes `tools`).
    pub tools: Option<Vec<serde_json::Value>>,
}

/// A compiled chat template plus the special tokens transformers passes to it.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    env: Environment<'static>,
    /// Where the template came from (a file path, or `chat_template` for inline source).
    name: String,
    /// Fuel per render, for the message when it runs out.
    fuel: u64,
    bos_token: Option<String>,
    eos_token: Option<String>,
}

impl ChatTemplate {
    /// Compiles `src` (from `tokenizer_config.json` or GGUF `tokenizer.chat_template`).
    pub fn from_source(
        src: &str,
        bos_token: Option<&str>,
        eos_token: Option<&str>,
    ) -> Result<ChatTemplate, ChatTemplateError> {
        Self::from_named_source(INLINE_NAME, src, bos_token, eos_token)
    }

    /// [`Self::from_source`] with the name errors use for the template (e.g. its file).
    pub fn from_named_source(
        name: &str,
        src: &str,
        bos_token: Option<&str>,
        eos_token: Option<&str>,
    ) -> Result<ChatTemplate, ChatTemplateError> {
        let mut env = Environment::new();
        // Templates come with downloaded model files: bound what one render may do.
        env.set_fuel(Some(RENDER_FUEL));
        env.set_recursion_limit(RECURSION_LIMIT);
        // Jinja2 as transformers runs it never escapes; minijinja would pick JSON escaping for
        // a template named after a `.json` file.
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(false)
            .build()
            .map_err(|e| ChatTemplateError::Syntax(format!("{e:#}")))?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.set_formatter(python_formatter);
        env.add_filter("tojson", tojson);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_template_owned(name.to_string(), src.to_string())
            .map_err(|e| ChatTemplateError::Syntax(format!("{e:#}")))?;
        Ok(ChatTemplate {
            env,
            name: name.to_string(),
            fuel: RENDER_FUEL,
            bos_token: bos_token.map(str::to_string),
            eos_token: eos_token.map(str::to_string),
        })
    }

    /// The same template with another fuel budget per render (see [`RENDER_FUEL`]).
    pub fn with_fuel(mut self, fuel: u64) -> Self {
        self.env.set_fuel(Some(fuel));
        self.fuel = fuel;
        self
    }

    /// The template shipped with a tokenizer (`None` if it has none).
    pub fn for_tokenizer(
        tok: &super::tokenizer::Tokenizer,
    ) -> Option<Result<ChatTemplate, ChatTemplateError>> {
        let src = tok.chat_template_source()?;
        let name = tok.source().display().to_string();
        Some(Self::from_named_source(
            &name,
            src,
            tok.bos_token(),
            tok.eos_token(),
        ))
    }

    pub fn render(
        &self,
        messages: &[ChatMessage],
        opts: &RenderOptions,
    ) -> Result<String, ChatTemplateError> {
        let tmpl = self
            .env
            .get_template(&self.name)
            .map_err(|e| ChatTemplateError::Syntax(format!("{e:#}")))?;
        let msgs: Vec<Value> = messages
            .iter()
            .map(|m| {
                let mut o = vec![
                    ("role".to_string(), Value::from(m.role.as_str())),
                    ("content".to_string(), Value::from(m.content.as_str())),
                ];
                if let Some(r) = &m.reasoning_content {
                    o.push(("reasoning_content".to_string(), Value::from(r.as_str())));
                }
                ordered_map(o)
            })
            .collect();
        let mut ctx: BTreeMap<&str, Value> = BTreeMap::new();
        ctx.insert("messages", Value::from(msgs));
        ctx.insert(
            "tools",
            match &opts.tools {
                None => Value::from(()),
                Some(t) => Value::from(t.iter().map(json_to_value).collect::<Vec<_>>()),
            },
        );
        ctx.insert("documents", Value::from(()));
        ctx.insert(
            "add_generation_prompt",
            Value::from(opts.add_generation_prompt),
        );
        if let Some(t) = opts.enable_thinking {
            ctx.insert("enable_thinking", Value::from(t));
        }
        if let Some(b) = &self.bos_token {
            ctx.insert("bos_token", Value::from(b.as_str()));
        }
        if let Some(e) = &self.eos_token {
            ctx.insert("eos_token", Value::from(e.as_str()));
        }
        tmpl.render(Value::from(ctx)).map_err(|e| {
            // raise_exception marks its errors with this prefix so callers can tell template
            // refusals (e.g. "roles must alternate") from bugs.
            let detail = e.detail().unwrap_or_default().to_string();
            let out_of_fuel = e.kind() == ErrorKind::OutOfFuel;
            if out_of_fuel || detail.contains("recursion limit exceeded") {
                return ChatTemplateError::Limit {
                    template: self.name.clone(),
                    reason: if out_of_fuel {
                        format!(
                            "out of fuel after {} instructions (does it loop?)",
                            self.fuel
                        )
                    } else {
                        format!("nested deeper than {RECURSION_LIMIT} levels (does it recurse?)")
                    },
                };
            }
            match detail.strip_prefix(RAISED_PREFIX) {
                Some(msg) => ChatTemplateError::Raised(msg.to_string()),
                None => ChatTemplateError::Render(format!("{e:#}")),
            }
        })
    }
}

const RAISED_PREFIX: &str = "raise_exception: ";

fn raise_exception(msg: String) -> Result<Value, Error> {
    Err(Error::new(
        ErrorKind::InvalidOperation,
        format!("{RAISED_PREFIX}{msg}"),
    ))
}

/// Prints values as Jinja2 does (Python `str()`): `None`, `True`/`False`, Python float repr.
fn python_formatter(
    out: &mut minijinja::Output,
    state: &mut minijinja::State,
    value: &Value,
) -> Result<(), Error> {
    let s = match value.kind() {
        ValueKind::None => "None".to_string(),
        ValueKind::Bool => if value.is_true() { "True" } else { "False" }.to_string(),
        ValueKind::Number if !value.is_integer() => match f64::try_from(value.clone()) {
            Ok(f) => python_float(f, false),
            Err(_) => return minijinja::escape_formatter(out, state, value),
        },
        _ => return minijinja::escape_formatter(out, state, value),
    };
    out.write_str(&s).map_err(Error::from)
}

/// transformers' `tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`.
fn tojson(value: &Value, indent: Option<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    let indent = match indent {
        Some(i) => Some(i),
        None => kwargs.get::<Option<Value>>("indent")?,
    };
    let indent: Option<String> = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => match v.as_str() {
            Some(s) => Some(s.to_string()),
            None => Some(" ".repeat(usize::try_from(v)?)),
        },
    };
    let ensure_ascii = kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false);
    let sort_keys = kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false);
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    kwargs.assert_all_used()?;
    // json.dumps defaults: (', ', ': ') without indent, (',', ': ') with it.
    let (item_sep, key_sep) = match separators {
        Some(s) if s.len() == 2 => (s[0].clone(), s[1].clone()),
        Some(_) => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "tojson: separators must be a pair",
            ))
        }
        None if indent.is_some() => (",".to_string(), ": ".to_string()),
        None => (", ".to_string(), ": ".to_string()),
    };
    let opts = JsonOpts {
        indent,
        item_sep,
        key_sep,
        ensure_ascii,
        sort_keys,
    };
    let mut out = String::new();
    write_json(&mut out, value, &opts, 0)?;
    Ok(Value::from(out))
}

struct JsonOpts {
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    ensure_ascii: bool,
    sort_keys: bool,
}

fn write_json(out: &mut String, v: &Value, o: &JsonOpts, level: usize) -> Result<(), Error> {
    let newline = |out: &mut String, level: usize| {
        if let Some(ind) = &o.indent {
            out.push('\n');
            for _ in 0..level {
                out.push_str(ind);
            }
        }
    };
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => {
            if v.is_integer() {
                let _ = write!(out, "{v}");
            } else {
                out.push_str(&python_float(f64::try_from(v.clone())?, true));
            }
        }
        ValueKind::String => write_json_str(out, v.as_str().unwrap_or_default(), o.ensure_ascii),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = v.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(&o.item_sep);
                }
                newline(out, level + 1);
                write_json(out, item, o, level + 1)?;
            }
            newline(out, level);
            out.push(']');
        }
        ValueKind::Map => {
            let mut keys: Vec<Value> = v.try_iter()?.collect();
            if keys.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            if o.sort_keys {
                keys.sort();
            }
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(&o.item_sep);
                }
                newline(out, level + 1);
                // Python coerces non-string keys to their JSON text.
                match k.as_str() {
                    Some(s) => write_json_str(out, s, o.ensure_ascii),
                    None => write_json_str(out, &k.to_string(), o.ensure_ascii),
                }
                out.push_str(&o.key_sep);
                write_json(out, &v.get_item(k)?, o, level + 1)?;
            }
            newline(out, level);
            out.push('}');
        }
        _ => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("tojson: cannot serialise a {} value", v.kind()),
            ))
        }
    }
    Ok(())
}

/// Python json string escaping (`ensure_ascii` escapes everything outside ' '..='~').
fn write_json_str(out: &mut String, s: &str, ensure_ascii: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if ensure_ascii && !(' '..='~').contains(&c) => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Python's `repr(float)` (json variant: `Infinity`/`NaN` instead of `inf`/`nan`).
fn python_float(f: f64, json: bool) -> String {
    if f.is_nan() {
        return if json { "NaN" } else { "nan" }.into();
    }
    if f.is_infinite() {
        let s = if json { "Infinity" } else { "inf" };
        return if f < 0.0 { format!("-{s}") } else { s.into() };
    }
    // Shortest round-trip digits, then Python's layout: positional for 1e-4 <= |f| < 1e16.
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..16).contains(&exp) {
        let s = format!("{f}");
        if s.contains('.') {
            s
        } else {
            format!("{s}.0")
        }
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    }
}

/// Converts JSON (tool schemas) to template values, keeping key order.
pub fn json_to_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::from(()),
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(a) => Value::from(a.iter().map(json_to_value).collect::<Vec<_>>()),
        serde_json::Value::Object(o) => ordered_map(
            o.iter()
                .map(|(k, v)| (k.clone(), json_to_value(v)))
                .collect(),
        ),
    }
}

/// A map that iterates in insertion order, as Python dicts do (matters for `tojson` and
/// `for k, v in d.items()`); minijinja's own map types sort or need extra dependencies.
#[derive(Debug)]
struct OrderedMap(Vec<(String, Value)>);

impl Object for OrderedMap {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let key = key.as_str()?;
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        let keys: Vec<Value> = self
            .0
            .iter()
            .map(|(k, _)| Value::from(k.as_str()))
            .collect();
        Enumerator::Iter(Box::new(keys.into_iter()))
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.0.len())
    }
}

fn ordered_map(entries: Vec<(String, Value)>) -> Value {
    Value::from_object(OrderedMap(entries))
}

/// `strftime_now(format)`: Python's `datetime.now().strftime(format)` for the common
/// directives (templates use it for "Today's date"). Uses UTC, the clock of our servers.
fn strftime_now(format: String) -> Result<Value, Error> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    Ok(Value::from(strftime(&format, secs)?))
}

fn strftime(format: &str, unix_secs: i64) -> Result<String, Error> {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const DAYS: [&str; 7] = [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
    ];
    let days = unix_secs.div_euclid(86_400);
    let tod = unix_secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let weekday = (days + 3).rem_euclid(7) as usize; // 1970-01-01 was a Thursday (index 3).
    let (hh, mm, ss) = (tod / 3600, tod / 60 % 60, tod % 60);
    let yday = days - days_from_civil(y, 1, 1) + 1;
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(spec) = chars.next() else {
            out.push('%');
            break;
        };
        let _ = match spec {
            'Y' => write!(out, "{y}"),
            'y' => write!(out, "{:02}", y.rem_euclid(100)),
            'm' => write!(out, "{m:02}"),
            'd' => write!(out, "{d:02}"),
            '-' => match chars.next() {
                Some('d') => write!(out, "{d}"),
                Some('m') => write!(out, "{m}"),
                Some('H') => write!(out, "{hh}"),
                other => {
                    return Err(Error::new(
                        ErrorKind::InvalidOperation,
                        format!(
                            "strftime_now: unsupported directive %-{}",
                            other.unwrap_or(' ')
                        ),
                    ))
                }
            },
            'B' => write!(out, "{}", MONTHS[(m - 1) as usize]),
            'b' | 'h' => write!(out, "{}", &MONTHS[(m - 1) as usize][..3]),
            'A' => write!(out, "{}", DAYS[weekday]),
            'a' => write!(out, "{}", &DAYS[weekday][..3]),
            'H' => write!(out, "{hh:02}"),
            'I' => write!(out, "{:02}", if hh % 12 == 0 { 12 } else { hh % 12 }),
            'p' => write!(out, "{}", if hh < 12 { "AM" } else { "PM" }),
            'M' => write!(out, "{mm:02}"),
            'S' => write!(out, "{ss:02}"),
            'j' => write!(out, "{yday:03}"),
            'F' => write!(out, "{y}-{m:02}-{d:02}"),
            'T' => write!(out, "{hh:02}:{mm:02}:{ss:02}"),
            '%' => write!(out, "%"),
            other => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("strftime_now: unsupported directive %{other}"),
                ))
            }
        };
    }
    Ok(out)
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(src: &str, ctx: serde_json::Value) -> String {
        let t = ChatTemplate::from_source(src, None, None).unwrap();
        t.env
            .render_str(src, json_to_value(&ctx))
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    #[test]
    fn tojson_matches_python_json_dumps() {
        let ctx =
            serde_json::json!({"x": {"b": [1, 2.5, 1e-5, 1e16, true, null], "a": "é\"<>&\n"}});
        // json.dumps(x, ensure_ascii=False)
        assert_eq!(
            render("{{ x | tojson }}", ctx.clone()),
            r#"{"b": [1, 2.5, 1e-05, 1e+16, true, null], "a": "é\"<>&\n"}"#
        );
        // json.dumps(x, indent=2) -> separators (',', ': ')
        assert_eq!(
            render("{{ x.b[:2] | tojson(indent=2) }}", ctx.clone()),
            "[\n  1,\n  2.5\n]"
        );
        assert_eq!(
            render("{{ x.a | tojson(ensure_ascii=true) }}", ctx.clone()),
            r#""\u00e9\"<>&\n""#
        );
        assert_eq!(
            render(
                "{{ x | tojson(sort_keys=true, separators=[',', ':']) }}",
                ctx
            ),
            r#"{"a":"é\"<>&\n","b":[1,2.5,1e-05,1e+16,true,null]}"#
        );
    }

    #[test]
    fn python_printing_and_whitespace() {
        let src = "{% for m in xs %}\n  {{ m }}|{% endfor %}\n";
        // trim_blocks eats the newline after a tag; lstrip_blocks strips indentation before one;
        // the single trailing newline of the template is dropped.
        assert_eq!(
            render(src, serde_json::json!({"xs": [null, true, 1.0]})),
            "  None|  True|  1.0|"
        );
    }

    #[test]
    fn raise_exception_is_reported() {
        let t = ChatTemplate::from_source(
            "{% if messages[0].role != 'user' %}{{ raise_exception('first must be user') }}{% endif %}",
            None,
            None,
        )
        .unwrap();
        let err = t
            .render(
                &[ChatMessage::new("assistant", "hi")],
                &RenderOptions::default(),
            )
            .unwrap_err();
        assert!(
            matches!(&err, ChatTemplateError::Raised(m) if m == "first must be user"),
            "{err}"
        );
    }

    #[test]
    fn strftime_known_dates() {
        // 2024-02-29T13:05:09Z, a Thursday.
        let t = 1_709_211_909;
        assert_eq!(
            strftime("%d %B %Y %A %H:%M:%S %j %b %a %I%p %y", t).unwrap(),
            "29 February 2024 Thursday 13:05:09 060 Feb Thu 01PM 24"
        );
        assert_eq!(strftime("%Y-%m-%d", 0).unwrap(), "1970-01-01");
    }
}
