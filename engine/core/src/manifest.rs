//! Run and ablation manifests: which modules are active and how a run plans, prompts,
//! decodes, trains and evaluates.
//!
//! Files are strict (unknown keys are errors with line and column), compose with
//! `extends = "base.toml"` (relative to the file, cycles rejected), and paths inside a file
//! are resolved relative to that file before files are merged.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::module::CrisisResource;
use crate::variant_train::{check_train_keys, VariantTrain};

/// Manifest schema version this psy reads.
pub const SCHEMA: u32 = 1;

/// The id of the crisis guard, which every run carries.
pub const CRISIS_GUARD: &str = "crisis-guard";

pub use crate::eval_spec::EvalSection;
pub use crate::manifest_error::{line_col, parse_toml, ManifestError};
pub use crate::train_spec::TrainSection;

/// Which modules a run activates, by id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModulesSection {
    /// Diagnostic modules (DSM-5-TR, ICD-11 screening).
    #[serde(default)]
    pub diagnostic: Vec<String>,
    /// Therapy modalities the planner may choose from.
    #[serde(default)]
    pub modality: Vec<String>,
    /// Safety modules; must include `crisis-guard`.
    #[serde(default = "default_safety")]
    pub safety: Vec<String>,
    /// Extra modules: module manifests (`.toml`) or plugin libraries (`.so`, `.dylib`,
    /// `.dll`), relative to the manifest that lists them.
    #[serde(default)]
    pub plugins: Vec<String>,
}

fn default_safety() -> Vec<String> {
    vec![CRISIS_GUARD.to_string()]
}

impl Default for ModulesSection {
    fn default() -> Self {
        ModulesSection {
            diagnostic: vec![],
            modality: vec![],
            safety: default_safety(),
            plugins: vec![],
        }
    }
}

/// How the planner chooses modalities.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ModalityPolicy {
    /// Rank active modalities by indication score and keep the top k.
    #[default]
    Auto,
    /// Use the modalities listed in `planner.fixed`, in that order.
    Fixed,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlannerSection {
    #[serde(default)]
    pub modality_policy: ModalityPolicy,
    /// How many modalities `auto` keeps.
    #[serde(default = "default_top_k")]
    pub top_k: usize,
    /// Modalities for `fixed`, by id.
    #[serde(default)]
    pub fixed: Vec<String>,
    /// Modalities scoring below this are not chosen by `auto` (unless none reaches it: then
    /// the fallback modality is used).
    #[serde(default = "default_min_score")]
    pub min_score: f32,
    /// Modality used when no cue points anywhere (a client who mainly needs to be heard).
    #[serde(default = "default_fallback")]
    pub fallback: String,
    /// How many diagnostic hypotheses the plan keeps.
    #[serde(default = "default_max_hypotheses")]
    pub max_hypotheses: usize,
}

fn default_top_k() -> usize {
    2
}
fn default_min_score() -> f32 {
    0.3
}
fn default_fallback() -> String {
    "humanistic".into()
}
fn default_max_hypotheses() -> usize {
    3
}

impl Default for PlannerSection {
    fn default() -> Self {
        PlannerSection {
            modality_policy: ModalityPolicy::Auto,
            top_k: default_top_k(),
            fixed: vec![],
            min_score: default_min_score(),
            fallback: default_fallback(),
            max_hypotheses: default_max_hypotheses(),
        }
    }
}

/// How reasoning reaches the model (the paper compares `icl` and `two-phase`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PromptingMode {
    /// No reasoning trace: the reply is generated straight from the system prompt.
    Direct,
    /// The plan's steps and one worked example are put in the prompt.
    Icl,
    /// First the reasoning following the plan's steps, then the reply conditioned on it.
    #[default]
    TwoPhase,
    /// A model trained on traces thinks on its own inside `<think>`.
    Native,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptingSection {
    #[serde(default)]
    pub mode: PromptingMode,
    /// Opening of the system prompt (the counselor persona).
    #[serde(default = "default_persona")]
    pub persona: String,
    /// Word budgets for the reply by emotional intensity (PsyLLM: ~50 light, ~150 heavy).
    #[serde(default = "default_light")]
    pub light_words: u32,
    #[serde(default = "default_moderate")]
    pub moderate_words: u32,
    #[serde(default = "default_heavy")]
    pub heavy_words: u32,
    /// Upper bound on the hidden reasoning, in words.
    #[serde(default = "default_reasoning_words")]
    pub reasoning_words: u32,
    /// The model's own words in a crisis reply (risk high or imminent), before the crisis
    /// protocol's text: a few sentences that stay with the person, not an essay to wait for.
    #[serde(default = "default_crisis_words")]
    pub crisis_words: u32,
}

