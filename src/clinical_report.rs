//! `psy clinical-report`: diagnostic and modality choice scored on labelled sets, as aggregate
//! top-1 / top-2 counts with 95% Wilson intervals and the planning time per item, through the
//! run's planner (lexicons and encoder) and, for comparison, the same modules by lexicon only.
//!
//! Sets are JSONL (the blind `tests/heldout/vignettes.jsonl` and `modality.jsonl`) or TOML (the
//! tuned `tests/clinical/` files). Only aggregates are printed; `--misses` lists missed items
//! of tuned sets and refuses any path under a `heldout` directory, so a held-out set cannot be
//! read item by item through this command.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use psy_core::dialogue::{Dialogue, Message};
use psy_core::module::{Assessment, Module, ModuleKind};
use psy_core::risk_eval::{wilson, Proportion};
use psy_core::semantic::AssessContext;
use serde::Deserialize;

/// A labelled item: a vignette (1-3 client messages, a condition) or a modality message.
#[derive(Clone, Debug)]
pub enum Item {
    Vignette {
        id: String,
        condition: String,
        messages: Vec<String>,
    },
    Modality {
        id: String,
        expected: String,
        text: String,
    },
}

impl Item {
    pub fn id(&self) -> &str {
        match self {
            Item::Vignette { id, .. } | Item::Modality { id, .. } => id,
        }
    }

    /// The client's turns, with a counselor prompt between them as in a real dialogue.
    pub fn dialogue(&self) -> Dialogue {
        match self {
            Item::Modality { text, .. } => Dialogue::from_message(text.clone()),
            Item::Vignette { messages, .. } => {
                let mut m = Vec::new();
                for (i, t) in messages.iter().enumerate() {
                    if i > 0 {
                        m.push(Message::assistant(
                            "Thank you for telling me. Can you say a bit more?",
                        ));
                    }
                    m.push(Message::user(t.clone()));
                }
                Dialogue::new(m)
            }
        }
    }
}

#[derive(Deserialize)]
struct TomlSet {
    #[serde(default)]
    vignette: Vec<TomlVignette>,
    #[serde(default)]
    case: Vec<TomlCase>,
    #[serde(default)]
    #[allow(dead_code)]
    schema: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlVignette {
    id: String,
    condition: String,
    #[serde(default)]
    #[allow(dead_code)]
    note: String,
    messages: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlCase {
    #[serde(default)]
    set: String,
    expected: String,
    text: String,
}

/// Reads a labelled set: JSONL rows `{id, condition, messages[]}` or `{id, modality, text}`, or
/// TOML `[[vignette]]` / `[[case]]` tables. Errors name the file and line.
pub fn read_set(path: &Path) -> Result<Vec<Item>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read labelled set", path.display()))?;
    let mut out = Vec::new();
    if path.extension().is_some_and(|e| e == "toml") {
        let set: TomlSet =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        for v in set.vignette {
            out.push(Item::Vignette {
                id: v.id,
                condition: v.condition,
                messages: v.messages,
            });
        }
        for (i, c) in set.case.into_iter().enumerate() {
            out.push(Item::Modality {
                id: format!("{}#{}", c.set, i + 1),
                expected: c.expected,
                text: c.text,
            });
        }
    } else {
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let at = format!("{}:{}", path.display(), i + 1);
            let v: serde_json::Value =
                serde_json::from_str(line).with_context(|| format!("{at}: invalid JSON"))?;
            let id = v["id"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("line-{}", i + 1));
            let s = |k: &str| v[k].as_str().map(str::to_string);
            if let (Some(condition), Some(ms)) = (s("condition"), v["messages"].as_array()) {
                let messages: Option<Vec<String>> =
                    ms.iter().map(|m| m.as_str().map(str::to_string)).collect();
                let messages =
                    messages.with_context(|| format!("{at}: `messages` holds a non-string"))?;
                out.push(Item::Vignette {
                    id,
                    condition,
                    messages,
                });
            } else if let (Some(expected), Some(text)) = (s("modality"), s("text")) {
                out.push(Item::Modality { id, expected, text });
            } else {
                bail!("{at}: expected `condition` and `messages`, or `modality` and `text`");
            }
        }
    }
    if out.is_empty() {
        bail!("{}: no labelled items", path.display());
    }
    Ok(out)
}

