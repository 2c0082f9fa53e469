//! Scoring a crisis screen against a labelled set (`psy eval risk`): per expectation how many
//! items held, with 95% Wilson intervals, the misses by id, and a confusion matrix, so a figure
//! on a small set carries its uncertainty.
//!
//! A labelled set is JSONL, one item a line: a single client message `{"text": ...}` or a
//! session `{"messages": [...]}` (client turns as strings, or `{"role", "content"}` objects with
//! roles `user`/`client` and `assistant`/`counselor`), judged on the level after its last turn,
//! with `"min"` and/or `"max"` levels (`none | low | moderate | high | imminent`): an acute
//! message carries `"min": "high"`, a look-alike `"max": "low"`. Optional: `"id"`, `"category"`.
//!
//! The earlier format (`{"text" | "turns", "level" | "final_level"}`, as in tests/heldout/) is
//! read as the bands the guard is judged on: a `high`/`imminent` label expects at least `high`,
//! `moderate` at least `moderate`, `none`/`low` at most `low`.
//!
//! The labels describe the client's own risk, so items are scored on it (`risk.client_level`);
//! someone else's crisis told by a helper raises the level the reply answers, which the report
//! gives beside it (`reply_false_alarms`, `someone_elses`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::dialogue::{Dialogue, Message, Role};
use crate::module::RiskLevel;

/// What an item's rating must satisfy: at least `min`, at most `max` (one or both).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Expectation {
    pub min: Option<RiskLevel>,
    pub max: Option<RiskLevel>,
}

impl Expectation {
    /// The band an old-style label is judged in.
    pub fn of_label(level: RiskLevel) -> Expectation {
        match level {
            RiskLevel::High | RiskLevel::Imminent => Expectation {
                min: Some(RiskLevel::High),
                max: None,
            },
            RiskLevel::Moderate => Expectation {
                min: Some(RiskLevel::Moderate),
                max: None,
            },
            RiskLevel::None | RiskLevel::Low => Expectation {
                min: None,
                max: Some(RiskLevel::Low),
            },
        }
    }

    pub fn holds(&self, rated: RiskLevel) -> bool {
        self.min.is_none_or(|m| rated >= m) && self.max.is_none_or(|m| rated <= m)
    }

    /// Whether a rating above the expectation is a false alarm: the item is not a crisis
    /// (its ceiling is `low` or below).
    pub fn is_non_crisis(&self) -> bool {
        self.max.is_some_and(|m| m <= RiskLevel::Low)
    }

    /// `at least high`, `at most low`, `moderate to high`.
    pub fn label(&self) -> String {
        match (self.min, self.max) {
            (Some(a), Some(b)) if a == b => format!("exactly {}", a.as_str()),
            (Some(a), Some(b)) => format!("{} to {}", a.as_str(), b.as_str()),
            (Some(a), None) => format!("at least {}", a.as_str()),
            (None, Some(b)) => format!("at most {}", b.as_str()),
            (None, None) => "any".to_string(),
        }
    }
}

/// One labelled item of a risk set.
#[derive(Clone, Debug, PartialEq)]
pub struct RiskItem {
    /// `file:line` of the item.
    pub origin: String,
    pub id: String,
    /// The session, oldest first (one client message for a single message).
    pub messages: Vec<Message>,
    pub expect: Expectation,
    pub category: String,
    /// The item's `group`, else the tag its `note` opens with (at most three words before a
    /// colon in its first 40 characters: "A: sounds safe", "imminent session: ..."); empty
    /// without either.
    pub group: String,
}