fn default_persona() -> String {
    "You are a warm, professional psychological counselor. You listen closely, reflect what the client feels, \
     and think carefully before you reply."
        .into()
}
fn default_light() -> u32 {
    50
}
fn default_moderate() -> u32 {
    100
}
fn default_heavy() -> u32 {
    150
}
fn default_reasoning_words() -> u32 {
    400
}
fn default_crisis_words() -> u32 {
    40
}

impl Default for PromptingSection {
    fn default() -> Self {
        PromptingSection {
            mode: PromptingMode::default(),
            persona: default_persona(),
            light_words: default_light(),
            moderate_words: default_moderate(),
            heavy_words: default_heavy(),
            reasoning_words: default_reasoning_words(),
            crisis_words: default_crisis_words(),
        }
    }
}

/// The model a run decodes with. An empty path means the default model from the setup step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    #[serde(default)]
    pub path: String,
    /// A `tokenizer.json` or HF directory when the model file carries no tokenizer.
    #[serde(default)]
    pub tokenizer: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecodingSection {
    #[serde(default = "default_max_new")]
    pub max_new_tokens: u32,
    #[serde(default = "default_temperature")]
    pub temperature: f32,
    #[serde(default = "default_top_p")]
    pub top_p: f32,
    #[serde(default)]
    pub top_k: u32,
    #[serde(default)]
    pub min_p: f32,
    #[serde(default = "default_rep")]
    pub repetition_penalty: f32,
    #[serde(default = "default_seed")]
    pub seed: u64,
    #[serde(default)]
    pub greedy: bool,
}

fn default_max_new() -> u32 {
    256
}
fn default_temperature() -> f32 {
    0.7
}
fn default_top_p() -> f32 {
    0.9
}
fn default_rep() -> f32 {
    1.1
}
fn default_seed() -> u64 {
    42
}

impl Default for DecodingSection {
    fn default() -> Self {
        DecodingSection {
            max_new_tokens: default_max_new(),
            temperature: default_temperature(),
            top_p: default_top_p(),
            top_k: 0,
            min_p: 0.0,
            repetition_penalty: default_rep(),
            seed: default_seed(),
            greedy: false,
        }
    }
}

/// Crisis handling settings. The guard itself cannot be switched off.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SafetySection {
    /// Locale whose crisis resources are given (`US`, `UK`, `IE`, ...); unknown locales get
    /// the emergency-services fallback.
    #[serde(default = "default_locale")]
    pub locale: String,
    /// Extra or replacement crisis resources; entries for a locale replace the built-in ones.
    #[serde(default)]
    pub resources: Vec<CrisisResource>,
    /// Whether the model drafts crisis replies (risk high or imminent) at all; see
    /// [`CrisisDrafts`].
    #[serde(default)]
    pub crisis_drafts: CrisisDrafts,
    /// Present only so that `enabled = false` gets a clear refusal instead of "unknown key".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// Who writes the opening of a crisis reply. The crisis protocol's text is given either way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CrisisDrafts {
    /// At `high`, `checked` for models of at least [`CrisisDrafts::MIN_PARAMETERS`] parameters
    /// (and for remote models, whose size is unknown) and `protocol-only` for smaller ones: the
    /// draft checks test safety, not coherence, and small models write incoherent drafts that
    /// pass. At `imminent`, `protocol-only` for every model: emergency services now should not
    /// wait for a draft to be written and checked.
    #[default]
    Auto,
    /// The model drafts; the draft is kept only if it passes the crisis-draft checks.
    Checked,
    /// No draft: the reply is the protocol text alone, at once.
    ProtocolOnly,
}

impl CrisisDrafts {
    /// Below this size `auto` means `protocol-only`.
    pub const MIN_PARAMETERS: u64 = 1_000_000_000;

