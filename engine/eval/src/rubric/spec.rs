//! A rubric as a judge sees it, and its TOML manifest (`manifests/rubrics/*.toml`).
//!
//! The file is strict like every psy manifest: unknown keys, a wrong `schema`, a scale whose
//! minimum is not below its maximum, a score level left undescribed or out of range, and a
//! repeated dimension id are errors naming the file, line and column.

use std::collections::BTreeMap;
use std::path::Path;

use psy_core::manifest_error::{line_col, parse_toml, ManifestError};
use serde::{Deserialize, Serialize};
use serde_spanned::Spanned;
use sha2::{Digest, Sha256};

/// Rubric schema version this psy reads.
pub const RUBRIC_SCHEMA: u32 = 1;

/// The most score levels a dimension may have: every level is described to the judge, and a
/// longer scale makes the prompt long without making the judge finer.
pub const MAX_LEVELS: i64 = 21;

/// A rubric: judge instructions and the dimensions a reply is scored on, in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rubric {
    pub id: String,
    /// The author's version label; [`Rubric::content_hash`] identifies the exact content.
    pub version: String,
    pub title: String,
    pub description: String,
    /// What the judge is asked to do, before the dimensions are listed.
    pub instructions: String,
    pub dimensions: Vec<Dimension>,
}

/// One scored dimension with an integer scale `min..=max` and a text for every level.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dimension {
    /// The key of this dimension in the verdict JSON.
    pub id: String,
    pub name: String,
    /// What the judge asks of the reply on this dimension.
    pub question: String,
    pub min: i64,
    pub max: i64,
    /// `levels[k]` describes score `min + k`.
    pub levels: Vec<String>,
    /// Id of the rubric this dimension was declared in (kept when rubrics are merged).
    pub source: String,
}

impl Dimension {
    /// The description of one score, if it is on the scale.
    pub fn level(&self, score: i64) -> Option<&str> {
        if score < self.min || score > self.max {
            return None;
        }
        self.levels
            .get((score - self.min) as usize)
            .map(String::as_str)
    }
}

