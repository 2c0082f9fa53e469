//! Judge verdicts kept in SQLite, so a rerun with the same judge, rubric and prompts costs no
//! request. Only verdicts that validated are stored.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::call::JudgeCall;
use super::error::JudgeError;

/// A verdict found in the cache.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedVerdict {
    /// The judge's reply as it came (reasoning included).
    pub raw: String,
    /// The validated JSON verdict.
    pub verdict: Value,
    /// When it was stored (seconds since the Unix epoch).
    pub created_at: i64,
}

/// The verdict cache: one SQLite file, shareable between threads (one connection behind a
/// mutex) and between processes (WAL journal, busy timeout), e.g. `psy ablate --jobs N`.
pub struct JudgeCache {
    path: PathBuf,
    connection: Mutex<Connection>,
}

impl JudgeCache {
    /// Opens (or creates, with its parent directories) the cache at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, JudgeError> {
        let path = path.as_ref().to_path_buf();
        let fail = |message: String| JudgeError::Cache {
            path: path.clone(),
            message,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| fail(format!("cannot create {}: {e}", parent.display())))?;
        }
        let connection = Connection::open(&path).map_err(|e| fail(e.to_string()))?;
        connection
            .busy_timeout(std::time::Duration::from_secs(30))
            .map_err(|e| fail(e.to_string()))?;
        // journal_mode answers with a row, so it is queried rather than executed.
        connection
            .query_row("PRAGMA journal_mode = WAL", [], |row| {
                row.get::<_, String>(0)
            })
            .map_err(|e| fail(format!("cannot enable WAL: {e}")))?;
        connection
            .execute_batch(
                "PRAGMA synchronous = NORMAL;
                 CREATE TABLE IF NOT EXISTS judge_verdicts (
                     key TEXT PRIMARY KEY,
                     backend TEXT NOT NULL,
                     rubric_key TEXT NOT NULL,
                     raw TEXT NOT NULL,
                     verdict TEXT NOT NULL,
                     created_at INTEGER NOT NULL
                 );",
            )
            .map_err(|e| fail(e.to_string()))?;
        Ok(Self {
            path,
            connection: Mutex::new(connection),
        })
    }

    /// The cache file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The verdict stored under `key`, if any.
    pub fn get(&self, key: &str) -> Result<Option<CachedVerdict>, JudgeError> {
        let row = self
            .lock()
            .query_row(
                "SELECT raw, verdict, created_at FROM judge_verdicts WHERE key = ?1",
                params![key],
                |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, i64>(2)?,
                    ))
                },
            )
            .optional()
            .map_err(|e| self.error(format!("reading {key}: {e}")))?;
        let Some((raw, verdict, created_at)) = row else {
            return Ok(None);
        };
        let verdict = serde_json::from_str(&verdict)
            .map_err(|e| self.error(format!("entry {key} holds no JSON verdict: {e}")))?;
        Ok(Some(CachedVerdict {
            raw,
            verdict,
            created_at,
        }))
    }

    /// Stores (or replaces) the verdict under `key`.
    pub fn put(
        &self,
        key: &str,
        call: &JudgeCall,
        backend_id: &str,
        raw: &str,
        verdict: &Value,
    ) -> Result<(), JudgeError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        self.lock()
            .execute(
                "INSERT OR REPLACE INTO judge_verdicts (key, backend, rubric_key, raw, verdict, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![key, backend_id, call.rubric_key, raw, verdict.to_string(), now],
            )
            .map_err(|e| self.error(format!("writing {key}: {e}")))?;
        Ok(())
    }

    /// Number of stored verdicts.
    pub fn len(&self) -> Result<usize, JudgeError> {
        self.lock()
            .query_row("SELECT COUNT(*) FROM judge_verdicts", [], |row| {
                row.get::<_, i64>(0)
            })
            .map(|n| n as usize)
            .map_err(|e| self.error(e.to_string()))
    }

    /// Whether the cache holds no verdict.
    pub fn is_empty(&self) -> Result<bool, JudgeError> {
        Ok(self.len()? == 0)
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic elsewhere while holding the lock leaves the connection usable: SQLite
        // statements are atomic, so recover the guard rather than propagate the poison.
        self.connection
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn error(&self, message: String) -> JudgeError {
        JudgeError::Cache {
            path: self.path.clone(),
            message,
        }
    }
}

/// The cache key of `call` judged by `backend_id`: SHA-256 (hex) over the backend id, rubric
/// key, exact messages, schema, temperature, max_tokens, seed and repeat index. The item label
/// is left out: the same prompt under another name is the same judgement.
pub fn cache_key(backend_id: &str, call: &JudgeCall) -> String {
    let identity = json!({
        "format": 1,
        "backend": backend_id,
        "rubric": call.rubric_key,
        "messages": call.messages,
        "schema": call.schema,
        "schema_name": call.schema_name,
        // The f32's bits: no decimal rounding can merge two temperatures.
        "temperature": call.temperature.to_bits(),
        "max_tokens": call.max_tokens,
        "seed": call.seed,
        "repeat": call.repeat,
    });
    let digest = Sha256::digest(identity.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
