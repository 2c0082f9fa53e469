//! Vectors of texts that ship with psy (the modules' example sentences, never client text)
//! kept on disk, so that a new process does not embed the ~500 examples again: on 2 threads
//! that is about 2 s of every `psy counsel` start, against a 2 s target for the first token.
//!
//! A file is named after the sha256 of [`FORMAT_VERSION`], the encoder's identity (its files'
//! hashes, and an adapter's id for a fine-tuned variant) and the texts in order. It ends with
//! the sha256 of everything before it. A file whose length, header or checksum does not match
//! is reported as [`VectorCacheError::Corrupt`] and the caller embeds again: it is never
//! trusted. Vectors computed on another CPU may differ in their last bits (kernels differ), so
//! a cache directory should not be shared between machines.
//!
//! Layout (little-endian): magic `PSYVEC\0\0`, version u32, count u32, dimension u32, then the
//! vectors (f32 each), then the sha256 (32 bytes).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::runtime::prompt_cache_file;

/// Bumped whenever the layout or the meaning of the stored values changes.
pub const FORMAT_VERSION: u32 = 1;
const MAGIC: &[u8; 8] = b"PSYVEC\0\0";
const HEADER: usize = 8 + 4 + 4 + 4;

#[derive(Debug, thiserror::Error)]
pub enum VectorCacheError {
    #[error("embedding cache {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("embedding cache {path} is stale or corrupt ({reason}); it will be rebuilt")]
    Corrupt { path: PathBuf, reason: String },
}

type Result<T> = std::result::Result<T, VectorCacheError>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> VectorCacheError + '_ {
    move |source| VectorCacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `embeddings/` under psy's prompt cache directory (`$PSY_PROMPT_CACHE`, else
/// `~/.cache/psy/prompt-cache`): one variable empties both caches.
pub fn default_dir() -> PathBuf {
    prompt_cache_file::default_dir().join("embeddings")
}

/// The identity of the encoder in `dir`: the sha256 of its files' names and hashes (the
/// directory's own files and `1_Pooling/config.json`). File hashes are remembered by length
/// and modification time under `cache_dir`, so a start does not read the weights again.
pub fn encoder_identity(dir: &Path, cache_dir: &Path) -> Result<[u8; 32]> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    let pooling = dir.join("1_Pooling").join("config.json");
    if pooling.is_file() {
        files.push(pooling);
    }
    files.sort();
    let mut h = Sha256::new();
    h.update(FORMAT_VERSION.to_le_bytes());
    for f in files {
        let name = f.strip_prefix(dir).unwrap_or(&f);
        h.update(name.as_os_str().as_encoded_bytes());
        h.update([0]);
        let digest = prompt_cache_file::model_sha256(&f, cache_dir).map_err(|e| match e {
            prompt_cache_file::PromptCacheFileError::Io { path, source } => {
                VectorCacheError::Io { path, source }
            }
            prompt_cache_file::PromptCacheFileError::Corrupt { path, reason } => {
                VectorCacheError::Corrupt { path, reason }
            }
        })?;
        h.update(digest);
    }
    Ok(h.finalize().into())
}

/// The identity of `base` with the adapter `adapter_id` merged in.
pub fn adapted_identity(base: &[u8; 32], adapter_id: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(base);
    h.update(b"adapter\0");
    h.update(adapter_id.as_bytes());
    h.finalize().into()
}

/// The file holding the vectors of `texts` (in this order) under the encoder `identity`.
pub fn file_for(dir: &Path, identity: &[u8; 32], texts: &[&str]) -> PathBuf {
    let mut h = Sha256::new();
    h.update(FORMAT_VERSION.to_le_bytes());
    h.update(identity);
    for t in texts {
        // Length-prefixed, so no two lists of texts hash the same bytes.
        h.update((t.len() as u64).to_le_bytes());
        h.update(t.as_bytes());
    }
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    dir.join(format!("{hex}.vec"))
}

