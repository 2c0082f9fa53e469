//! The keys and values of a run's fixed prompt prefix (the rendered system message) kept on
//! disk, so that a new `psy counsel` or `psy serve` does not prefill it again (llama.cpp's
//! `--prompt-cache` does the same).
//!
//! A file is named after, and records, the sha256 of the model file(s), the prefix's token
//! ids and [`FORMAT_VERSION`]; it ends with the sha256 of everything before it. A file whose
//! length, header or checksum does not match is reported as [`PromptCacheFileError::Corrupt`]
//! and the caller rebuilds it: it is never trusted.
//!
//! Layout (little-endian): magic `PSYKVC\0\0`, version u32, model sha256 (32 bytes), id count
//! u32, the ids (u32 each), layer count u32, values per tensor u64, then per layer the keys and
//! the values (f32 each, `[batch, kv_heads, len, head_dim]`), then the sha256 (32 bytes).

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use sha2::{Digest, Sha256};

/// Bumped whenever the layout or the meaning of the stored values changes (2: a quantized
/// model's prefix is prefilled through the engine's pass, `CausalLm::prefill_logits`, whose bits
/// a version-1 file of the tensor path does not hold).
pub const FORMAT_VERSION: u32 = 2;
const MAGIC: &[u8; 8] = b"PSYKVC\0\0";

/// Keys and values of every layer, as [`super::KvCache::export`] gives them.
pub type LayerValues = Vec<[Vec<f32>; 2]>;

#[derive(Debug, thiserror::Error)]
pub enum PromptCacheFileError {
    #[error("prompt cache {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("prompt cache {path} is stale or corrupt ({reason}); it will be rebuilt")]
    Corrupt { path: PathBuf, reason: String },
}

type Result<T> = std::result::Result<T, PromptCacheFileError>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PromptCacheFileError + '_ {
    move |source| PromptCacheFileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `$PSY_PROMPT_CACHE`, else `$HOME/.cache/psy/prompt-cache`.
pub fn default_dir() -> PathBuf {
    match std::env::var_os("PSY_PROMPT_CACHE") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
            .join(".cache/psy/prompt-cache"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The file holding the prefix `ids` of the model with hash `model`.
pub fn file_for(dir: &Path, model: &[u8; 32], ids: &[u32]) -> PathBuf {
    let mut h = Sha256::new();
    h.update(FORMAT_VERSION.to_le_bytes());
    h.update(model);
    for id in ids {
        h.update(id.to_le_bytes());
    }
    dir.join(format!("{}.kv", hex(&h.finalize())))
}

/// sha256 of a model: of its file, or for an HF directory of its `config.json` and
/// `*.safetensors` files by name. Each file's hash is remembered under `dir/models/` with the
/// file's length and modification time, so a start hashes a model file once, not every time.
pub fn model_sha256(model: &Path, dir: &Path) -> Result<[u8; 32]> {
    if !model.is_dir() {
        return file_sha256(model, dir);
    }
    let mut files: Vec<PathBuf> = fs::read_dir(model)
        .map_err(io(model))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name == "config.json" || name.ends_with(".safetensors")
        })
        .collect();
    files.sort();
    let mut h = Sha256::new();
    for f in files {
        h.update(f.file_name().unwrap_or_default().as_encoded_bytes());
        h.update(file_sha256(&f, dir)?);
    }
    Ok(h.finalize().into())
}