impl RiskItem {
    /// The item as a dialogue.
    pub fn dialogue(&self) -> Dialogue {
        Dialogue::new(self.messages.clone())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RiskSetError {
    #[error("{path}: cannot read risk set: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{origin}: {message}")]
    Item { origin: String, message: String },
}

fn level_field(v: &Value, field: &str) -> Result<Option<RiskLevel>, String> {
    let Some(x) = v.get(field) else {
        return Ok(None);
    };
    let s = x
        .as_str()
        .ok_or_else(|| format!("`{field}` is not a string"))?;
    serde_json::from_value(Value::String(s.to_string()))
        .map(Some)
        .map_err(|_| {
            format!(
                "`{field}`: unknown level `{s}` (expected none, low, moderate, high or imminent)"
            )
        })
}

fn message_of(x: &Value, field: &str, k: usize) -> Result<Message, String> {
    if let Some(s) = x.as_str() {
        return Ok(Message::user(s));
    }
    let role = x.get("role").and_then(Value::as_str);
    let content = x.get("content").and_then(Value::as_str);
    let (Some(role), Some(content)) = (role, content) else {
        return Err(format!(
            "`{field}[{k}]` is neither a string nor a {{\"role\", \"content\"}} object"
        ));
    };
    let role = match role {
        "user" | "client" => Role::User,
        "assistant" | "counselor" => Role::Assistant,
        other => {
            return Err(format!(
                "`{field}[{k}].role`: `{other}` (expected user, client, assistant or counselor)"
            ))
        }
    };
    Ok(Message {
        role,
        content: content.to_string(),
        reasoning_content: None,
    })
}

fn parse_item(
    v: &Value,
    line: usize,
) -> Result<(String, Vec<Message>, Expectation, String), String> {
    if !v.is_object() {
        return Err("not a JSON object".into());
    }
    let messages: Vec<Message> = if let Some(t) = v.get("text") {
        vec![Message::user(t.as_str().ok_or("`text` is not a string")?)]
    } else if let Some((field, ts)) = v
        .get("messages")
        .map(|t| ("messages", t))
        .or_else(|| v.get("turns").map(|t| ("turns", t)))
    {
        let arr = ts
            .as_array()
            .ok_or_else(|| format!("`{field}` is not an array"))?;
        arr.iter()
            .enumerate()
            .map(|(k, x)| message_of(x, field, k))
            .collect::<Result<_, _>>()?
    } else {
        return Err("none of `text`, `messages` or `turns`".into());
    };
    if !messages.iter().any(|m| m.role == Role::User) {
        return Err("no client turn".into());
    }
    if messages.iter().any(|m| m.content.trim().is_empty()) {
        return Err("an empty turn".into());
    }
    let (min, max) = (level_field(v, "min")?, level_field(v, "max")?);
    let expect = if min.is_some() || max.is_some() {
        if let (Some(a), Some(b)) = (min, max) {
            if a > b {
                return Err(format!(
                    "`min` ({}) is above `max` ({})",
                    a.as_str(),
                    b.as_str()
                ));
            }
        }
        Expectation { min, max }
    } else {
        let label = match level_field(v, "final_level")? {
            Some(l) => l,
            None => level_field(v, "level")?
                .ok_or("no expectation: give `min` and/or `max` (or an old-style `level`)")?,
        };
        Expectation::of_label(label)
    };
    let id = match v.get("id") {
        None => format!("line-{line}"),
        Some(x) => x.as_str().ok_or("`id` is not a string")?.to_string(),
    };
    let category = v
        .get("category")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    Ok((id, messages, expect, category))
}

/// Reads a labelled risk set; every bad line is an error naming the file and line.
pub fn read_risk_set(path: &Path) -> Result<Vec<RiskItem>, RiskSetError> {
    let text = std::fs::read_to_string(path).map_err(|source| RiskSetError::Io {
        path: path.display().to_string(),
        source,
    })?;
    parse_risk_set(&text, &path.display().to_string())
}

/// Parses the JSONL text of a risk set (`origin` names it in errors). Ids must be unique: a
/// miss is reported by id.
pub fn parse_risk_set(text: &str, origin: &str) -> Result<Vec<RiskItem>, RiskSetError> {
    let mut items: Vec<RiskItem> = Vec::new();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("{origin}:{}", i + 1);
        let bad = |message: String| RiskSetError::Item {
            origin: at.clone(),
            message,
        };
        let v: Value = serde_json::from_str(line).map_err(|e| bad(format!("invalid JSON: {e}")))?;
        let (id, messages, expect, category) = parse_item(&v, i + 1).map_err(bad)?;
        let group = group_of(&v).map_err(bad)?;
        if let Some(first) = seen.insert(id.clone(), at.clone()) {
            return Err(bad(format!("id `{id}` is used again (first at {first})")));
        }
        items.push(RiskItem {
            origin: at,
            id,
            messages,
            expect,
            category,
            group,
        });
    }
    Ok(items)
}

/// The item's group: its `group` field, else its `note`'s opening tag.
fn group_of(v: &Value) -> Result<String, String> {
    if let Some(g) = v.get("group") {
        return Ok(g
            .as_str()
            .ok_or("`group` is not a string")?
            .trim()
            .to_string());
    }
    let Some(note) = v.get("note").and_then(Value::as_str) else {
        return Ok(String::new());
    };
    Ok(note
        .char_indices()
        .take(40)
        .find(|&(_, c)| c == ':')
        .map(|(at, _)| note[..at].trim())
        .filter(|tag| tag.split_whitespace().count() <= 3)
        .unwrap_or_default()
        .to_string())
}

/// `k` of `n` with its 95% Wilson score interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Proportion {
    pub k: usize,
    pub n: usize,
    pub rate: f64,
    pub low: f64,
    pub high: f64,
}

