//! `psy train-screen`: retrains the crisis guard's screen from its exemplars, reproducibly.
//!
//! Reads every `*.jsonl` of the exemplar directory (sorted by name), holds out a validation split
//! chosen by a hash of each message's text (so adding an exemplar never moves another across the
//! split), trains one member (encoder adapter and head, `psy_lm::training::screen_head`) per
//! seed, calibrates the level thresholds on the validation split with the guard's own scoring
//! of the members' combined readings (whole message and each sentence), and writes the weights and
//! `screen.toml` with their hashes. The frozen held-out sets in `tests/heldout/` are never read.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::f32_safetensors::f32_safetensors;
use crate::screen_member_cache::{load as load_member, member_key, store as store_member};
use anyhow::{bail, Context, Result};
use psy_core::module::RiskLevel;
use psy_core::semantic::SentenceEmbedder;
use psy_lm::training::screen_head::{train_head, HeadConfig, HeadData};
use psy_safety::screen::exemplars::{parse_exemplars, Exemplar, CATEGORIES};
use psy_safety::screen::spec::{
    EncoderCheck, MemberSpec, ScreenSpec, Thresholds, TrainingRecord, ValidationFigures, SCHEMA,
};
use psy_safety::screen::{member_prefix, read_with, sha256_hex, Head, Member, Screen};

/// The sentence whose embedding ties a screen to its encoder.
pub const PROBE_TEXT: &str = "I have been feeling low since the winter and I am not sure why.";
/// Values of the probe embedding recorded in `screen.toml`.
const PROBE_VALUES: usize = 16;
/// One message in this many goes to the validation split.
const VALIDATION_EVERY: u64 = 5;
/// Recall the thresholds are set to reach on the validation split: acute messages rated high or
/// above, elevated-or-acute rated moderate or above, imminent rated imminent. 0.95 for acute is
/// the goal. With exemplars a-d alone it put the high cut-off near 0.001 and tripled
/// the false alarms, so the first screen used 0.93; with a-g (6 epochs) the cut-off is 0.050:
/// through the guard on the validation split, 0.93 gave acute 130/138 with 44/318 false
/// alarms, 0.95 gives 132/138 (the first screen's figure on the same split) with 50/318 (the
/// first screen: 76/318).
const RECALL_HIGH: f64 = 0.95;
const RECALL_MODERATE: f64 = 0.90;
const RECALL_IMMINENT: f64 = 0.85;
/// Look-alikes of the validation split that sentence pieces may add as false alarms beyond the
/// whole-message cut-offs: a sentence read alone loses "I'm okay now" and "I'm a paramedic".
const SENTENCE_EXTRA_ALARMS: usize = 2;
/// Acute validation messages the high gate may cost their high rating (like the sentence
/// cut-offs' two extra alarms: a count, so a small split does not make it zero).
const GATE_ACUTE_LOSS: usize = 2;
/// A member whose last epoch's loss is not below this share of its first did not learn (one
/// seed of the a-i + k + k2 data stayed at 2.03 -> 1.96 while the others reached 0.44-0.58 from
/// ~1.95); training stops with the seed named rather than averaging it in.
const LEARNT_LOSS_SHARE: f32 = 0.5;
/// The shipped screen's seeds: seven members on a-i + k + k2 (the twenty-second session's
/// ensemble, shipped in the twenty-sixth; see the README, "An ensemble of seven screens").
pub const SHIPPED_SEEDS: [u64; 7] = [7, 9, 10, 11, 12, 13, 14];

/// What `psy train-screen` does.
#[derive(Clone, Debug)]
pub struct TrainScreenOptions {
    /// Directory of `*.jsonl` exemplar files.
    pub exemplars: PathBuf,
    /// Where `screen.toml` and the weights are written.
    pub out: PathBuf,
    /// Encoder directory (default: all-MiniLM-L6-v2 from the setup step).
    pub encoder: Option<PathBuf>,
    /// Settings of every member (`config.seed` is replaced by each member's seed).
    pub config: HeadConfig,
    /// One member is trained per seed; their readings are averaged.
    pub seeds: Vec<u64>,
    /// A screen directory whose combined level readings of each training text replace the
    /// labels as level targets (distilling an ensemble into fewer members); categories stay
    /// the labels.
    pub teacher: Option<PathBuf>,
    /// Where finished members are kept so a rerun reuses them (`screen_member_cache`); `None`
    /// trains every member afresh (tests that check a retrain reproduces the screen).
    pub member_cache: Option<PathBuf>,
}

