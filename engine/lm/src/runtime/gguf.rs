//! GGUF (v2/v3) reader: metadata, tensor table and f32 dequantisation over a memory map.
//!
//! Why our own reader: the model runtime needs only a small, well-defined subset of GGUF
//! (llama.cpp's file format), and a reader that never panics on a bad file and names the file
//! and tensor in every error. The layout follows the GGUF spec in ggml's `docs/gguf.md`:
//!
//! ```text
//! "GGUF" u32 version, u64 n_tensors, u64 n_kv,
//! n_kv × (string key, u32 value_type, value),
//! n_tensors × (string name, u32 n_dims, n_dims × u64 dim, u32 ggml_type, u64 offset),
//! padding to `general.alignment` (default 32), tensor data (offsets relative to its start).
//! ```
//! Strings are `u64 length + UTF-8 bytes`; everything is little-endian.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

pub use super::ggml_type::GgmlDType;
use super::quant::{self, QuantMatrix};

/// Alignment of the tensor data section when `general.alignment` is absent (GGUF spec).
pub const DEFAULT_ALIGNMENT: u64 = 32;
const MAGIC: [u8; 4] = *b"GGUF";

/// Everything that can go wrong reading a GGUF file; each variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("{path}: cannot read GGUF file: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a GGUF file (magic bytes {found:?}, expected \"GGUF\")")]
    BadMagic { path: PathBuf, found: Vec<u8> },
    #[error("{path}: unsupported GGUF version {version} (this reader supports versions 2 and 3)")]
    UnsupportedVersion { path: PathBuf, version: u32 },
    #[error(
        "{path}: truncated GGUF file: {what} needs bytes {start}..{end} but the file has only {len} bytes"
    )]
    Truncated {
        path: PathBuf,
        what: String,
        start: u64,
        end: u64,
        len: u64,
    },
    #[error("{path}: tensor '{tensor}' has unsupported dtype {dtype} (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K)")]
    UnsupportedDtype {
        path: PathBuf,
        tensor: String,
        dtype: GgmlDType,
    },
    #[error("{path}: invalid UTF-8 in {what}")]
    BadUtf8 { path: PathBuf, what: String },
    #[error("{path}: no tensor named '{tensor}'")]
    TensorNotFound { path: PathBuf, tensor: String },
    #[error("{path}: invalid GGUF: {msg}")]
    Invalid { path: PathBuf, msg: String },
}

/// A metadata value (all GGUF value types; arrays may nest).
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Vec<GgufValue>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl GgufValue {
    /// Integer value of any integer type (negative values and floats give `None`).
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            GgufValue::U8(v) => Some(v.into()),
            GgufValue::U16(v) => Some(v.into()),
            GgufValue::U32(v) => Some(v.into()),
            GgufValue::U64(v) => Some(v),
            GgufValue::I8(v) => u64::try_from(v).ok(),
            GgufValue::I16(v) => u64::try_from(v).ok(),
            GgufValue::I32(v) => u64::try_from(v).ok(),
            GgufValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Value of any numeric type as f64.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            GgufValue::F32(v) => Some(v.into()),
            GgufValue::F64(v) => Some(v),
            GgufValue::I8(v) => Some(v.into()),
            GgufValue::I16(v) => Some(v.into()),
            GgufValue::I32(v) => Some(v.into()),
            GgufValue::I64(v) => Some(v as f64),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            GgufValue::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[GgufValue]> {
        match self {
            GgufValue::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// One entry of the tensor table.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufTensorInfo {
    pub name: String,
    /// GGUF order: `dims[0]` varies fastest (the reverse of PyTorch's shape).
    pub dims: Vec<u64>,
    pub dtype: GgmlDType,
    /// Byte offset relative to the start of the tensor data section.
    pub offset: u64,
}

impl GgufTensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// PyTorch-style shape (GGUF dims reversed).
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }

    /// Size of the tensor's data in bytes, when its type's block layout is known.
    pub fn byte_size(&self) -> Option<u64> {
        let (block, bytes) = self.dtype.block_layout()?;
        let n = self.n_elements();
        n.is_multiple_of(block).then(|| n / block * bytes)
    }
}