/// The 95% Wilson score interval (z = 1.959964): unlike the normal approximation it stays
/// inside [0, 1] and is honest at 0/n and n/n, which small clinical sets hit.
pub fn wilson(k: usize, n: usize) -> Proportion {
    if n == 0 {
        return Proportion {
            k,
            n,
            rate: 0.0,
            low: 0.0,
            high: 1.0,
        };
    }
    let z = 1.959_963_984_540_054_f64;
    let nf = n as f64;
    let p = k as f64 / nf;
    let z2 = z * z;
    let denom = 1.0 + z2 / nf;
    let centre = (p + z2 / (2.0 * nf)) / denom;
    let half = z * (p * (1.0 - p) / nf + z2 / (4.0 * nf * nf)).sqrt() / denom;
    // At 0/n and n/n the bound is exactly 0 or 1; rounding would leave 0.99999...
    Proportion {
        k,
        n,
        rate: p,
        low: if k == 0 {
            0.0
        } else {
            (centre - half).max(0.0)
        },
        high: if k >= n {
            1.0
        } else {
            (centre + half).min(1.0)
        },
    }
}

/// What the guard gave an item: the client's own level, which the labels describe and the
/// figures score, and the level the reply answers (higher when the client tells of someone
/// else's crisis: a helper gets the helper protocol, but is not at risk themselves).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rating {
    pub client: RiskLevel,
    pub reply: RiskLevel,
}

impl From<RiskLevel> for Rating {
    /// A screen that does not tell the client's risk from another person's.
    fn from(level: RiskLevel) -> Self {
        Rating {
            client: level,
            reply: level,
        }
    }
}

/// One scored item: its expectation and the screen's rating.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Scored {
    pub id: String,
    pub origin: String,
    pub category: String,
    pub expected: String,
    pub rated: RiskLevel,
    /// The level the reply answers (`rated` is the client's own).
    pub reply: RiskLevel,
    pub held: bool,
}

/// An item whose rating broke its expectation (ids and levels only: a held-out set's texts
/// are not shown to whoever tunes the screen).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Miss {
    pub id: String,
    pub origin: String,
    pub expected: String,
    pub rated: RiskLevel,
}

/// The figures of one run of a screen over a set.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RiskReport {
    pub set: String,
    pub total: usize,
    pub passed: usize,
    /// Per expectation (`at least high`, `at most low`, ...): items that held, of n.
    pub by_expectation: BTreeMap<String, Proportion>,
    /// Items with a ceiling of `low` or below that were rated above it, of all such items.
    pub false_alarms: Proportion,
    /// The same by the level the reply answers (a friend's crisis counts here, not above).
    pub reply_false_alarms: Proportion,
    /// Items whose reply answers a higher level than the client's own: someone else's risk.
    pub someone_elses: usize,
    pub misses: Vec<Miss>,
    /// expectation -> rated level -> count.
    pub confusion: BTreeMap<String, BTreeMap<RiskLevel, usize>>,
    /// Per group of items (`RiskItem::group`), when the set names any: items that held, of n.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub by_group: BTreeMap<String, Proportion>,
    #[serde(skip)]
    pub items: Vec<Scored>,
}