impl TrainScreenOptions {
    /// The shipped screen's sources and settings (`plugins/safety/screen/`).
    pub fn shipped(root: &Path) -> Self {
        TrainScreenOptions {
            exemplars: root.join("plugins/safety/screen/exemplars"),
            out: root.join("plugins/safety/screen"),
            encoder: None,
            config: HeadConfig {
                hidden: 64,
                tuned_layers: 3,
                rank: 8,
                scale: 2.0,
                dropout: 0.1,
                batch: 16,
                epochs: 6,
                learning_rate: 1e-3,
                weight_decay: 0.01,
                warmup_steps: 0,
                seed: SHIPPED_SEEDS[0],
            },
            seeds: SHIPPED_SEEDS.to_vec(),
            teacher: None,
            member_cache: None,
        }
    }
}

/// What a training run produced.
#[derive(Clone, Debug)]
pub struct TrainScreenReport {
    pub spec: ScreenSpec,
    /// Each member's first and last epoch loss, in seed order.
    pub losses: Vec<(u64, f32, f32)>,
    pub seconds: f64,
    pub screen_toml: PathBuf,
    /// Seeds of the members taken from the member cache instead of trained.
    pub reused: Vec<u64>,
}

/// FNV-1a over the folded text: a split that depends on the message alone.
fn split_hash(text: &str) -> u64 {
    let folded: String = text
        .chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect();
    folded.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Whether an exemplar belongs to the validation split.
pub fn in_validation(text: &str) -> bool {
    split_hash(text).is_multiple_of(VALIDATION_EVERY)
}

/// Reads the exemplar files of `dir` (sorted by name): the exemplars, the file names and the
/// sha256 over their bytes in that order. Two messages that fold to the same text are an error.
pub fn read_exemplar_dir(dir: &Path) -> Result<(Vec<Exemplar>, Vec<String>, String)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot list the exemplar directory", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("{}: no *.jsonl exemplar files", dir.display());
    }
    let mut all_bytes = Vec::new();
    let mut exemplars = Vec::new();
    let mut names = Vec::new();
    for f in &files {
        let bytes = std::fs::read(f).with_context(|| format!("{}: cannot read", f.display()))?;
        let text =
            std::str::from_utf8(&bytes).with_context(|| format!("{}: not UTF-8", f.display()))?;
        exemplars
            .extend(parse_exemplars(text, &f.display().to_string()).map_err(anyhow::Error::msg)?);
        all_bytes.extend_from_slice(&bytes);
        names.push(
            f.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
    }
    let mut seen: std::collections::HashMap<u64, &str> = std::collections::HashMap::new();
    for e in &exemplars {
        if let Some(first) = seen.insert(split_hash(&e.text), &e.origin) {
            bail!(
                "{}: the same message as {first} (after folding case and punctuation)",
                e.origin
            );
        }
    }
    Ok((exemplars, names, sha256_hex(&all_bytes)))
}

/// The three cumulative targets of a level.
fn targets(level: RiskLevel) -> [f32; 3] {
    let b = |x: bool| if x { 1.0 } else { 0.0 };
    [
        b(level >= RiskLevel::Moderate),
        b(level >= RiskLevel::High),
        b(level == RiskLevel::Imminent),
    ]
}

/// The largest threshold that keeps `recall` of `scores` at or above it.
fn threshold_for(mut scores: Vec<f32>, recall: f64) -> f32 {
    if scores.is_empty() {
        return 0.5;
    }
    scores.sort_by(|a, b| a.total_cmp(b));
    let misses = ((1.0 - recall) * scores.len() as f64).floor() as usize;
    scores[misses.min(scores.len() - 1)].clamp(0.02, 0.98)
}

