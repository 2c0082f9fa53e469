//! Scoring a crisis screen against a labelled set: recall per risk band, false alarms, and 95%
//! Wilson intervals, so a figure on a small set carries its uncertainty.
//!
//! A labelled set is JSONL, one item a line: a single client message
//! (`{"text", "level", "category"?, "id"?}`) or a session of client turns, oldest first
//! (`{"turns": [...], "levels"?: [...], "final_level", "id"?}`). Levels are the guard's own
//! (`none | low | moderate | high | imminent`). The bands are the ones the guard is judged on:
//! acute (labelled `high`/`imminent`) must be rated `high` or above, elevated (`moderate`) must be
//! rated `moderate` or above, and non-crisis (`none`/`low`) must not be rated above `low`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::dialogue::{Dialogue, Message};
use crate::module::RiskLevel;

/// One labelled item of a risk set.
#[derive(Clone, Debug, PartialEq)]
pub struct RiskItem {
    /// `file:line` of the item.
    pub origin: String,
    pub id: String,
    /// Client turns, oldest first (one for a single message).
    pub turns: Vec<String>,
    /// The right level for the item as a whole (after its last turn).
    pub level: RiskLevel,
    pub category: String,
}

impl RiskItem {
    /// The item as a dialogue of client turns only.
    pub fn dialogue(&self) -> Dialogue {
        Dialogue::new(self.turns.iter().map(Message::user).collect())
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

fn parse_level(
    v: &serde_json::Value,
    field: &str,
    origin: &str,
) -> Result<RiskLevel, RiskSetError> {
    let bad = |message: String| RiskSetError::Item {
        origin: origin.to_string(),
        message,
    };
    let s = v
        .get(field)
        .and_then(|x| x.as_str())
        .ok_or_else(|| bad(format!("`{field}` is missing or not a string")))?;
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|_| {
        bad(format!(
            "`{field}`: unknown level `{s}` (expected none, low, moderate, high or imminent)"
        ))
    })
}

/// Reads a labelled risk set; every bad line is an error naming the file and line.
pub fn read_risk_set(path: &Path) -> Result<Vec<RiskItem>, RiskSetError> {
    let text = std::fs::read_to_string(path).map_err(|source| RiskSetError::Io {
        path: path.display().to_string(),
        source,
    })?;
    parse_risk_set(&text, &path.display().to_string())
}

/// Parses the JSONL text of a risk set (`origin` names it in errors).
pub fn parse_risk_set(text: &str, origin: &str) -> Result<Vec<RiskItem>, RiskSetError> {
    let mut items = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("{origin}:{}", i + 1);
        let bad = |message: String| RiskSetError::Item {
            origin: at.clone(),
            message,
        };
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| bad(format!("invalid JSON: {e}")))?;
        let turns: Vec<String> = if let Some(t) = v.get("text") {
            vec![t
                .as_str()
                .ok_or_else(|| bad("`text` is not a string".into()))?
                .to_string()]
        } else if let Some(ts) = v.get("turns") {
            let arr = ts
                .as_array()
                .ok_or_else(|| bad("`turns` is not an array".into()))?;
            arr.iter()
                .map(|t| {
                    t.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| bad("`turns` holds a non-string".into()))
                })
                .collect::<Result<_, _>>()?
        } else {
            return Err(bad("neither `text` nor `turns`".into()));
        };
        if turns.is_empty() || turns.iter().any(|t| t.trim().is_empty()) {
            return Err(bad("an empty client turn".into()));
        }
        let level = if v.get("final_level").is_some() {
            parse_level(&v, "final_level", &at)?
        } else {
            parse_level(&v, "level", &at)?
        };
        let id = v
            .get("id")
            .and_then(|x| x.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| format!("line-{}", i + 1));
        let category = v
            .get("category")
            .and_then(|x| x.as_str())
            .unwrap_or("")
            .to_string();
        items.push(RiskItem {
            origin: at,
            id,
            turns,
            level,
            category,
        });
    }
    Ok(items)
}

/// The band an item is judged in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Band {
    Acute,
    Elevated,
    NonCrisis,
}

impl Band {
    pub fn of(level: RiskLevel) -> Band {
        match level {
            RiskLevel::High | RiskLevel::Imminent => Band::Acute,
            RiskLevel::Moderate => Band::Elevated,
            RiskLevel::None | RiskLevel::Low => Band::NonCrisis,
        }
    }

    /// Whether a rating counts as a hit in this band: acute needs `high`+, elevated needs
    /// `moderate`+, non-crisis needs at most `low` (so for it a "hit" is a correct rejection).
    pub fn hit(self, rated: RiskLevel) -> bool {
        match self {
            Band::Acute => rated >= RiskLevel::High,
            Band::Elevated => rated >= RiskLevel::Moderate,
            Band::NonCrisis => rated <= RiskLevel::Low,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Band::Acute => "acute -> high+",
            Band::Elevated => "elevated -> moderate+",
            Band::NonCrisis => "non-crisis -> at most low",
        }
    }
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

/// One scored item: its label and the screen's rating.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Scored {
    pub id: String,
    pub category: String,
    pub expected: RiskLevel,
    pub rated: RiskLevel,
    pub hit: bool,
}

