//! Weight sources: memory-mapped Hugging Face safetensors (single file or sharded) and GGUF.
//!
//! Each source hands out one tensor at a time as an owned `Vec<f32>` in the Hugging Face layout
//! (`[out, in]` for projections), so the only full copy of the weights is the f32 one the model
//! keeps; the file bytes stay in the page cache behind the memory map.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use rayon::prelude::*;
use safetensors::tensor::{Dtype, TensorInfo};
use safetensors::SafeTensors;

use super::error::{Result, RuntimeError};

/// Where the model builder gets its tensors from, by Hugging Face name.
pub trait TensorSource {
    /// Whether a tensor of this (HF) name exists.
    fn contains(&self, name: &str) -> bool;
    /// The tensor as f32, row-major, checked against `shape`.
    fn take(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>>;
    /// Errors when tensors were left unused (a sign of a mismatched architecture).
    fn finish(&self) -> Result<()>;
    /// The file or directory the tensors come from, for messages.
    fn origin(&self) -> &Path;
}

struct Shard {
    path: PathBuf,
    mmap: Mmap,
    data_start: usize,
}

/// Safetensors checkpoint, one file or several shards listed in `model.safetensors.index.json`.
pub struct SafetensorsSource {
    origin: PathBuf,
    shards: Vec<Shard>,
    tensors: HashMap<String, (usize, TensorInfo)>,
    used: BTreeSet<String>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RuntimeError + '_ {
    move |source| RuntimeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Tensors that checkpoints may carry but the model recomputes.
fn ignorable(name: &str) -> bool {
    name.ends_with("rotary_emb.inv_freq")
}

impl SafetensorsSource {
    /// Opens `dir/model.safetensors`, or the shards of `dir/model.safetensors.index.json`, or a
    /// `.safetensors` file given directly.
    pub fn open(path: &Path) -> Result<Self> {
        let files: Vec<PathBuf> = if path.is_file() {
            vec![path.to_path_buf()]
        } else if path.join("model.safetensors").is_file() {
            vec![path.join("model.safetensors")]
        } else {
            let index = path.join("model.safetensors.index.json");
            let text = std::fs::read_to_string(&index).map_err(io_err(&index))?;
            let json: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| RuntimeError::Safetensors {
                    path: index.clone(),
                    msg: e.to_string(),
                })?;
            let map = json
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| RuntimeError::Safetensors {
                    path: index.clone(),
                    msg: "no `weight_map` object".into(),
                })?;
            let names: BTreeSet<&str> = map.values().filter_map(|v| v.as_str()).collect();
            names.into_iter().map(|f| path.join(f)).collect()
        };
        let mut shards = Vec::new();
        let mut tensors = HashMap::new();
        for (i, file) in files.iter().enumerate() {
            let f = File::open(file).map_err(io_err(file))?;
            // SAFETY: the file is opened read-only; a checkpoint modified while loaded is
            // outside this runtime's contract (same as every mmap-based loader).
            let mmap = unsafe { Mmap::map(&f) }.map_err(io_err(file))?;
            let (n, meta) =
                SafeTensors::read_metadata(&mmap).map_err(|e| RuntimeError::Safetensors {
                    path: file.clone(),
                    msg: format!("{e:?}"),
                })?;
            for (name, info) in meta.tensors() {
                tensors.insert(name, (i, info.clone()));
            }
            shards.push(Shard {
                path: file.clone(),
                mmap,
                data_start: 8 + n,
            });
        }
        tracing::debug!(
            files = shards.len(),
            tensors = tensors.len(),
            "opened safetensors"
        );
        Ok(Self {
            origin: path.to_path_buf(),
            shards,
            tensors,
            used: BTreeSet::new(),
        })
    }
}

impl TensorSource for SafetensorsSource {
    fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    fn take(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let (shard, info) = self
            .tensors
            .get(name)
            .ok_or_else(|| RuntimeError::MissingTensor {
                name: name.into(),
                path: self.origin.clone(),
            })?;
        let shard = &self.shards[*shard];
        if info.shape != shape {
            return Err(RuntimeError::ShapeMismatch {
                name: name.into(),
                path: shard.path.clone(),
                expected: shape.to_vec(),
                found: info.shape.clone(),
            });
        }
        let (start, end) = info.data_offsets;
        let bytes = shard
            .mmap
            .get(shard.data_start + start..shard.data_start + end)
            .ok_or_else(|| RuntimeError::Safetensors {
                path: shard.path.clone(),
                msg: format!("data of `{name}` lies outside the file"),
            })?;
        let values = convert(bytes, info.dtype).ok_or_else(|| RuntimeError::UnsupportedDtype {
            name: name.into(),
            path: shard.path.clone(),
            dtype: format!("{:?}", info.dtype),
        })?;
        let numel: usize = shape.iter().product();
        if values.len() != numel {
            return Err(RuntimeError::Safetensors {
                path: shard.path.clone(),
                msg: format!(
                    "`{name}` holds {} values, shape needs {numel}",
                    values.len()
                ),
            });
        }
        self.used.insert(name.to_string());
        Ok(values)
    }

    fn finish(&self) -> Result<()> {
        let mut extra: Vec<String> = self
            .tensors
            .keys()
            .filter(|n| !self.used.contains(*n) && !ignorable(n))
            .cloned()
            .collect();
        if extra.is_empty() {
            return Ok(());
        }
        extra.sort();
        Err(RuntimeError::UnexpectedTensors {
            names: extra,
            path: self.origin.clone(),
        })
    }

    fn origin(&self) -> &Path {
        &self.origin
    }
}

/// Little-endian F32/F16/BF16 bytes to f32 (bytes may be unaligned inside the map).
fn convert(bytes: &[u8], dtype: Dtype) -> Option<Vec<f32>> {
    Some(match dtype {
        Dtype::F32 => bytes
            .par_chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => bytes
            .par_chunks_exact(2)
            .map(|b| half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .par_chunks_exact(2)
            .map(|b| half::bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32())
            .collect(),
        _ => return None,
    })
}

/// Loads a GGUF checkpoint (llama architecture). Needs the GGUF reader of `runtime::gguf`.
pub fn load_gguf(
    path: &Path,
    _device: &burn::tensor::Device,
) -> Result<super::generate::LoadedModel> {
    Err(RuntimeError::Gguf {
        path: path.to_path_buf(),
        msg: "GGUF reader not merged yet".into(),
    })
}
