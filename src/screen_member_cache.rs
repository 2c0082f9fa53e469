//! Trained screen members kept on disk between runs of `psy train-screen`, so a run stopped by a
//! member that did not learn (or by anything else) reuses the members it had finished when it is
//! run again with another seed in that member's place. One member trains for about five minutes
//! on two cores; without this a seven-member run that failed on its fourth member started over.
//!
//! A member is reused only when everything its training read is the same: the psy binary itself
//! (its sha256, so any rebuild of the training code starts afresh), the encoder's name and its
//! reading of the probe text, the member's settings (seed included) and every training text with
//! its level targets and category. Kept in `$PSY_SCREEN_CACHE`, else `~/.cache/psy/screen-members`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::f32_safetensors::f32_safetensors;
use anyhow::{Context, Result};
use psy_lm::encoder::adapter::NamedTensor;
use psy_lm::training::screen_head::{HeadConfig, HeadData, TrainedHead};
use psy_safety::screen::sha256_hex;
use sha2::{Digest, Sha256};

/// The cache directory: `$PSY_SCREEN_CACHE`, else `$HOME/.cache/psy/screen-members`.
pub fn cache_root() -> PathBuf {
    match std::env::var_os("PSY_SCREEN_CACHE") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
            .join(".cache/psy/screen-members"),
    }
}

/// The sha256 of the running executable, read once per process.
fn binary_sha256() -> Result<&'static str> {
    static SHA: OnceLock<String> = OnceLock::new();
    if let Some(s) = SHA.get() {
        return Ok(s);
    }
    let exe = std::env::current_exe().context("cannot locate the running psy binary")?;
    let bytes = std::fs::read(&exe).with_context(|| format!("{}: cannot read", exe.display()))?;
    Ok(SHA.get_or_init(|| sha256_hex(&bytes)))
}

/// The key of one member's training: everything it read (see the module's comment).
pub fn member_key(
    encoder_name: &str,
    encoder_probe: &[f32],
    config: &HeadConfig,
    data: &HeadData,
) -> Result<String> {
    let mut h = Sha256::new();
    h.update(binary_sha256()?.as_bytes());
    h.update(encoder_name.as_bytes());
    for x in encoder_probe {
        h.update(x.to_le_bytes());
    }
    h.update(format!("{config:?}").as_bytes());
    h.update((data.categories as u64).to_le_bytes());
    for ((text, levels), category) in data.texts.iter().zip(data.levels).zip(data.category) {
        h.update((text.len() as u64).to_le_bytes());
        h.update(text.as_bytes());
        for x in levels {
            h.update(x.to_le_bytes());
        }
        h.update((*category as u64).to_le_bytes());
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// The member trained under `key`, if a complete one is kept. A file that cannot be read back
/// whole is ignored (the member is trained again), never half used.
pub fn load(root: &Path, key: &str) -> Option<TrainedHead> {
    let bytes = std::fs::read(root.join(format!("{key}.safetensors"))).ok()?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).ok()?;
    let losses: Vec<f32> = serde_json::from_str(meta.metadata().as_ref()?.get("losses")?).ok()?;
    let st = safetensors::SafeTensors::deserialize(&bytes).ok()?;
    let (mut tensors, mut adapter) = (Vec::new(), Vec::new());
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();
    for name in names {
        let view = st.tensor(&name).ok()?;
        if view.dtype() != safetensors::Dtype::F32 {
            return None;
        }
        let values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let shape = view.shape().to_vec();
        if let Some(n) = name.strip_prefix("head.") {
            tensors.push((n.to_string(), shape, values));
        } else if let Some(n) = name.strip_prefix("adapter.") {
            adapter.push((n.to_string(), shape, values));
        } else {
            return None;
        }
    }
    Some(TrainedHead {
        tensors: order_as(tensors, meta.metadata().as_ref()?.get("head_order")?)?,
        adapter: order_as(adapter, meta.metadata().as_ref()?.get("adapter_order")?)?,
        losses,
    })
}

/// Puts tensors back in the order training gave them (recorded as a JSON list of names).
fn order_as(mut tensors: Vec<NamedTensor>, order: &str) -> Option<Vec<NamedTensor>> {
    let order: Vec<String> = serde_json::from_str(order).ok()?;
    if order.len() != tensors.len() {
        return None;
    }
    order
        .iter()
        .map(|n| {
            let i = tensors.iter().position(|t| &t.0 == n)?;
            Some(tensors.swap_remove(i))
        })
        .collect()
}

/// Keeps a trained member under `key` (written whole, then renamed into place).
pub fn store(root: &Path, key: &str, trained: &TrainedHead) -> Result<PathBuf> {
    std::fs::create_dir_all(root).with_context(|| format!("{}: cannot create", root.display()))?;
    let path = root.join(format!("{key}.safetensors"));
    let tmp = root.join(format!("{key}.safetensors.tmp"));
    let prefixed: Vec<NamedTensor> = [("head.", &trained.tensors), ("adapter.", &trained.adapter)]
        .into_iter()
        .flat_map(|(prefix, ts)| {
            ts.iter()
                .map(move |(n, shape, v)| (format!("{prefix}{n}"), shape.clone(), v.clone()))
        })
        .collect();
    let names =
        |ts: &[NamedTensor]| serde_json::to_string(&ts.iter().map(|t| &t.0).collect::<Vec<_>>());
    let meta = std::collections::HashMap::from([
        (
            "losses".to_string(),
            serde_json::to_string(&trained.losses)?,
        ),
        ("head_order".to_string(), names(&trained.tensors)?),
        ("adapter_order".to_string(), names(&trained.adapter)?),
    ]);
    let bytes = f32_safetensors(&prefixed, Some(meta))?;
    std::fs::write(&tmp, bytes).with_context(|| format!("{}: cannot write", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("{}: cannot write", path.display()))?;
    Ok(path)
}
