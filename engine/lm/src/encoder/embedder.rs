//! The encoder as psy-core's [`SentenceEmbedder`], with a cache: the planner re-assesses a whole
//! dialogue every turn (and every prefix for the risk trajectory), so each text is embedded
//! once per process rather than once per plan.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use psy_core::semantic::SentenceEmbedder;

use super::error::Result;
use super::sentence_encoder::Encoder;
use super::shared::shared;
use super::vector_cache_file;

/// Texts remembered before the cache starts over (about 1.5 KB each at 384 dimensions).
const CACHE_LIMIT: usize = 8192;

/// A shared [`Encoder`] behind psy-core's embedding interface.
pub struct CachedEmbedder {
    encoder: Arc<Encoder>,
    name: String,
    cache: Mutex<HashMap<String, Vec<f32>>>,
    /// Adapted variants by adapter id.
    variants: Mutex<HashMap<String, Arc<CachedEmbedder>>>,
    /// The identity keying [`vector_cache_file`], computed on first use; `None` when the
    /// encoder's files could not be hashed (the disk cache is then skipped).
    identity: OnceLock<Option<[u8; 32]>>,
}

impl CachedEmbedder {
    pub fn new(encoder: Arc<Encoder>) -> Self {
        let name = format!(
            "{}{}",
            encoder.dir().display(),
            encoder.precision().suffix()
        );
        CachedEmbedder {
            encoder,
            name,
            cache: Mutex::new(HashMap::new()),
            variants: Mutex::new(HashMap::new()),
            identity: OnceLock::new(),
        }
    }

    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }

    fn identity(&self) -> Option<[u8; 32]> {
        *self.identity.get_or_init(|| {
            let cache_dir = crate::runtime::prompt_cache_file::default_dir();
            match vector_cache_file::encoder_identity(self.encoder.dir(), &cache_dir) {
                // Vectors of another precision are other vectors.
                Ok(base) => Some(match self.encoder.precision().suffix() {
                    "" => base,
                    mark => vector_cache_file::adapted_identity(&base, mark),
                }),
                Err(e) => {
                    tracing::warn!("embedding cache off: {e}");
                    None
                }
            }
        })
    }
}

impl SentenceEmbedder for CachedEmbedder {
    fn name(&self) -> &str {
        &self.name
    }

    fn dim(&self) -> usize {
        self.encoder.dim()
    }

    fn tolerance(&self) -> f32 {
        self.encoder.precision().tolerance()
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
        // Known vectors are copied out under the lock, so a concurrent clear cannot lose them.
        let mut known: HashMap<&str, Vec<f32>> = HashMap::new();
        let mut missing: Vec<&str> = Vec::new();
        {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            for &t in texts {
                match cache.get(t) {
                    Some(v) => {
                        known.insert(t, v.clone());
                    }
                    None => missing.push(t),
                }
            }
        }
        missing.sort_unstable();
        missing.dedup();
        if !missing.is_empty() {
            // Embedded outside the lock: threads may embed the same text, never wait on each other.
            let fresh = self.encoder.embed(&missing).map_err(|e| e.to_string())?;
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if cache.len() + missing.len() > CACHE_LIMIT {
                cache.clear();
            }
            for (t, v) in missing.into_iter().zip(fresh) {
                cache.insert(t.to_string(), v.clone());
                known.insert(t, v);
            }
        }
        Ok(texts.iter().map(|t| known[t].clone()).collect())
    }

    fn knows(&self, texts: &[&str]) -> bool {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        texts.iter().all(|t| cache.contains_key(*t))
    }

    fn embed_fixed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
        let Some(identity) = self.identity() else {
            return self.embed(texts);
        };
        let dir = vector_cache_file::default_dir();
        match vector_cache_file::load(&dir, &identity, texts, self.dim()) {
            Ok(Some(vectors)) => return Ok(vectors),
            Ok(None) => {}
            Err(e) => tracing::warn!("{e}"),
        }
        let vectors = self.embed(texts)?;
        // The cache only saves time: a file that cannot be written is not an error.
        if let Err(e) = vector_cache_file::save(&dir, &identity, texts, &vectors) {
            tracing::warn!("{e}");
        }
        Ok(vectors)
    }

    fn adapted(&self, adapter: &[u8], id: &str) -> Result<Arc<dyn SentenceEmbedder>, String> {
        // Held across the merge so that concurrent first callers merge once.
        let mut variants = self.variants.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = variants.get(id) {
            return Ok(Arc::clone(v) as Arc<dyn SentenceEmbedder>);
        }
        let short = &id[..id.len().min(12)];
        let encoder = self
            .encoder
            .with_adapter(adapter, &format!("adapter {short}"))
            .map_err(|e| e.to_string())?;
        let v = CachedEmbedder::new(Arc::new(encoder));
        // A variant's directory is its base's plus a mark, so its identity comes from the base.
        let _ = v.identity.set(
            self.identity()
                .map(|base| vector_cache_file::adapted_identity(&base, id)),
        );
        let v = Arc::new(v);
        variants.insert(id.to_string(), Arc::clone(&v));
        Ok(v)
    }
}

/// The embedder of `dir` (default: all-MiniLM-L6-v2), one per encoder for the whole process so
/// that every planner (and a server's rebuilt counselors) shares its cache.
pub fn shared_embedder(dir: Option<&Path>) -> Result<Arc<CachedEmbedder>> {
    static EMBEDDERS: OnceLock<Mutex<HashMap<PathBuf, Arc<CachedEmbedder>>>> = OnceLock::new();
    let encoder = shared(dir)?;
    let mut map = EMBEDDERS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let entry = map
        .entry(encoder.dir().to_path_buf())
        .or_insert_with(|| Arc::new(CachedEmbedder::new(encoder)));
    Ok(Arc::clone(entry))
}