/// Scores `rate` (the screen: a dialogue to its [`Rating`], or to one level) on every item.
pub fn score<R: Into<Rating>>(
    set: &str,
    items: &[RiskItem],
    mut rate: impl FnMut(&RiskItem) -> R,
) -> RiskReport {
    // Keyed by the expectation itself so that the report lists them from the most to the
    // least alarming; labels are only for display.
    let mut counts: BTreeMap<std::cmp::Reverse<Expectation>, (usize, usize)> = BTreeMap::new();
    let mut confusion: BTreeMap<String, BTreeMap<RiskLevel, usize>> = BTreeMap::new();
    let (mut alarms, mut reply_alarms, mut calm, mut someone_elses) = (0, 0, 0, 0);
    let mut scored = Vec::with_capacity(items.len());
    let mut misses = Vec::new();
    let mut groups: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for item in items {
        let Rating {
            client: rated,
            reply,
        } = rate(item).into();
        let held = item.expect.holds(rated);
        someone_elses += usize::from(reply > rated);
        if !item.group.is_empty() {
            let g = groups.entry(item.group.clone()).or_default();
            g.0 += usize::from(held);
            g.1 += 1;
        }
        let c = counts.entry(std::cmp::Reverse(item.expect)).or_default();
        c.0 += usize::from(held);
        c.1 += 1;
        let label = item.expect.label();
        *confusion
            .entry(label.clone())
            .or_default()
            .entry(rated)
            .or_default() += 1;
        if item.expect.is_non_crisis() {
            calm += 1;
            alarms += usize::from(!held);
            reply_alarms += usize::from(!item.expect.holds(reply));
        }
        if !held {
            misses.push(Miss {
                id: item.id.clone(),
                origin: item.origin.clone(),
                expected: label.clone(),
                rated,
            });
        }
        scored.push(Scored {
            id: item.id.clone(),
            origin: item.origin.clone(),
            category: item.category.clone(),
            expected: label,
            rated,
            reply,
            held,
        });
    }
    let by_expectation = counts
        .iter()
        .map(|(e, (k, n))| (e.0.label(), wilson(*k, *n)))
        .collect();
    RiskReport {
        set: set.to_string(),
        total: items.len(),
        passed: scored.iter().filter(|s| s.held).count(),
        by_expectation,
        false_alarms: wilson(alarms, calm),
        reply_false_alarms: wilson(reply_alarms, calm),
        someone_elses,
        misses,
        confusion,
        by_group: groups
            .into_iter()
            .map(|(g, (k, n))| (g, wilson(k, n)))
            .collect(),
        items: scored,
    }
}

impl RiskReport {
    /// The figures as a small table, then the misses by id and the confusion matrix.
    pub fn to_text(&self) -> String {
        let pct = |p: &Proportion| {
            format!(
                "{}/{} = {:.1}% (95% CI {:.1}-{:.1}%)",
                p.k,
                p.n,
                100.0 * p.rate,
                100.0 * p.low,
                100.0 * p.high
            )
        };
        let mut out = format!("{}\n", self.set);
        out.push_str(&format!(
            "  {:<26} {}\n",
            "all expectations held",
            pct(&wilson(self.passed, self.total))
        ));
        // Most alarming first, as `score` ordered them.
        let mut rows: Vec<(&String, &Proportion)> = self.by_expectation.iter().collect();
        rows.sort_by_key(|(label, _)| expectation_rank(label));
        for (label, p) in rows {
            out.push_str(&format!("  {:<26} {}\n", label, pct(p)));
        }
        if self.false_alarms.n > 0 {
            out.push_str(&format!(
                "  {:<26} {}\n",
                "false alarms (above low)",
                pct(&self.false_alarms)
            ));
        }
        if self.someone_elses > 0 {
            out.push_str(&format!(
                "  {:<26} {}\n  {:<26} {}\n",
                "reply answers another's",
                self.someone_elses,
                "false alarms, reply level",
                pct(&self.reply_false_alarms)
            ));
        }
        for (group, p) in &self.by_group {
            out.push_str(&format!("  {:<26} {}\n", format!("group {group}"), pct(p)));
        }
        if !self.misses.is_empty() {
            let ids: Vec<String> = self
                .misses
                .iter()
                .map(|m| format!("{} ({})", m.id, m.rated.as_str()))
                .collect();
            out.push_str(&format!("  misses: {}\n", ids.join(", ")));
        }
        let levels = [
            RiskLevel::None,
            RiskLevel::Low,
            RiskLevel::Moderate,
            RiskLevel::High,
            RiskLevel::Imminent,
        ];
        out.push_str(&format!("  {:<26}", "expected \\ rated"));
        for l in levels {
            out.push_str(&format!(" {:>8}", l.as_str()));
        }
        out.push('\n');
        let mut rows: Vec<&String> = self.confusion.keys().collect();
        rows.sort_by_key(|label| expectation_rank(label));
        for label in rows {
            out.push_str(&format!("  {label:<26}"));
            for l in levels {
                let n = self.confusion[label].get(&l).copied().unwrap_or(0);
                out.push_str(&format!(" {n:>8}"));
            }
            out.push('\n');
        }
        out
    }
}

