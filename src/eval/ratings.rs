//! One rater's scores, read for `psy eval agree`: a cell's `verdicts.jsonl` (the judge's mean
//! over repeats per item and measure) or a CSV of ratings with the header `key,measure,score`
//! (e.g. human ratings; the file is one rater). Every bad line is an error naming file:line;
//! nothing is skipped silently.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why a ratings file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum RatingsError {
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}: {message}", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
}

/// Scores of one rater: per measure (`rubric.dimension`), per item key, the score.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ratings {
    /// Where the ratings came from, for the report.
    pub origin: String,
    pub scores: BTreeMap<String, BTreeMap<String, f64>>,
    /// Verdict lines whose judge calls failed (a cell's `failures`), by item key: these items
    /// have fewer (or no) scores, and the report says so.
    pub failed_items: Vec<String>,
}

/// The header a ratings CSV starts with.
pub const CSV_HEADER: &str = "key,measure,score";

impl Ratings {
    /// Reads a cell directory (its `verdicts.jsonl`), a `verdicts.jsonl` given directly, or a
    /// `.csv` of ratings.
    pub fn read(path: &Path) -> Result<Ratings, RatingsError> {
        if path.is_dir() {
            let verdicts = path.join("verdicts.jsonl");
            if !verdicts.is_file() {
                return Err(RatingsError::File {
                    path: path.to_path_buf(),
                    message: "no verdicts.jsonl in this directory: give a cell of a judged run \
                              (RUN_DIR/cells/<cell>) or a CSV of ratings"
                        .into(),
                });
            }
            return Ratings::read_verdicts(&verdicts);
        }
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        match ext.to_ascii_lowercase().as_str() {
            "csv" => Ratings::read_csv(path),
            "jsonl" => Ratings::read_verdicts(path),
            _ if !path.exists() => Err(RatingsError::File {
                path: path.to_path_buf(),
                message: "no such file or directory".into(),
            }),
            _ => Err(RatingsError::File {
                path: path.to_path_buf(),
                message: "expected a cell directory, a verdicts .jsonl or a ratings .csv".into(),
            }),
        }
    }

    /// Reads a `verdicts.jsonl` as `psy eval` writes it, keeping each measure's mean.
    pub fn read_verdicts(path: &Path) -> Result<Ratings, RatingsError> {
        #[derive(Deserialize)]
        struct Line {
            key: String,
            #[serde(default)]
            mean: BTreeMap<String, f64>,
            #[serde(default)]
            failures: Vec<String>,
        }
        let text = read_text(path)?;
        let mut out = Ratings {
            origin: path.display().to_string(),
            ..Ratings::default()
        };
        let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line_no = i + 1;
            if raw.trim().is_empty() {
                continue;
            }
            let err = |message: String| RatingsError::Line {
                path: path.to_path_buf(),
                line: line_no,
                message,
            };
            let line: Line =
                serde_json::from_str(raw).map_err(|e| err(format!("not a verdict line: {e}")))?;
            if !line.failures.is_empty() {
                out.failed_items.push(line.key.clone());
            }
            for (measure, score) in line.mean {
                if !score.is_finite() {
                    return Err(err(format!(
                        "{measure}: mean {score} is not a finite number"
                    )));
                }
                out.insert(&mut seen, (path, line_no), line.key.clone(), measure, score)?;
            }
        }
        Ok(out)
    }

    /// Reads a ratings CSV: the header `key,measure,score`, then one rating per row. Fields are
    /// not quoted (a quote is an error), so a key may not contain a comma.
    pub fn read_csv(path: &Path) -> Result<Ratings, RatingsError> {
        let text = read_text(path)?;
        let mut out = Ratings {
            origin: path.display().to_string(),
            ..Ratings::default()
        };
        let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
        let mut header_seen = false;
        for (i, raw) in text.lines().enumerate() {
            let line_no = i + 1;
            let err = |message: String| RatingsError::Line {
                path: path.to_path_buf(),
                line: line_no,
                message,
            };
            let raw = raw.trim_start_matches('\u{feff}').trim_end_matches('\r');
            if raw.trim().is_empty() {
                continue;
            }
            if raw.contains('"') {
                return Err(err(
                    "quoted fields are not supported: write key,measure,score without quotes \
                     (keys may not contain commas)"
                        .into(),
                ));
            }
            let fields: Vec<&str> = raw.split(',').map(str::trim).collect();
            if !header_seen {
                if fields != ["key", "measure", "score"] {
                    return Err(err(format!(
                        "the header must be `{CSV_HEADER}`, found `{raw}`"
                    )));
                }
                header_seen = true;
                continue;
            }
            if fields.len() != 3 {
                return Err(err(format!(
                    "expected 3 columns ({CSV_HEADER}), found {}",
                    fields.len()
                )));
            }
            let (key, measure, score) = (fields[0], fields[1], fields[2]);
            if key.is_empty() {
                return Err(err("empty key".into()));
            }
            if measure.is_empty() {
                return Err(err("empty measure".into()));
            }
            let score: f64 = score
                .parse()
                .map_err(|_| err(format!("score `{score}` is not a number")))?;
            if !score.is_finite() {
                return Err(err(format!("score `{score}` is not a finite number")));
            }
            out.insert(
                &mut seen,
                (path, line_no),
                key.into(),
                measure.into(),
                score,
            )?;
        }
        if !header_seen {
            return Err(RatingsError::File {
                path: path.to_path_buf(),
                message: format!("empty: a ratings CSV starts with the header `{CSV_HEADER}`"),
            });
        }
        Ok(out)
    }

    /// Adds one rating; a second rating of the same item and measure is an error naming the
    /// line of the first.
    fn insert(
        &mut self,
        seen: &mut BTreeMap<(String, String), usize>,
        (path, line): (&Path, usize),
        key: String,
        measure: String,
        score: f64,
    ) -> Result<(), RatingsError> {
        if let Some(first) = seen.insert((key.clone(), measure.clone()), line) {
            return Err(RatingsError::Line {
                path: path.to_path_buf(),
                line,
                message: format!(
                    "duplicate rating of `{key}` on `{measure}` (first on line {first})"
                ),
            });
        }
        self.scores.entry(measure).or_default().insert(key, score);
        Ok(())
    }
}

fn read_text(path: &Path) -> Result<String, RatingsError> {
    std::fs::read_to_string(path).map_err(|source| RatingsError::Io {
        path: path.to_path_buf(),
        source,
    })
}
