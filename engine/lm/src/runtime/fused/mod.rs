//! Fused, multi-threaded kernels for the flex backend, each a Burn autodiff op with its own
//! backward, for the element-wise work of a decoder layer.
//!
//! Burn flex's element-wise kernels (unary, binary, zip) run on one thread, and autodiff spells
//! an activation or an attention softmax as several of them, forward and backward: on the
//! 2-core training host one core idled through them. These ops do the same arithmetic in one
//! pass across psy's rayon pool ([`crate::compute_pool`]). Each entry point falls back to the
//! plain Burn ops (which it is tested against) for other dtypes and backends.

pub mod attention;
pub mod dropout;
pub mod gradient_carrier;
pub(crate) mod host;
pub mod linear;
mod prefill_attention;
pub mod rms_norm;
pub mod rope;
mod softmax_row;
pub mod swiglu;
#[cfg(test)]
pub(crate) mod test_support;
pub mod transpose;
