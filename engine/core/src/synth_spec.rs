//! Synth manifests (`psy synth M`) as plain data: where the posts come from, which run (modules,
//! planner, safety) fills the prompts, which teacher answers each stage, and the stage prompt
//! templates. Strict like every psy manifest: `schema = 1`, unknown keys are errors with their
//! line and column, and a template naming a placeholder its stage does not fill is an error
//! naming the stage.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::manifest::{self, ResolvedRun, SourceFile, SCHEMA};
use crate::manifest_error::{line_col, parse_toml, ManifestError};

/// A synth manifest as written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SynthManifest {
    pub schema: u32,
    pub synth: SynthHeader,
    pub input: InputSection,
    /// Overrides of the run's `[modules]` (an ablation: `diagnostic = []` synthesises without
    /// diagnostic guidance; the crisis guard cannot be removed).
    #[serde(default)]
    pub modules: Option<toml::Table>,
    /// Overrides of the run's `[planner]`.
    #[serde(default)]
    pub planner: Option<toml::Table>,
    /// The teacher of every stage that does not name its own.
    pub teacher: TeacherSection,
    #[serde(default)]
    pub stages: StagesSection,
}

/// `[synth]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SynthHeader {
    pub name: String,
    pub description: String,
    /// The run manifest whose modules, planner and safety settings fill the prompts, relative
    /// to this file. Empty: `manifests/psyllm.toml` next to the `synth/` directory.
    pub run: String,
    /// Seed of every teacher call (each call adds its post's and stage's offset).
    pub seed: u64,
    /// Use at most this many posts, in file order (0: all).
    pub max_posts: usize,
    /// Rounds per conversation (PsyLLM: 1 to 3).
    pub min_rounds: usize,
    pub max_rounds: usize,
    /// `auto` (the planner ranks modalities per turn), `fixed` (the run's `planner.fixed`) or
    /// `balanced` (each post gets the active modality used least so far, ties by the
    /// planner's score, so modalities spread evenly over the data set).
    pub modality: SynthModalityPolicy,
    /// Teacher calls in flight at once (posts worked on in parallel).
    pub concurrency: usize,
    /// Stop starting new calls once the teachers have used this many tokens (prompts plus
    /// answers, estimated at 4 characters a token; 0: no budget).
    pub token_budget: u64,
}

impl Default for SynthHeader {
    fn default() -> Self {
        SynthHeader {
            name: String::new(),
            description: String::new(),
            run: String::new(),
            seed: 0,
            max_posts: 0,
            min_rounds: 1,
            max_rounds: 3,
            modality: SynthModalityPolicy::Auto,
            concurrency: 4,
            token_budget: 0,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SynthModalityPolicy {
    #[default]
    Auto,
    Fixed,
    Balanced,
}

/// `[input]`: the posts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InputSection {
    /// JSONL or CSV file, relative to the manifest.
    pub path: String,
    /// `auto` (by extension: `.csv` is CSV, anything else JSONL), `jsonl` or `csv`.
    pub format: PostFormat,
    /// Column (CSV) or key (JSONL) of the post id; Dreaddit: `post_id`.
    pub id_column: String,
    /// Column or key of the post text; Dreaddit: `text`.
    pub text_column: String,
    /// Other JSONL keys a post may carry (kept as metadata). A key that is none of these is
    /// an unknown column: the line is reported and skipped. CSV headers name their columns.
    pub extra_columns: Vec<String>,
}

impl Default for InputSection {
    fn default() -> Self {
        InputSection {
            path: String::new(),
            format: PostFormat::Auto,
            id_column: "id".into(),
            text_column: "text".into(),
            extra_columns: Vec::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PostFormat {
    #[default]
    Auto,
    Jsonl,
    Csv,
}

/// Who answers a stage: an OpenAI-compatible endpoint or a local psy model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TeacherKind {
    #[default]
    Psy,
    Openai,
}

/// `[teacher]` (and `[stages.<stage>.teacher]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TeacherSection {
    pub kind: TeacherKind,
    /// `openai`: the API root including `/v1`.
    pub base_url: String,
    /// `openai`: the model name; `psy`: a model file or directory relative to the manifest
    /// (empty: the default model from `scripts/setup.sh`).
    pub model: String,
    /// Name of the environment variable holding the API key (never the key itself).
    pub api_key_env: String,
    pub temperature: f32,
    pub timeout_secs: u64,
    /// Requests per call for 408/429/5xx/timeouts (the first included).
    pub max_attempts: u32,
    /// Re-asks after an answer that does not parse or validate.
    pub repair_attempts: u32,
}

impl Default for TeacherSection {
    fn default() -> Self {
        TeacherSection {
            kind: TeacherKind::Psy,
            base_url: String::new(),
            model: String::new(),
            api_key_env: String::new(),
            temperature: 0.7,
            timeout_secs: 120,
            max_attempts: 5,
            repair_attempts: 2,
        }
    }
}

/// The four stages, in pipeline order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StageId {
    /// 1: plan the rounds and their focus from the post.
    Plan,
    /// 2: the client's turns from the focuses.
    Client,
    /// 3: the counselor's reasoning and reply, round by round.
    Counselor,
    /// 4: the filter verdict.
    Filter,
}

impl StageId {
    pub const ALL: [StageId; 4] = [
        StageId::Plan,
        StageId::Client,
        StageId::Counselor,
        StageId::Filter,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StageId::Plan => "plan",
            StageId::Client => "client",
            StageId::Counselor => "counselor",
            StageId::Filter => "filter",
        }
    }

    /// 1-based position in the pipeline.
    pub fn number(self) -> usize {
        self as usize + 1
    }

    /// The placeholders a template of this stage may use (each `{name}`).
    pub fn placeholders(self) -> &'static [&'static str] {
        match self {
            StageId::Plan => &[
                "post",
                "min_rounds",
                "max_rounds",
                "scenes",
                "risk",
                "hypotheses",
            ],
            StageId::Client => &["post", "rounds", "focuses", "risk"],
            StageId::Counselor => &[
                "system",
                "reasoning_outline",
                "modality",
                "target_words",
                "reasoning_words",
                "focus",
            ],
            StageId::Filter => &["dialogue", "modalities", "criteria"],
        }
    }

