//! Reading and writing F32 safetensors files for tests (the fixtures' tensors, edited copies),
//! shared by the bad-model-file and quantization tests. Included with `#[path]`.

#![allow(dead_code)]

use std::path::Path;

use serde_json::{json, Map, Value};

/// An F32 safetensors file as `(name, shape, f32 values)`, in file order.
pub fn read_safetensors(path: &Path) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Map<String, Value> = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let mut out: Vec<(usize, String, Vec<usize>, Vec<f32>)> = header
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(name, info)| {
            assert_eq!(info["dtype"], "F32");
            let off: Vec<usize> = serde_json::from_value(info["data_offsets"].clone()).unwrap();
            let shape: Vec<usize> = serde_json::from_value(info["shape"].clone()).unwrap();
            let data = bytes[8 + n + off[0]..8 + n + off[1]]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            (off[0], name.clone(), shape, data)
        })
        .collect();
    out.sort_by_key(|t| t.0);
    out.into_iter().map(|(_, n, s, d)| (n, s, d)).collect()
}

/// Writes F32 tensors as a safetensors file.
pub fn write_safetensors(path: &Path, tensors: &[(String, Vec<usize>, Vec<f32>)]) {
    let mut header = Map::new();
    let mut body = Vec::new();
    for (name, shape, data) in tensors {
        let start = body.len();
        body.extend(data.iter().flat_map(|x| x.to_le_bytes()));
        header.insert(
            name.clone(),
            json!({"dtype": "F32", "shape": shape, "data_offsets": [start, body.len()]}),
        );
    }
    let mut text = Value::Object(header).to_string();
    while !text.len().is_multiple_of(8) {
        text.push(' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend(text.as_bytes());
    out.extend(body);
    std::fs::write(path, out).unwrap();
}