/// A parsed, memory-mapped GGUF file.
pub struct GgufFile {
    path: PathBuf,
    mmap: Mmap,
    version: u32,
    metadata: BTreeMap<String, GgufValue>,
    tensors: Vec<GgufTensorInfo>,
    by_name: BTreeMap<String, usize>,
    alignment: u64,
    data_start: u64,
}

impl fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("n_kv", &self.metadata.len())
            .field("n_tensors", &self.tensors.len())
            .field("data_start", &self.data_start)
            .finish()
    }
}

impl GgufFile {
    /// Memory-maps and parses `path`; validates that every tensor's data lies inside the file.
    pub fn open(path: &Path) -> Result<GgufFile, GgufError> {
        let io = |source| GgufError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len < 8 {
            // Too short even for magic + version; memmap of an empty file is not portable.
            let mut head = std::fs::read(path).map_err(io)?;
            if head.len() >= 4 && head[..4] != MAGIC {
                head.truncate(4);
                return Err(GgufError::BadMagic {
                    path: path.to_path_buf(),
                    found: head,
                });
            }
            return Err(GgufError::Truncated {
                path: path.to_path_buf(),
                what: "header".into(),
                start: 0,
                end: 8,
                len,
            });
        }
        // SAFETY: the map is read-only and we never hand out references that outlive `self`.
        // Like every mmap-based model loader we assume the file is not truncated by another
        // process while it is open (that would be a SIGBUS, not memory unsafety in our code).
        let mmap = unsafe { Mmap::map(&file) }.map_err(io)?;
        let parsed = parse(path, &mmap)?;
        tracing::debug!(
            path = %path.display(),
            version = parsed.version,
            n_kv = parsed.metadata.len(),
            n_tensors = parsed.tensors.len(),
            "opened GGUF"
        );
        let by_name = parsed
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Ok(GgufFile {
            path: path.to_path_buf(),
            mmap,
            version: parsed.version,
            metadata: parsed.metadata,
            tensors: parsed.tensors,
            by_name,
            alignment: parsed.alignment,
            data_start: parsed.data_start,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute file offset of the tensor data section.
    pub fn data_start(&self) -> u64 {
        self.data_start
    }

    pub fn metadata(&self) -> &BTreeMap<String, GgufValue> {
        &self.metadata
    }

    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.get(key)
    }

    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.metadata.get(key)?.as_str()
    }

    /// Any non-negative integer value (floats are not converted: a float count is a bad file).
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.metadata.get(key)?.as_u64()
    }

    /// Any numeric value as f64.
    pub fn get_f64(&self, key: &str) -> Option<f64> {
        self.metadata.get(key)?.as_f64()
    }

    pub fn get_bool(&self, key: &str) -> Option<bool> {
        self.metadata.get(key)?.as_bool()
    }

    /// A string-array value (e.g. `tokenizer.ggml.tokens`); `None` if any element is not a string.
    pub fn get_str_array(&self, key: &str) -> Option<Vec<&str>> {
        self.metadata
            .get(key)?
            .as_array()?
            .iter()
            .map(GgufValue::as_str)
            .collect()
    }

    pub fn architecture(&self) -> Option<&str> {
        self.get_str("general.architecture")
    }

    pub fn tensors(&self) -> &[GgufTensorInfo] {
        &self.tensors
    }

    pub fn tensor_info(&self, name: &str) -> Option<&GgufTensorInfo> {
        self.by_name.get(name).map(|&i| &self.tensors[i])
    }

    /// The raw (possibly quantised) bytes of a tensor, for backends that dequantise themselves.
    pub fn tensor_bytes(&self, name: &str) -> Result<&[u8], GgufError> {
        let info = self.require(name)?;
        let size = info.byte_size().ok_or_else(|| self.unsupported(info))?;
        self.data_slice(info, size)
    }