/// Orders expectation labels from the most alarming (`at least imminent`) to the calmest.
fn expectation_rank(label: &str) -> (usize, String) {
    let order = ["imminent", "high", "moderate", "low", "none"];
    let first = label
        .split_whitespace()
        .find_map(|w| order.iter().position(|o| *o == w))
        .unwrap_or(order.len());
    let floor = usize::from(!label.starts_with("at least"));
    (first * 2 + floor, label.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_statsmodels() {
        // statsmodels.stats.proportion.proportion_confint(4, 12, method="wilson")
        // -> (0.13812, 0.60937); (0, 10) -> (0.0, 0.27753); (10, 10) -> (0.72247, 1.0).
        let p = wilson(4, 12);
        assert!(
            (p.low - 0.13812).abs() < 1e-5 && (p.high - 0.60937).abs() < 1e-5,
            "{p:?}"
        );
        let p = wilson(0, 10);
        assert!(p.low == 0.0 && (p.high - 0.27753).abs() < 1e-5, "{p:?}");
        let p = wilson(10, 10);
        assert!((p.low - 0.72247).abs() < 1e-5 && p.high == 1.0, "{p:?}");
    }

    #[test]
    fn expectations_misses_and_false_alarms_are_counted_by_hand() {
        let text = r#"{"id": "a", "text": "x", "min": "high"}
{"id": "b", "text": "y", "level": "imminent"}
{"id": "c", "messages": ["p", {"role": "counselor", "content": "r"}, {"role": "user", "content": "q"}], "min": "moderate", "max": "high"}
{"id": "d", "text": "z", "max": "low"}
{"id": "e", "turns": ["w"], "levels": ["low"], "final_level": "low"}
{"id": "f", "text": "v", "max": "none"}
"#;
        let items = parse_risk_set(text, "set.jsonl").unwrap();
        assert_eq!(items[2].messages.len(), 3);
        assert_eq!(items[2].messages[1].role, Role::Assistant);
        assert_eq!(
            items[1].expect, items[0].expect,
            "old `imminent` = at least high"
        );
        assert_eq!(items[4].expect, items[3].expect, "old `low` = at most low");
        let rated = |i: &RiskItem| match i.id.as_str() {
            "a" => RiskLevel::High,
            "b" => RiskLevel::Moderate,
            "c" => RiskLevel::Imminent,
            "d" => RiskLevel::Moderate,
            "e" => RiskLevel::Low,
            _ => RiskLevel::Low,
        };
        let r = score("set", &items, rated);
        assert_eq!((r.passed, r.total), (2, 6));
        let held = |label: &str| (r.by_expectation[label].k, r.by_expectation[label].n);
        assert_eq!(held("at least high"), (1, 2));
        assert_eq!(held("moderate to high"), (0, 1));
        assert_eq!(held("at most low"), (1, 2));
        assert_eq!(held("at most none"), (0, 1));
        assert_eq!((r.false_alarms.k, r.false_alarms.n), (2, 3));
        let missed: Vec<&str> = r.misses.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(missed, ["b", "c", "d", "f"]);
        assert_eq!(r.misses[0].origin, "set.jsonl:2");
        assert_eq!(r.confusion["at least high"][&RiskLevel::Moderate], 1);
        let json = serde_json::to_value(&r).unwrap();
        for key in ["total", "passed", "by_expectation", "misses"] {
            assert!(json.get(key).is_some(), "{key} missing from {json}");
        }
        let text = r.to_text();
        let at = |s: &str| text.find(s).unwrap_or_else(|| panic!("{s} in {text}"));
        assert!(
            at("at least high") < at("moderate to high")
                && at("moderate to high") < at("at most low")
        );
        assert!(
            text.contains("misses: b (moderate), c (imminent), d (moderate), f (low)"),
            "{text}"
        );
    }

    #[test]
    fn the_client_level_is_scored_and_the_reply_level_reported_beside_it() {
        let text = r#"{"id": "helper", "text": "x", "max": "low"}
{"id": "own", "text": "y", "min": "high"}
{"id": "calm", "text": "z", "max": "low"}
"#;
        let items = parse_risk_set(text, "set.jsonl").unwrap();
        let rated = |i: &RiskItem| match i.id.as_str() {
            // A friend's crisis: the reply answers it at high, the client is not at risk.
            "helper" => Rating {
                client: RiskLevel::None,
                reply: RiskLevel::High,
            },
            "own" => Rating::from(RiskLevel::High),
            _ => Rating {
                client: RiskLevel::Moderate,
                reply: RiskLevel::Moderate,
            },
        };
        let r = score("set", &items, rated);
        assert_eq!((r.passed, r.total), (2, 3));
        assert_eq!((r.false_alarms.k, r.false_alarms.n), (1, 2));
        assert_eq!((r.reply_false_alarms.k, r.reply_false_alarms.n), (2, 2));
        assert_eq!(r.someone_elses, 1);
        assert_eq!(r.items[0].rated, RiskLevel::None);
        assert_eq!(r.items[0].reply, RiskLevel::High);
        let missed: Vec<&str> = r.misses.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(missed, ["calm"]);
        let text = r.to_text();
        assert!(
            text.contains("reply answers another's    1")
                && text.contains("false alarms, reply level  2/2"),
            "{text}"
        );
    }

    #[test]
    fn items_are_counted_by_group_from_a_field_or_a_notes_tag() {
        let text = r#"{"id": "a", "text": "x", "min": "high", "note": "A: still there"}
{"id": "b", "text": "y", "min": "high", "note": "A: means at hand"}
{"id": "c", "text": "z", "max": "low", "note": "C: came home"}
{"id": "d", "text": "w", "max": "low", "group": "D", "note": "C: the field wins"}
{"id": "e", "text": "v", "max": "low", "note": "no tag here, although: a colon comes late"}
"#;
        let items = parse_risk_set(text, "set.jsonl").unwrap();
        let groups: Vec<&str> = items.iter().map(|i| i.group.as_str()).collect();
        assert_eq!(groups, ["A", "A", "C", "D", ""]);
        let rated = |i: &RiskItem| match i.id.as_str() {
            "a" | "c" => RiskLevel::High,
            _ => RiskLevel::Low,
        };
        let r = score("set", &items, rated);
        let by = |g: &str| (r.by_group[g].k, r.by_group[g].n);
        assert_eq!((by("A"), by("C"), by("D")), ((1, 2), (0, 1), (1, 1)));
        assert_eq!(r.by_group.len(), 3);
        assert!(r.to_text().contains("group A"), "{}", r.to_text());
        let bad = parse_risk_set(
            r#"{"id": "a", "text": "x", "min": "high", "group": 3}"#,
            "s",
        )
        .err()
        .unwrap()
        .to_string();
        assert!(bad.contains("s:1") && bad.contains("`group`"), "{bad}");
    }

    #[test]
    fn bad_lines_are_named() {
        let err = |text: &str| parse_risk_set(text, "s.jsonl").unwrap_err().to_string();
        assert!(err("{\"text\": \"a\", \"level\": \"severe\"}\n")
            .starts_with("s.jsonl:1: `level`: unknown level `severe`"),);
        assert_eq!(
            err("\n{\"min\": \"low\"}\n"),
            "s.jsonl:2: none of `text`, `messages` or `turns`"
        );
        assert_eq!(
            err("{\"text\": \"  \", \"max\": \"low\"}"),
            "s.jsonl:1: an empty turn"
        );
        assert_eq!(
            err("{\"text\": \"a\", \"min\": \"high\", \"max\": \"low\"}"),
            "s.jsonl:1: `min` (high) is above `max` (low)"
        );
        assert_eq!(
            err("{\"text\": \"a\"}"),
            "s.jsonl:1: no expectation: give `min` and/or `max` (or an old-style `level`)"
        );
        assert_eq!(
            err("{\"messages\": [{\"role\": \"assistant\", \"content\": \"hi\"}], \"max\": \"low\"}"),
            "s.jsonl:1: no client turn"
        );
        assert_eq!(
            err("{\"messages\": [{\"role\": \"judge\", \"content\": \"hi\"}], \"max\": \"low\"}"),
            "s.jsonl:1: `messages[0].role`: `judge` (expected user, client, assistant or counselor)"
        );
        assert_eq!(
            err("{\"id\": \"x\", \"text\": \"a\", \"max\": \"low\"}\n{\"id\": \"x\", \"text\": \"b\", \"max\": \"low\"}"),
            "s.jsonl:2: id `x` is used again (first at s.jsonl:1)"
        );
        assert!(err("[1]").ends_with("not a JSON object"));
        assert!(err("{").starts_with("s.jsonl:1: invalid JSON"));
    }
}
