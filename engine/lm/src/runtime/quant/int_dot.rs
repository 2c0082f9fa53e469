//! Picks the integer dot-product kernel for this CPU: AVX-512 VNNI, AVX2, or the portable
//! scalar one (all three give the same f32 result; see `int_scalar.rs`).

use super::int_scalar;
use super::q8::Q8Activations;
use crate::runtime::ggml_type::GgmlDType;

pub use int_scalar::has_int_kernel;

/// Which implementation of the integer dot products runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntKernel {
    Scalar,
    /// AVX2 + F16C.
    Avx2,
    /// AVX2 + F16C + AVX512-VNNI/VL (`vpdpbusd` for the 32-value block types).
    Vnni,
}

impl IntKernel {
    /// The fastest kernel this CPU runs (detected once).
    pub fn detect() -> Self {
        static KERNEL: std::sync::OnceLock<IntKernel> = std::sync::OnceLock::new();
        *KERNEL.get_or_init(|| Self::available().into_iter().last().unwrap_or(Self::Scalar))
    }

    /// Every kernel this CPU runs, slowest first (tests compare them).
    pub fn available() -> Vec<Self> {
        let mut out = vec![Self::Scalar];
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx2") && has!("f16c") {
                out.push(Self::Avx2);
                if has!("avx512f") && has!("avx512vl") && has!("avx512vnni") {
                    out.push(Self::Vnni);
                }
            }
        }
        out
    }
}

/// `dot(row, a)` with `kernel`, one of [`IntKernel::available`]. `row` must be whole blocks of
/// `dtype` (one of [`has_int_kernel`]) for `a.len()` values, and `a` quantized with the block
/// of `dtype`; both are checked here, since the SIMD kernels load without bounds checks.
#[inline]
pub fn dot_row(kernel: IntKernel, dtype: GgmlDType, row: &[u8], a: &Q8Activations) -> f32 {
    let (elems, bytes) = dtype.block_layout().expect("a block type");
    assert_eq!(
        row.len() * elems as usize,
        a.len() * bytes as usize,
        "{dtype} row of {} bytes vs {} activations",
        row.len(),
        a.len()
    );
    assert_eq!(
        a.block,
        super::q8::activation_block(dtype),
        "activation blocks"
    );
    match kernel {
        IntKernel::Scalar => int_scalar::dot_row(dtype, row, a),
        // SAFETY: `kernel` comes from `available()` (features detected); lengths checked above.
        #[cfg(target_arch = "x86_64")]
        IntKernel::Avx2 => unsafe { super::int_x86::dot_row_avx2(dtype, row, a) },
        #[cfg(target_arch = "x86_64")]
        IntKernel::Vnni => unsafe { super::int_x86::dot_row_vnni(dtype, row, a) },
        #[cfg(not(target_arch = "x86_64"))]
        _ => int_scalar::dot_row(dtype, row, a),
    }
}

