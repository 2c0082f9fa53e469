//! `psy train-screen --report`: a screen measured through the whole crisis guard (lexicon,
//! screen, session) on the exemplars' validation split and on labelled session files, with the
//! false alarms broken down by the detector that raised them and by category. The screen is
//! read from a directory, so a candidate is measured without rebuilding psy. The frozen held-out
//! sets (`tests/heldout/`) are refused: they are measured once, by other means.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use psy_core::dialogue::{Dialogue, Message};
use psy_core::module::RiskLevel;
use psy_core::risk_eval::{wilson, Proportion};
use psy_core::semantic::SentenceEmbedder;
use psy_safety::dialogue_risk::assess_dialogue_with_screen;
use psy_safety::screen::{PieceKind, Screen};
use serde::Serialize;
use serde_json::Value;

use crate::train_screen::{in_validation, read_exemplar_dir};

/// One labelled item: client turns (oldest first) and the level the guard should give after
/// the last one.
#[derive(Clone, Debug, Serialize)]
pub struct LabelledItem {
    pub id: String,
    pub category: String,
    pub level: RiskLevel,
    pub turns: Vec<String>,
}

/// What each detector says about an item's last turn.
#[derive(Clone, Debug, Serialize)]
pub struct ItemReading {
    /// The set the item belongs to (`validation messages`, `validation sessions`, a `--set` file).
    pub set: String,
    pub id: String,
    pub category: String,
    pub level: RiskLevel,
    /// The whole guard (the client's own risk).
    pub guard: RiskLevel,
    /// The lexicon (and the session rule over its levels) without the screen (the same).
    pub lexicon: RiskLevel,
    /// The screen on the whole last turn, on its best sentence, and on the turn read with the
    /// earlier ones.
    pub message: RiskLevel,
    pub sentence: RiskLevel,
    pub context: RiskLevel,
    /// The screen's `P(>= moderate)`, `P(>= high)`, `P(imminent)` for the last turn: whole,
    /// the maximum of each over its sentences (when it has several), and read with earlier
    /// turns (when there are any). What the cut-offs are compared with.
    pub p_message: [f32; 3],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_sentence: Option<[f32; 3]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_context: Option<[f32; 3]>,
    /// Every piece of the last turn (message, sentences, context) with its probabilities and
    /// the category head's reading: what a rule over the pieces would see.
    pub pieces: Vec<PieceReading>,
    /// For false alarms and items of `--set` files: the training exemplars closest to the last
    /// turn under the screen's encoder (why the screen reads it as it does).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nearest: Vec<Neighbour>,
}

/// One scored piece of an item's last turn.
#[derive(Clone, Debug, Serialize)]
pub struct PieceReading {
    pub kind: &'static str,
    /// `P(>= moderate)`, `P(>= high)`, `P(imminent)`.
    pub p: [f32; 3],
    /// The level this piece alone gets under its own cut-offs.
    pub level: RiskLevel,
    /// The category head's most likely category and its probability.
    pub category: String,
    pub category_p: f32,
    /// The probability the category head gives the look-alike categories together.
    pub lookalike_p: f32,
}

/// A training exemplar close to an item, with its cosine similarity under the screen's
/// fine-tuned encoder.
#[derive(Clone, Debug, Serialize)]
pub struct Neighbour {
    pub cosine: f32,
    pub level: RiskLevel,
    pub category: String,
    pub text: String,
}

/// Neighbours listed per item.
const NEIGHBOURS: usize = 3;

/// The training split's exemplars embedded by the screen's encoder, for nearest-neighbour
/// explanations.
pub struct TrainingIndex {
    items: Vec<(RiskLevel, String, String)>,
    vectors: Vec<Vec<f32>>,
}

impl TrainingIndex {
    /// Embeds the exemplars of `dir` outside the validation split with `encoder`.
    pub fn build(dir: &Path, encoder: &dyn SentenceEmbedder) -> Result<TrainingIndex> {
        let (all, _, _) = read_exemplar_dir(dir)?;
        let items: Vec<(RiskLevel, String, String)> = all
            .into_iter()
            .filter(|e| !in_validation(&e.text))
            .map(|e| (e.training_level(), e.category, e.text))
            .collect();
        let texts: Vec<&str> = items.iter().map(|(_, _, t)| t.as_str()).collect();
        let vectors = encoder.embed(&texts).map_err(anyhow::Error::msg)?;
        Ok(TrainingIndex { items, vectors })
    }

