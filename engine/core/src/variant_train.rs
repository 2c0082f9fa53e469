//! `[variants.train]` of an ablation: a variant that trains a LoRA adapter before it decodes
//! ("a trained adapter vs none"). The training manifest is a run manifest with a `[train]`
//! section; the variant may override keys of that section inline.

use serde::{Deserialize, Serialize};

use crate::manifest_error::{line_col, parse_toml, ManifestError};
use crate::train_spec::TrainSection;

/// The `[variants.train]` table as written.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantTrain {
    /// A run manifest whose `[train]` section describes the training, relative to the ablation
    /// file. Empty: the ablation's base run.
    #[serde(default)]
    pub manifest: String,
    /// Keys of that `[train]` section to override (`[variants.train.set]`, e.g. `max_steps`).
    #[serde(default)]
    pub set: toml::Table,
}

/// Only what the key check needs: every variant's `[variants.train.set]`, typed so that an
/// unknown key or a wrong type is reported with its line and column (the values are only
/// parsed, never read).
#[allow(dead_code)]
#[derive(Deserialize)]
struct KeyCheck {
    #[serde(default)]
    variants: Vec<VariantKeyCheck>,
}

#[allow(dead_code)]
#[derive(Deserialize)]
struct VariantKeyCheck {
    #[serde(default)]
    train: Option<TrainKeyCheck>,
}

#[allow(dead_code)]
#[derive(Deserialize)]
struct TrainKeyCheck {
    #[serde(default)]
    set: Option<TrainSection>,
}

/// Checks every `[variants.train.set]` of the ablation `text` against the `[train]` schema.
pub fn check_train_keys(text: &str, origin: &str) -> Result<(), ManifestError> {
    let _: KeyCheck = parse_toml(text, origin)?;
    Ok(())
}

/// Line and column of the `[variants.train]` table of variant `name` (the first such header
/// after the variant's `name = "..."` line).
pub fn locate_train_table(text: &str, name: &str) -> Option<(usize, usize)> {
    let mut offset = 0;
    let mut in_variant = false;
    for line in text.split_inclusive('\n') {
        let t = line.trim();
        if t.starts_with("name")
            && t.split_once('=').map(|(_, v)| v.trim().trim_matches('"')) == Some(name)
        {
            in_variant = true;
        } else if t.starts_with("[[variants]]") {
            in_variant = false;
        } else if in_variant && t.starts_with("[variants.train") {
            return Some(line_col(text, offset + line.find('[').unwrap_or(0)));
        }
        offset += line.len();
    }
    None
}