/// Per validation message: its own level outputs, and the maximum of each over its sentences
/// (equal to its own for a one-sentence message).
fn piece_scores(
    members: &[Member],
    embedder: &dyn SentenceEmbedder,
    texts: &[&str],
) -> Result<Vec<([f32; 3], [f32; 3])>> {
    let mut pieces: Vec<&str> = Vec::new();
    let mut owner: Vec<(usize, bool)> = Vec::new();
    for (i, t) in texts.iter().enumerate() {
        for (kind, s, e) in Screen::pieces_of(t) {
            pieces.push(&t[s..e]);
            owner.push((i, kind == psy_safety::screen::PieceKind::Message));
        }
    }
    let outputs = read_with(members, embedder, &pieces).map_err(anyhow::Error::msg)?;
    let mut out = vec![([0.0f32; 3], [0.0f32; 3]); texts.len()];
    for (o, (i, whole)) in outputs.iter().zip(owner) {
        let p = o.levels;
        let (own, best) = &mut out[i];
        if whole {
            *own = p;
        }
        for (b, x) in best.iter_mut().zip(p) {
            *b = b.max(x);
        }
    }
    for (own, best) in &mut out {
        for (b, x) in best.iter_mut().zip(*own) {
            *b = b.max(x);
        }
    }
    Ok(out)
}

/// The lowest cut-off for sentence pieces, at or above the message cut-off, that lets at most
/// `extra` more validation look-alikes through than the message cut-off alone.
fn sentence_threshold(
    message_cut: f32,
    negatives: &[([f32; 3], [f32; 3])],
    k: usize,
    extra: usize,
) -> f32 {
    let mut candidates: Vec<f32> = negatives
        .iter()
        .filter(|(m, _)| m[k] < message_cut)
        .map(|(_, s)| s[k])
        .filter(|&s| s >= message_cut)
        .collect();
    candidates.sort_by(|a, b| b.total_cmp(a));
    // Sentence scores of look-alikes the message cut-off lets pass, highest first: the cut-off
    // sits just above the (extra+1)-th of them.
    match candidates.get(extra) {
        Some(&s) => (s + 1e-4).clamp(message_cut, 0.999),
        None => message_cut,
    }
}

/// The high gate (`Thresholds::high_gate`): the largest `P(>= moderate)` cut-off that takes the
/// high rating from at most `loss` acute validation messages the other cut-offs rate high (by
/// the message or a sentence), and never above the moderate cut-off.
fn high_gate(t: &Thresholds, acute: &[([f32; 3], [f32; 3])], loss: usize) -> Option<f32> {
    // For each acute message rated high, the largest gate that keeps it high.
    let mut keep: Vec<f32> = acute
        .iter()
        .filter_map(|(m, s)| {
            let by_message = (m[1] >= t.high).then_some(m[0]);
            let by_sentence = (s[1] >= t.sentence_high).then_some(s[0]);
            by_message.into_iter().chain(by_sentence).reduce(f32::max)
        })
        .collect();
    keep.sort_by(|a, b| a.total_cmp(b));
    keep.get(loss).map(|&g| g.min(t.moderate))
}

/// Cut-offs set on the validation split and the figures they give there.
pub struct Calibration {
    pub thresholds: Thresholds,
    pub figures: ValidationFigures,
    /// Validation messages and sessions.
    pub examples: usize,
    /// Each validation message's scores (whole and best sentence), for `PSY_SCREEN_DUMP`.
    dump: Vec<String>,
}

impl Calibration {
    /// Writes the per-message scores to `PSY_SCREEN_DUMP` when it is set.
    fn dump(&self) -> Result<()> {
        if let Ok(path) = std::env::var("PSY_SCREEN_DUMP") {
            std::fs::write(&path, self.dump.join("\n"))
                .with_context(|| format!("{path}: cannot write"))?;
        }
        Ok(())
    }
}