    /// Whether a model of `parameters` (unknown: `None`) drafts a crisis reply at `imminent`
    /// risk or only `high`.
    pub fn model_drafts(self, parameters: Option<u64>, imminent: bool) -> bool {
        match self {
            CrisisDrafts::Checked => true,
            CrisisDrafts::ProtocolOnly => false,
            CrisisDrafts::Auto => !imminent && parameters.is_none_or(|p| p >= Self::MIN_PARAMETERS),
        }
    }
}

fn default_locale() -> String {
    "US".into()
}

impl Default for SafetySection {
    fn default() -> Self {
        SafetySection {
            locale: default_locale(),
            resources: vec![],
            crisis_drafts: CrisisDrafts::default(),
            enabled: None,
        }
    }
}

/// How modules read meaning beyond their lexicons.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AssessmentSection {
    /// Sentence encoder directory (sentence-transformers layout), relative to the manifest.
    /// Empty: all-MiniLM-L6-v2 from the setup step. The crisis guard's trained screen checks
    /// that this is the encoder it was trained on and refuses to start otherwise.
    #[serde(default)]
    pub encoder: String,
}

/// Identity of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RunHeader {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
}

/// A run manifest after `extends` has been applied.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunManifest {
    pub schema: u32,
    #[serde(default, skip_serializing)]
    pub extends: Option<String>,
    #[serde(default)]
    pub run: RunHeader,
    #[serde(default)]
    pub modules: ModulesSection,
    #[serde(default)]
    pub planner: PlannerSection,
    #[serde(default)]
    pub prompting: PromptingSection,
    #[serde(default)]
    pub model: ModelSection,
    #[serde(default)]
    pub decoding: DecodingSection,
    #[serde(default)]
    pub safety: SafetySection,
    #[serde(default)]
    pub assessment: AssessmentSection,
    #[serde(default)]
    pub train: TrainSection,
    #[serde(default)]
    pub eval: EvalSection,
}

/// One file read while resolving a manifest, kept to point errors at lines.
#[derive(Clone, Debug)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
}

/// A run manifest with the files it came from (child last).
#[derive(Clone, Debug)]
pub struct ResolvedRun {
    pub manifest: RunManifest,
    pub files: Vec<SourceFile>,
}

impl ResolvedRun {
    /// The file the user named.
    pub fn origin(&self) -> String {
        self.files
            .last()
            .map(|f| f.path.display().to_string())
            .unwrap_or_else(|| "<manifest>".into())
    }

    /// `file:line:column` of the first quoted occurrence of `needle`, searching the child
    /// file first (it overrides its bases); the file name alone when it is not found.
    pub fn locate(&self, needle: &str) -> String {
        let quoted = [format!("\"{needle}\""), format!("'{needle}'")];
        for f in self.files.iter().rev() {
            for q in &quoted {
                if let Some(i) = f.text.find(q.as_str()) {
                    let (l, c) = line_col(&f.text, i);
                    return format!("{}:{l}:{c}", f.path.display());
                }
            }
        }
        self.origin()
    }
}

/// Keys holding paths, resolved against the directory of the file that sets them.
const PATH_KEYS: &[(&str, &str)] = &[
    ("model", "path"),
    ("model", "tokenizer"),
    ("train", "dataset"),
    ("train", "validation_file"),
    ("eval", "dataset"),
    ("assessment", "encoder"),
];

