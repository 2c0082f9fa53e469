//! Variants that train (`[variants.train]`): the cell trains a LoRA adapter on the run's model
//! first, inside its own directory (`cells/<name>/train/`), then decodes with it. A finished
//! training is reused, an interrupted one resumes from its last checkpoint, and one made from
//! other inputs is refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use psy_core::manifest::{apply_overrides, load_run, ManifestError, ResolvedRun, SourceFile};
use psy_core::planner::Planner;
use psy_core::variant_train::{locate_train_table, VariantTrain};
use psy_lm::session::{Counselor, ModelDrafter};
use psy_lm::training::adapter::{apply_peft_adapter, ADAPTER_WEIGHTS};
use psy_lm::training::prepare::expand;
use psy_lm::training::{run_with, RunOptions};

use super::provenance::{sha256_hex, sha256_path};

/// A variant's training, resolved.
#[derive(Clone, Debug)]
pub struct ResolvedTrain {
    /// The training manifest (`manifest`, or the ablation's base run).
    pub manifest: PathBuf,
    /// `[train]` overrides, relative paths made absolute against the ablation file.
    pub set: toml::Table,
    /// The training manifest with the overrides applied.
    pub run: ResolvedRun,
    /// `file:line:column` of the variant's `[variants.train]` table.
    pub location: String,
}

/// Resolves variant `name`'s `[variants.train]`, written in the ablation file `file`, whose
/// base run is `base`.
pub fn resolve(
    train: &VariantTrain,
    name: &str,
    file: &SourceFile,
    base: &Path,
) -> Result<ResolvedTrain, ManifestError> {
    let location = locate_train_table(&file.text, name)
        .map(|(l, c)| format!("{}:{l}:{c}", file.path.display()))
        .unwrap_or_else(|| file.path.display().to_string());
    // Absolute paths: `psy train` reads the manifest written into the cell directory, and
    // relative paths there would resolve against that directory.
    let file = &SourceFile {
        path: std::path::absolute(&file.path).unwrap_or_else(|_| file.path.clone()),
        text: file.text.clone(),
    };
    let dir = file.path.parent().unwrap_or(Path::new("."));
    let manifest = if train.manifest.trim().is_empty() {
        std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf())
    } else {
        dir.join(train.manifest.trim())
    };
    let at = |message: String| ManifestError::Invalid {
        origin: location.clone(),
        field: "variants.train".into(),
        message: format!("variant `{name}`: {message}"),
    };
    let loaded = load_run(&manifest).map_err(|e| at(e.to_string()))?;
    let mut over = toml::Table::new();
    over.insert("train".into(), toml::Value::Table(train.set.clone()));
    let run = apply_overrides(&loaded, over, file).map_err(|e| at(e.to_string()))?;
    if run.manifest.train.dataset.is_empty() {
        return Err(at(format!("{} has no [train] dataset", manifest.display())));
    }
    if !run.manifest.train.lora.enabled {
        return Err(at(format!(
            "{} does not train LoRA adapters ([train.lora] enabled = false): a variant decodes \
             its run's model with an adapter",
            manifest.display()
        )));
    }
    // The overrides as `apply_overrides` absolutized them, read back from the resolved run.
    let resolved = toml::Table::try_from(&run.manifest.train)
        .map_err(|e| ManifestError::Plugin(e.to_string()))?;
    let set = train
        .set
        .keys()
        .filter_map(|k| resolved.get(k).map(|v| (k.clone(), v.clone())))
        .collect();
    Ok(ResolvedTrain {
        manifest,
        set,
        run,
        location,
    })
}

impl ResolvedTrain {
    /// The manifest `psy train` reads inside the cell: the training manifest extended by the
    /// overrides.
    pub fn manifest_text(&self) -> String {
        let mut table = toml::Table::new();
        table.insert("schema".into(), toml::Value::Integer(1));
        table.insert(
            "extends".into(),
            toml::Value::String(self.manifest.display().to_string()),
        );
        if !self.set.is_empty() {
            table.insert("train".into(), toml::Value::Table(self.set.clone()));
        }
        format!(
            "# Written by psy ablate for {}\n{}",
            self.location,
            toml::to_string(&table).unwrap_or_default()
        )
    }

    /// The model the adapter trains on: `[model] path` of the training manifest.
    fn base_model(&self) -> Result<PathBuf> {
        crate::run_model(&self.run).map(|p| expand(&p.display().to_string()))
    }

