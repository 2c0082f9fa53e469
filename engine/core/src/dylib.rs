//! Modules from dynamic libraries, through a small C ABI with JSON in and out.
//!
//! A plugin library exports (all `extern "C"`):
//!
//! | symbol | signature | required |
//! |---|---|---|
//! | `psy_plugin_abi_version` | `fn() -> u32` (must return [`ABI_VERSION`]) | yes |
//! | `psy_plugin_engine_requirement` | `fn() -> *const c_char`, a semver requirement on psy-core such as `">=0.1, <0.2"` | yes |
//! | `psy_plugin_spec` | `fn() -> *const c_char`, the module spec as JSON (same schema as a module manifest) | yes |
//! | `psy_plugin_assess` | `fn(dialogue_json: *const c_char) -> *mut c_char`, an `Assessment` as JSON, or null on failure | no |
//! | `psy_plugin_free` | `fn(*mut c_char)`, frees strings returned by `psy_plugin_assess` | with assess |
//!
//! The host checks the ABI version and the engine requirement before calling anything else.
//! Libraries are never unloaded: their code may be referenced for the life of the process.

use std::ffi::{c_char, CStr, CString};
use std::path::{Path, PathBuf};

use crate::dialogue::Dialogue;
use crate::module::{Assessment, Module, ModuleSpec};

