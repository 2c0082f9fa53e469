//! The crisis guard's second detector: a classifier trained over sentence embeddings, so that
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

use psy_core::semantic::SentenceEmbedder;
use sha2::{Digest, Sha256};

pub use head::{Head, HeadOutput};
pub use score::{Piece, PieceKind, TurnScore};
pub use spec::ScreenSpec;

/// Largest difference allowed between the probe embedding in `screen.toml` and the loaded
/// encoder's: encoders that are the same model agree to ~1e-6 (measured 2e-7 against
/// sentence-transformers); a different model differs by far more than this.
pub const PROBE_TOLERANCE: f32 = 1e-4;

/// A loaded screen: its manifest and its head.
#[derive(Clone, Debug)]
pub struct Screen {
    pub spec: ScreenSpec,
    pub head: Head,
    /// The encoder adapter's bytes (merged by the embedder, see `SentenceEmbedder::adapted`).
    pub adapter: Vec<u8>,
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
        let weights_origin = format!("{origin} -> {}", spec.weights);
        let head = Head::from_safetensors(
            weights,
            &weights_origin,
            spec.encoder.dim,
            spec.categories.len(),
        )?;
        Ok(Screen {
            spec,
            head,
            adapter: adapter.to_vec(),
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

    /// Checks that `embedder` is the encoder the head was trained over: same dimension, and the
    /// probe sentence embeds to the recorded values.
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
        let adapted = self.encoder(embedder)?;
        for (which, enc, want) in [
            ("encoder", embedder, &e.probe),
            ("adapted encoder", &*adapted, &e.adapted_probe),
        ] {
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

    /// The screen's fine-tuned encoder: `embedder` with the screen's adapter merged in.
    pub fn encoder(
        &self,
        embedder: &dyn SentenceEmbedder,
    ) -> Result<std::sync::Arc<dyn SentenceEmbedder>, String> {
        embedder
            .adapted(&self.adapter, &self.spec.adapter_sha256)
            .map_err(|err| format!("{}: {err}", self.origin))
    }
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