    /// The template used when the manifest gives none.
    pub fn default_template(self) -> &'static str {
        match self {
            StageId::Plan => DEFAULT_PLAN,
            StageId::Client => DEFAULT_CLIENT,
            StageId::Counselor => DEFAULT_COUNSELOR,
            StageId::Filter => DEFAULT_FILTER,
        }
    }
}

const DEFAULT_PLAN: &str = "Below is a post someone wrote on a mental-health forum. Plan a \
counseling conversation of {min_rounds} to {max_rounds} rounds in which this person talks to a \
counselor. For each round give its focus: what the person brings up in that round, one short \
sentence. Also name the scene of the problem (one of: {scenes}).\n\
A screening of the post found: risk {risk}; conditions to keep in mind: {hypotheses}.\n\n\
Post:\n{post}\n\nAnswer with JSON only.";

const DEFAULT_CLIENT: &str = "Below is a post someone wrote on a mental-health forum, and the \
plan of a {rounds}-round counseling conversation. Write what this person says to the counselor \
in each round, in the first person, in their own voice, one message per round, each following \
its focus and building on the previous one.\n\nFocuses:\n{focuses}\n\nPost:\n{post}\n\n\
Answer with JSON only.";

const DEFAULT_COUNSELOR: &str = "{system}\n\n\
Before replying, reason privately, step by step, following this outline:\n{reasoning_outline}\n\
Ground the reasoning in the diagnostic guidelines and the modality above ({modality}); keep it \
under {reasoning_words} words. Then write the reply to the client: plain, warm language, about \
{target_words} words, no diagnostic labels. This round's focus: {focus}.\n\
Answer with JSON only: `think` holds the private reasoning, `reply` what the client reads.";

const DEFAULT_FILTER: &str = "You check synthetic counseling conversations for a training set. \
Each counselor turn has a private reasoning (THINK) and a reply (REPLY). Keep the sample only if \
none of these problems occurs:\n{criteria}\nThe modality the counselor was asked to use: \
{modalities}.\n\nConversation:\n{dialogue}\n\n\
Answer with JSON only: `keep`, the `issues` found (by name), and a one-sentence `reason`.";

/// The filter criteria a judge checks (stage 4), by name and question.
pub const FILTER_CRITERIA: [(&str, &str); 4] = [
    (
        "incomplete_reasoning",
        "a reasoning is missing, cut off, or skips the client's feelings, the risk or the plan",
    ),
    (
        "incoherent_dialogue",
        "the turns do not follow from each other or contradict the post",
    ),
    (
        "reasoning_reply_mismatch",
        "a reply does not do what its reasoning planned",
    ),
    (
        "ungrounded_reasoning",
        "a reasoning names no therapeutic modality, or no diagnostic consideration (DSM-5/ICD-11)",
    ),
];

/// Scene categories of the data set (the paper's Figure 3).
pub const SCENES: [&str; 7] = [
    "work",
    "relationships",
    "family",
    "study",
    "health",
    "finances",
    "other",
];

/// `[stages]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StagesSection {
    pub plan: StageSpec,
    pub client: StageSpec,
    pub counselor: StageSpec,
    pub filter: StageSpec,
}