/// Version of the C ABI described above.
pub const ABI_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum DylibError {
    #[error("{path}: cannot load as a dynamic library: {message}")]
    Load { path: String, message: String },
    #[error("{path}: not a psy plugin: it does not export `{symbol}`")]
    MissingSymbol { path: String, symbol: &'static str },
    #[error("{path}: plugin ABI version {found}, this psy speaks ABI version {expected}; rebuild the plugin against psy-core {engine}")]
    WrongAbi {
        path: String,
        found: u32,
        expected: u32,
        engine: &'static str,
    },
    #[error("{path}: plugin requires psy-core `{requirement}`, this is psy-core {engine}")]
    EngineMismatch {
        path: String,
        requirement: String,
        engine: &'static str,
    },
    #[error("{path}: {what}: {message}")]
    BadData {
        path: String,
        what: &'static str,
        message: String,
    },
}

type AbiFn = unsafe extern "C" fn() -> u32;
type StrFn = unsafe extern "C" fn() -> *const c_char;
type AssessFn = unsafe extern "C" fn(*const c_char) -> *mut c_char;
type FreeFn = unsafe extern "C" fn(*mut c_char);

/// A module backed by a loaded plugin library.
pub struct DylibModule {
    path: PathBuf,
    spec: ModuleSpec,
    assess: Option<(AssessFn, FreeFn)>,
}

fn static_str(path: &Path, what: &'static str, ptr: *const c_char) -> Result<String, DylibError> {
    if ptr.is_null() {
        return Err(DylibError::BadData {
            path: path.display().to_string(),
            what,
            message: "returned a null pointer".into(),
        });
    }
    // SAFETY: the ABI promises a NUL-terminated string that lives as long as the library.
    let s = unsafe { CStr::from_ptr(ptr) };
    s.to_str()
        .map(str::to_owned)
        .map_err(|e| DylibError::BadData {
            path: path.display().to_string(),
            what,
            message: e.to_string(),
        })
}

impl DylibModule {
    /// Loads and checks a plugin library. The library is leaked on success and on failure
    /// after it was mapped, since a half-initialised library may have registered callbacks.
    pub fn load(path: &Path) -> Result<DylibModule, DylibError> {
        let p = path.display().to_string();
        // SAFETY: loading runs the library's initialisers; plugins are trusted code the user
        // listed in a manifest, and we check the ABI before calling anything else.
        let lib = unsafe { libloading::Library::new(path) }.map_err(|e| DylibError::Load {
            path: p.clone(),
            message: e.to_string(),
        })?;
        let lib: &'static libloading::Library = Box::leak(Box::new(lib));
        // SAFETY (all symbol reads): the types are the ABI's; a library exporting the names
        // with other types is not a psy plugin and breaks the ABI contract.
        let abi: libloading::Symbol<AbiFn> = unsafe { lib.get(b"psy_plugin_abi_version\0") }
            .map_err(|_| DylibError::MissingSymbol {
                path: p.clone(),
                symbol: "psy_plugin_abi_version",
            })?;
        let found = unsafe { abi() };
        let engine = env!("CARGO_PKG_VERSION");
        if found != ABI_VERSION {
            return Err(DylibError::WrongAbi {
                path: p,
                found,
                expected: ABI_VERSION,
                engine,
            });
        }
        let req_fn: libloading::Symbol<StrFn> = unsafe {
            lib.get(b"psy_plugin_engine_requirement\0")
        }
        .map_err(|_| DylibError::MissingSymbol {
            path: p.clone(),
            symbol: "psy_plugin_engine_requirement",
        })?;
        let requirement = static_str(path, "psy_plugin_engine_requirement", unsafe { req_fn() })?;
        let req = semver::VersionReq::parse(&requirement).map_err(|e| DylibError::BadData {
            path: p.clone(),
            what: "psy_plugin_engine_requirement",
            message: format!("`{requirement}` is not a semver requirement: {e}"),
        })?;
        let version = semver::Version::parse(engine).expect("crate version is semver");
        if !req.matches(&version) {
            return Err(DylibError::EngineMismatch {
                path: p,
                requirement,
                engine,
            });
        }
        let spec_fn: libloading::Symbol<StrFn> =
            unsafe { lib.get(b"psy_plugin_spec\0") }.map_err(|_| DylibError::MissingSymbol {
                path: p.clone(),
                symbol: "psy_plugin_spec",
            })?;
        let json = static_str(path, "psy_plugin_spec", unsafe { spec_fn() })?;
        let spec: ModuleSpec = serde_json::from_str(&json).map_err(|e| DylibError::BadData {
            path: p.clone(),
            what: "psy_plugin_spec",
            message: e.to_string(),
        })?;
        spec.validate(&p).map_err(|e| DylibError::BadData {
            path: p.clone(),
            what: "psy_plugin_spec",
            message: e.to_string(),
        })?;
        let assess = match unsafe { lib.get::<AssessFn>(b"psy_plugin_assess\0") } {
            Ok(a) => {
                let free: libloading::Symbol<FreeFn> = unsafe { lib.get(b"psy_plugin_free\0") }
                    .map_err(|_| DylibError::MissingSymbol {
                        path: p.clone(),
                        symbol: "psy_plugin_free",
                    })?;
                Some((*a, *free))
            }
            Err(_) => None,
        };
        tracing::info!(path = %p, module = %spec.module.id, "loaded plugin library");
        Ok(DylibModule {
            path: path.to_path_buf(),
            spec,
            assess,
        })
    }

    fn call_assess(&self, dialogue: &Dialogue) -> Result<Assessment, String> {
        let (assess, free) = self.assess.expect("checked by caller");
        let input = CString::new(serde_json::to_string(dialogue).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        // SAFETY: ABI contract: the plugin reads a NUL-terminated string and returns a
        // string it allocated, which we hand back to its own `free`.
        let out = unsafe { assess(input.as_ptr()) };
        if out.is_null() {
            return Err("psy_plugin_assess returned null".into());
        }
        let text = unsafe { CStr::from_ptr(out) }
            .to_str()
            .map(str::to_owned)
            .map_err(|e| e.to_string());
        unsafe { free(out) };
        let assessment: Assessment = serde_json::from_str(&text?)
            .map_err(|e| format!("psy_plugin_assess returned bad JSON: {e}"))?;
        if assessment.module != self.spec.module.id {
            return Err(format!(
                "assessment names module `{}`, expected `{}`",
                assessment.module, self.spec.module.id
            ));
        }
        Ok(assessment)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Module for DylibModule {
    fn spec(&self) -> &ModuleSpec {
        &self.spec
    }

    fn assess(&self, dialogue: &Dialogue) -> Assessment {
        if self.assess.is_none() {
            return crate::module::lexicon_assessment(&self.spec, dialogue);
        }
        match self.call_assess(dialogue) {
            Ok(a) => a,
            Err(e) => {
                // A failing plugin must not take the session down; the plan records it.
                tracing::warn!(path = %self.path.display(), error = %e, "plugin assess failed");
                Assessment {
                    module: self.spec.module.id.clone(),
                    notes: vec![format!("plugin failed: {e}")],
                    ..Default::default()
                }
            }
        }
    }
}