    /// Dequantised values in row-major order with the PyTorch-style shape (GGUF dims reversed).
    pub fn tensor_f32(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>), GgufError> {
        let info = self.require(name)?;
        if !info.dtype.is_supported() {
            return Err(self.unsupported(info));
        }
        let size = info.byte_size().ok_or_else(|| GgufError::Invalid {
            path: self.path.clone(),
            msg: format!(
                "tensor '{}': {} elements is not a whole number of {} blocks",
                info.name,
                info.n_elements(),
                info.dtype
            ),
        })?;
        let bytes = self.data_slice(info, size)?;
        let values = quant::dequantize(info.dtype, bytes).map_err(|e| self.invalid(info, e))?;
        Ok((values, info.shape()))
    }

    /// A tensor of two or more dimensions as a [`QuantMatrix`] `[rows, cols]` (cols = the
    /// fastest GGUF dimension), its bytes copied in their own format; each row must be a whole
    /// number of blocks.
    pub fn tensor_quant(&self, name: &str) -> Result<QuantMatrix, GgufError> {
        let info = self.require(name)?;
        if !info.dtype.is_supported() {
            return Err(self.unsupported(info));
        }
        let cols = info.dims[0] as usize;
        let rows = (info.n_elements() as usize).checked_div(cols).unwrap_or(0);
        let bytes = self.tensor_bytes(name)?;
        QuantMatrix::new(info.dtype, rows, cols, bytes.to_vec()).map_err(|e| self.invalid(info, e))
    }

    fn invalid(&self, info: &GgufTensorInfo, e: quant::QuantError) -> GgufError {
        GgufError::Invalid {
            path: self.path.clone(),
            msg: format!("tensor '{}': {e}", info.name),
        }
    }

    fn require(&self, name: &str) -> Result<&GgufTensorInfo, GgufError> {
        self.tensor_info(name)
            .ok_or_else(|| GgufError::TensorNotFound {
                path: self.path.clone(),
                tensor: name.to_string(),
            })
    }

    fn unsupported(&self, info: &GgufTensorInfo) -> GgufError {
        GgufError::UnsupportedDtype {
            path: self.path.clone(),
            tensor: info.name.clone(),
            dtype: info.dtype,
        }
    }

    fn data_slice(&self, info: &GgufTensorInfo, size: u64) -> Result<&[u8], GgufError> {
        let range = data_range(self.data_start, info.offset, size);
        range
            .and_then(|(s, e)| self.mmap.get(s as usize..e as usize))
            .ok_or_else(|| GgufError::Truncated {
                path: self.path.clone(),
                what: format!("tensor data of '{}'", info.name),
                start: self.data_start.saturating_add(info.offset),
                end: self
                    .data_start
                    .saturating_add(info.offset)
                    .saturating_add(size),
                len: self.mmap.len() as u64,
            })
    }
}

fn data_range(data_start: u64, offset: u64, size: u64) -> Option<(u64, u64)> {
    let s = data_start.checked_add(offset)?;
    let e = s.checked_add(size)?;
    // Ranges beyond usize on 32-bit hosts fail at the `get` in the caller.
    usize::try_from(e).ok()?;
    Some((s, e))
}

struct Parsed {
    version: u32,
    metadata: BTreeMap<String, GgufValue>,
    tensors: Vec<GgufTensorInfo>,
    alignment: u64,
    data_start: u64,
}