    /// The `k` exemplars most similar to `v` (embeddings are unit vectors: cosine = dot).
    pub fn nearest(&self, v: &[f32], k: usize) -> Vec<Neighbour> {
        let mut scored: Vec<(f32, usize)> = self
            .vectors
            .iter()
            .enumerate()
            .map(|(i, u)| (u.iter().zip(v).map(|(a, b)| a * b).sum::<f32>(), i))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        scored
            .into_iter()
            .take(k)
            .map(|(cosine, i)| {
                let (level, category, text) = &self.items[i];
                Neighbour {
                    cosine,
                    level: *level,
                    category: category.clone(),
                    text: text.clone(),
                }
            })
            .collect()
    }
}

impl ItemReading {
    /// Detectors that alone put the item above low; `session` when none did and the guard did.
    pub fn raised_by(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        for (name, l) in [
            ("lexicon", self.lexicon),
            ("screen:message", self.message),
            ("screen:sentence", self.sentence),
            ("screen:context", self.context),
        ] {
            if l > RiskLevel::Low {
                out.push(name);
            }
        }
        if out.is_empty() && self.guard > RiskLevel::Low {
            out.push("session");
        }
        out
    }
}

/// Recall and false alarms of one set.
#[derive(Clone, Debug, Serialize)]
pub struct SetFigures {
    pub name: String,
    pub acute: Proportion,
    pub elevated: Proportion,
    pub false_alarms: Proportion,
    /// False alarms by the detector(s) that raised them (an item counts once per detector).
    pub by_detector: BTreeMap<String, usize>,
    /// False alarms raised by one detector alone.
    pub only_by: BTreeMap<String, usize>,
    /// False alarms / non-crisis items per category.
    pub by_category: BTreeMap<String, [usize; 2]>,
    /// The same three figures for the screen alone and the lexicon alone.
    pub screen_alone: [Proportion; 3],
    pub lexicon_alone: [Proportion; 3],
}

/// The three bands of `readings` under the rating `rate`.
fn bands(readings: &[ItemReading], rate: &dyn Fn(&ItemReading) -> RiskLevel) -> [Proportion; 3] {
    let mut c = [[0usize; 2]; 3];
    for r in readings {
        let got = rate(r);
        let (slot, ok) = if r.level >= RiskLevel::High {
            (0, got >= RiskLevel::High)
        } else if r.level == RiskLevel::Moderate {
            (1, got >= RiskLevel::Moderate)
        } else {
            (2, got > RiskLevel::Low)
        };
        c[slot][1] += 1;
        c[slot][0] += usize::from(ok);
    }
    c.map(|[k, n]| wilson(k, n))
}

/// Figures of one set from its readings.
pub fn figures(name: &str, readings: &[ItemReading]) -> SetFigures {
    let [acute, elevated, false_alarms] = bands(readings, &|r| r.guard);
    let screen_alone = bands(readings, &|r| r.message.max(r.sentence).max(r.context));
    let lexicon_alone = bands(readings, &|r| r.lexicon);
    let mut by_detector = BTreeMap::new();
    let mut only_by = BTreeMap::new();
    let mut by_category: BTreeMap<String, [usize; 2]> = BTreeMap::new();
    for r in readings.iter().filter(|r| r.level <= RiskLevel::Low) {
        let alarm = r.guard > RiskLevel::Low;
        let slot = by_category.entry(r.category.clone()).or_default();
        slot[1] += 1;
        slot[0] += usize::from(alarm);
        if !alarm {
            continue;
        }
        let by = r.raised_by();
        for d in &by {
            *by_detector.entry(d.to_string()).or_insert(0) += 1;
        }
        if let [one] = by.as_slice() {
            *only_by.entry(one.to_string()).or_insert(0) += 1;
        }
    }
    SetFigures {
        name: name.to_string(),
        acute,
        elevated,
        false_alarms,
        by_detector,
        only_by,
        by_category,
        screen_alone,
        lexicon_alone,
    }
}

