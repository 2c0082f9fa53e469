//! Dequantisation of every ggml block type psy reads, bit-exact against the `gguf` Python
//! package (`quants.dequantize`), and bad block data refused.
//!
//! References: `tests/fixtures/quant/` (random and gguf-py-quantised blocks of each type,
//! `scripts/reference/make_quant_fixtures.py`) and `tests/fixtures/gguf-dequant/` (whole tensors
//! of the registry GGUFs, by sha256); see `tests/fixtures/PROVENANCE.md`.
//! Run with `cargo test --release --test quant` (`-- --ignored` for the Qwen2.5 files, which
//! `scripts/setup.sh --qwen` fetches).

use std::path::{Path, PathBuf};

use psy_lm::runtime::gguf::{GgmlDType, GgufFile};
use psy_lm::runtime::quant::{dequantize, QuantError, QuantMatrix};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn assets() -> PathBuf {
    std::env::var_os("PSY_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/psy/assets")
        })
}

fn asset(rel: &str, how: &str) -> PathBuf {
    let p = assets().join(rel);
    assert!(p.is_file(), "{} is missing: run `{how}`", p.display());
    p
}

fn dtype(name: &str) -> GgmlDType {
    (0..40)
        .map(GgmlDType::from_id)
        .find(|t| t.to_string() == name)
        .unwrap_or_else(|| panic!("unknown type {name}"))
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn every_block_type_dequantises_bit_exact_like_gguf_py() {
    let dir = fixtures().join("quant");
    let index = json(&dir.join("index.json"));
    let types = index["types"].as_object().unwrap();
    assert_eq!(types.len(), 10, "Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K..Q6_K");
    for (name, meta) in types {
        let raw = std::fs::read(dir.join(format!("{name}.bin"))).unwrap();
        let want: Vec<u32> = std::fs::read(dir.join(format!("{name}.f32")))
            .unwrap()
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(
            want.len() as u64,
            meta["values"].as_u64().unwrap(),
            "{name}"
        );
        let got = dequantize(dtype(name), &raw).unwrap();
        assert_eq!(got.len(), want.len(), "{name}");
        let bad = got.iter().zip(&want).position(|(g, w)| g.to_bits() != *w);
        assert!(
            bad.is_none(),
            "{name}: value {} is {} (bits {:#x}), gguf-py gives {} ({:#x})",
            bad.unwrap(),
            got[bad.unwrap()],
            got[bad.unwrap()].to_bits(),
            f32::from_bits(want[bad.unwrap()]),
            want[bad.unwrap()]
        );
    }
}

#[test]
fn partial_or_misaligned_blocks_are_errors_not_reads_past_the_end() {
    let q4k = std::fs::read(fixtures().join("quant/Q4_K.bin")).unwrap();
    // One byte short of two super-blocks.
    let e = dequantize(GgmlDType::Q4K, &q4k[..2 * 144 - 1]).unwrap_err();
    assert!(
        matches!(
            e,
            QuantError::PartialBlock {
                dtype: GgmlDType::Q4K,
                len: 287,
                block: 144
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("Q4_K"), "{e}");
    // A row of 128 values cannot be made of 256-value super-blocks.
    let e = QuantMatrix::new(GgmlDType::Q4K, 2, 128, q4k[..144].to_vec()).unwrap_err();
    assert!(matches!(e, QuantError::Misaligned { .. }), "{e:?}");
    // Rows that do not add up to the data.
    let e = QuantMatrix::new(GgmlDType::Q4K, 2, 256, q4k[..3 * 144].to_vec()).unwrap_err();
    assert!(matches!(e, QuantError::PartialBlock { .. }), "{e:?}");
    // A type without a dequantiser names itself.
    let e = dequantize(GgmlDType::Q8K, &[0u8; 292]).unwrap_err();
    assert_eq!(e.to_string(), "unsupported tensor type Q8_K");
}

/// Every tensor listed in a `gguf-dequant/*.json` fixture: first values and the sha256 of the
/// whole f32 tensor equal gguf-py's.
fn check_registry_file(fixture: &str, path: &Path) {
    let reference = json(&fixtures().join("gguf-dequant").join(fixture));
    let file = GgufFile::open(path).unwrap();
    for t in reference["tensors"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        let info = file.tensor_info(name).unwrap();
        assert_eq!(
            info.dtype.to_string(),
            t["type"].as_str().unwrap(),
            "{name}"
        );
        let (values, _) = file.tensor_f32(name).unwrap();
        assert_eq!(values.len() as u64, t["n"].as_u64().unwrap(), "{name}");
        for (i, w) in t["first16"].as_array().unwrap().iter().enumerate() {
            assert_eq!(values[i], w.as_f64().unwrap() as f32, "{name}[{i}]");
        }
        let mut h = Sha256::new();
        for v in &values {
            h.update(v.to_le_bytes());
        }
        let got: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            got,
            t["sha256_f32"].as_str().unwrap(),
            "{name} ({})",
            t["type"]
        );
        // The quantized matrix holds the same values.
        let m = file.tensor_quant(name).unwrap();
        let mut row = vec![0.0f32; m.cols()];
        m.dequantize_rows(m.rows() - 1, &mut row);
        assert_eq!(row, values[values.len() - m.cols()..], "{name} last row");
    }
}

#[test]
fn smollm2_q8_0_and_q4_1_tensors_match_gguf_py() {
    check_registry_file(
        "SmolLM2-135M-Instruct.Q4_1.json",
        &asset(
            "smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            "scripts/setup.sh",
        ),
    );
}

#[test]
#[ignore = "needs the Qwen2.5-Coder GGUFs: scripts/setup.sh --qwen"]
fn qwen2_5_coder_k_quant_tensors_match_gguf_py() {
    check_registry_file(
        "qwen2.5-coder-1.5b-instruct-q4_k_m.json",
        &asset(
            "qwen2.5-coder/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            "scripts/setup.sh --qwen",
        ),
    );
    check_registry_file(
        "qwen2.5-coder-0.5b-instruct-awq-q4_k_m.json",
        &asset(
            "qwen2.5-coder/qwen2.5-coder-0.5b-instruct-awq-q4_k_m.gguf",
            "scripts/setup.sh --qwen",
        ),
    );
}

/// A GGUF v3 file of raw tensors: (name, dims fastest-first, ggml type id, data bytes).
fn raw_gguf(path: &Path, tensors: &[(&str, &[u64], u32, Vec<u8>)]) {
    let mut out = b"GGUF".to_vec();
    out.extend(3u32.to_le_bytes());
    out.extend((tensors.len() as u64).to_le_bytes());
    out.extend(0u64.to_le_bytes());
    let mut offset = 0u64;
    for (name, dims, ty, data) in tensors {
        out.extend((name.len() as u64).to_le_bytes());
        out.extend(name.as_bytes());
        out.extend((dims.len() as u32).to_le_bytes());
        for d in *dims {
            out.extend(d.to_le_bytes());
        }
        out.extend(ty.to_le_bytes());
        out.extend(offset.to_le_bytes());
        offset += (data.len() as u64).div_ceil(32) * 32;
    }
    out.resize(out.len().div_ceil(32) * 32, 0);
    for (_, _, _, data) in tensors {
        out.extend(data);
        out.resize(out.len().div_ceil(32) * 32, 0);
    }
    std::fs::write(path, out).unwrap();
}

#[test]
fn quantized_tensors_with_bad_types_or_rows_name_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.gguf");
    let q4k = std::fs::read(fixtures().join("quant/Q4_K.bin")).unwrap();
    raw_gguf(
        &path,
        &[
            // 256 values, rows of 128: a Q4_K super-block would straddle two rows.
            ("blk.0.ffn_up.weight", &[128, 2], 12, q4k[..144].to_vec()),
            // Q8_K is ggml's activation type: a known layout that no kernel reads.
            ("blk.0.ffn_down.weight", &[256, 1], 15, vec![0u8; 292]),
            ("ok.weight", &[256, 2], 12, q4k[..288].to_vec()),
        ],
    );
    let file = GgufFile::open(&path).unwrap();
    let e = file
        .tensor_quant("blk.0.ffn_up.weight")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("bad.gguf") && e.contains("blk.0.ffn_up.weight") && e.contains("Q4_K"),
        "{e}"
    );
    let e = file
        .tensor_quant("blk.0.ffn_down.weight")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("blk.0.ffn_down.weight") && e.contains("Q8_K"),
        "{e}"
    );
    let m = file.tensor_quant("ok.weight").unwrap();
    assert_eq!((m.rows(), m.cols(), m.size_bytes()), (2, 256, 288));
}