fn file_sha256(path: &Path, dir: &Path) -> Result<[u8; 32]> {
    let meta = fs::metadata(path).map_err(io(path))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let canonical = fs::canonicalize(path).map_err(io(path))?;
    let memo = dir.join("models").join(format!(
        "{}.sha256",
        hex(&Sha256::digest(canonical.as_os_str().as_encoded_bytes()))
    ));
    let stamp = format!("{} {mtime}", meta.len());
    if let Ok(text) = fs::read_to_string(&memo) {
        if let Some((s, digest)) = text.trim().rsplit_once(' ') {
            let bytes: Vec<u8> = (0..digest.len() / 2)
                .filter_map(|i| u8::from_str_radix(digest.get(2 * i..2 * i + 2)?, 16).ok())
                .collect();
            if s == stamp {
                if let Ok(d) = <[u8; 32]>::try_from(bytes) {
                    return Ok(d);
                }
            }
        }
    }
    let mut f = fs::File::open(path).map_err(io(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let digest: [u8; 32] = h.finalize().into();
    // The memo only saves time: failing to write it is not an error.
    if fs::create_dir_all(memo.parent().unwrap_or(dir)).is_ok() {
        let _ = fs::write(&memo, format!("{stamp} {}\n", hex(&digest)));
    }
    Ok(digest)
}

/// Writes the prefix `ids`' keys and values for the model with hash `model` (through a
/// temporary file, so a reader never sees half a file). Returns the file written.
pub fn save(dir: &Path, model: &[u8; 32], ids: &[u32], layers: &LayerValues) -> Result<PathBuf> {
    let path = file_for(dir, model, ids);
    let per = layers.first().map_or(0, |l| l[0].len());
    let mut out = Vec::with_capacity(64 + ids.len() * 4 + layers.len() * 2 * per * 4 + 32);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(model);
    out.extend_from_slice(&(ids.len() as u32).to_le_bytes());
    for id in ids {
        out.extend_from_slice(&id.to_le_bytes());
    }
    out.extend_from_slice(&(layers.len() as u32).to_le_bytes());
    out.extend_from_slice(&(per as u64).to_le_bytes());
    for kv in layers {
        for t in kv {
            if t.len() != per {
                return Err(PromptCacheFileError::Corrupt {
                    path,
                    reason: format!("a tensor has {} values, the first {per}", t.len()),
                });
            }
            for v in t {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
    let digest = Sha256::digest(&out);
    out.extend_from_slice(&digest);
    fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(&out).map_err(io(&tmp))?;
    drop(f);
    fs::rename(&tmp, &path).map_err(io(&path))?;
    Ok(path)
}

/// Reads the keys and values of the prefix `ids` for the model with hash `model`: `None`
/// when no file exists, [`PromptCacheFileError::Corrupt`] when one exists but does not hold
/// exactly `layers` layers of `values` values per tensor for these ids and this model.
pub fn load(
    dir: &Path,
    model: &[u8; 32],
    ids: &[u32],
    layers: usize,
    values: usize,
) -> Result<Option<LayerValues>> {
    let path = file_for(dir, model, ids);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(&path)(e)),
    };
    let corrupt = |reason: String| PromptCacheFileError::Corrupt {
        path: path.clone(),
        reason,
    };
    let header = 8 + 4 + 32 + 4 + ids.len() * 4 + 4 + 8;
    let expected = header + layers * 2 * values * 4 + 32;
    if bytes.len() != expected {
        return Err(corrupt(format!(
            "{} bytes, expected {expected}",
            bytes.len()
        )));
    }
    let (body, digest) = bytes.split_at(expected - 32);
    if Sha256::digest(body).as_slice() != digest {
        return Err(corrupt("checksum mismatch".into()));
    }
    let u32_at = |at: usize| u32::from_le_bytes(body[at..at + 4].try_into().expect("4 bytes"));
    if &body[..8] != MAGIC || u32_at(8) != FORMAT_VERSION {
        return Err(corrupt("not a psy prompt cache of this version".into()));
    }
    if &body[12..44] != model {
        return Err(corrupt("written for another model".into()));
    }
    let stored: Vec<u32> = (0..u32_at(44) as usize)
        .map(|i| u32_at(48 + 4 * i))
        .collect();
    if stored != ids {
        return Err(corrupt("written for another prompt".into()));
    }
    let at = 48 + 4 * ids.len();
    let per = u64::from_le_bytes(body[at + 4..at + 12].try_into().expect("8 bytes")) as usize;
    if u32_at(at) as usize != layers || per != values {
        return Err(corrupt(format!(
            "{} layers of {per} values, expected {layers} of {values}",
            u32_at(at)
        )));
    }
    let mut floats = body[at + 12..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")));
    let mut take = || floats.by_ref().take(values).collect::<Vec<f32>>();
    Ok(Some((0..layers).map(|_| [take(), take()]).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layers() -> LayerValues {
        vec![
            [vec![1.0, -2.5, 3.25], vec![0.5, 0.0, -0.0]],
            [vec![f32::MIN_POSITIVE, 7.0, 8.0], vec![9.0, 10.0, 11.0]],
        ]
    }

    #[test]
    fn a_saved_prefix_reads_back_bit_for_bit_and_only_for_its_model_and_ids() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = ([1u8; 32], [2u8; 32]);
        save(dir.path(), &a, &[5, 6, 7], &layers()).unwrap();
        let back = load(dir.path(), &a, &[5, 6, 7], 2, 3).unwrap().unwrap();
        assert_eq!(back, layers());
        // Another model or another prompt has no file.
        assert!(load(dir.path(), &b, &[5, 6, 7], 2, 3).unwrap().is_none());
        assert!(load(dir.path(), &a, &[5, 6], 2, 3).unwrap().is_none());
        // A file renamed to another model's name is caught by its header.
        fs::copy(
            file_for(dir.path(), &a, &[5, 6, 7]),
            file_for(dir.path(), &b, &[5, 6, 7]),
        )
        .unwrap();
        let err = load(dir.path(), &b, &[5, 6, 7], 2, 3).unwrap_err();
        assert!(err.to_string().contains("another model"), "{err}");
    }

    #[test]
    fn a_truncated_flipped_or_misshapen_file_is_reported_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let m = [3u8; 32];
        let path = save(dir.path(), &m, &[1, 2], &layers()).unwrap();
        let good = fs::read(&path).unwrap();
        fs::write(&path, &good[..good.len() - 5]).unwrap();
        let err = load(dir.path(), &m, &[1, 2], 2, 3).unwrap_err();
        assert!(err.to_string().contains("bytes, expected"), "{err}");
        let mut flipped = good.clone();
        flipped[good.len() - 40] ^= 1;
        fs::write(&path, &flipped).unwrap();
        let err = load(dir.path(), &m, &[1, 2], 2, 3).unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
        fs::write(&path, &good).unwrap();
        // Same byte count, other shape.
        let err = load(dir.path(), &m, &[1, 2], 3, 2).unwrap_err();
        assert!(err.to_string().contains("expected 3 of 2"), "{err}");
    }

    #[test]
    fn a_models_hash_is_its_sha256_and_is_remembered_until_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.gguf");
        fs::write(&model, b"abc").unwrap();
        // sha256("abc"), FIPS 180-2 appendix B.1.
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(hex(&model_sha256(&model, dir.path()).unwrap()), abc);
        assert_eq!(hex(&model_sha256(&model, dir.path()).unwrap()), abc);
        fs::write(&model, b"abcd").unwrap();
        assert_ne!(hex(&model_sha256(&model, dir.path()).unwrap()), abc);
    }
}