/// Bounds-checked little-endian cursor; `what` names the section for truncation errors.
struct Cursor<'a> {
    path: &'a Path,
    buf: &'a [u8],
    pos: usize,
    what: String,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: u64) -> Result<&'a [u8], GgufError> {
        let start = self.pos;
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| start.checked_add(n))
            .filter(|&e| e <= self.buf.len());
        match end {
            Some(end) => {
                self.pos = end;
                Ok(&self.buf[start..end])
            }
            None => Err(GgufError::Truncated {
                path: self.path.to_path_buf(),
                what: self.what.clone(),
                start: start as u64,
                end: (start as u64).saturating_add(n),
                len: self.buf.len() as u64,
            }),
        }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], GgufError> {
        let s = self.take(N as u64)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, GgufError> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, GgufError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    fn string(&mut self) -> Result<String, GgufError> {
        let n = self.u64()?;
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| GgufError::BadUtf8 {
            path: self.path.to_path_buf(),
            what: self.what.clone(),
        })
    }

    fn invalid(&self, msg: String) -> GgufError {
        GgufError::Invalid {
            path: self.path.to_path_buf(),
            msg,
        }
    }

    fn value(&mut self, ty: u32, depth: u32) -> Result<GgufValue, GgufError> {
        Ok(match ty {
            0 => GgufValue::U8(self.u8()?),
            1 => GgufValue::I8(self.u8()? as i8),
            2 => GgufValue::U16(self.u16()?),
            3 => GgufValue::I16(self.u16()? as i16),
            4 => GgufValue::U32(self.u32()?),
            5 => GgufValue::I32(self.u32()? as i32),
            6 => GgufValue::F32(f32::from_bits(self.u32()?)),
            7 => match self.u8()? {
                0 => GgufValue::Bool(false),
                1 => GgufValue::Bool(true),
                b => return Err(self.invalid(format!("{}: bool byte {b}", self.what))),
            },
            8 => GgufValue::String(self.string()?),
            9 => {
                if depth > 8 {
                    return Err(self.invalid(format!("{}: arrays nested too deeply", self.what)));
                }
                let elem_ty = self.u32()?;
                let n = self.u64()?;
                let min_size = match elem_ty {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    8 | 10..=12 => 8,
                    9 => 12,
                    other => {
                        return Err(self
                            .invalid(format!("{}: unknown array element type {other}", self.what)))
                    }
                };
                // Cap the allocation by what the rest of the file could possibly hold.
                if n.saturating_mul(min_size) > self.remaining() {
                    let start = self.pos as u64;
                    return Err(GgufError::Truncated {
                        path: self.path.to_path_buf(),
                        what: format!("{} (array of {n} elements)", self.what),
                        start,
                        end: start.saturating_add(n.saturating_mul(min_size)),
                        len: self.buf.len() as u64,
                    });
                }
                let mut v = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    v.push(self.value(elem_ty, depth + 1)?);
                }
                GgufValue::Array(v)
            }
            10 => GgufValue::U64(self.u64()?),
            11 => GgufValue::I64(self.u64()? as i64),
            12 => GgufValue::F64(f64::from_bits(self.u64()?)),
            other => return Err(self.invalid(format!("{}: unknown value type {other}", self.what))),
        })
    }
}