/// Writes `vectors` (one per text of `texts`, all of one length) through a temporary file,
/// so a reader never sees half a file. Returns the file written.
pub fn save(
    dir: &Path,
    identity: &[u8; 32],
    texts: &[&str],
    vectors: &[Vec<f32>],
) -> Result<PathBuf> {
    let path = file_for(dir, identity, texts);
    let dim = vectors.first().map_or(0, Vec::len);
    if vectors.len() != texts.len() || vectors.iter().any(|v| v.len() != dim) {
        return Err(VectorCacheError::Corrupt {
            path,
            reason: format!(
                "{} vectors for {} texts, or vectors of different lengths",
                vectors.len(),
                texts.len()
            ),
        });
    }
    let mut out = Vec::with_capacity(HEADER + vectors.len() * dim * 4 + 32);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(vectors.len() as u32).to_le_bytes());
    out.extend_from_slice(&(dim as u32).to_le_bytes());
    for v in vectors.iter().flatten() {
        out.extend_from_slice(&v.to_le_bytes());
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

/// The vectors of `texts` under the encoder `identity`: `None` when no file exists,
/// [`VectorCacheError::Corrupt`] when one exists but does not hold exactly `texts.len()`
/// vectors of `dim` values with a matching checksum.
pub fn load(
    dir: &Path,
    identity: &[u8; 32],
    texts: &[&str],
    dim: usize,
) -> Result<Option<Vec<Vec<f32>>>> {
    let path = file_for(dir, identity, texts);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(&path)(e)),
    };
    let corrupt = |reason: String| VectorCacheError::Corrupt {
        path: path.clone(),
        reason,
    };
    let expected = HEADER + texts.len() * dim * 4 + 32;
    if bytes.len() != expected {
        return Err(corrupt(format!(
            "{} bytes, expected {expected} for {} vectors of {dim}",
            bytes.len(),
            texts.len()
        )));
    }
    let (body, sum) = bytes.split_at(expected - 32);
    if Sha256::digest(body).as_slice() != sum {
        return Err(corrupt("checksum does not match".into()));
    }
    let u32_at = |i: usize| u32::from_le_bytes([body[i], body[i + 1], body[i + 2], body[i + 3]]);
    if &body[..8] != MAGIC || u32_at(8) != FORMAT_VERSION {
        return Err(corrupt("not a psy embedding cache of this version".into()));
    }
    if u32_at(12) as usize != texts.len() || u32_at(16) as usize != dim {
        return Err(corrupt(format!(
            "holds {} vectors of {}, expected {} of {dim}",
            u32_at(12),
            u32_at(16),
            texts.len()
        )));
    }
    let values: Vec<f32> = body[HEADER..]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok(Some(
        values
            .chunks(dim.max(1))
            .take(texts.len())
            .map(<[f32]>::to_vec)
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("psy-veccache-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn round_trip_and_keys() {
        let dir = tmp("rt");
        let id = [7u8; 32];
        let texts = ["I can't sleep.", "I feel on edge."];
        let vecs = vec![vec![0.5, -1.25, 3.0], vec![f32::MIN_POSITIVE, 0.0, -0.0]];
        assert_eq!(load(&dir, &id, &texts, 3).unwrap(), None);
        save(&dir, &id, &texts, &vecs).unwrap();
        let back = load(&dir, &id, &texts, 3).unwrap().unwrap();
        assert_eq!(
            back.iter()
                .flatten()
                .map(|v| v.to_bits())
                .collect::<Vec<_>>(),
            vecs.iter()
                .flatten()
                .map(|v| v.to_bits())
                .collect::<Vec<_>>()
        );
        // Another encoder, order or split of the texts is another file.
        assert_eq!(load(&dir, &[8u8; 32], &texts, 3).unwrap(), None);
        assert_eq!(load(&dir, &id, &[texts[1], texts[0]], 3).unwrap(), None);
        assert_eq!(
            load(&dir, &id, &["I can't sleep.I feel on edge."], 3).unwrap(),
            None
        );
        assert_ne!(adapted_identity(&id, "a"), adapted_identity(&id, "b"));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn corrupt_files_are_reported_not_trusted() {
        let dir = tmp("corrupt");
        let id = [1u8; 32];
        let texts = ["one", "two"];
        let path = save(&dir, &id, &texts, &[vec![1.0, 2.0], vec![3.0, 4.0]]).unwrap();
        // A flipped value byte breaks the checksum.
        let mut bytes = fs::read(&path).unwrap();
        bytes[HEADER] ^= 1;
        fs::write(&path, &bytes).unwrap();
        let e = load(&dir, &id, &texts, 2).unwrap_err().to_string();
        assert!(e.contains("checksum"), "{e}");
        // A truncated file, or a reader expecting another dimension.
        save(&dir, &id, &texts, &[vec![1.0, 2.0], vec![3.0, 4.0]]).unwrap();
        assert!(load(&dir, &id, &texts, 3)
            .unwrap_err()
            .to_string()
            .contains("expected"));
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        assert!(matches!(
            load(&dir, &id, &texts, 2),
            Err(VectorCacheError::Corrupt { .. })
        ));
        // Mismatched inputs are refused on save.
        assert!(save(&dir, &id, &texts, &[vec![1.0]]).is_err());
        let _ = fs::remove_dir_all(&dir);
    }
}