/// Reads the items of the exemplar directory's validation split: single messages, then
/// sessions.
pub fn validation_items(exemplars: &Path) -> Result<(Vec<LabelledItem>, Vec<LabelledItem>)> {
    let (all, _, _) = read_exemplar_dir(exemplars)?;
    Ok(all
        .into_iter()
        .filter(|e| in_validation(&e.text))
        .map(|e| LabelledItem {
            id: e.origin.rsplit('/').next().unwrap_or(&e.origin).to_string(),
            category: e.category.clone(),
            level: e.training_level(),
            turns: if e.turns.is_empty() {
                vec![e.text.clone()]
            } else {
                e.turns.clone()
            },
        })
        .partition(|i| i.turns.len() == 1))
}

/// Reads a labelled file: one JSON object a line with `text` (one message) or `messages`
/// (client turns, oldest first), `level` (after the last turn) and `category`. A bad line is an
/// error naming the file and line.
pub fn read_labelled(path: &Path) -> Result<Vec<LabelledItem>> {
    if path.components().any(|c| c.as_os_str() == "heldout") {
        bail!(
            "{}: the held-out sets are measured once with `psy eval risk`, never used to choose \
             a screen",
            path.display()
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("{}:{}", path.display(), i + 1);
        let v: Value = serde_json::from_str(line).with_context(|| at.clone())?;
        let turns: Vec<String> = match (&v["text"], &v["messages"]) {
            (Value::String(t), Value::Null) => vec![t.clone()],
            (Value::Null, Value::Array(m)) => m
                .iter()
                .map(|x| {
                    x.as_str()
                        .map(str::to_string)
                        .with_context(|| format!("{at}: `messages` must hold strings"))
                })
                .collect::<Result<_>>()?,
            _ => bail!("{at}: needs exactly one of `text` (a string) or `messages` (a list)"),
        };
        if turns.is_empty() || turns.iter().any(|t| t.trim().is_empty()) {
            bail!("{at}: an empty message");
        }
        let level = v["level"]
            .as_str()
            .and_then(RiskLevel::parse)
            .with_context(|| {
                format!("{at}: `level` must be none, low, moderate, high or imminent")
            })?;
        let category = v["category"].as_str().unwrap_or("").to_string();
        let level = if category == "helper-asking" {
            RiskLevel::None
        } else {
            level
        };
        out.push(LabelledItem {
            id: format!("{name}:{}", i + 1),
            category,
            level,
            turns,
        });
    }
    Ok(out)
}

/// The space nearest exemplars are found in: the first member's adapted encoder (each member's
/// space differs; one shows which training exemplars a reading resembles).
fn neighbour_encoder(
    screen: &Screen,
    embedder: &dyn SentenceEmbedder,
) -> Result<std::sync::Arc<dyn SentenceEmbedder>> {
    screen
        .encoders(embedder)
        .map_err(anyhow::Error::msg)?
        .into_iter()
        .next()
        .context("a screen without members")
}

/// Every detector's reading of each item, with `screen`.
pub fn read_items(
    screen: &Screen,
    embedder: &dyn SentenceEmbedder,
    items: &[LabelledItem],
    explain: Option<(&TrainingIndex, bool)>,
) -> Result<Vec<ItemReading>> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let dialogue = Dialogue::new(item.turns.iter().map(Message::user).collect());
        // The client's own risk, as `psy eval risk` scores it: the labels are the writer's own
        // risk (helpers asking about a friend are trained as `none`).
        let guard =
            assess_dialogue_with_screen(&dialogue, "US", &[], screen, embedder).client_level();
        let lexicon = psy_safety::assess_risk(&dialogue, "US", &[], None).client_level();
        let scores = screen
            .score_dialogue(embedder, &dialogue)
            .map_err(anyhow::Error::msg)?;
        let last = scores.last().context("an item without a client turn")?;
        let of = |kind: PieceKind| {
            last.pieces
                .iter()
                .filter(|p| p.kind == kind)
                .map(|p| match kind {
                    PieceKind::Sentence => screen.sentence_level_of(&p.output.levels),
                    _ => screen.level_of(&p.output.levels),
                })
                .max()
                .unwrap_or(RiskLevel::None)
        };
        let best = |kind: PieceKind| {
            last.pieces
                .iter()
                .filter(|p| p.kind == kind)
                .map(|p| p.output.levels)
                .reduce(|a, b| [0, 1, 2].map(|k| a[k].max(b[k])))
        };
        // Neighbours of the last turn for false alarms, or for every item when asked.
        let nearest = match explain {
            Some((index, all))
                if all || (item.level <= RiskLevel::Low && guard > RiskLevel::Low) =>
            {
                let text = item.turns.last().map(String::as_str).unwrap_or("");
                let v = neighbour_encoder(screen, embedder)?
                    .embed(&[text])
                    .map_err(anyhow::Error::msg)?;
                v.first()
                    .map(|v| index.nearest(v, NEIGHBOURS))
                    .unwrap_or_default()
            }
            _ => Vec::new(),
        };
        let pieces = last
            .pieces
            .iter()
            .map(|p| {
                let category = screen.category_of(p).to_string();
                let category_p = p.output.categories.iter().copied().fold(0.0f32, f32::max);
                PieceReading {
                    kind: p.kind.as_str(),
                    p: p.output.levels,
                    level: match p.kind {
                        PieceKind::Message => screen.level_of(&p.output.levels),
                        PieceKind::Sentence => screen.sentence_level_of(&p.output.levels),
                        PieceKind::Context => screen.context_level_of(&p.output.levels),
                    },
                    category,
                    category_p,
                    lookalike_p: screen.lookalike_mass(&p.output),
                }
            })
            .collect();
        out.push(ItemReading {
            set: String::new(),
            id: item.id.clone(),
            category: item.category.clone(),
            level: item.level,
            guard,
            lexicon,
            message: of(PieceKind::Message),
            sentence: of(PieceKind::Sentence),
            context: last.context,
            p_message: best(PieceKind::Message).unwrap_or_default(),
            p_sentence: best(PieceKind::Sentence),
            p_context: best(PieceKind::Context),
            pieces,
            nearest,
        });
    }
    Ok(out)
}

