//! The crisis guard's second detector: classifiers trained over sentence embeddings (an
//! ensemble of members trained alike from different seeds, their readings averaged), so that
//! risk written in words no lexicon lists ("the pills are counted out for tonight", "I'm on the
//! bridge right now") is still recognised. `psy train-screen` trains it from the labelled
//! exemplars beside this code; `screen.toml` records the thresholds calibrated on a validation
//! split and the hashes that tie the weights to their data and encoder.
//!
//! A text is scored as a whole, sentence by sentence (a crisis in the second sentence is not
//! diluted by a first one about something else), and, from the second client turn on, together
//! with the client's previous turns (what earlier turns established is not repeated later).

pub mod exemplars;
pub mod head;
pub mod score;
pub mod spec;

use std::sync::OnceLock;

use psy_core::semantic::{on_this_thread, SentenceEmbedder};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

pub use head::{Head, HeadOutput, Reading};
pub use score::{Piece, PieceKind, TurnScore};
pub use spec::ScreenSpec;

/// Largest difference allowed between the probe embedding in `screen.toml` and the loaded
/// encoder's: encoders that are the same model agree to ~1e-6 (measured 2e-7 against
/// sentence-transformers); a different model differs by far more than this.
pub const PROBE_TOLERANCE: f32 = 1e-4;

/// One member of the ensemble: its head, and the adapter its encoder is fine-tuned with.
#[derive(Clone, Debug)]
pub struct Member {
    pub seed: u64,
    pub head: Head,
    /// The encoder adapter's bytes (merged by the embedder, see `SentenceEmbedder::adapted`).
    pub adapter: Vec<u8>,
    /// sha256 of `adapter`: the adapted encoder's identity.
    pub adapter_sha256: String,
}

impl Member {
    /// This member's fine-tuned encoder: `embedder` with its adapter merged in (kept by the
    /// embedder per adapter, so merged once per process).
    pub fn encoder(
        &self,
        embedder: &dyn SentenceEmbedder,
    ) -> Result<std::sync::Arc<dyn SentenceEmbedder>, String> {
        embedder.adapted(&self.adapter, &self.adapter_sha256)
    }
}

/// A loaded screen: its manifest and its members.
#[derive(Clone, Debug)]
pub struct Screen {
    pub spec: ScreenSpec,
    pub members: Vec<Member>,
    /// Where the manifest came from, for errors.
    pub origin: String,
}

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The prefix of member `i`'s tensors in the screen's weights and adapter files.
pub fn member_prefix(i: usize) -> String {
    format!("member{i}.")
}

/// Splits a safetensors file whose tensors are named `member<i>.<name>` into one file per
/// member (names without the prefix). Every tensor must belong to a member below `members`,
/// and every member must have tensors.
pub fn split_members(bytes: &[u8], origin: &str, members: usize) -> Result<Vec<Vec<u8>>, String> {
    use safetensors::tensor::TensorView;
    let st = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| format!("{origin}: not a safetensors file: {e}"))?;
    let mut groups: Vec<Vec<(String, TensorView<'_>)>> = vec![Vec::new(); members];
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();
    for name in names {
        let member = name
            .strip_prefix("member")
            .and_then(|rest| rest.split_once('.'))
            .and_then(|(i, rest)| Some((i.parse::<usize>().ok()?, rest)))
            .filter(|(i, rest)| *i < members && !rest.is_empty());
        let Some((i, rest)) = member else {
            return Err(format!(
                "{origin}: tensor `{name}` belongs to no member (expected `member<i>.<name>` \
                 with i below {members}, the members in the manifest)"
            ));
        };
        let view = st
            .tensor(&name)
            .map_err(|e| format!("{origin}: tensor `{name}`: {e}"))?;
        groups[i].push((rest.to_string(), view));
    }
    groups
        .into_iter()
        .enumerate()
        .map(|(i, group)| {
            if group.is_empty() {
                return Err(format!("{origin}: member {i} has no tensors"));
            }
            safetensors::serialize(group, None).map_err(|e| format!("{origin}: member {i}: {e}"))
        })
        .collect()
}