/// `out[i] = dot_row(kernel, dtype, row i, a)` for `out.len()` consecutive rows in `rows`
/// (same results; the checks and the type dispatch happen once for all rows).
pub fn dot_rows(
    kernel: IntKernel,
    dtype: GgmlDType,
    rows: &[u8],
    a: &Q8Activations,
    out: &mut [f32],
) {
    let (elems, bytes) = dtype.block_layout().expect("a block type");
    let row_bytes = a.len() / elems as usize * bytes as usize;
    assert_eq!(a.len() % elems as usize, 0, "activations are whole blocks");
    assert_eq!(rows.len(), out.len() * row_bytes, "{dtype} rows vs outputs");
    assert_eq!(
        a.block,
        super::q8::activation_block(dtype),
        "activation blocks"
    );
    if out.is_empty() {
        return;
    }
    match kernel {
        IntKernel::Scalar => {
            for (row, o) in rows.chunks_exact(row_bytes).zip(out.iter_mut()) {
                *o = int_scalar::dot_row(dtype, row, a);
            }
        }
        // SAFETY: `kernel` comes from `available()` (features detected); lengths checked above.
        #[cfg(target_arch = "x86_64")]
        IntKernel::Avx2 => unsafe { super::int_x86::dot_rows_avx2(dtype, rows, a, out) },
        #[cfg(target_arch = "x86_64")]
        IntKernel::Vnni => unsafe { super::int_x86::dot_rows_vnni(dtype, rows, a, out) },
        #[cfg(not(target_arch = "x86_64"))]
        _ => {
            for (row, o) in rows.chunks_exact(row_bytes).zip(out.iter_mut()) {
                *o = int_scalar::dot_row(dtype, row, a);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::quant::dequant::dequantize_into;
    use half::f16;
    use proptest::prelude::*;

    const TYPES: [GgmlDType; 10] = [
        GgmlDType::Q4_0,
        GgmlDType::Q4_1,
        GgmlDType::Q5_0,
        GgmlDType::Q5_1,
        GgmlDType::Q8_0,
        GgmlDType::Q2K,
        GgmlDType::Q3K,
        GgmlDType::Q4K,
        GgmlDType::Q5K,
        GgmlDType::Q6K,
    ];

    /// Byte offsets of the f16 scales in a block of `dtype`.
    fn f16_fields(dtype: GgmlDType) -> &'static [usize] {
        match dtype {
            GgmlDType::Q4_1 | GgmlDType::Q5_1 | GgmlDType::Q4K | GgmlDType::Q5K => &[0, 2],
            GgmlDType::Q2K => &[80, 82],
            GgmlDType::Q3K => &[108],
            GgmlDType::Q6K => &[208],
            _ => &[0],
        }
    }

    /// Random whole blocks of `dtype` for `k` values from `bytes` (cycled), with the f16
    /// scales replaced by `scales` (cycled) so that every value is finite.
    fn row(dtype: GgmlDType, k: usize, bytes: &[u8], scales: &[f32]) -> Vec<u8> {
        let (elems, size) = dtype.block_layout().unwrap();
        let n = k / elems as usize * size as usize;
        let mut out: Vec<u8> = bytes.iter().copied().cycle().take(n).collect();
        let mut s = scales.iter().cycle();
        for blk in out.chunks_exact_mut(size as usize) {
            for &at in f16_fields(dtype) {
                let v = f16::from_f32(*s.next().unwrap());
                blk[at..at + 2].copy_from_slice(&v.to_le_bytes());
            }
        }
        out
    }

    /// Every available kernel gives the portable kernel's f32, bit for bit.
    fn assert_kernels_agree(dtype: GgmlDType, r: &[u8], x: &[f32]) {
        let a = Q8Activations::quantize(x, crate::runtime::quant::q8::activation_block(dtype));
        let want = dot_row(IntKernel::Scalar, dtype, r, &a);
        for kernel in IntKernel::available() {
            let got = dot_row(kernel, dtype, r, &a);
            let mut two = [0.0f32; 2];
            dot_rows(kernel, dtype, &[r, r].concat(), &a, &mut two);
            assert_eq!(
                two.map(f32::to_bits),
                [want.to_bits(); 2],
                "{dtype} {kernel:?} rows"
            );
            assert_eq!(
                got.to_bits(),
                want.to_bits(),
                "{dtype} {kernel:?}: {got} vs scalar {want}"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Random quants, scales (including 0, negative and f16's largest) and activations
        /// (including ±1e30, zeros and ties of the rounding).
        #[test]
        fn simd_integer_dots_equal_the_scalar_one(
            bytes in proptest::collection::vec(any::<u8>(), 1..700),
            scales in proptest::collection::vec(
                prop_oneof![-2.0f32..2.0, Just(0.0f32), Just(65504.0f32), Just(-65504.0f32)], 1..9),
            x in proptest::collection::vec(
                prop_oneof![-100.0f32..100.0, Just(0.0f32), Just(1e30f32), Just(-1e30f32), Just(0.5f32)], 512),
        ) {
            for dtype in TYPES {
                assert_kernels_agree(dtype, &row(dtype, 512, &bytes, &scales), &x);
            }
        }
    }

    #[test]
    fn edge_blocks_agree_across_kernels() {
        let k = 512;
        let ramp: Vec<f32> = (0..k).map(|i| i as f32 - 256.0).collect();
        for dtype in TYPES {
            // Every quant at its extreme (0x00, 0xff; Q8_0's -128 and 127) with extreme
            // activations of both signs.
            for fill in [0x00u8, 0xff, 0x80, 0x7f] {
                let r = row(dtype, k, &[fill], &[1.0, -65504.0]);
                for x in [
                    vec![127.0f32; k],
                    vec![-127.0f32; k],
                    ramp.clone(),
                    vec![0.0; k],
                ] {
                    assert_kernels_agree(dtype, &r, &x);
                }
            }
        }
    }

    /// The integer dot stays within the bound of the 8-bit activation rounding (each value
    /// moves by at most `d_b / 2`) of the dot product of the exact dequantised row, for every
    /// type, in f64.
    #[test]
    fn integer_dot_is_within_the_activation_rounding_of_the_f32_dot() {
        let k = 1024;
        let mut state = 7u64;
        let mut rnd = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u32
        };
        for dtype in TYPES {
            for _ in 0..8 {
                let bytes: Vec<u8> = (0..4096).map(|_| rnd() as u8).collect();
                let scales: Vec<f32> = (0..7)
                    .map(|_| (rnd() % 2000) as f32 * 1e-5 - 0.01)
                    .collect();
                let r = row(dtype, k, &bytes, &scales);
                let x: Vec<f32> = (0..k).map(|_| (rnd() % 20001) as f32 / 1e4 - 1.0).collect();
                let mut w = vec![0.0f32; k];
                dequantize_into(dtype, &r, &mut w).unwrap();
                let a =
                    Q8Activations::quantize(&x, crate::runtime::quant::q8::activation_block(dtype));
                let exact: f64 = w
                    .iter()
                    .zip(&x)
                    .map(|(w, x)| f64::from(*w) * f64::from(*x))
                    .sum();
                // Dot with the dequantised activations: what the integers compute, exactly.
                let xq = a.to_f32();
                let on_q: f64 = w
                    .iter()
                    .zip(&xq)
                    .map(|(w, x)| f64::from(*w) * f64::from(*x))
                    .sum();
                let bound: f64 = w
                    .iter()
                    .enumerate()
                    .map(|(i, w)| f64::from(w.abs()) * f64::from(a.d[i / a.block]) / 2.0)
                    .sum();
                let mag: f64 = w
                    .iter()
                    .zip(&x)
                    .map(|(w, x)| f64::from((w * x).abs()))
                    .sum();
                let got = f64::from(dot_row(IntKernel::Scalar, dtype, &r, &a));
                // The rounding bound, plus f32 rounding of the scale products and block sums
                // (measured below 1e-6 of the absolute sum).
                assert!(
                    (got - exact).abs() <= bound * 1.0001 + 1e-5 * mag,
                    "{dtype}: {got} vs {exact} (bound {bound})"
                );
                assert!(
                    (got - on_q).abs() <= 1e-5 * mag,
                    "{dtype}: {got} vs dequantised-activation dot {on_q}"
                );
            }
        }
    }
}
