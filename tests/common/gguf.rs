//! A minimal GGUF v3 writer for tests (F32 tensors; string, integer and f32 metadata), shared by
//! the round-trip parity test and the bad-model-file tests. Included with `#[path]`.

#![allow(dead_code)]

use std::path::Path;

use serde_json::Value;

/// One F32 entry of a GGUF tensor table: name, dims fastest-first, data offset (`None`: right
/// after the previous tensor) and values.
pub struct GgufTensor {
    pub name: String,
    pub dims: Vec<u64>,
    pub offset: Option<u64>,
    pub data: Vec<f32>,
}

impl GgufTensor {
    /// An F32 tensor of PyTorch-style `shape`, placed after the previous one.
    pub fn f32(name: &str, shape: &[usize], data: Vec<f32>) -> Self {
        Self {
            name: name.into(),
            dims: shape.iter().rev().map(|&d| d as u64).collect(),
            offset: None,
            data,
        }
    }
}

/// Writes a GGUF v3 file (32-byte alignment). Integers that fit are written as u32, as
/// llama.cpp's converters do; larger ones as u64, so tests can store absurd sizes.
pub fn write_gguf(path: &Path, kv: &[(String, Value)], tensors: &[GgufTensor]) {
    fn s(out: &mut Vec<u8>, v: &str) {
        out.extend((v.len() as u64).to_le_bytes());
        out.extend(v.as_bytes());
    }
    let mut out = b"GGUF".to_vec();
    out.extend(3u32.to_le_bytes());
    out.extend((tensors.len() as u64).to_le_bytes());
    out.extend((kv.len() as u64).to_le_bytes());
    for (k, v) in kv {
        s(&mut out, k);
        match v {
            Value::String(t) => {
                out.extend(8u32.to_le_bytes());
                s(&mut out, t);
            }
            Value::Number(n) if n.is_u64() => match u32::try_from(n.as_u64().unwrap()) {
                Ok(small) => {
                    out.extend(4u32.to_le_bytes());
                    out.extend(small.to_le_bytes());
                }
                Err(_) => {
                    out.extend(10u32.to_le_bytes());
                    out.extend(n.as_u64().unwrap().to_le_bytes());
                }
            },
            Value::Number(n) => {
                out.extend(6u32.to_le_bytes());
                out.extend((n.as_f64().unwrap() as f32).to_le_bytes());
            }
            _ => panic!("unsupported metadata {v}"),
        }
    }
    let mut next = 0u64;
    for t in tensors {
        s(&mut out, &t.name);
        out.extend((t.dims.len() as u32).to_le_bytes());
        for d in &t.dims {
            out.extend(d.to_le_bytes());
        }
        out.extend(0u32.to_le_bytes()); // F32
        out.extend(t.offset.unwrap_or(next).to_le_bytes());
        next += (t.data.len() as u64 * 4).div_ceil(32) * 32;
    }
    while !out.len().is_multiple_of(32) {
        out.push(0);
    }
    for t in tensors {
        let start = out.len();
        out.extend(t.data.iter().flat_map(|x| x.to_le_bytes()));
        while !(out.len() - start).is_multiple_of(32) {
            out.push(0);
        }
    }
    std::fs::write(path, out).unwrap();
}
