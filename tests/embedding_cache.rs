//! The on-disk cache of the modules' example vectors (`engine/lm/src/encoder/vector_cache_file.rs`):
//! a warm start plans exactly as a cold one, a corrupt cache file is rebuilt rather than
//! trusted, and no client text reaches the cache directory.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A client sentence found by meaning (the insomnia criterion's examples, see
/// `tests/semantic.rs`), so the plan depends on the cached example vectors.
const MESSAGE: &str = "I can't get to sleep until the early hours.";

fn plan(cache: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_psy"))
        .args(["plan", "--json", "--message", MESSAGE])
        .env("PSY_PROMPT_CACHE", cache)
        .output()
        .expect("run psy plan");
    assert!(
        out.status.success(),
        "psy plan failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 plan")
}

fn vector_files(cache: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(cache.join("embeddings"))
        .expect("embeddings directory")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "vec"))
        .collect();
    v.sort();
    v
}

fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(all_bytes(&p));
        } else {
            out.extend(std::fs::read(&p).unwrap());
        }
    }
    out
}

#[test]
fn warm_and_rebuilt_caches_plan_like_a_cold_start() {
    let cache = std::env::temp_dir().join(format!("psy-embcache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);

    let cold = plan(&cache);
    assert!(
        cold.contains("cosine"),
        "the plan should hold evidence found by the encoder: {cold}"
    );
    let files = vector_files(&cache);
    assert!(!files.is_empty(), "no example vectors were cached");
    let written: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();

    let warm = plan(&cache);
    assert_eq!(cold, warm, "a warm start planned differently");

    // Flip one value byte in every file: each is detected, embedded again and rewritten.
    for f in &files {
        let mut b = std::fs::read(f).unwrap();
        b[24] ^= 0x40;
        std::fs::write(f, b).unwrap();
    }
    let rebuilt = plan(&cache);
    assert_eq!(cold, rebuilt, "a corrupt cache changed the plan");
    let again: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    assert_eq!(
        written, again,
        "corrupt files were not rewritten as first computed"
    );

    // Only shipped example texts are cached: another client message adds no file, and the
    // client's words appear nowhere on disk.
    let other = Command::new(env!("CARGO_BIN_EXE_psy"))
        .args([
            "plan",
            "--json",
            "--message",
            "My hands shake until I've had a drink.",
        ])
        .env("PSY_PROMPT_CACHE", &cache)
        .output()
        .expect("run psy plan");
    assert!(other.status.success());
    assert_eq!(vector_files(&cache), files, "a client message was cached");
    let bytes = all_bytes(&cache);
    let needle = "until the early hours".as_bytes();
    assert!(
        !bytes.windows(needle.len()).any(|w| w == needle),
        "client text was written to the cache directory"
    );
    let _ = std::fs::remove_dir_all(&cache);
}