fn show(p: &Proportion) -> String {
    format!(
        "{}/{} = {:.0}% ({:.0}-{:.0}%)",
        p.k,
        p.n,
        100.0 * p.rate,
        100.0 * p.low,
        100.0 * p.high
    )
}

/// The report as Markdown.
pub fn to_markdown(screen_toml: &Path, sets: &[SetFigures]) -> String {
    let mut s = format!(
        "screen: {}\n\n| set | detectors | acute -> high+ | elevated -> moderate+ | non-crisis above low |\n|---|---|---|---|---|\n",
        screen_toml.display()
    );
    for f in sets {
        for (who, b) in [
            ("guard", [f.acute, f.elevated, f.false_alarms]),
            ("screen alone", f.screen_alone),
            ("lexicon alone", f.lexicon_alone),
        ] {
            let _ = writeln!(
                s,
                "| {} | {who} | {} | {} | {} |",
                f.name,
                show(&b[0]),
                show(&b[1]),
                show(&b[2])
            );
        }
    }
    for f in sets {
        let _ = writeln!(
            s,
            "\n{}: {} false alarms; raised by (an alarm counts once per detector): {}; by one \
             detector alone: {}",
            f.name,
            f.false_alarms.k,
            join(&f.by_detector),
            join(&f.only_by)
        );
        let cats: Vec<String> = f
            .by_category
            .iter()
            .map(|(c, [k, n])| format!("{c} {k}/{n}"))
            .collect();
        let _ = writeln!(s, "by category: {}", cats.join(", "));
    }
    s
}

