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

use super::config::{Architecture, ModelConfig};
use super::error::{Result, RuntimeError};
use super::gguf::{GgmlDType, GgufError, GgufFile};
use super::quant::QuantMatrix;

/// Where the model builder gets its tensors from, by Hugging Face name.
pub trait TensorSource {
    /// Whether a tensor of this (HF) name exists.
    fn contains(&self, name: &str) -> bool;
    /// The tensor as f32, row-major, checked against `shape`.
    fn take(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>>;
    /// The tensor kept in its file's block format when the source holds it quantised (or in
    /// half precision) and was opened to keep it so; `Ok(None)` means "take it as f32".
    fn take_quant(&mut self, _name: &str, _shape: &[usize]) -> Result<Option<QuantMatrix>> {
        Ok(None)
    }
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

/// GGUF checkpoint (architectures `llama`, `qwen2`, `qwen3`) under Hugging Face tensor names.
///
/// For `llama` only, llama.cpp's converter permutes the rows of `attn_q`/`attn_k` so that its
/// interleaved RoPE sees the pairs the half-split HF layout rotates; [`GgufSource::take`] undoes
/// that (transformers' `reverse_permute`) so the model keeps a single RoPE implementation.
pub struct GgufSource {
    file: GgufFile,
    n_head: usize,
    n_kv_head: usize,
    permuted_qk: bool,
    keep_quantized: bool,
    used: BTreeSet<String>,
}

fn gguf_err(e: GgufError) -> RuntimeError {
    let path = match &e {
        GgufError::Io { path, .. }
        | GgufError::BadMagic { path, .. }
        | GgufError::UnsupportedVersion { path, .. }
        | GgufError::Truncated { path, .. }
        | GgufError::UnsupportedDtype { path, .. }
        | GgufError::BadUtf8 { path, .. }
        | GgufError::TensorNotFound { path, .. }
        | GgufError::Invalid { path, .. } => path.clone(),
    };
    RuntimeError::Gguf {
        path,
        msg: e.to_string(),
    }
}

/// HF name -> llama.cpp name, or `None` for names the llama architecture does not have.
fn gguf_name(hf: &str) -> Option<String> {
    let fixed = match hf {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(f.to_string());
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, tail) = rest.split_once('.')?;
    let (module, kind) = tail.rsplit_once('.')?;
    let short = match module {
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        "self_attn.q_norm" => "attn_q_norm",
        "self_attn.k_norm" => "attn_k_norm",
        "input_layernorm" => "attn_norm",
        "post_attention_layernorm" => "ffn_norm",
        _ => return None,
    };
    Some(format!("blk.{layer}.{short}.{kind}"))
}

/// Inverse of llama.cpp's q/k permutation: rows of each head are stored as (pair j, half t)
/// interleaved; HF wants half t major: row `h*d + t*d/2 + j` comes from row `h*d + 2j + t`.
fn permuted_source_row(dst: usize, n_head: usize, rows: usize) -> usize {
    let d = rows / n_head;
    let half = d / 2;
    let (h, rem) = (dst / d, dst % d);
    h * d + 2 * (rem % half) + rem / half
}

/// [`permuted_source_row`] applied to every row of a row-major `[rows, cols]` matrix.
fn reverse_permute(w: &[f32], n_head: usize, rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; w.len()];
    for (dst, row) in out.chunks_exact_mut(cols).enumerate() {
        let src = permuted_source_row(dst, n_head, rows);
        row.copy_from_slice(&w[src * cols..(src + 1) * cols]);
    }
    out
}

impl GgufSource {
    /// Opens `path`; with `keep_quantized`, [`TensorSource::take_quant`] hands out every
    /// matrix that is not F32 in its own format instead of f32.
    pub fn open(path: &Path, keep_quantized: bool) -> Result<(Self, ModelConfig)> {
        let file = GgufFile::open(path).map_err(gguf_err)?;
        let arch = file.architecture().unwrap_or_default().to_string();
        let architecture = match arch.as_str() {
            "llama" => Architecture::Llama,
            "qwen2" => Architecture::Qwen2,
            "qwen3" => Architecture::Qwen3,
            _ => {
                return Err(RuntimeError::Gguf {
                    path: path.to_path_buf(),
                    msg: format!("architecture `{arch}` is not supported (llama, qwen2, qwen3)"),
                })
            }
        };
        let key = |k: &str| format!("{arch}.{k}");
        let bad = |msg: String| RuntimeError::Gguf {
            path: path.to_path_buf(),
            msg,
        };
        // An optional size: absent is `None`; present but negative or fractional is an error.
        let size = |k: &str| -> Result<Option<usize>> {
            match file.get(&key(k)) {
                None => Ok(None),
                Some(v) => v
                    .as_u64()
                    .and_then(|v| usize::try_from(v).ok())
                    .map(Some)
                    .ok_or_else(|| {
                        bad(format!(
                            "metadata `{}` is {v:?}, expected a non-negative integer",
                            key(k)
                        ))
                    }),
            }
        };
        let need = |k: &str| -> Result<usize> {
            size(k)?.ok_or_else(|| bad(format!("metadata `{}` is missing", key(k))))
        };
        let hidden = need("embedding_length")?;
        let n_head = need("attention.head_count")?;
        let n_kv_head = size("attention.head_count_kv")?.unwrap_or(n_head);
        let head_dim = match size("attention.key_length")? {
            Some(v) => v,
            // Zero heads is reported by `check_sizes` under its own key.
            None if n_head == 0 => 0,
            None if hidden % n_head == 0 => hidden / n_head,
            None => {
                return Err(bad(format!(
                "metadata `{}` is absent and `{}` ({hidden}) is not a multiple of `{}` ({n_head})",
                key("attention.key_length"),
                key("embedding_length"),
                key("attention.head_count")
            )))
            }
        };
        let vocab = match size("vocab_size")? {
            Some(v) => v,
            None => file
                .tensor_info("token_embd.weight")
                .and_then(|t| t.shape().first().copied())
                .ok_or_else(|| RuntimeError::MissingTensor {
                    name: "token_embd.weight".into(),
                    path: path.to_path_buf(),
                })?,
        };
        let config = ModelConfig {
            architecture,
            vocab_size: vocab,
            hidden_size: hidden,
            intermediate_size: need("feed_forward_length")?,
            num_hidden_layers: need("block_count")?,
            num_attention_heads: n_head,
            num_key_value_heads: n_kv_head,
            head_dim,
            rope_theta: file.get_f64(&key("rope.freq_base")).unwrap_or(10000.0),
            rms_norm_eps: file
                .get_f64(&key("attention.layer_norm_rms_epsilon"))
                .unwrap_or(1e-6),
            tie_word_embeddings: file.tensor_info("output.weight").is_none(),
            qkv_bias: file.tensor_info("blk.0.attn_q.bias").is_some(),
            o_bias: file.tensor_info("blk.0.attn_output.bias").is_some(),
            qk_norm: architecture == Architecture::Qwen3,
            max_position_embeddings: size("context_length")?.unwrap_or(4096),
            bos_token_id: file
                .get_u64("tokenizer.ggml.bos_token_id")
                .map(|v| v as u32),
            eos_token_ids: file
                .get_u64("tokenizer.ggml.eos_token_id")
                .map(|v| vec![v as u32])
                .unwrap_or_default(),
        };
        config
            .check_sizes()
            .map_err(|e| bad(e.describe(|f| format!("metadata `{}`", key(f.gguf_key())))))?;
        Ok((
            Self {
                file,
                n_head,
                n_kv_head,
                permuted_qk: architecture == Architecture::Llama,
                keep_quantized,
                used: BTreeSet::new(),
            },
            config,
        ))
    }
}

impl GgufSource {
    /// The GGUF name of HF tensor `name`, checked to exist with `shape`.
    fn checked_name(&self, name: &str, shape: &[usize]) -> Result<String> {
        let path = self.file.path().to_path_buf();
        let g = gguf_name(name).ok_or_else(|| RuntimeError::MissingTensor {
            name: name.into(),
            path: path.clone(),
        })?;
        let info = self
            .file
            .tensor_info(&g)
            .ok_or_else(|| RuntimeError::MissingTensor {
                name: format!("{g} (HF `{name}`)"),
                path: path.clone(),
            })?;
        if info.shape() != shape {
            return Err(RuntimeError::ShapeMismatch {
                name: g,
                path,
                expected: shape.to_vec(),
                found: info.shape(),
            });
        }
        Ok(g)
    }

