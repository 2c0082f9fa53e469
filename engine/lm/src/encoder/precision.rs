//! How the encoder's projections multiply: f32 (the default, sentence-transformers' values
//! within ~2e-7), or 8-bit weights (Q8_0) with 8-bit activations on the runtime's integer
//! kernels (AVX-512 VNNI where the CPU has it): faster, but every vector moves by the 8-bit
//! rounding, so the risk screen's scores change. Off unless `PSY_ENCODER_WEIGHTS=q8_0` asks for
//! it: the screen's thresholds were calibrated on f32 vectors.

use super::error::{EncoderError, Result};

/// The environment variable that selects the precision.
pub const PRECISION_VAR: &str = "PSY_ENCODER_WEIGHTS";

/// What [`EncoderPrecision::tolerance`] allows a Q8_0 encoder: the largest difference of a
/// vector component from the f32 encoder's was 5.8e-3 on all-MiniLM-L6-v2's reference texts
/// (tests/encoder.rs); a different model differs by far more.
const Q8_TOLERANCE: f32 = 2e-2;

/// What [`EncoderPrecision::tolerance`] allows the split-bf16 encoder (measured in
/// tests/encoder.rs: 1.4e-6 on all-MiniLM-L6-v2's reference texts, 2026-12-04).
const SPLIT_BF16_TOLERANCE: f32 = 1e-5;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EncoderPrecision {
    #[default]
    F32,
    /// Q8_0 weights, activations quantized to 8 bits per 32 values.
    Q8,
    /// f32 products as three bf16 products on AMX (`split_bf16_gemm.rs`): vectors within ~1e-6
    /// of f32. Falls back to f32 where the CPU has no AMX-BF16.
    SplitBf16,
}

impl EncoderPrecision {
    /// Parses `f32` or `q8_0`.
    pub fn parse(value: &str) -> Result<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "f32" => Ok(Self::F32),
            "q8_0" | "q8" | "int8" => Ok(Self::Q8),
            "bf16x3" => Ok(Self::SplitBf16),
            other => Err(EncoderError::Precision(format!(
                "{PRECISION_VAR}={other}: expected f32, bf16x3 or q8_0"
            ))),
        }
    }

    /// The precision `PSY_ENCODER_WEIGHTS` asks for (f32 when unset).
    pub fn from_env() -> Result<Self> {
        match std::env::var(PRECISION_VAR) {
            Ok(v) => Self::parse(&v),
            Err(std::env::VarError::NotPresent) => Ok(Self::F32),
            Err(e) => Err(EncoderError::Precision(format!("{PRECISION_VAR}: {e}"))),
        }
    }

    /// How far this precision's vectors may lie from the f32 encoder's, per component.
    pub fn tolerance(self) -> f32 {
        match self {
            Self::F32 => 0.0,
            Self::SplitBf16 => SPLIT_BF16_TOLERANCE,
            Self::Q8 => Q8_TOLERANCE,
        }
    }

    /// A mark for the encoder's name (`""` for f32).
    pub fn suffix(self) -> &'static str {
        match self {
            Self::F32 => "",
            Self::SplitBf16 => "+bf16x3",
            Self::Q8 => "+q8_0",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_two_precisions_and_names_a_bad_value() {
        assert_eq!(
            EncoderPrecision::parse("f32").unwrap(),
            EncoderPrecision::F32
        );
        assert_eq!(
            EncoderPrecision::parse("Q8_0").unwrap(),
            EncoderPrecision::Q8
        );
        let e = EncoderPrecision::parse("q4").unwrap_err().to_string();
        assert!(e.contains("PSY_ENCODER_WEIGHTS=q4"), "{e}");
    }
}
