//! ggml quantised weights: bit-exact dequantisation of every block type the runtime reads, and a
//! matrix that stays in its file format in memory and multiplies from it (see [`QuantMatrix`]).

pub mod dequant;
pub mod dot;
pub mod kquants;
pub mod legacy;
pub mod matrix;

pub use dequant::{block_layout, dequantize, dequantize_into, is_supported, QuantError};
pub use matrix::QuantMatrix;