/// Sets the cut-offs of trained members on the validation split (`valid`), scored as the guard
/// scores a message (`embedder` is the plain encoder; each member adapts it), and counts what
/// they give there.
pub fn calibrate(
    members: &[Member],
    embedder: &dyn SentenceEmbedder,
    valid: Vec<&Exemplar>,
) -> Result<Calibration> {
    let examples = valid.len();
    // Sessions of the validation split set the cut-offs of a turn read with earlier turns;
    // single messages set the others.
    let (sessions, valid): (Vec<&Exemplar>, Vec<&Exemplar>) =
        valid.into_iter().partition(|e| !e.turns.is_empty());
    // Thresholds from the validation split, scored as the guard scores a message.
    let vtexts: Vec<&str> = valid.iter().map(|e| e.text.as_str()).collect();
    let scores = piece_scores(members, embedder, &vtexts)?;
    let pick = |k: usize, keep: &dyn Fn(RiskLevel) -> bool| -> Vec<f32> {
        valid
            .iter()
            .zip(&scores)
            .filter(|(e, _)| keep(e.training_level()))
            .map(|(_, (m, _))| m[k])
            .collect()
    };
    let moderate = threshold_for(pick(0, &|l| l >= RiskLevel::Moderate), RECALL_MODERATE);
    let high = threshold_for(pick(1, &|l| l >= RiskLevel::High), RECALL_HIGH);
    let imminent = threshold_for(pick(2, &|l| l == RiskLevel::Imminent), RECALL_IMMINENT);
    let negatives: Vec<([f32; 3], [f32; 3])> = valid
        .iter()
        .zip(&scores)
        .filter(|(e, _)| e.training_level() <= RiskLevel::Low)
        .map(|(_, s)| *s)
        .collect();
    let thresholds = Thresholds {
        moderate,
        high,
        imminent,
        sentence_moderate: sentence_threshold(moderate, &negatives, 0, SENTENCE_EXTRA_ALARMS),
        sentence_high: sentence_threshold(high, &negatives, 1, SENTENCE_EXTRA_ALARMS),
        context_moderate: None,
        context_high: None,
        high_gate: None,
    };
    let mut thresholds = thresholds;
    let acute: Vec<([f32; 3], [f32; 3])> = valid
        .iter()
        .zip(&scores)
        .filter(|(e, _)| e.training_level() >= RiskLevel::High)
        .map(|(_, s)| *s)
        .collect();
    thresholds.high_gate = high_gate(&thresholds, &acute, GATE_ACUTE_LOSS);
    if !sessions.is_empty() {
        let joined: Vec<&str> = sessions.iter().map(|e| e.text.as_str()).collect();
        let outputs = read_with(members, embedder, &joined).map_err(anyhow::Error::msg)?;
        let p: Vec<(RiskLevel, [f32; 3])> = sessions
            .iter()
            .zip(&outputs)
            .map(|(e, o)| (e.training_level(), o.levels))
            .collect();
        let at = |k: usize, min: RiskLevel| -> Vec<f32> {
            p.iter()
                .filter(|(l, _)| *l >= min)
                .map(|(_, s)| s[k])
                .collect()
        };
        // Never more permissive than a message alone: the joined text repeats earlier words.
        thresholds.context_moderate = Some(
            threshold_for(at(0, RiskLevel::Moderate), RECALL_MODERATE).max(thresholds.moderate),
        );
        thresholds.context_high =
            Some(threshold_for(at(1, RiskLevel::High), RECALL_HIGH).max(thresholds.high));
    }
    let mut figures = ValidationFigures {
        acute: [0, 0],
        elevated: [0, 0],
        false_alarms: [0, 0],
    };
    for (e, (m, sent)) in valid.iter().zip(&scores) {
        let got = thresholds
            .level_of(m)
            .max(thresholds.sentence_level_of(sent));
        let want = e.training_level();
        let (slot, ok) = if want >= RiskLevel::High {
            (&mut figures.acute, got >= RiskLevel::High)
        } else if want == RiskLevel::Moderate {
            (&mut figures.elevated, got >= RiskLevel::Moderate)
        } else {
            (&mut figures.false_alarms, got > RiskLevel::Low)
        };
        slot[1] += 1;
        slot[0] += usize::from(ok);
    }
    let dump = valid
        .iter()
        .zip(&scores)
        .map(|(e, (m, sent))| {
            serde_json::json!({"level": e.training_level().as_str(), "category": e.category, "p": m, "s": sent, "text": e.text})
                .to_string()
        })
        .collect();
    Ok(Calibration {
        thresholds,
        figures,
        examples,
        dump,
    })
}