    /// Heads of a q/k projection whose rows llama.cpp permuted (`llama` files only).
    fn qk_heads(&self, g: &str) -> Option<usize> {
        if !self.permuted_qk {
            None
        } else if g.ends_with("attn_q.weight") {
            Some(self.n_head)
        } else if g.ends_with("attn_k.weight") {
            Some(self.n_kv_head)
        } else {
            None
        }
    }
}

impl TensorSource for GgufSource {
    fn contains(&self, name: &str) -> bool {
        gguf_name(name).is_some_and(|g| self.file.tensor_info(&g).is_some())
    }

    fn take(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let g = self.checked_name(name, shape)?;
        let (values, _) = self.file.tensor_f32(&g).map_err(gguf_err)?;
        self.used.insert(g.clone());
        Ok(match self.qk_heads(&g) {
            Some(heads) => reverse_permute(&values, heads, shape[0], shape[1]),
            None => values,
        })
    }

    fn take_quant(&mut self, name: &str, shape: &[usize]) -> Result<Option<QuantMatrix>> {
        let g = self.checked_name(name, shape)?;
        let dtype = self.file.tensor_info(&g).map(|t| t.dtype);
        if !self.keep_quantized || shape.len() < 2 || dtype == Some(GgmlDType::F32) {
            return Ok(None);
        }
        let m = self.file.tensor_quant(&g).map_err(gguf_err)?;
        self.used.insert(g.clone());
        let m = match self.qk_heads(&g) {
            Some(heads) => m.permute_rows(|dst| permuted_source_row(dst, heads, shape[0])),
            None => m,
        };
        // K-quants as panels where the 512-bit kernel reads them (a no-op elsewhere).
        Ok(Some(m.into_panels()))
    }

    fn finish(&self) -> Result<()> {
        let extra: Vec<String> = self
            .file
            .tensors()
            .iter()
            .map(|t| t.name.clone())
            .filter(|n| !self.used.contains(n) && !n.ends_with("rope_freqs.weight"))
            .collect();
        if extra.is_empty() {
            Ok(())
        } else {
            Err(RuntimeError::UnexpectedTensors {
                names: extra,
                path: self.file.path().to_path_buf(),
            })
        }
    }

    fn origin(&self) -> &Path {
        self.file.path()
    }
}