fn read(path: &Path) -> Result<String, ManifestError> {
    std::fs::read_to_string(path).map_err(|source| ManifestError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Reads a run manifest, following `extends`.
pub fn load_run(path: &Path) -> Result<ResolvedRun, ManifestError> {
    let mut files = Vec::new();
    let table = load_run_table(path, &mut Vec::new(), &mut files)?;
    let origin = path.display().to_string();
    let manifest = finish_run(table, &origin)?;
    let resolved = ResolvedRun { manifest, files };
    check_run(&resolved)?;
    Ok(resolved)
}

/// Parses a run manifest from text (no `extends`), as if read from `origin`.
pub fn parse_run(text: &str, origin: &Path) -> Result<ResolvedRun, ManifestError> {
    let name = origin.display().to_string();
    let _: RunManifest = parse_toml(text, &name)?;
    let mut table: toml::Table = parse_toml(text, &name)?;
    if table.contains_key("extends") {
        return Err(ManifestError::Invalid {
            origin: name,
            field: "extends".into(),
            message: "`extends` needs a manifest read from a file".into(),
        });
    }
    absolutize(&mut table, origin.parent().unwrap_or(Path::new(".")));
    let manifest = finish_run(table, &name)?;
    let resolved = ResolvedRun {
        manifest,
        files: vec![SourceFile {
            path: origin.to_path_buf(),
            text: text.to_string(),
        }],
    };
    check_run(&resolved)?;
    Ok(resolved)
}

fn load_run_table(
    path: &Path,
    stack: &mut Vec<PathBuf>,
    files: &mut Vec<SourceFile>,
) -> Result<toml::Table, ManifestError> {
    let canonical = path.canonicalize().map_err(|source| ManifestError::Io {
        path: path.display().to_string(),
        source,
    })?;
    if stack.contains(&canonical) {
        let mut chain: Vec<String> = stack.iter().map(|p| p.display().to_string()).collect();
        chain.push(canonical.display().to_string());
        return Err(ManifestError::Cycle { chain });
    }
    stack.push(canonical.clone());
    let text = read(path)?;
    let origin = path.display().to_string();
    // Strictness (unknown keys, wrong types) is checked per file, where spans are exact.
    let _: RunManifest = parse_toml(&text, &origin)?;
    let mut table: toml::Table = parse_toml(&text, &origin)?;
    let dir = canonical.parent().unwrap_or(Path::new(".")).to_path_buf();
    absolutize(&mut table, &dir);
    let merged = match table.remove("extends") {
        Some(toml::Value::String(base)) => {
            let base_path = dir.join(&base);
            if !base_path.exists() {
                let (line, column) = text
                    .find(&base)
                    .map(|i| line_col(&text, i))
                    .unwrap_or((1, 1));
                return Err(ManifestError::InvalidAt {
                    origin,
                    line,
                    column,
                    field: "extends".into(),
                    message: format!("base manifest {} does not exist", base_path.display()),
                });
            }
            let mut base_table = load_run_table(&base_path, stack, files)?;
            merge(&mut base_table, table);
            base_table
        }
        Some(_) => unreachable!("checked by the typed parse: extends is a string"),
        None => table,
    };
    files.push(SourceFile {
        path: path.to_path_buf(),
        text,
    });
    stack.pop();
    Ok(merged)
}

/// Rewrites relative paths of a file to absolute ones before merging.
fn absolutize(table: &mut toml::Table, dir: &Path) {
    for (section, key) in PATH_KEYS {
        if let Some(toml::Value::Table(t)) = table.get_mut(*section) {
            if let Some(toml::Value::String(p)) = t.get_mut(*key) {
                if !p.is_empty() && !p.starts_with('$') && Path::new(p.as_str()).is_relative() {
                    *p = normalize(&dir.join(&*p)).display().to_string();
                }
            }
        }
    }
    if let Some(toml::Value::Table(e)) = table.get_mut("eval") {
        // Rubric files (shipped rubrics are named by id, without `.toml`).
        if let Some(toml::Value::Array(list)) = e.get_mut("rubrics") {
            for v in list {
                if let toml::Value::String(p) = v {
                    if p.ends_with(".toml") && Path::new(p.as_str()).is_relative() {
                        *p = normalize(&dir.join(&*p)).display().to_string();
                    }
                }
            }
        }
        // A local judge model is a path; an endpoint's model is a name.
        if let Some(toml::Value::Table(j)) = e.get_mut("judge") {
            let local = j.get("kind").and_then(|k| k.as_str()) == Some("psy");
            if let (true, Some(toml::Value::String(p))) = (local, j.get_mut("model")) {
                if !p.is_empty() && Path::new(p.as_str()).is_relative() {
                    *p = normalize(&dir.join(&*p)).display().to_string();
                }
            }
        }
    }
    if let Some(toml::Value::Table(m)) = table.get_mut("modules") {
        if let Some(toml::Value::Array(list)) = m.get_mut("plugins") {
            for v in list {
                if let toml::Value::String(p) = v {
                    if Path::new(p.as_str()).is_relative() {
                        *p = normalize(&dir.join(&*p)).display().to_string();
                    }
                }
            }
        }
    }
}

/// Removes `.` and `..` components lexically, so that paths print as a user expects.
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Deep merge: tables merge key by key, everything else (arrays included) is replaced.
pub fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

fn finish_run(table: toml::Table, origin: &str) -> Result<RunManifest, ManifestError> {
    let mut manifest: RunManifest =
        toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ManifestError::Invalid {
                origin: origin.to_string(),
                field: "(merged manifest)".into(),
                message: e.message().trim().to_string(),
            })?;
    if manifest.run.name.is_empty() {
        manifest.run.name = Path::new(origin)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
    }
    Ok(manifest)
}

/// Checks that need the whole resolved run: schema, crisis guard, planner settings.
fn check_run(run: &ResolvedRun) -> Result<(), ManifestError> {
    let m = &run.manifest;
    let origin = run.origin();
    if m.schema != SCHEMA {
        return Err(ManifestError::InvalidAt {
            origin: origin.clone(),
            line: 1,
            column: 1,
            field: "schema".into(),
            message: format!(
                "unsupported schema {}, this psy reads schema = {SCHEMA}",
                m.schema
            ),
        });
    }
    if m.safety.enabled == Some(false) {
        return Err(ManifestError::CrisisGuardRemoved {
            location: run.locate_key("enabled"),
            reason: "`safety.enabled = false`".into(),
        });
    }
    if !m.modules.safety.iter().any(|s| s == CRISIS_GUARD) {
        return Err(ManifestError::CrisisGuardRemoved {
            location: run.locate_key("safety"),
            reason: format!("`modules.safety` does not list `{CRISIS_GUARD}`"),
        });
    }
    let mut seen = BTreeSet::new();
    for id in m
        .modules
        .diagnostic
        .iter()
        .chain(&m.modules.modality)
        .chain(&m.modules.safety)
    {
        if !seen.insert(id) {
            return Err(ManifestError::Invalid {
                origin,
                field: "modules".into(),
                message: format!("module `{id}` is listed twice"),
            });
        }
    }
    if m.planner.top_k == 0 {
        return Err(ManifestError::Invalid {
            origin,
            field: "planner.top_k".into(),
            message: "must be at least 1".into(),
        });
    }
    if !(0.0..=1.0).contains(&m.planner.min_score) {
        return Err(ManifestError::Invalid {
            origin,
            field: "planner.min_score".into(),
            message: "must be between 0 and 1".into(),
        });
    }
    if m.planner.modality_policy == ModalityPolicy::Fixed && m.planner.fixed.is_empty() {
        return Err(ManifestError::Invalid {
            origin,
            field: "planner.fixed".into(),
            message: "policy `fixed` needs at least one modality id in `planner.fixed`".into(),
        });
    }
    let d = &m.decoding;
    let valid = d.temperature >= 0.0
        && d.temperature.is_finite()
        && (0.0..=1.0).contains(&d.top_p)
        && (0.0..=1.0).contains(&d.min_p);
    if !valid {
        return Err(ManifestError::Invalid {
            origin,
            field: "decoding".into(),
            message: "temperature must be >= 0, top_p and min_p between 0 and 1".into(),
        });
    }
    Ok(())
}

impl ResolvedRun {
    /// `file:line:column` of a key (`key =` at the start of a line), child file first.
    pub fn locate_key(&self, key: &str) -> String {
        for f in self.files.iter().rev() {
            let mut offset = 0;
            for line in f.text.split_inclusive('\n') {
                let t = line.trim_start();
                if t.starts_with(key) && t[key.len()..].trim_start().starts_with('=') {
                    let (l, c) = line_col(&f.text, offset + (line.len() - t.len()));
                    return format!("{}:{l}:{c}", f.path.display());
                }
                offset += line.len();
            }
        }
        self.origin()
    }
}

/// An ablation: a base run and named variants that override its keys.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AblationManifest {
    pub schema: u32,
    pub ablation: AblationHeader,
    pub variants: Vec<Variant>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AblationHeader {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The base run manifest, relative to this file.
    pub base: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Keys of the base run to override, as a TOML table (`[variants.set.modules]`).
    #[serde(default)]
    pub set: toml::Table,
    /// `[variants.train]`: train a LoRA adapter first and decode with it.
    #[serde(default)]
    pub train: Option<VariantTrain>,
}

/// An ablation with every variant resolved to a full run.
#[derive(Clone, Debug)]
pub struct ResolvedAblation {
    pub manifest: AblationManifest,
    pub base: ResolvedRun,
    pub variants: Vec<(String, ResolvedRun)>,
}

/// Reads an ablation manifest and resolves each variant against its base.
pub fn load_ablation(path: &Path) -> Result<ResolvedAblation, ManifestError> {
    let text = read(path)?;
    let origin = path.display().to_string();
    let manifest: AblationManifest = parse_toml(&text, &origin)?;
    check_train_keys(&text, &origin)?;
    if manifest.schema != SCHEMA {
        return Err(ManifestError::Invalid {
            origin,
            field: "schema".into(),
            message: format!("unsupported schema {}", manifest.schema),
        });
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let base_path = dir.join(&manifest.ablation.base);
    let base = load_run(&base_path)?;
    let mut names = BTreeSet::new();
    let mut variants = Vec::new();
    for v in &manifest.variants {
        if !names.insert(v.name.clone()) {
            return Err(ManifestError::Invalid {
                origin,
                field: "variants.name".into(),
                message: format!("duplicate variant `{}`", v.name),
            });
        }
        let wrap = |e: ManifestError| ManifestError::Variant {
            origin: origin.clone(),
            variant: v.name.clone(),
            source: Box::new(e),
        };
        let mut resolved = apply_overrides(
            &base,
            v.set.clone(),
            &SourceFile {
                path: path.to_path_buf(),
                text: text.clone(),
            },
        )
        .map_err(wrap)?;
        resolved.manifest.run.name = format!("{}/{}", base.manifest.run.name, v.name);
        variants.push((v.name.clone(), resolved));
    }
    Ok(ResolvedAblation {
        manifest,
        base,
        variants,
    })
}

/// `base` with the keys of `over` (a partial run manifest, e.g. `{modules = {...}}`) set on
/// it, as an ablation variant or a synth manifest writes them in `file`: the override is
/// checked as a run manifest, its paths resolve against `file`'s directory, and the result is
/// checked like any run (the crisis guard cannot be removed).
pub fn apply_overrides(
    base: &ResolvedRun,
    mut over: toml::Table,
    file: &SourceFile,
) -> Result<ResolvedRun, ManifestError> {
    let origin = file.path.display().to_string();
    over.insert("schema".into(), toml::Value::Integer(SCHEMA as i64));
    let _: RunManifest =
        toml::Value::Table(over.clone())
            .try_into()
            .map_err(|e: toml::de::Error| ManifestError::Invalid {
                origin: origin.clone(),
                field: "set".into(),
                message: e.message().trim().to_string(),
            })?;
    absolutize(&mut over, file.path.parent().unwrap_or(Path::new(".")));
    let mut table: toml::Table =
        toml::Table::try_from(&base.manifest).map_err(|e| ManifestError::Plugin(e.to_string()))?;
    merge(&mut table, over);
    let run = finish_run(table, &origin)?;
    let mut files = base.files.clone();
    files.push(file.clone());
    let resolved = ResolvedRun {
        manifest: run,
        files,
    };
    check_run(&resolved)?;
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::CrisisDrafts;

    #[test]
    fn auto_crisis_drafts_follow_the_models_size_and_the_level() {
        let auto = CrisisDrafts::Auto;
        assert!(!auto.model_drafts(Some(134_515_008), false));
        assert!(!auto.model_drafts(Some(999_999_999), false));
        assert!(auto.model_drafts(Some(1_000_000_000), false));
        // A remote model of unknown size drafts, and its draft is checked.
        assert!(auto.model_drafts(None, false));
        // At imminent nobody drafts under `auto`: the emergency text goes out at once.
        assert!(!auto.model_drafts(Some(70_000_000_000), true));
        assert!(!auto.model_drafts(None, true));
        assert!(CrisisDrafts::Checked.model_drafts(Some(1), true));
        assert!(!CrisisDrafts::ProtocolOnly.model_drafts(Some(70_000_000_000), false));
    }
}