/// Writes `screen.toml` into `dir` and reads it back through the guard's own loader (what was
/// written is what a run will use).
fn write_spec(dir: &Path, spec: &ScreenSpec) -> Result<PathBuf> {
    let toml_path = dir.join("screen.toml");
    let text = format!(
        "# The crisis guard's trained screen (plugins/safety/src/screen). Written by `psy \
         train-screen`;\n# do not edit by hand: the weights' sha256, the exemplars' sha256 and \
         the encoder probe are checked\n# when a run starts. Thresholds were calibrated on the \
         validation split, so the validation figures\n# are a fit; the blind held-out figures \
         are in the README.\n{}",
        toml::to_string(spec)?
    );
    std::fs::write(&toml_path, text)
        .with_context(|| format!("{}: cannot write", toml_path.display()))?;
    Screen::load(&toml_path).map_err(anyhow::Error::msg)?;
    Ok(toml_path)
}

/// `psy train-screen --recalibrate`: the screen in `o.out` keeps its weights and gets its
/// cut-offs set again on the validation split of `o.exemplars` (which must be the exemplars it
/// was trained on), with the current calibration rules.
pub fn recalibrate(o: &TrainScreenOptions) -> Result<ScreenSpec> {
    let (exemplars, _, data_sha256) = read_exemplar_dir(&o.exemplars)?;
    let toml_path = o.out.join("screen.toml");
    let screen = Screen::load(&toml_path).map_err(anyhow::Error::msg)?;
    if screen.spec.training.data_sha256 != data_sha256 {
        bail!(
            "{}: trained on exemplars with sha256 {}, but {} hashes to {data_sha256}: a screen is \
             calibrated on the validation split of its own data",
            toml_path.display(),
            screen.spec.training.data_sha256,
            o.exemplars.display()
        );
    }
    let embedder = psy_lm::encoder::shared_embedder(o.encoder.as_deref())
        .map_err(|e| anyhow::anyhow!("sentence encoder: {e}"))?;
    screen.verify(&*embedder).map_err(anyhow::Error::msg)?;
    let valid: Vec<&Exemplar> = exemplars
        .iter()
        .filter(|e| in_validation(&e.text))
        .collect();
    let calibration = calibrate(&screen.members, &*embedder, valid)?;
    calibration.dump()?;
    let mut spec = screen.spec.clone();
    spec.thresholds = calibration.thresholds;
    spec.validation = calibration.figures;
    write_spec(&o.out, &spec)?;
    Ok(spec)
}