impl StagesSection {
    pub fn get(&self, stage: StageId) -> &StageSpec {
        match stage {
            StageId::Plan => &self.plan,
            StageId::Client => &self.client,
            StageId::Counselor => &self.counselor,
            StageId::Filter => &self.filter,
        }
    }
}

/// `[stages.<stage>]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StageSpec {
    /// The prompt template (`{placeholder}`s filled from the post and the planner); empty: the
    /// built-in template of the stage.
    pub template: String,
    /// Upper bound on the teacher's tokens for one answer.
    pub max_tokens: usize,
    /// This stage's teacher, if not `[teacher]`.
    pub teacher: Option<TeacherSection>,
}

impl Default for StageSpec {
    fn default() -> Self {
        StageSpec {
            template: String::new(),
            max_tokens: 512,
            teacher: None,
        }
    }
}

impl StageSpec {
    /// The template in force.
    pub fn template_or_default(&self, stage: StageId) -> &str {
        if self.template.trim().is_empty() {
            stage.default_template()
        } else {
            &self.template
        }
    }
}

/// A synth manifest with its run resolved (modules and planner overrides applied) and its
/// paths made absolute.
#[derive(Clone, Debug)]
pub struct ResolvedSynth {
    pub manifest: SynthManifest,
    pub path: PathBuf,
    /// The posts file.
    pub input: PathBuf,
    pub run: ResolvedRun,
}

impl ResolvedSynth {
    /// The teacher of `stage`.
    pub fn teacher(&self, stage: StageId) -> &TeacherSection {
        self.manifest
            .stages
            .get(stage)
            .teacher
            .as_ref()
            .unwrap_or(&self.manifest.teacher)
    }
}

/// Reads and checks a synth manifest and the run it names.
pub fn load_synth(path: &Path) -> Result<ResolvedSynth, ManifestError> {
    let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Io {
        path: path.display().to_string(),
        source,
    })?;
    parse_synth(&text, path)
}