/// 1-based rank of `want` among the hypotheses of the assessment of module `module`.
pub fn hypothesis_rank(findings: &[Assessment], module: &str, want: &str) -> Option<usize> {
    findings
        .iter()
        .find(|a| a.module == module)?
        .hypotheses
        .iter()
        .position(|h| h.id == want)
        .map(|p| p + 1)
}

/// Rank of `want` among modality scores: 1 only when strictly highest, 2 when one modality
/// scores higher or it ties for the top; `None` when it scores 0 or lower still.
pub fn modality_rank(scores: &[(String, f32)], want: &str) -> Option<usize> {
    let own = scores.iter().find(|(id, _)| id == want)?.1;
    if own <= 0.0 {
        return None;
    }
    let above = scores.iter().filter(|(_, s)| *s > own).count();
    let ties = scores
        .iter()
        .filter(|(id, s)| *s == own && id != want)
        .count();
    match (above, ties) {
        (0, 0) => Some(1),
        (0, _) | (1, 0) => Some(2),
        _ => None,
    }
}

/// Top-1 and top-2 counts of one kind of item, with the planning time.
#[derive(Default)]
pub struct Tally {
    pub n: usize,
    pub top1: usize,
    pub top2: usize,
    pub misses: Vec<String>,
}

impl Tally {
    pub fn add(&mut self, rank: Option<usize>, id: &str) {
        self.n += 1;
        self.top1 += usize::from(rank == Some(1));
        self.top2 += usize::from(rank.is_some_and(|r| r <= 2));
        if rank != Some(1) {
            self.misses.push(format!(
                "{id} (rank {})",
                rank.map_or("none".into(), |r| r.to_string())
            ));
        }
    }

    pub fn line(&self, name: &str) -> String {
        let f = |p: Proportion| {
            format!(
                "{}/{} = {:.1}% [{:.1}, {:.1}]",
                p.k,
                p.n,
                100.0 * p.rate,
                100.0 * p.low,
                100.0 * p.high
            )
        };
        format!(
            "{name}: top-1 {}, top-2 {} (95% Wilson)",
            f(wilson(self.top1, self.n)),
            f(wilson(self.top2, self.n))
        )
    }
}

/// Scores `items` with already-built modules (the planner's, or calibration variants):
/// vignettes by each diagnostic module's ranking, modality messages by strict top score.
pub fn score_with(
    items: &[Item],
    diagnostic: &[&dyn Module],
    modalities: &[&dyn Module],
    ctx: &AssessContext,
) -> Vec<(String, Tally)> {
    let mut tallies: Vec<(String, Tally)> = diagnostic
        .iter()
        .map(|m| (m.spec().module.id.clone(), Tally::default()))
        .collect();
    let mut moda = Tally::default();
    for item in items {
        let dialogue = item.dialogue();
        match item {
            Item::Vignette { condition, .. } => {
                for (m, (id, t)) in diagnostic.iter().zip(tallies.iter_mut()) {
                    let a = m.assess_with(&dialogue, ctx);
                    t.add(hypothesis_rank(&[a], id, condition), item.id());
                }
            }
            Item::Modality { expected, .. } => {
                let scores: Vec<(String, f32)> = modalities
                    .iter()
                    .map(|m| {
                        let a = m.assess_with(&dialogue, ctx);
                        let s = a.indication.map_or(0.0, |i| i.score);
                        (m.spec().module.id.clone(), s)
                    })
                    .collect();
                moda.add(modality_rank(&scores, expected), item.id());
            }
        }
    }
    if moda.n > 0 {
        tallies.push(("modality".into(), moda));
    }
    tallies.retain(|(_, t)| t.n > 0);
    tallies
}