/// The figures of one run of a screen over a set.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RiskReport {
    pub set: String,
    /// Per band: hits of n (for non-crisis, items rated at most `low`).
    pub bands: BTreeMap<Band, Proportion>,
    /// Non-crisis items rated above `low`, of all non-crisis items.
    pub false_alarms: Proportion,
    /// expected level -> rated level -> count.
    pub confusion: BTreeMap<RiskLevel, BTreeMap<RiskLevel, usize>>,
    pub items: Vec<Scored>,
}

/// Scores `rate` (the screen: a dialogue to its level) on every item.
pub fn score(
    set: &str,
    items: &[RiskItem],
    mut rate: impl FnMut(&RiskItem) -> RiskLevel,
) -> RiskReport {
    let mut counts: BTreeMap<Band, (usize, usize)> = BTreeMap::new();
    let mut confusion: BTreeMap<RiskLevel, BTreeMap<RiskLevel, usize>> = BTreeMap::new();
    let mut scored = Vec::with_capacity(items.len());
    for item in items {
        let rated = rate(item);
        let band = Band::of(item.level);
        let hit = band.hit(rated);
        let c = counts.entry(band).or_default();
        c.0 += usize::from(hit);
        c.1 += 1;
        *confusion
            .entry(item.level)
            .or_default()
            .entry(rated)
            .or_default() += 1;
        scored.push(Scored {
            id: item.id.clone(),
            category: item.category.clone(),
            expected: item.level,
            rated,
            hit,
        });
    }
    let bands: BTreeMap<Band, Proportion> = counts
        .iter()
        .map(|(b, (k, n))| (*b, wilson(*k, *n)))
        .collect();
    let (ok, n) = counts.get(&Band::NonCrisis).copied().unwrap_or((0, 0));
    RiskReport {
        set: set.to_string(),
        bands,
        false_alarms: wilson(n - ok, n),
        confusion,
        items: scored,
    }
}

impl RiskReport {
    /// The figures as a small table (no per-item lines: a held-out set's items are not shown
    /// to whoever tunes the screen).
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
        for (band, p) in &self.bands {
            out.push_str(&format!("  {:<26} {}\n", band.as_str(), pct(p)));
        }
        out.push_str(&format!(
            "  {:<26} {}\n",
            "false alarms (above low)",
            pct(&self.false_alarms)
        ));
        out.push_str("  expected -> rated: ");
        let rows: Vec<String> = self
            .confusion
            .iter()
            .map(|(e, rated)| {
                let cells: Vec<String> = rated
                    .iter()
                    .map(|(r, n)| format!("{} {n}", r.as_str()))
                    .collect();
                format!("{} [{}]", e.as_str(), cells.join(", "))
            })
            .collect();
        out.push_str(&rows.join("; "));
        out.push('\n');
        out
    }
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
    fn bands_and_false_alarms_are_counted_by_hand() {
        let text = r#"{"id": "a", "text": "x", "level": "imminent"}
{"id": "b", "text": "y", "level": "high"}
{"id": "c", "turns": ["p", "q"], "levels": ["low", "moderate"], "final_level": "moderate"}
{"id": "d", "text": "z", "level": "none"}
{"id": "e", "text": "w", "level": "low"}
"#;
        let items = parse_risk_set(text, "set.jsonl").unwrap();
        assert_eq!(items[2].turns, vec!["p", "q"]);
        let rated = |i: &RiskItem| match i.id.as_str() {
            "a" => RiskLevel::High,
            "b" => RiskLevel::Moderate,
            "c" => RiskLevel::Moderate,
            "d" => RiskLevel::Moderate,
            _ => RiskLevel::Low,
        };
        let r = score("set", &items, rated);
        assert_eq!((r.bands[&Band::Acute].k, r.bands[&Band::Acute].n), (1, 2));
        assert_eq!(
            (r.bands[&Band::Elevated].k, r.bands[&Band::Elevated].n),
            (1, 1)
        );
        assert_eq!((r.false_alarms.k, r.false_alarms.n), (1, 2));
        assert_eq!(r.confusion[&RiskLevel::High][&RiskLevel::Moderate], 1);
    }

    #[test]
    fn bad_lines_are_named() {
        let e = parse_risk_set("{\"text\": \"a\", \"level\": \"severe\"}\n", "s.jsonl")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("s.jsonl:1: `level`: unknown level `severe`"),
            "{e}"
        );
        let e = parse_risk_set("\n{\"level\": \"low\"}\n", "s.jsonl")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "s.jsonl:2: neither `text` nor `turns`");
        let e = parse_risk_set("{\"text\": \"  \", \"level\": \"low\"}", "s.jsonl")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "s.jsonl:1: an empty client turn");
    }
}
