//! ggml quantised weights: bit-exact dequantisation of every block type the runtime reads, and a
//! matrix that stays in its file format in memory and multiplies from it (see [`QuantMatrix`]),
//! either with f32 activations (`dot.rs`) or with activations quantized to 8 bits and integer
//! dot products (`q8.rs`, `int_*.rs`).

pub mod amx_gemm;
#[cfg(target_arch = "x86_64")]
mod amx_gemm_x86;
mod amx_panel;
pub mod dequant;
pub mod dot;
pub mod gemv_lanes;
mod gemv_lanes_layout;
#[cfg(target_arch = "x86_64")]
mod gemv_lanes_x86;
pub mod int_dot;
pub mod int_gemm;
#[cfg(target_arch = "x86_64")]
mod int_gemm_x86;
mod int_scalar;
#[cfg(target_arch = "x86_64")]
mod int_x86;
#[cfg(target_arch = "x86_64")]
mod k_gemm512_x86;
pub mod k_panels;
pub mod kquants;
pub mod lane_gemm;
#[cfg(target_arch = "x86_64")]
mod lane_gemm512_x86;
#[cfg(target_arch = "x86_64")]
mod lane_gemm_x86;
mod lane_layout;
pub mod legacy;
pub mod matrix;
pub mod q8;
#[cfg(target_arch = "x86_64")]
mod q8_x86;
pub mod quantize;
#[cfg(test)]
mod test_blocks;

pub use dequant::{block_layout, dequantize, dequantize_into, is_supported, QuantError};
pub use int_dot::{has_int_kernel, IntKernel};
pub use matrix::{Activations, IntOrder, QuantMatrix};
pub use q8::{Q8Activations, Q8Batch};
pub use quantize::{q8_0_matrix, quantize_q8_0, QuantizeError};