fn join(m: &BTreeMap<String, usize>) -> String {
    if m.is_empty() {
        return "-".into();
    }
    m.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What `--report` reads.
#[derive(Clone, Debug)]
pub struct ReportOptions {
    pub exemplars: PathBuf,
    /// Directory holding the screen's `screen.toml`.
    pub screen: PathBuf,
    pub encoder: Option<PathBuf>,
    /// Further labelled files (sessions), measured beside the validation split.
    pub sets: Vec<PathBuf>,
    /// Where each item's readings go (JSONL), if anywhere.
    pub readings: Option<PathBuf>,
}

/// Measures the screen in `o.screen` and returns the Markdown report.
pub fn screen_report(o: &ReportOptions) -> Result<String> {
    let toml = o.screen.join("screen.toml");
    let screen = Screen::load(&toml).map_err(anyhow::Error::msg)?;
    let embedder = psy_lm::encoder::shared_embedder(o.encoder.as_deref())
        .map_err(|e| anyhow::anyhow!("sentence encoder: {e}"))?;
    screen.verify(&*embedder).map_err(anyhow::Error::msg)?;
    let (messages, sessions) = validation_items(&o.exemplars)?;
    let mut named = vec![("validation messages".to_string(), messages)];
    if !sessions.is_empty() {
        named.push(("validation sessions".to_string(), sessions));
    }
    for p in &o.sets {
        named.push((p.display().to_string(), read_labelled(p)?));
    }
    // Neighbours only when the readings are written: embedding the training split costs a
    // pass of the encoder over every exemplar.
    let index = match &o.readings {
        Some(_) => Some(TrainingIndex::build(
            &o.exemplars,
            &*neighbour_encoder(&screen, &*embedder)?,
        )?),
        None => None,
    };
    let mut figures_all = Vec::new();
    let mut lines = Vec::new();
    for (i, (name, items)) in named.iter().enumerate() {
        // Items of `--set` files (after the validation split's) are explained even when calm.
        let explain_all = i >= named.len() - o.sets.len();
        let mut readings = read_items(
            &screen,
            &*embedder,
            items,
            index.as_ref().map(|x| (x, explain_all)),
        )?;
        for r in &mut readings {
            r.set = name.clone();
        }
        for r in &readings {
            lines.push(serde_json::to_string(r)?);
        }
        figures_all.push(figures(name, &readings));
    }
    if let Some(p) = &o.readings {
        std::fs::write(p, lines.join("\n") + "\n")
            .with_context(|| format!("{}: cannot write", p.display()))?;
    }
    Ok(to_markdown(&toml, &figures_all))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(
        level: RiskLevel,
        guard: RiskLevel,
        lexicon: RiskLevel,
        context: RiskLevel,
    ) -> ItemReading {
        ItemReading {
            set: "t".into(),
            id: "x".into(),
            category: "game".into(),
            level,
            guard,
            lexicon,
            message: RiskLevel::None,
            sentence: RiskLevel::None,
            context,
            p_message: [0.0; 3],
            p_sentence: None,
            p_context: None,
            pieces: Vec::new(),
            nearest: Vec::new(),
        }
    }

    #[test]
    fn false_alarms_are_counted_by_the_detector_that_raised_them() {
        use RiskLevel::*;
        let r = [
            reading(None, Moderate, Moderate, None), // lexicon alarm
            reading(Low, High, None, High),          // context alarm
            reading(None, Moderate, None, None),     // only the session rule
            reading(None, Low, None, None),          // no alarm
            reading(High, High, None, High),         // acute, caught
            reading(Imminent, Moderate, None, None), // acute, missed
            reading(Moderate, Moderate, None, None), // elevated, caught
        ];
        let f = figures("t", &r);
        assert_eq!((f.false_alarms.k, f.false_alarms.n), (3, 4));
        assert_eq!((f.acute.k, f.acute.n), (1, 2));
        assert_eq!((f.elevated.k, f.elevated.n), (1, 1));
        assert_eq!(f.only_by["lexicon"], 1);
        assert_eq!(f.only_by["screen:context"], 1);
        assert_eq!(f.only_by["session"], 1);
        assert_eq!(f.by_category["game"], [3, 4]);
        // Lexicon alone: one look-alike above low; screen alone (context): one.
        assert_eq!(f.lexicon_alone[2].k, 1);
        assert_eq!(f.screen_alone[2].k, 1);
    }
}
