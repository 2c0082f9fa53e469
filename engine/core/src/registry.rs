//! The registry: every module psy knows, whatever way it was added.
//!
//! Built-in crates register through `inventory`; module manifests and plugin libraries are
//! added from paths. All three end up as `Arc<dyn Module>` with a [`Source`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::dylib::DylibModule;
use crate::manifest::ManifestError;
use crate::module::{BuiltinModule, Module, ModuleKind, ModuleSpec, SpecModule};

/// Where a module came from.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", content = "from", rename_all = "lowercase")]
pub enum Source {
    Builtin(String),
    Toml(PathBuf),
    Dylib(PathBuf),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Builtin(c) => write!(f, "builtin ({c})"),
            Source::Toml(p) => write!(f, "toml {}", p.display()),
            Source::Dylib(p) => write!(f, "dylib {}", p.display()),
        }
    }
}

#[derive(Clone)]
pub struct Entry {
    pub module: Arc<dyn Module>,
    pub source: Source,
}

impl Entry {
    pub fn spec(&self) -> &ModuleSpec {
        self.module.spec()
    }
}

/// All known modules, sorted by id.
#[derive(Clone, Default)]
pub struct Registry {
    entries: Vec<Entry>,
}

/// Ways a plugin path can be added.
pub fn is_library(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("so" | "dylib" | "dll")
    )
}

impl Registry {
    /// The modules of every linked built-in crate.
    pub fn builtin() -> Result<Registry, ManifestError> {
        let mut r = Registry::default();
        for b in inventory::iter::<BuiltinModule> {
            r.add(Entry {
                module: Arc::from((b.build)()),
                source: Source::Builtin(b.crate_name.to_string()),
            })?;
        }
        Ok(r)
    }

    /// Adds a module; a second module with the same id is an error naming both sources.
    pub fn add(&mut self, entry: Entry) -> Result<(), ManifestError> {
        let id = entry.spec().module.id.clone();
        if let Some(existing) = self.get(&id) {
            return Err(ManifestError::Plugin(format!(
                "module id `{id}` is defined twice: by {} and by {}",
                existing.source, entry.source
            )));
        }
        let at = self.entries.partition_point(|e| e.spec().module.id < id);
        self.entries.insert(at, entry);
        Ok(())
    }

    /// Adds a module manifest (`.toml`) or a plugin library (`.so`/`.dylib`/`.dll`).
    pub fn load_plugin(&mut self, path: &Path) -> Result<&Entry, ManifestError> {
        let entry = if is_library(path) {
            let m = DylibModule::load(path).map_err(|e| ManifestError::Plugin(e.to_string()))?;
            Entry {
                module: Arc::new(m),
                source: Source::Dylib(path.to_path_buf()),
            }
        } else {
            let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Io {
                path: path.display().to_string(),
                source,
            })?;
            let spec = ModuleSpec::from_toml(&text, &path.display().to_string())?;
            Entry {
                module: Arc::new(SpecModule::new(spec)),
                source: Source::Toml(path.to_path_buf()),
            }
        };
        let id = entry.spec().module.id.clone();
        self.add(entry)?;
        Ok(self.get(&id).expect("just added"))
    }

    pub fn get(&self, id: &str) -> Option<&Entry> {
        self.entries
            .binary_search_by(|e| e.spec().module.id.as_str().cmp(id))
            .ok()
            .map(|i| &self.entries[i])
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn ids_of(&self, kind: ModuleKind) -> Vec<String> {
        self.entries
            .iter()
            .filter(|e| e.spec().module.kind == kind)
            .map(|e| e.spec().module.id.clone())
            .collect()
    }

    /// Known ids closest to `id` (for "did you mean").
    pub fn suggest(&self, id: &str) -> Vec<String> {
        let mut scored: Vec<(f64, &str)> = self
            .entries
            .iter()
            .map(|e| e.spec().module.id.as_str())
            .map(|k| {
                (
                    strsim::normalized_damerau_levenshtein(id, k).max(
                        if k.contains(id) || id.contains(k) {
                            0.7
                        } else {
                            0.0
                        },
                    ),
                    k,
                )
            })
            .filter(|(s, _)| *s >= 0.6)
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
        scored
            .into_iter()
            .take(3)
            .map(|(_, k)| k.to_string())
            .collect()
    }
}
