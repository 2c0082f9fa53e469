//! The `psy` program's library: it links every built-in module crate, so that their
//! `inventory` registrations reach the binary (an rlib that nothing names is dropped by the
//! linker, registrations and all), and it holds the small command functions `main.rs` calls.
//!
//! To add a built-in module crate: add it to the workspace, to `[dependencies]` of the root
//! `Cargo.toml`, and to the `use ... as _;` list below.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
pub use psy_engine as engine;
use psy_engine::dialogue::Dialogue;
use psy_engine::manifest::{self, ManifestError};
use psy_engine::planner::{Plan, Planner};
use psy_engine::registry::Registry;

// Name each built-in crate once so the linker keeps it (and its registrations). This list
// is the single place that says which modules ship with psy.
use psy_act as _;
use psy_cbt as _;
use psy_dbt as _;
use psy_diagnostics as _;
use psy_family_systems as _;
use psy_humanistic as _;
use psy_mi as _;
use psy_psychodynamic as _;
use psy_safety as _;

/// The registry of built-in modules.
pub fn builtin_registry() -> Result<Registry, ManifestError> {
    Registry::builtin()
}

/// The default run manifest: `manifests/psyllm.toml` under the current directory.
pub fn default_manifest() -> PathBuf {
    PathBuf::from("manifests/psyllm.toml")
}

/// Binds a run manifest to the built-in modules and its plugins.
pub fn planner(manifest: &Path) -> Result<Planner, ManifestError> {
    let run = manifest::load_run(manifest)?;
    Planner::new(run, builtin_registry()?)
}

/// `psy plan`: the plan for a message or a dialogue file, as text or JSON.
pub fn plan(manifest: &Path, message: Option<&str>, dialogue: Option<&Path>) -> Result<Plan> {
    let planner = planner(manifest)?;
    let dialogue = match (message, dialogue) {
        (Some(m), None) => Dialogue::from_message(m),
        (None, Some(p)) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("{}: cannot read dialogue", p.display()))?;
            Dialogue::parse(&text, &p.display().to_string())?
        }
        _ => bail!("give either --message or --dialogue"),
    };
    Ok(planner.plan(&dialogue))
}

/// `psy manifest check`: validates a run or ablation manifest and returns it resolved, as TOML.
pub fn check_manifest(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read manifest", path.display()))?;
    let is_ablation = text
        .lines()
        .any(|l| l.trim_start().starts_with("[ablation]"));
    if is_ablation {
        let ab = manifest::load_ablation(path)?;
        let mut out = format!(
            "# ablation `{}`: base {} with {} variants\n",
            ab.manifest.ablation.name,
            ab.base.origin(),
            ab.variants.len()
        );
        for (name, run) in &ab.variants {
            Planner::new(run.clone(), builtin_registry()?).map_err(|e| ManifestError::Variant {
                origin: path.display().to_string(),
                variant: name.clone(),
                source: Box::new(e),
            })?;
            out.push_str(&format!(
                "\n# --- variant `{name}` ---\n{}",
                toml::to_string(&run.manifest)?
            ));
        }
        Ok(out)
    } else {
        let planner = planner(path)?;
        Ok(format!(
            "# resolved from {}\n{}",
            planner
                .run()
                .files
                .iter()
                .map(|f| f.path.display().to_string())
                .collect::<Vec<_>>()
                .join(" <- "),
            toml::to_string(&planner.run().manifest)?
        ))
    }
}

/// One row of `psy plugins list`.
#[derive(Debug, serde::Serialize)]
pub struct PluginRow {
    pub id: String,
    pub kind: String,
    pub version: String,
    pub name: String,
    pub source: String,
}

/// `psy plugins list`: built-in modules plus the plugins a manifest or `--plugin` names.
pub fn list_plugins(manifest: Option<&Path>, extra: &[PathBuf]) -> Result<Vec<PluginRow>> {
    let registry = match manifest {
        Some(m) => planner(m)?.registry().clone(),
        None => builtin_registry()?,
    };
    let mut registry = registry;
    for p in extra {
        registry.load_plugin(p)?;
    }
    Ok(registry
        .entries()
        .iter()
        .map(|e| PluginRow {
            id: e.spec().module.id.clone(),
            kind: e.spec().module.kind.to_string(),
            version: e.spec().module.version.clone(),
            name: e.spec().module.name.clone(),
            source: e.source.to_string(),
        })
        .collect())
}