impl Screen {
    /// Builds a screen from its manifest text and weights bytes, checking the weights' hash
    /// and shapes against the manifest.
    pub fn from_parts(
        spec_text: &str,
        origin: &str,
        weights: &[u8],
        adapter: &[u8],
    ) -> Result<Screen, String> {
        let spec = ScreenSpec::parse(spec_text, origin)?;
        for (file, bytes, want) in [
            (&spec.weights, weights, &spec.weights_sha256),
            (&spec.adapter, adapter, &spec.adapter_sha256),
        ] {
            let hash = sha256_hex(bytes);
            if &hash != want {
                return Err(format!(
                    "{origin}: {file} has sha256 {hash}, the manifest says {want}; retrain with \
                     `psy train-screen` or restore the files it describes"
                ));
            }
        }
        let n = spec.members.len();
        let weights_origin = format!("{origin} -> {}", spec.weights);
        let heads = split_members(weights, &weights_origin, n)?;
        let adapters = split_members(adapter, &format!("{origin} -> {}", spec.adapter), n)?;
        let members = spec
            .members
            .iter()
            .zip(heads.iter().zip(adapters))
            .enumerate()
            .map(|(i, (m, (head, adapter)))| {
                let head = Head::from_safetensors(
                    head,
                    &format!("{weights_origin}, member {i}"),
                    spec.encoder.dim,
                    spec.categories.len(),
                )?;
                Ok(Member {
                    seed: m.seed,
                    head,
                    adapter_sha256: sha256_hex(&adapter),
                    adapter,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Screen {
            spec,
            members,
            origin: origin.to_string(),
        })
    }

    /// Reads `screen.toml` and the weights it names from disk.
    pub fn load(path: &std::path::Path) -> Result<Screen, String> {
        let origin = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("{origin}: cannot read: {e}"))?;
        let spec = ScreenSpec::parse(&text, &origin)?;
        let read = |name: &str| {
            let p = path
                .parent()
                .unwrap_or(std::path::Path::new("."))
                .join(name);
            std::fs::read(&p).map_err(|e| format!("{}: cannot read: {e}", p.display()))
        };
        Screen::from_parts(&text, &origin, &read(&spec.weights)?, &read(&spec.adapter)?)
    }

    /// Checks that `embedder` is the encoder the heads were trained over: same dimension, and
    /// the probe sentence embeds to the recorded values, plain and through each member's
    /// adapter.
    pub fn verify(&self, embedder: &dyn SentenceEmbedder) -> Result<(), String> {
        let e = &self.spec.encoder;
        if embedder.dim() != e.dim {
            return Err(format!(
                "{}: the screen was trained over {}-dimensional embeddings ({}); the encoder {} \
                 gives {}",
                self.origin,
                e.dim,
                e.name,
                embedder.name(),
                embedder.dim()
            ));
        }
        let adapted = self.encoders(embedder)?;
        let mut checks: Vec<(String, &dyn SentenceEmbedder, &[f32])> =
            vec![("encoder".into(), embedder, &e.probe)];
        for ((i, m), enc) in self.spec.members.iter().enumerate().zip(&adapted) {
            checks.push((
                format!("adapted encoder of member {i} (seed {})", m.seed),
                &**enc,
                &m.adapted_probe,
            ));
        }
        for (which, enc, want) in checks {
            let got = enc
                .embed(&[e.probe_text.as_str()])
                .map_err(|err| format!("{}: {which} {}: {err}", self.origin, enc.name()))?;
            let got = got.first().map(Vec::as_slice).unwrap_or(&[]);
            let worst = want
                .iter()
                .zip(got)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            // An approximate encoder (8-bit weights) may lie further from the recorded values.
            let allowed = PROBE_TOLERANCE + enc.tolerance();
            if got.len() != e.dim || want.is_empty() || worst > allowed {
                return Err(format!(
                    "{}: the {which} {} is not the one the screen was trained with ({}): its \
                     probe embedding differs by {worst:.2e} (allowed {allowed:.0e}); \
                     retrain the screen for this encoder with `psy train-screen`",
                    self.origin,
                    enc.name(),
                    e.name
                ));
            }
        }
        Ok(())
    }

    /// The members' fine-tuned encoders: `embedder` with each member's adapter merged in.
    pub fn encoders(
        &self,
        embedder: &dyn SentenceEmbedder,
    ) -> Result<Vec<std::sync::Arc<dyn SentenceEmbedder>>, String> {
        self.members
            .iter()
            .map(|m| {
                m.encoder(embedder)
                    .map_err(|err| format!("{}: {err}", self.origin))
            })
            .collect()
    }

    /// The ensemble's output for each text: every member reads it through its own encoder and
    /// head, and the readings are combined (`HeadOutput::combine`).
    pub fn read(
        &self,
        embedder: &dyn SentenceEmbedder,
        texts: &[&str],
    ) -> Result<Vec<HeadOutput>, String> {
        read_with(&self.members, embedder, texts)
    }

    /// The most likely category of `output`.
    pub fn best_category(&self, output: &HeadOutput) -> &str {
        let best = output
            .categories
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i)
            .unwrap_or(0);
        &self.spec.categories[best]
    }

    /// Whether the most likely category of `output` is a look-alike (idiom, game, fiction,
    /// news, grief, a medical question, work, a helper, a past crisis, everyday distress,
    /// ordinary talk).
    pub fn reads_as_lookalike(&self, output: &HeadOutput) -> bool {
        exemplars::is_lookalike(self.best_category(output))
    }

    /// The probability the category head gives the look-alike categories together (reported
    /// per piece by `psy train-screen --report --readings`).
    pub fn lookalike_mass(&self, output: &HeadOutput) -> f32 {
        self.spec
            .categories
            .iter()
            .zip(&output.categories)
            .filter(|(c, _)| exemplars::is_lookalike(c))
            .map(|(_, p)| p)
            .sum()
    }
}

/// [`Screen::read`] for members not yet in a screen (training calibrates them).
pub fn read_with(
    members: &[Member],
    embedder: &dyn SentenceEmbedder,
    texts: &[&str],
) -> Result<Vec<HeadOutput>, String> {
    if texts.is_empty() {
        return Ok(Vec::new());
    }
    let encoders = members
        .iter()
        .map(|m| m.encoder(embedder))
        .collect::<Result<Vec<_>, String>>()?;
    let read = |(i, m): (usize, &Member)| -> Result<Vec<Reading>, String> {
        let encoder = &encoders[i];
        let vectors = encoder.embed(texts)?;
        if vectors.len() != texts.len() {
            return Err(format!(
                "encoder {} returned {} embeddings for {} texts",
                encoder.name(),
                vectors.len(),
                texts.len()
            ));
        }
        vectors
            .iter()
            .map(|v| {
                if v.len() != m.head.dim() {
                    return Err(format!(
                        "encoder {} gave a {}-dimensional embedding; member {i} of the screen takes {}",
                        encoder.name(),
                        v.len(),
                        m.head.dim()
                    ));
                }
                Ok(m.head.reading(v))
            })
            .collect()
    };
    // The first member reads alone, its products split over the pool: it leaves the states of
    // the lower blocks the members share for the others. The others then read side by side, one
    // per thread, each product on its own thread (a member's products on a few short texts are
    // too small to split well, and its attention and norms do not split at all).
    // Vectors every member remembers are read in turn: waking the pool would cost more.
    let Some((first, rest)) = members.split_first() else {
        return Ok(texts.iter().map(|_| HeadOutput::combine(&[])).collect());
    };
    let mut by_member = vec![read((0, first))?];
    let others: Vec<Result<Vec<Reading>, String>> = if encoders.iter().all(|e| e.knows(texts)) {
        rest.iter()
            .enumerate()
            .map(|(i, m)| read((i + 1, m)))
            .collect()
    } else {
        rest.par_iter()
            .enumerate()
            .map(|(i, m)| on_this_thread(|| read((i + 1, m))))
            .collect()
    };
    for r in others {
        by_member.push(r?);
    }
    let readings: Vec<Vec<Reading>> = (0..texts.len())
        .map(|t| by_member.iter().map(|m| m[t].clone()).collect())
        .collect();
    Ok(readings.iter().map(|r| HeadOutput::combine(r)).collect())
}

/// The screen shipped with psy (`plugins/safety/screen/screen.toml` and its weights, compiled
/// in), checked once per process.
pub fn builtin() -> Result<&'static Screen, String> {
    static SCREEN: OnceLock<Result<Screen, String>> = OnceLock::new();
    SCREEN
        .get_or_init(|| {
            Screen::from_parts(
                include_str!("../../screen/screen.toml"),
                "plugins/safety/screen/screen.toml",
                include_bytes!("../../screen/head.safetensors"),
                include_bytes!("../../screen/adapter.safetensors"),
            )
        })
        .as_ref()
        .map_err(Clone::clone)
}

#[cfg(test)]
mod tests {
    use super::{builtin, HeadOutput};

    #[test]
    fn the_lookalike_mass_sums_the_lookalike_categories_only() {
        let screen = builtin().unwrap();
        let at = |name: &str| {
            screen
                .spec
                .categories
                .iter()
                .position(|c| c == name)
                .unwrap()
        };
        let mut categories = vec![0.0; screen.spec.categories.len()];
        // Hand-computed: ordinary and grief are look-alikes (0.5 + 0.25); a wish to be dead and
        // hopelessness are not.
        categories[at("ordinary")] = 0.5;
        categories[at("grief")] = 0.25;
        categories[at("wish-dead")] = 0.125;
        categories[at("hopelessness")] = 0.125;
        let out = HeadOutput {
            levels: [0.0; 3],
            categories,
        };
        assert_eq!(screen.lookalike_mass(&out), 0.75);
    }
}