    /// Refuses a training whose base model is not the model the cell decodes: an adapter fits
    /// only the weights it was trained on.
    pub fn check_base_model(&self, variant: &str, decoded: &Path) -> Result<()> {
        let trained = self.base_model()?;
        let decoded = expand(&decoded.display().to_string());
        let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => a == b,
        };
        if !same(&trained, &decoded) {
            bail!(
                "{}: variant `{variant}`: the training manifest {} trains on {}, but the cell \
                 decodes {}: an adapter only fits the model it was trained on",
                self.location,
                self.manifest.display(),
                trained.display(),
                decoded.display()
            );
        }
        Ok(())
    }

    /// sha256 of the resolved training manifest and of its data files.
    fn identity(&self) -> Result<BTreeMap<String, String>> {
        let t = &self.run.manifest.train;
        let mut data = sha256_path(&expand(&t.dataset))?;
        if !t.validation_file.is_empty() {
            data = sha256_hex(
                format!("{data}{}", sha256_path(&expand(&t.validation_file))?).as_bytes(),
            );
        }
        Ok(BTreeMap::from([
            (
                "train_manifest_sha256".to_string(),
                sha256_hex(toml::to_string(&self.run.manifest)?.as_bytes()),
            ),
            ("train_data_sha256".to_string(), data),
        ]))
    }
}

/// A trained adapter and the hashes it adds to its cell's inputs.
pub struct TrainedAdapter {
    /// PEFT layout: `adapter_model.safetensors` + `adapter_config.json`.
    pub dir: PathBuf,
    /// `train_manifest_sha256`, `train_data_sha256`, `adapter_sha256`.
    pub provenance: BTreeMap<String, String>,
}

/// Trains (or reuses, or resumes) the adapter of cell `name` under `cell_dir/train/`.
pub fn train_cell(cell_dir: &Path, name: &str, train: &ResolvedTrain) -> Result<TrainedAdapter> {
    let dir = cell_dir.join("train");
    std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let mut provenance = train.identity()?;
    let inputs = dir.join("inputs.json");
    let want = serde_json::to_string_pretty(&provenance)?;
    match std::fs::read_to_string(&inputs) {
        Ok(have) if have.trim() != want.trim() => bail!(
            "{}: this adapter was trained from another manifest or data; choose another \
             --output or delete {}",
            inputs.display(),
            dir.display()
        ),
        Ok(_) => {}
        Err(_) => super::cell_store::write_whole(&inputs, &(want + "\n"))?,
    }
    let manifest = dir.join("train.toml");
    let adapter = dir.join("export").join("adapter");
    let done = dir.join("done");
    if done.exists() {
        eprintln!("{name}: trained earlier, reusing {}", adapter.display());
    } else {
        std::fs::write(&manifest, train.manifest_text())
            .with_context(|| format!("{}: cannot write", manifest.display()))?;
        eprintln!("{name}: training ({})", manifest.display());
        let s = run_with(&RunOptions {
            manifest: manifest.clone(),
            output: Some(dir.clone()),
            resume: true,
            dry_run: false,
            stop_after: None,
            quiet: true,
        })
        .with_context(|| format!("variant `{name}`: training ({})", train.location))?;
        if !adapter.join(ADAPTER_WEIGHTS).is_file() {
            bail!(
                "variant `{name}`: training stopped at step {} without an adapter in {}",
                s.steps,
                adapter.display()
            );
        }
        std::fs::write(&done, format!("{}\n", s.steps))
            .with_context(|| format!("{}: cannot write", done.display()))?;
    }
    provenance.insert(
        "adapter_sha256".to_string(),
        sha256_path(&adapter.join(ADAPTER_WEIGHTS))?,
    );
    Ok(TrainedAdapter {
        dir: adapter,
        provenance,
    })
}

/// A counselor whose drafts come from `model` with the adapter in `adapter` merged in.
pub fn adapted_counselor(
    planner: Planner,
    model: &Path,
    tok: Option<&Path>,
    adapter: &Path,
) -> Result<Counselor> {
    let drafter = ModelDrafter::load(model, tok)
        .with_context(|| format!("loading model {}", model.display()))?
        .map_model(|m| apply_peft_adapter(m, adapter))
        .with_context(|| format!("applying adapter {}", adapter.display()))?;
    Ok(Counselor::new(planner, Box::new(drafter)))
}
