//! Refusing a model that does not fit in memory before loading it, with the estimate and what
//! is free (as `psy train` does for a training run), instead of letting the OS kill psy
//! half-way through a multi-gigabyte load.

use std::path::Path;

use super::config::ModelConfig;
use super::error::{Result, RuntimeError};
use super::gguf::{GgmlDType, GgufFile};
use super::weights::GgufSource;

/// Positions of KV cache counted in the estimate: the prompt cache of a session grows to
/// about twice its longest prompt, and most sessions stay under this.
const ESTIMATED_POSITIONS: usize = 4096;

/// Free memory of a device: `nvidia-smi`'s `memory.free` for `cuda[:N]` (unknown when it is
/// not installed), `MemAvailable` for the CPU. `PSY_AVAILABLE_MEMORY` (bytes) stands in for
/// the CPU figure, to bound psy below what the OS reports (or to test the refusal).
pub fn available_memory(device: &str) -> Option<u64> {
    if let Some(rest) = device.strip_prefix("cuda") {
        let index = rest.strip_prefix(':').unwrap_or("0");
        let out = std::process::Command::new("nvidia-smi")
            .args([
                "--query-gpu=memory.free",
                "--format=csv,noheader,nounits",
                "-i",
                index,
            ])
            .output()
            .ok()?;
        let mib: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
        return Some(mib << 20);
    }
    if let Some(v) = std::env::var_os("PSY_AVAILABLE_MEMORY") {
        return v.to_str()?.trim().parse().ok();
    }
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    line.split_whitespace()
        .nth(1)?
        .parse::<u64>()
        .ok()
        .map(|kb| kb * 1024)
}

/// Bytes a loaded model needs, by part.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadEstimate {
    /// The weights as held in memory (block format or f32).
    pub weights: u64,
    /// An f32 KV cache of [`ESTIMATED_POSITIONS`] positions (fewer if the model has fewer).
    pub kv_cache: u64,
    /// Free memory, when known.
    pub available: Option<u64>,
}

impl LoadEstimate {
    pub fn total(&self) -> u64 {
        self.weights + self.kv_cache
    }

    pub fn describe(&self) -> String {
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        format!(
            "memory estimate: weights {:.1} MiB, KV cache {:.1} MiB ({ESTIMATED_POSITIONS} \
             positions), total {:.1} MiB (available {})",
            mib(self.weights),
            mib(self.kv_cache),
            mib(self.total()),
            self.available
                .map_or("unknown".into(), |a| format!("{:.1} MiB", mib(a)))
        )
    }

    /// An error naming `path`, the estimate and what is free when the model does not fit;
    /// nothing when it fits or the free memory is unknown.
    pub fn check(&self, path: &Path) -> Result<()> {
        match self.available {
            Some(a) if self.total() > a => Err(RuntimeError::DoesNotFit {
                path: path.to_path_buf(),
                detail: self.describe(),
            }),
            _ => Ok(()),
        }
    }
}

fn kv_bytes(c: &ModelConfig) -> u64 {
    let positions = ESTIMATED_POSITIONS.min(c.max_position_embeddings.max(1));
    (c.num_hidden_layers * 2 * c.num_key_value_heads * c.head_dim * positions * 4) as u64
}

/// What loading `path` (a `.gguf` file or an HF directory) would take, read from its header
/// or `config.json` without loading a weight. `keep_quantized`: GGUF matrices stay in their
/// block format (their bytes in the file) instead of 4 bytes a weight.
pub fn estimate_load(path: &Path, keep_quantized: bool, device: &str) -> Result<LoadEstimate> {
    estimate_load_as(path, keep_quantized, false, device)
}

/// Bytes a Q8_0 matrix of `n` values takes: 34 bytes per 32 values.
fn q8_0_bytes(n: u64) -> u64 {
    n / 32 * 34
}

/// [`estimate_load`]; with `to_q8_0` (`PSY_WEIGHTS=q8_0`), matrices not already in a block
/// format are counted as Q8_0.
pub fn estimate_load_as(
    path: &Path,
    keep_quantized: bool,
    to_q8_0: bool,
    device: &str,
) -> Result<LoadEstimate> {
    let (weights, config) = if path.is_file() && path.extension().is_some_and(|e| e == "gguf") {
        let (_, config) = GgufSource::open(path, keep_quantized)?;
        let file = GgufFile::open(path).map_err(|e| RuntimeError::Gguf {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        let weights = file
            .tensors()
            .iter()
            .map(|t| {
                let matrix = keep_quantized && t.dims.len() > 1;
                match t.byte_size() {
                    // F32 matrices become Q8_0 with `to_q8_0` (see `QuantizeOnLoad`).
                    _ if matrix && to_q8_0 && t.dtype == GgmlDType::F32 && t.dims[0] % 32 == 0 => {
                        q8_0_bytes(t.n_elements())
                    }
                    // Vectors (norms, biases) are always held as f32.
                    Some(b) if matrix => b,
                    _ => 4 * t.n_elements(),
                }
            })
            .sum();
        (weights, config)
    } else {
        let config = ModelConfig::from_hf_file(&path.join("config.json"))?;
        let n = config.num_params();
        // Nearly every parameter of a checkpoint is in a matrix (norms are a few thousand).
        let weights = if to_q8_0 && keep_quantized {
            q8_0_bytes(n)
        } else {
            4 * n
        };
        (weights, config)
    };
    Ok(LoadEstimate {
        weights,
        kv_cache: kv_bytes(&config),
        available: available_memory(device),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_larger_than_what_is_free_is_refused_with_both_figures() {
        let e = LoadEstimate {
            weights: 3 << 30,
            kv_cache: 1 << 29,
            available: Some(2 << 30),
        };
        let err = e.check(Path::new("big.gguf")).unwrap_err().to_string();
        assert!(err.contains("big.gguf"), "{err}");
        assert!(err.contains("total 3584.0 MiB"), "{err}");
        assert!(err.contains("available 2048.0 MiB"), "{err}");
        let fits = LoadEstimate {
            available: Some(4 << 30),
            ..e.clone()
        };
        assert!(fits.check(Path::new("big.gguf")).is_ok());
        let unknown = LoadEstimate {
            available: None,
            ..e
        };
        assert!(unknown.check(Path::new("big.gguf")).is_ok());
    }
}