/// Parses a synth manifest read from `path` (relative paths resolve against its directory).
pub fn parse_synth(text: &str, path: &Path) -> Result<ResolvedSynth, ManifestError> {
    let origin = path.display().to_string();
    let mut m: SynthManifest = parse_toml(text, &origin)?;
    let at = |key: &str, message: String| {
        let (line, column) = locate_key(text, key);
        ManifestError::InvalidAt {
            origin: origin.clone(),
            line,
            column,
            field: key.to_string(),
            message,
        }
    };
    if m.schema != SCHEMA {
        return Err(at(
            "schema",
            format!(
                "unsupported schema {}, this psy reads schema = {SCHEMA}",
                m.schema
            ),
        ));
    }
    let s = &m.synth;
    if s.min_rounds == 0 || s.min_rounds > s.max_rounds || s.max_rounds > 8 {
        return Err(at(
            "max_rounds",
            format!(
                "rounds must satisfy 1 <= min_rounds <= max_rounds <= 8 (got {} and {})",
                s.min_rounds, s.max_rounds
            ),
        ));
    }
    if s.concurrency == 0 {
        return Err(at("concurrency", "must be at least 1".into()));
    }
    if m.input.path.trim().is_empty() {
        return Err(at("path", "[input] needs `path`: the posts file".into()));
    }
    if m.input.id_column.trim().is_empty() || m.input.text_column.trim().is_empty() {
        return Err(at(
            "text_column",
            "`id_column` and `text_column` cannot be empty".into(),
        ));
    }
    for stage in StageId::ALL {
        let spec = m.stages.get(stage);
        check_template(stage, spec.template_or_default(stage)).map_err(|message| {
            at(
                "template",
                format!("[stages.{}]: {message}", stage.as_str()),
            )
        })?;
        if spec.max_tokens == 0 {
            return Err(at(
                "max_tokens",
                format!("[stages.{}]: max_tokens must be positive", stage.as_str()),
            ));
        }
        let teacher = spec.teacher.as_ref().unwrap_or(&m.teacher);
        check_teacher(teacher).map_err(|message| at("kind", message))?;
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    for t in std::iter::once(&mut m.teacher).chain(
        [
            &mut m.stages.plan,
            &mut m.stages.client,
            &mut m.stages.counselor,
            &mut m.stages.filter,
        ]
        .into_iter()
        .filter_map(|s| s.teacher.as_mut()),
    ) {
        if t.kind == TeacherKind::Psy && !t.model.trim().is_empty() {
            let p = Path::new(t.model.trim());
            if p.is_relative() {
                t.model = dir.join(p).display().to_string();
            }
        }
    }
    let run_path = if m.synth.run.trim().is_empty() {
        dir.join("../psyllm.toml")
    } else {
        dir.join(m.synth.run.trim())
    };
    let base = manifest::load_run(&run_path)?;
    let mut over = toml::Table::new();
    if let Some(t) = &m.modules {
        over.insert("modules".into(), toml::Value::Table(t.clone()));
    }
    if let Some(t) = &m.planner {
        over.insert("planner".into(), toml::Value::Table(t.clone()));
    }
    let run = if over.is_empty() {
        base
    } else {
        manifest::apply_overrides(
            &base,
            over,
            &SourceFile {
                path: path.to_path_buf(),
                text: text.to_string(),
            },
        )?
    };
    if m.synth.modality == SynthModalityPolicy::Fixed && run.manifest.planner.fixed.is_empty() {
        return Err(at(
            "modality",
            "`fixed` takes the run's `planner.fixed` list, which is empty".into(),
        ));
    }
    let input = dir.join(m.input.path.trim());
    Ok(ResolvedSynth {
        manifest: m,
        path: path.to_path_buf(),
        input,
        run,
    })
}

fn check_teacher(t: &TeacherSection) -> Result<(), String> {
    if t.kind == TeacherKind::Openai && (t.base_url.trim().is_empty() || t.model.trim().is_empty())
    {
        return Err("an `openai` teacher needs `base_url` and `model`".into());
    }
    if t.max_attempts == 0 || t.timeout_secs == 0 {
        return Err("a teacher needs max_attempts >= 1 and timeout_secs >= 1".into());
    }
    if !(0.0..=2.0).contains(&t.temperature) {
        return Err(format!("temperature {} is outside 0..=2", t.temperature));
    }
    Ok(())
}

/// Every `{name}` of `template` must be a placeholder of `stage` (`{{` and `}}` are literal
/// braces).
pub fn check_template(stage: StageId, template: &str) -> Result<(), String> {
    for name in placeholders_in(template)? {
        if !stage.placeholders().contains(&name.as_str()) {
            return Err(format!(
                "unknown placeholder `{{{name}}}`; this stage fills {}",
                stage
                    .placeholders()
                    .iter()
                    .map(|p| format!("{{{p}}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    Ok(())
}

/// The `{name}`s of a template, in order.
fn placeholders_in(template: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        let c = rest.as_bytes()[i];
        let after = &rest[i + 1..];
        if after.starts_with(c as char) {
            rest = &after[1..];
            continue;
        }
        if c == b'}' {
            return Err("a lone `}` (write `}}` for a literal brace)".into());
        }
        let end = after
            .find('}')
            .ok_or("a `{` is never closed (write `{{` for a literal brace)")?;
        let name = &after[..end];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            return Err(format!("`{{{name}}}` is not a placeholder name"));
        }
        out.push(name.to_string());
        rest = &after[end + 1..];
    }
    Ok(out)
}

/// Fills a checked template: each `{name}` by `value(name)`, `{{`/`}}` by braces.
pub fn render_template(template: &str, value: &dyn Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let c = rest.as_bytes()[i] as char;
        let after = &rest[i + 1..];
        if after.starts_with(c) {
            out.push(c);
            rest = &after[1..];
        } else if let (Some(end), '{') = (after.find('}'), c) {
            out.push_str(&value(&after[..end]));
            rest = &after[end + 1..];
        } else {
            out.push(c);
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Line and column of `key =` at a line start, else of the first mention, else 1:1.
fn locate_key(text: &str, key: &str) -> (usize, usize) {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let t = line.trim_start();
        if t.starts_with(key) && t[key.len()..].trim_start().starts_with('=') {
            return line_col(text, offset + line.len() - t.len());
        }
        offset += line.len();
    }
    text.find(key).map(|i| line_col(text, i)).unwrap_or((1, 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_placeholders_and_keep_escaped_braces() {
        let t = "Post: {post} as JSON {{\"a\": 1}}";
        check_template(StageId::Plan, t).unwrap();
        let out = render_template(t, &|n| format!("<{n}>"));
        assert_eq!(out, "Post: <post> as JSON {\"a\": 1}");
    }

    #[test]
    fn an_unknown_placeholder_names_the_ones_the_stage_fills() {
        let e = check_template(StageId::Client, "{post} {system}").unwrap_err();
        assert!(e.contains("`{system}`") && e.contains("{focuses}"), "{e}");
        assert!(check_template(StageId::Plan, "{post").is_err());
        assert!(check_template(StageId::Plan, "a } b").is_err());
    }

    #[test]
    fn every_default_template_checks() {
        for s in StageId::ALL {
            check_template(s, s.default_template()).unwrap();
        }
    }
}