/// Trains, calibrates and writes the screen.
pub fn train_screen(o: &TrainScreenOptions) -> Result<TrainScreenReport> {
    let started = Instant::now();
    let (exemplars, files, data_sha256) = read_exemplar_dir(&o.exemplars)?;
    let (valid, train): (Vec<&Exemplar>, Vec<&Exemplar>) =
        exemplars.iter().partition(|e| in_validation(&e.text));
    let embedder = psy_lm::encoder::shared_embedder(o.encoder.as_deref())
        .map_err(|e| anyhow::anyhow!("sentence encoder: {e}"))?;
    let texts: Vec<&str> = train.iter().map(|e| e.text.as_str()).collect();
    let mut levels: Vec<[f32; 3]> = train.iter().map(|e| targets(e.training_level())).collect();
    let teacher = match &o.teacher {
        Some(dir) => {
            let toml_path = dir.join("screen.toml");
            let teacher = Screen::load(&toml_path).map_err(anyhow::Error::msg)?;
            teacher.verify(&*embedder).map_err(anyhow::Error::msg)?;
            let outputs = teacher
                .read(&*embedder, &texts)
                .map_err(anyhow::Error::msg)?;
            levels = outputs.iter().map(|o| o.levels).collect();
            let bytes = std::fs::read(&toml_path)
                .with_context(|| format!("{}: cannot read", toml_path.display()))?;
            Some(sha256_hex(&bytes))
        }
        None => None,
    };
    let category: Vec<usize> = train
        .iter()
        .map(|e| {
            CATEGORIES
                .iter()
                .position(|c| *c == e.category)
                .unwrap_or(0)
        })
        .collect();
    if o.seeds.is_empty() {
        bail!("no seeds: the screen needs at least one member");
    }
    // The encoder's own reading of the probe: part of each member's cache key.
    let base_probe = embedder.embed(&[PROBE_TEXT]).map_err(anyhow::Error::msg)?;
    let mut heads = Vec::new();
    let mut adapters = Vec::new();
    let mut members = Vec::new();
    let mut losses = Vec::new();
    let mut reused_seeds = Vec::new();
    for (i, &seed) in o.seeds.iter().enumerate() {
        if o.seeds[..i].contains(&seed) {
            bail!("seed {seed} is listed twice: members trained alike must differ in their seed");
        }
        let member_started = Instant::now();
        let config = HeadConfig { seed, ..o.config };
        let data = HeadData {
            texts: &texts,
            levels: &levels,
            category: &category,
            categories: CATEGORIES.len(),
        };
        let cache = o.member_cache.as_deref();
        let key = match cache {
            Some(_) => member_key(embedder.name(), &base_probe[0], &config, &data)?,
            None => String::new(),
        };
        let (trained, reused) = match cache.and_then(|c| load_member(c, &key)) {
            Some(t) => (t, true),
            None => (
                train_head(embedder.encoder(), &data, &config).map_err(anyhow::Error::msg)?,
                false,
            ),
        };
        let first = trained.losses.first().copied().unwrap_or(f32::NAN);
        let last = trained.losses.last().copied().unwrap_or(f32::NAN);
        // A NaN loss fails too.
        let learnt = last.is_finite() && first.is_finite() && last < LEARNT_LOSS_SHARE * first;
        if !learnt {
            bail!(
                "member {i} (seed {seed}) did not learn: epoch loss {first:.4} -> {last:.4} (a \
                 member must end below {LEARNT_LOSS_SHARE} of its first epoch's loss); train \
                 with another seed in its place"
            );
        }
        match cache {
            Some(c) if reused => eprintln!(
                "member {i} (seed {seed}): epoch loss {first:.4} -> {last:.4}, trained by an \
                 earlier run of this binary on the same data (kept in {})",
                c.display()
            ),
            Some(c) => {
                let kept = store_member(c, &key, &trained)?;
                eprintln!(
                    "member {i} (seed {seed}): epoch loss {first:.4} -> {last:.4} in {:.1} s \
                     (kept in {} for a rerun)",
                    member_started.elapsed().as_secs_f64(),
                    kept.display()
                );
            }
            None => eprintln!(
                "member {i} (seed {seed}): epoch loss {first:.4} -> {last:.4} in {:.1} s",
                member_started.elapsed().as_secs_f64()
            ),
        }
        if reused {
            reused_seeds.push(seed);
        }
        losses.push((seed, first, last));
        let prefix = member_prefix(i);
        let prefixed = |tensors: &[psy_lm::encoder::adapter::NamedTensor]| {
            tensors
                .iter()
                .map(|(n, shape, v)| (format!("{prefix}{n}"), shape.clone(), v.clone()))
                .collect::<Vec<_>>()
        };
        let adapter = f32_safetensors(&trained.adapter, None)?;
        members.push(Member {
            seed,
            head: Head::from_safetensors(
                &f32_safetensors(&trained.tensors, None)?,
                &format!("trained head of seed {seed}"),
                embedder.dim(),
                CATEGORIES.len(),
            )
            .map_err(anyhow::Error::msg)?,
            adapter_sha256: sha256_hex(&adapter),
            adapter,
        });
        heads.extend(prefixed(&trained.tensors));
        adapters.extend(prefixed(&trained.adapter));
    }
    let weights = f32_safetensors(&heads, None)?;
    let adapter = f32_safetensors(&adapters, None)?;

    let calibration = calibrate(&members, &*embedder, valid)?;
    calibration.dump()?;
    let probe = embedder.embed(&[PROBE_TEXT]).map_err(anyhow::Error::msg)?;
    let members_spec = members
        .iter()
        .map(|m| {
            let tuned = m.encoder(&*embedder).map_err(anyhow::Error::msg)?;
            let p = tuned.embed(&[PROBE_TEXT]).map_err(anyhow::Error::msg)?;
            Ok(MemberSpec {
                seed: m.seed,
                adapted_probe: p[0].iter().take(PROBE_VALUES).copied().collect(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let spec = ScreenSpec {
        schema: SCHEMA,
        weights: "head.safetensors".into(),
        weights_sha256: sha256_hex(&weights),
        adapter: "adapter.safetensors".into(),
        adapter_sha256: sha256_hex(&adapter),
        encoder: EncoderCheck {
            name: embedder.name().rsplit('/').next().unwrap_or("").to_string(),
            dim: embedder.dim(),
            probe_text: PROBE_TEXT.into(),
            probe: probe[0].iter().take(PROBE_VALUES).copied().collect(),
        },
        members: members_spec,
        categories: CATEGORIES.iter().map(|c| c.to_string()).collect(),
        thresholds: calibration.thresholds,
        training: TrainingRecord {
            data: files.iter().map(|f| format!("exemplars/{f}")).collect(),
            data_sha256,
            examples: train.len(),
            validation_examples: calibration.examples,
            hidden: o.config.hidden,
            tuned_layers: o.config.tuned_layers,
            rank: o.config.rank,
            batch: o.config.batch,
            epochs: o.config.epochs,
            learning_rate: o.config.learning_rate,
            weight_decay: o.config.weight_decay,
            warmup_steps: o.config.warmup_steps,
            teacher,
        },
        validation: calibration.figures,
    };
    std::fs::create_dir_all(&o.out)
        .with_context(|| format!("{}: cannot create", o.out.display()))?;
    for (name, bytes) in [(&spec.weights, &weights), (&spec.adapter, &adapter)] {
        let path = o.out.join(name);
        std::fs::write(&path, bytes)
            .with_context(|| format!("{}: cannot write", path.display()))?;
    }
    let toml_path = write_spec(&o.out, &spec)?;
    Ok(TrainScreenReport {
        spec,
        losses,
        seconds: started.elapsed().as_secs_f64(),
        screen_toml: toml_path,
        reused: reused_seeds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cuts() -> Thresholds {
        Thresholds {
            moderate: 0.4,
            high: 0.05,
            imminent: 0.3,
            sentence_moderate: 0.9,
            sentence_high: 0.8,
            context_moderate: None,
            context_high: None,
            high_gate: None,
        }
    }

    #[test]
    fn the_high_gate_costs_at_most_the_allowed_acute_messages() {
        // (message [P>=mod, P>=high, P(imm)], best sentence): values chosen by hand.
        let acute = [
            ([0.03, 0.06, 0.0], [0.0, 0.0, 0.0]), // high by the message, P(>=mod) 0.03
            ([0.01, 0.01, 0.0], [0.07, 0.85, 0.0]), // high by a sentence only, 0.07
            ([0.20, 0.50, 0.0], [0.0, 0.0, 0.0]), // 0.20
            ([0.90, 0.90, 0.0], [0.95, 0.90, 0.0]), // 0.95 (the larger view), capped below
            ([0.50, 0.01, 0.0], [0.0, 0.0, 0.0]), // not high at all: never counted
        ];
        let t = cuts();
        // Keep values sorted: 0.03, 0.07, 0.20, 0.95.
        assert_eq!(high_gate(&t, &acute, 0), Some(0.03));
        assert_eq!(high_gate(&t, &acute, 2), Some(0.20));
        // Never above the moderate cut-off (0.4), even when every kept value is higher.
        assert_eq!(high_gate(&t, &acute[3..], 0), Some(0.4));
        // Fewer acute messages rated high than the allowance: no gate.
        assert_eq!(high_gate(&t, &acute, 4), None);
        // And the gate rules the level: P(>= high) passes, P(>= moderate) does not.
        let gated = Thresholds {
            high_gate: Some(0.132),
            ..cuts()
        };
        assert_eq!(gated.level_of(&[0.059, 0.06, 0.0]), RiskLevel::None);
        assert_eq!(gated.level_of(&[0.2, 0.06, 0.0]), RiskLevel::High);
        assert_eq!(cuts().level_of(&[0.059, 0.06, 0.0]), RiskLevel::High);
    }
}
