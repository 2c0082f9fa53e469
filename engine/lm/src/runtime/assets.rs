//! Where the setup step (`scripts/setup.sh`) puts the default model, so that every command
//! taking `--model` works with no flags after setup.

use std::path::PathBuf;

use super::error::RuntimeError;

/// Path of the default model under `$PSY_ASSETS` (or `~/.cache/psy/assets`), relative.
pub const DEFAULT_MODEL: &str = "smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";

/// The assets directory: `$PSY_ASSETS`, else `$HOME/.cache/psy/assets`.
pub fn assets_dir() -> PathBuf {
    match std::env::var_os("PSY_ASSETS") {
        Some(d) => PathBuf::from(d),
        None => {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/psy/assets")
        }
    }
}

/// Expands a leading `$PSY_ASSETS` (see [`assets_dir`]), so that manifests can name the
/// files the setup step fetched.
pub fn expand_assets(p: &str) -> PathBuf {
    match p.strip_prefix("$PSY_ASSETS") {
        Some(rest) => assets_dir().join(rest.trim_start_matches('/')),
        None => PathBuf::from(p),
    }
}

/// The default model (SmolLM2-135M-Instruct, GGUF); an error telling to run the setup
/// script when it is missing.
pub fn default_model_path() -> Result<PathBuf, RuntimeError> {
    let p = assets_dir().join(DEFAULT_MODEL);
    if p.is_file() {
        Ok(p)
    } else {
        Err(RuntimeError::Unsupported(format!(
            "default model {} is missing: run scripts/setup.sh (or pass --model PATH)",
            p.display()
        )))
    }
}
