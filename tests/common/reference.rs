//! Reading reference values (JSON made by transformers, gguf-py, sentence-transformers) and
//! comparing against them: shared by the parity tests, included with
//! `#[path = "common/reference.rs"] mod reference;` so they do not pull in the counselor helpers.

#![allow(dead_code)]

use serde_json::Value;

/// A JSON array of token ids.
pub fn u32s(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// Largest element-wise difference of two equally long slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