fn parse(path: &Path, buf: &[u8]) -> Result<Parsed, GgufError> {
    let mut c = Cursor {
        path,
        buf,
        pos: 0,
        what: "header".into(),
    };
    let magic = c.array::<4>()?;
    if magic != MAGIC {
        return Err(GgufError::BadMagic {
            path: path.to_path_buf(),
            found: magic.to_vec(),
        });
    }
    let version = c.u32()?;
    if version != 2 && version != 3 {
        return Err(GgufError::UnsupportedVersion {
            path: path.to_path_buf(),
            version,
        });
    }
    let n_tensors = c.u64()?;
    let n_kv = c.u64()?;

    let mut metadata = BTreeMap::new();
    for i in 0..n_kv {
        c.what = format!("metadata entry {i}");
        let key = c.string()?;
        c.what = format!("metadata '{key}'");
        let ty = c.u32()?;
        let value = c.value(ty, 0)?;
        metadata.insert(key, value);
    }

    let alignment = match metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(v) => match v.as_u64() {
            Some(a) if a > 0 && a.is_power_of_two() => a,
            _ => return Err(c.invalid(format!("general.alignment {v:?} is not a power of two"))),
        },
    };

    // Each tensor entry takes at least 8 (name len) + 4 + 4 + 8 bytes.
    if n_tensors.saturating_mul(24) > c.remaining() {
        let start = c.pos as u64;
        return Err(GgufError::Truncated {
            path: path.to_path_buf(),
            what: format!("tensor table ({n_tensors} tensors)"),
            start,
            end: start.saturating_add(n_tensors.saturating_mul(24)),
            len: buf.len() as u64,
        });
    }
    let mut tensors = Vec::with_capacity(n_tensors as usize);
    for i in 0..n_tensors {
        c.what = format!("tensor table entry {i}");
        let name = c.string()?;
        c.what = format!("tensor table entry '{name}'");
        let n_dims = c.u32()?;
        // ggml tensors have 1 to 4 dimensions (a scalar is stored as shape [1]); 8 leaves room.
        if n_dims == 0 || n_dims > 8 {
            return Err(c.invalid(format!("tensor '{name}' has {n_dims} dimensions")));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(c.u64()?);
        }
        if dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .is_none_or(|n| usize::try_from(n).is_err())
        {
            return Err(c.invalid(format!("tensor '{name}' shape {dims:?} overflows")));
        }
        let dtype = GgmlDType::from_id(c.u32()?);
        let offset = c.u64()?;
        if offset % alignment != 0 {
            return Err(c.invalid(format!(
                "tensor '{name}' offset {offset} is not a multiple of the alignment {alignment}"
            )));
        }
        tensors.push(GgufTensorInfo {
            name,
            dims,
            dtype,
            offset,
        });
    }

    let mut seen = std::collections::BTreeSet::new();
    for t in &tensors {
        if !seen.insert(t.name.as_str()) {
            return Err(c.invalid(format!(
                "tensor '{}' appears twice in the tensor table",
                t.name
            )));
        }
    }

    let data_start = (c.pos as u64).div_ceil(alignment) * alignment;
    for t in &tensors {
        let Some(size) = t.byte_size() else { continue };
        let end = data_range(data_start, t.offset, size).map(|(_, e)| e);
        if end.is_none_or(|e| e > buf.len() as u64) {
            let start = data_start.saturating_add(t.offset);
            return Err(GgufError::Truncated {
                path: path.to_path_buf(),
                what: format!("tensor data of '{}'", t.name),
                start,
                end: start.saturating_add(size),
                len: buf.len() as u64,
            });
        }
    }
    Ok(Parsed {
        version,
        metadata,
        tensors,
        alignment,
        data_start,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::f16;
    use proptest::prelude::*;

    fn put_str(out: &mut Vec<u8>, s: &str) {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    }

    /// A small valid GGUF v3 file: metadata of several types (string, u32, f32, bool, string
    /// array), an F32 `[2, 3]` tensor and a Q8_0 `[32]` one, data aligned to 32 bytes.
    fn valid_file() -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(3u32.to_le_bytes());
        out.extend(2u64.to_le_bytes()); // tensors
        out.extend(5u64.to_le_bytes()); // metadata entries
        put_str(&mut out, "general.architecture");
        out.extend(8u32.to_le_bytes());
        put_str(&mut out, "llama");
        put_str(&mut out, "general.alignment");
        out.extend(4u32.to_le_bytes());
        out.extend(32u32.to_le_bytes());
        put_str(&mut out, "llama.rope.freq_base");
        out.extend(6u32.to_le_bytes());
        out.extend(10000.0f32.to_le_bytes());
        put_str(&mut out, "tokenizer.ggml.add_bos_token");
        out.extend(7u32.to_le_bytes());
        out.push(1);
        put_str(&mut out, "tokenizer.ggml.tokens");
        out.extend(9u32.to_le_bytes());
        out.extend(8u32.to_le_bytes());
        out.extend(2u64.to_le_bytes());
        put_str(&mut out, "<s>");
        put_str(&mut out, "hi");
        // Tensor table: dims fastest-first, then type and offset within the data section.
        put_str(&mut out, "a");
        out.extend(2u32.to_le_bytes());
        out.extend(3u64.to_le_bytes());
        out.extend(2u64.to_le_bytes());
        out.extend(0u32.to_le_bytes());
        out.extend(0u64.to_le_bytes());
        put_str(&mut out, "b");
        out.extend(1u32.to_le_bytes());
        out.extend(32u64.to_le_bytes());
        out.extend(8u32.to_le_bytes());
        out.extend(32u64.to_le_bytes());
        while !out.len().is_multiple_of(32) {
            out.push(0);
        }
        for i in 0..6 {
            out.extend((i as f32).to_le_bytes());
        }
        out.resize(out.len() + 8, 0); // pad "a" (24 bytes) to 32
        out.extend(f16::from_f32(0.5).to_le_bytes());
        out.extend((0..32).map(|q: i8| (q - 16) as u8));
        out
    }

    /// Opens `bytes` as a file and, when that succeeds, reads every tensor: each step must
    /// return a value or an error.
    fn open_and_read_all(bytes: &[u8]) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("case.gguf");
        std::fs::write(&path, bytes).unwrap();
        if let Ok(file) = GgufFile::open(&path) {
            for t in file.tensors().to_vec() {
                if let Ok((values, shape)) = file.tensor_f32(&t.name) {
                    assert_eq!(values.len(), shape.iter().product::<usize>(), "{}", t.name);
                }
                let _ = file.tensor_bytes(&t.name);
                let _ = file.tensor_quant(&t.name);
            }
        }
    }

    #[test]
    fn valid_file_parses() {
        let bytes = valid_file();
        let p = parse(Path::new("valid.gguf"), &bytes).unwrap();
        assert_eq!(p.tensors.len(), 2);
        assert_eq!(p.data_start % 32, 0);
        assert_eq!(
            p.metadata["tokenizer.ggml.tokens"],
            GgufValue::Array(vec![
                GgufValue::String("<s>".into()),
                GgufValue::String("hi".into())
            ])
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("valid.gguf");
        std::fs::write(&path, &bytes).unwrap();
        let file = GgufFile::open(&path).unwrap();
        assert_eq!(
            file.tensor_f32("a").unwrap(),
            (vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0], vec![2, 3])
        );
        assert_eq!(file.tensor_f32("b").unwrap().0[0], -8.0);
    }

    proptest! {
        // Bounded so that CI stays fast; no regression files written into the source tree.
        #![proptest_config(ProptestConfig {
            cases: 256,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn arbitrary_bytes_give_a_value_or_an_error(
            bytes in proptest::collection::vec(any::<u8>(), 0..600)
        ) {
            let _ = parse(Path::new("arbitrary.gguf"), &bytes);
        }

        /// Past the magic and version, so the counts, keys and tensor table get exercised.
        #[test]
        fn arbitrary_bodies_give_a_value_or_an_error(
            version in 2u32..4,
            body in proptest::collection::vec(any::<u8>(), 0..600)
        ) {
            let mut bytes = b"GGUF".to_vec();
            bytes.extend(version.to_le_bytes());
            bytes.extend(body);
            let _ = parse(Path::new("body.gguf"), &bytes);
        }

        /// A valid file with a few bytes overwritten and possibly cut short: opening it and
        /// reading every tensor it then lists gives values or errors, never a read past the end.
        #[test]
        fn mutated_valid_files_give_a_value_or_an_error(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
            cut in proptest::option::of(any::<prop::sample::Index>())
        ) {
            let mut bytes = valid_file();
            for (at, byte) in edits {
                let i = at.index(bytes.len());
                bytes[i] = byte;
            }
            if let Some(cut) = cut {
                bytes.truncate(cut.index(bytes.len()));
            }
            open_and_read_all(&bytes);
        }
    }

    #[test]
    fn dtype_ids_round_trip() {
        for id in 0..40 {
            assert_eq!(GgmlDType::from_id(id).id(), id);
        }
    }

    #[test]
    fn q4_0_block_layout() {
        let mut blk = vec![0u8; 18];
        blk[..2].copy_from_slice(&f16::from_f32(0.5).to_le_bytes());
        for (j, b) in blk[2..].iter_mut().enumerate() {
            *b = (j as u8) | ((15 - j as u8) << 4);
        }
        let v = quant::dequantize(GgmlDType::Q4_0, &blk).unwrap();
        for j in 0..16 {
            assert_eq!(v[j], (j as f32 - 8.0) * 0.5);
            assert_eq!(v[j + 16], ((15 - j) as f32 - 8.0) * 0.5);
        }
    }
}