/// `psy clinical-report`: each set scored through the run's planner (with its encoder).
pub fn report(manifest: &Path, sets: &[std::path::PathBuf], misses: bool) -> Result<String> {
    if misses {
        if let Some(p) = sets
            .iter()
            .find(|p| p.components().any(|c| c.as_os_str() == "heldout"))
        {
            bail!(
                "{}: --misses lists items, and held-out sets are reported as aggregates only",
                p.display()
            );
        }
    }
    let planner = crate::planner(manifest)?;
    // Warm-up: the first plan embeds every example sentence once for the process (load time).
    planner.plan(&Dialogue::from_message("Hello."));
    let mut out = String::new();
    for path in sets {
        let items = read_set(path)?;
        let mut diag: Vec<(String, Tally)> = Vec::new();
        let mut moda = Tally::default();
        let started = Instant::now();
        let mut turns = 0usize;
        for item in &items {
            let plan = planner.plan(&item.dialogue());
            turns += 1;
            match item {
                Item::Vignette { condition, .. } => {
                    for module in ["dsm5", "icd11"] {
                        if !plan.findings.iter().any(|a| a.module == module) {
                            continue;
                        }
                        let at = match diag.iter().position(|(m, _)| m == module) {
                            Some(i) => i,
                            None => {
                                diag.push((module.to_string(), Tally::default()));
                                diag.len() - 1
                            }
                        };
                        let r = hypothesis_rank(&plan.findings, module, condition);
                        diag[at].1.add(r, item.id());
                    }
                }
                Item::Modality { expected, .. } => {
                    let scores: Vec<(String, f32)> = plan
                        .modalities
                        .iter()
                        .map(|c| (c.id.clone(), c.score))
                        .collect();
                    moda.add(modality_rank(&scores, expected), item.id());
                }
            }
        }
        let ms = started.elapsed().as_secs_f64() * 1000.0 / turns.max(1) as f64;
        // The same modules without the encoder: what the lexicons alone find.
        let active: Vec<&dyn Module> = planner.active().map(|m| m.as_ref()).collect();
        let kind = |k: ModuleKind| -> Vec<&dyn Module> {
            active
                .iter()
                .copied()
                .filter(|m| m.spec().module.kind == k)
                .collect()
        };
        let lexicon = score_with(
            &items,
            &kind(ModuleKind::Diagnostic),
            &kind(ModuleKind::Modality),
            &AssessContext::default(),
        );
        out.push_str(&format!("== {} ({} items)\n", path.display(), items.len()));
        let mut all: Vec<(String, Tally)> = diag;
        if moda.n > 0 {
            all.push(("modality".into(), moda));
        }
        for (name, t) in &all {
            out.push_str(&t.line(name));
            out.push('\n');
            if misses {
                for m in &t.misses {
                    out.push_str(&format!("  miss {m}\n"));
                }
            }
        }
        for (name, t) in &lexicon {
            out.push_str(&t.line(&format!("{name} (lexicon only)")));
            out.push('\n');
        }
        out.push_str(&format!(
            "planning: {ms:.1} ms per item (whole plan, encoder included, load excluded)\n"
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modality_rank_is_strict_at_the_top() {
        let s = |v: &[(&str, f32)]| -> Vec<(String, f32)> {
            v.iter().map(|(a, b)| (a.to_string(), *b)).collect()
        };
        assert_eq!(modality_rank(&s(&[("a", 0.5), ("b", 0.3)]), "a"), Some(1));
        assert_eq!(modality_rank(&s(&[("a", 0.5), ("b", 0.5)]), "a"), Some(2));
        assert_eq!(modality_rank(&s(&[("a", 0.5), ("b", 0.3)]), "b"), Some(2));
        assert_eq!(
            modality_rank(&s(&[("a", 0.5), ("b", 0.4), ("c", 0.3)]), "c"),
            None
        );
        assert_eq!(modality_rank(&s(&[("a", 0.0), ("b", 0.0)]), "a"), None);
    }

    #[test]
    fn held_out_sets_are_never_listed_item_by_item() {
        let err = report(
            Path::new("manifests/psyllm.toml"),
            &["tests/heldout/modality.jsonl".into()],
            true,
        )
        .unwrap_err();
        assert!(err.to_string().contains("aggregates only"), "{err}");
    }
}