impl Rubric {
    /// Reads and validates a rubric manifest.
    pub fn load(path: &Path) -> Result<Rubric, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Rubric::parse(&text, &path.display().to_string())
    }

    /// Loads `<dir>/<id>.toml` and checks that the file declares that id.
    pub fn load_named(dir: &Path, id: &str) -> Result<Rubric, ManifestError> {
        let path = dir.join(format!("{id}.toml"));
        let rubric = Rubric::load(&path)?;
        if rubric.id != id {
            return Err(ManifestError::Invalid {
                origin: path.display().to_string(),
                field: "rubric.id".into(),
                message: format!(
                    "the file declares rubric `{}`, expected `{id}` (the file name)",
                    rubric.id
                ),
            });
        }
        Ok(rubric)
    }

    /// Parses and validates rubric TOML; `origin` names the text in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Rubric, ManifestError> {
        let file: RubricFile = parse_toml(text, origin)?;
        let at = |span: std::ops::Range<usize>, field: String, message: String| {
            let (line, column) = line_col(text, span.start);
            ManifestError::InvalidAt {
                origin: origin.to_string(),
                line,
                column,
                field,
                message,
            }
        };
        if *file.schema.get_ref() != RUBRIC_SCHEMA {
            return Err(at(
                file.schema.span(),
                "schema".into(),
                format!(
                    "rubric schema {} is not supported (this psy reads schema = {RUBRIC_SCHEMA})",
                    file.schema.get_ref()
                ),
            ));
        }
        let header = file.rubric;
        check_id(header.id.get_ref()).map_err(|m| at(header.id.span(), "rubric.id".into(), m))?;
        let rubric_id = header.id.into_inner();
        if header.instructions.get_ref().trim().is_empty() {
            return Err(at(
                header.instructions.span(),
                "rubric.instructions".into(),
                "the judge instructions are empty".into(),
            ));
        }
        if file.dimensions.get_ref().is_empty() {
            return Err(at(
                file.dimensions.span(),
                "dimensions".into(),
                "a rubric needs at least one [[dimensions]] entry".into(),
            ));
        }
        let mut dimensions: Vec<Dimension> = Vec::new();
        for entry in file.dimensions.into_inner() {
            let id = entry.id.get_ref().clone();
            let field = |name: &str| format!("dimensions.{id}.{name}");
            check_id(entry.id.get_ref())
                .map_err(|m| at(entry.id.span(), "dimensions.id".into(), m))?;
            if dimensions.iter().any(|d| d.id == id) {
                return Err(at(
                    entry.id.span(),
                    "dimensions.id".into(),
                    format!("dimension `{id}` is declared twice"),
                ));
            }
            for (text, name) in [(&entry.name, "name"), (&entry.question, "question")] {
                if text.get_ref().trim().is_empty() {
                    return Err(at(text.span(), field(name), format!("the {name} is empty")));
                }
            }
            let [min, max] = *entry.scale.get_ref();
            if min >= max {
                return Err(at(
                    entry.scale.span(),
                    field("scale"),
                    format!("the scale [{min}, {max}] needs its minimum below its maximum"),
                ));
            }
            if max - min + 1 > MAX_LEVELS {
                return Err(at(
                    entry.scale.span(),
                    field("scale"),
                    format!("the scale [{min}, {max}] has more than {MAX_LEVELS} levels"),
                ));
            }
            let mut by_score: BTreeMap<i64, String> = BTreeMap::new();
            for (key, value) in entry.levels.get_ref() {
                let score: i64 = key.trim().parse().map_err(|_| {
                    at(
                        value.span(),
                        field("levels"),
                        format!("level key `{key}` is not an integer score"),
                    )
                })?;
                if score < min || score > max {
                    return Err(at(
                        value.span(),
                        field("levels"),
                        format!("level {score} is outside the scale [{min}, {max}]"),
                    ));
                }
                if value.get_ref().trim().is_empty() {
                    return Err(at(
                        value.span(),
                        field("levels"),
                        format!("level {score} has an empty description"),
                    ));
                }
                if by_score
                    .insert(score, value.get_ref().trim().to_string())
                    .is_some()
                {
                    return Err(at(
                        value.span(),
                        field("levels"),
                        format!("level {score} is described twice"),
                    ));
                }
            }
            if let Some(missing) = (min..=max).find(|s| !by_score.contains_key(s)) {
                return Err(at(
                    entry.levels.span(),
                    field("levels"),
                    format!(
                        "level {missing} is not described (every score from {min} to {max} needs a text)"
                    ),
                ));
            }
            dimensions.push(Dimension {
                id,
                name: entry.name.into_inner().trim().to_string(),
                question: entry.question.get_ref().trim().to_string(),
                min,
                max,
                levels: by_score.into_values().collect(),
                source: rubric_id.clone(),
            });
        }
        Ok(Rubric {
            id: rubric_id,
            version: header.version,
            title: header.title,
            description: header.description.trim().to_string(),
            instructions: header.instructions.into_inner().trim().to_string(),
            dimensions,
        })
    }

    /// The dimension with this id.
    pub fn dimension(&self, id: &str) -> Option<&Dimension> {
        self.dimensions.iter().find(|d| d.id == id)
    }

    /// Hex SHA-256 of the canonical rubric (its JSON serialisation: fixed field order, the
    /// validated content only, no comments or layout), for provenance and cache keys.
    pub fn content_hash(&self) -> String {
        let canonical = serde_json::to_vec(self).expect("a rubric always serialises");
        let digest = Sha256::digest(&canonical);
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Ids become JSON keys and report columns: lower-case letters, digits, `-` and `_`.
pub(crate) fn check_id(id: &str) -> Result<(), String> {
    let ok = id
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "id `{id}` must start with a lower-case letter or digit and use only a-z, 0-9, `-` and `_`"
        ))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RubricFile {
    schema: Spanned<u32>,
    rubric: RubricHeader,
    #[serde(default = "no_dimensions")]
    dimensions: Spanned<Vec<DimensionEntry>>,
}

fn no_dimensions() -> Spanned<Vec<DimensionEntry>> {
    Spanned::new(0..0, Vec::new())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RubricHeader {
    id: Spanned<String>,
    version: String,
    title: String,
    #[serde(default)]
    description: String,
    instructions: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DimensionEntry {
    id: Spanned<String>,
    name: Spanned<String>,
    /// `[min, max]`, inclusive.
    scale: Spanned<[i64; 2]>,
    question: Spanned<String>,
    /// Score (as a TOML key, e.g. `0 = "..."`) to what that score means.
    levels: Spanned<BTreeMap<String, Spanned<String>>>,
}
