//! Where the default encoder lives, and the process-wide copy of each loaded encoder: the
//! planner embeds every turn, and loading (tens of MB of weights) must happen once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use super::error::{EncoderError, Result};
use super::sentence_encoder::Encoder;
use crate::runtime::assets::assets_dir;

/// The default encoder (all-MiniLM-L6-v2, fetched by `scripts/setup.sh`) under the assets dir.
pub const DEFAULT_ENCODER: &str = "minilm";

/// `$PSY_ASSETS/minilm` (or `~/.cache/psy/assets/minilm`); an error telling to run the setup
/// script when it is missing.
pub fn default_encoder_dir() -> Result<PathBuf> {
    let dir = assets_dir().join(DEFAULT_ENCODER);
    if dir.join("modules.json").is_file() {
        Ok(dir)
    } else {
        Err(EncoderError::MissingDefault { path: dir })
    }
}

fn cache() -> &'static Mutex<HashMap<PathBuf, Arc<Encoder>>> {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, Arc<Encoder>>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// The encoder of `dir` (default: [`default_encoder_dir`]), loaded on first use and shared by
/// every later caller in the process. Keyed by the canonical path, so two spellings of one
/// directory share one copy; a failed load is not remembered.
pub fn shared(dir: Option<&Path>) -> Result<Arc<Encoder>> {
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => default_encoder_dir()?,
    };
    let key = dir.canonicalize().map_err(|source| EncoderError::Io {
        path: dir.clone(),
        source,
    })?;
    // Held across the load so that concurrent first callers load once.
    let mut map = cache()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(e) = map.get(&key) {
        return Ok(Arc::clone(e));
    }
    let encoder = Arc::new(Encoder::load(&key)?);
    map.insert(key, Arc::clone(&encoder));
    Ok(encoder)
}
