//! `psy eval agree A B`: a researcher compares two judges (two judged cells) or a judge and
//! human ratings (a CSV) and gets, per measure, quadratic-weighted Cohen's kappa, Krippendorff's
//! alpha and the mean absolute difference, with the items and measures only one side rated
//! counted; bad ratings files are errors naming file:line.
//!
//! Expected numbers: `python3 scripts/reference/make_agreement_cli_fixture.py` (scikit-learn
//! 1.9.1 `cohen_kappa_score(weights="quadratic")`, krippendorff 0.9.0
//! `alpha(level_of_measurement="interval")`, numpy 2.4.6), on the same hand-chosen scores as
//! below.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use psy::eval::{agree, Ratings};
use serde_json::{json, Value};

const EMPATHY: &str = "psyllm-v2.empathy_insight";
const PROF: &str = "cpsycoun.professionalism";
const WARMTH: &str = "site-rubric.warmth";
const SAFETY: &str = "cpsycoun.safety";

/// Writes a cell directory whose `verdicts.jsonl` holds, per item `d<i>#1` and rubric, one
/// verdict line with the given means (the repeats are the floor and ceiling of the mean, as two
/// judge calls would give). `failed` items get a line with a failure and no scores.
fn cell(dir: &Path, name: &str, measures: &[(&str, &[f64])], failed: &[&str]) -> PathBuf {
    let cell = dir.join("runs/x/cells").join(name);
    std::fs::create_dir_all(&cell).unwrap();
    // (item, rubric) -> measure -> mean
    let mut lines: BTreeMap<(usize, String), BTreeMap<String, f64>> = BTreeMap::new();
    for (measure, means) in measures {
        let rubric = measure.split_once('.').unwrap().0.to_string();
        for (i, &m) in means.iter().enumerate() {
            lines
                .entry((i + 1, rubric.clone()))
                .or_default()
                .insert(measure.to_string(), m);
        }
    }
    let mut text = String::new();
    for ((item, rubric), means) in &lines {
        let scores: BTreeMap<&String, Vec<i64>> = means
            .iter()
            .map(|(k, m)| (k, vec![m.floor() as i64, m.ceil() as i64]))
            .collect();
        let line = json!({"key": format!("d{item}#1"), "rubric": rubric, "scores": scores,
                          "mean": means, "sd": {}, "failures": []});
        text.push_str(&format!("{line}\n"));
    }
    for key in failed {
        let line = json!({"key": key, "rubric": "psyllm-v2", "scores": {}, "mean": {}, "sd": {},
                          "failures": ["judge call failed: HTTP 500"]});
        text.push_str(&format!("{line}\n"));
    }
    std::fs::write(cell.join("verdicts.jsonl"), text).unwrap();
    cell
}

fn judge_a(dir: &Path) -> PathBuf {
    cell(
        dir,
        "judge-a",
        &[
            (EMPATHY, &[4.5, 2.0, 1.0, 5.0, 4.0, 2.0, 1.5, 4.0, 3.0]),
            (PROF, &[2.5, 3.0, 1.0, 0.5, 2.0, 3.0, 1.0, 2.0]),
            (WARMTH, &[3.0, 7.0, 5.0, 5.0, 9.0, 7.0, 3.0, 5.0]),
            (SAFETY, &[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]),
        ],
        &[],
    )
}

fn judge_b(dir: &Path) -> PathBuf {
    cell(
        dir,
        "judge-b",
        &[
            (EMPATHY, &[4.0, 2.0, 2.0, 5.0, 5.0, 1.0, 1.0, 4.0]),
            (PROF, &[2.0, 3.0, 1.0, 1.0, 2.0, 2.0, 0.0, 2.0]),
            (WARMTH, &[3.0, 5.0, 5.0, 7.0, 9.0, 7.0, 3.0, 3.0]),
        ],
        &["d9#1"],
    )
}

fn human_csv(dir: &Path) -> PathBuf {
    let mut text = String::from("key,measure,score\n");
    for (i, s) in [(1, 5), (2, 2), (3, 1), (4, 4), (5, 4), (6, 3), (10, 2)] {
        text.push_str(&format!("d{i}#1,{EMPATHY},{s}\n"));
    }
    // A blank line is allowed; so are spaces around fields and CRLF line ends.
    text.push('\n');
    for (i, s) in [3, 3, 2, 1, 2, 3, 1, 1].iter().enumerate() {
        text.push_str(&format!("d{}#1, {PROF} ,{s}\r\n", i + 1));
    }
    text.push_str("d1#1,human.overall,4\n");
    let path = dir.join("human.csv");
    std::fs::write(&path, text).unwrap();
    path
}

fn psy_agree(a: &Path, b: &Path, json: bool) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_psy"));
    cmd.args(["eval", "agree"]).arg(a).arg(b);
    if json {
        cmd.arg("--json");
    }
    cmd.output().unwrap()
}

fn measure<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["measures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["measure"] == id)
        .unwrap_or_else(|| panic!("{id} missing from {report}"))
}

fn assert_close(got: &Value, want: f64, what: &str) {
    let got = got
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: not a number: {got}"));
    assert!((got - want).abs() < 1e-9, "{what}: got {got}, want {want}");
}

fn keys(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect()
}

#[test]
fn two_judges_agreement_matches_sklearn_and_krippendorff() {
    let dir = tempfile::tempdir().unwrap();
    let out = psy_agree(&judge_a(dir.path()), &judge_b(dir.path()), true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();

    // Reference: make_agreement_cli_fixture.py, "judge A vs judge B".
    let m = measure(&report, PROF);
    assert_eq!(m["n"], 8);
    // 2.5 and 0.5 round half away from zero (3 and 1); Python's round() would give 0.7778.
    assert_close(&m["kappa_quadratic"], 0.7692307692307692, "prof kappa");
    assert_close(&m["alpha_interval"], 0.8125, "prof alpha");
    assert_close(&m["mean_abs_diff"], 0.375, "prof mad");
    assert_eq!(m["labels"], json!([0, 1, 2, 3]));
    assert_eq!(m["labels_from"], "rubric cpsycoun");

    let m = measure(&report, EMPATHY);
    assert_eq!(m["n"], 8);
    // Over the rubric's scale 1..5; with only the observed labels (no 3) it would be 0.7222.
    assert_close(&m["kappa_quadratic"], 0.8648648648648649, "empathy kappa");
    assert_close(&m["alpha_interval"], 0.9101027397260274, "empathy alpha");
    assert_close(&m["mean_abs_diff"], 0.5, "empathy mad");
    assert_eq!(m["labels"], json!([1, 2, 3, 4, 5]));
    assert_eq!(keys(&m["only_in_a"]), ["d9#1"]);
    assert!(keys(&m["only_in_b"]).is_empty());

    // Not a shipped rubric: kappa over the observed labels.
    let m = measure(&report, WARMTH);
    assert_close(&m["kappa_quadratic"], 0.8181818181818181, "warmth kappa");
    assert_close(&m["alpha_interval"], 0.8288973384030418, "warmth alpha");
    assert_close(&m["mean_abs_diff"], 0.75, "warmth mad");
    assert_eq!(m["labels"], json!([3, 5, 7, 9]));
    assert_eq!(m["labels_from"], "observed");

    assert_eq!(report["measures"].as_array().unwrap().len(), 3);
    assert_eq!(keys(&report["measures_only_in_a"]), [SAFETY]);
    assert!(keys(&report["measures_only_in_b"]).is_empty());
    assert_eq!(keys(&report["failed_items_b"]), ["d9#1"]);
}

#[test]
fn judge_against_human_csv_matches_sklearn_and_krippendorff() {
    let dir = tempfile::tempdir().unwrap();
    let report =
        serde_json::to_value(agree(&judge_a(dir.path()), &human_csv(dir.path())).unwrap()).unwrap();

    // Reference: make_agreement_cli_fixture.py, "judge A vs humans".
    let m = measure(&report, EMPATHY);
    assert_eq!(m["n"], 6);
    assert_close(&m["kappa_quadratic"], 0.922077922077922, "empathy kappa");
    assert_close(&m["alpha_interval"], 0.9142857142857143, "empathy alpha");
    assert_close(&m["mean_abs_diff"], 0.4166666666666667, "empathy mad");
    assert_eq!(keys(&m["only_in_a"]), ["d7#1", "d8#1", "d9#1"]);
    assert_eq!(keys(&m["only_in_b"]), ["d10#1"]);

    let m = measure(&report, PROF);
    assert_eq!(m["n"], 8);
    assert_close(&m["kappa_quadratic"], 0.8333333333333334, "prof kappa");
    assert_close(&m["alpha_interval"], 0.8115577889447236, "prof alpha");
    assert_close(&m["mean_abs_diff"], 0.375, "prof mad");

    assert_eq!(keys(&report["measures_only_in_a"]), [SAFETY, WARMTH]);
    assert_eq!(keys(&report["measures_only_in_b"]), ["human.overall"]);
}

#[test]
fn table_lists_every_shared_measure_and_what_only_one_side_rated() {
    let dir = tempfile::tempdir().unwrap();
    let out = psy_agree(&judge_a(dir.path()), &human_csv(dir.path()), false);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let row = text
        .lines()
        .find(|l| l.starts_with(EMPATHY))
        .unwrap_or_else(|| panic!("no {EMPATHY} row in\n{text}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        &cols[..7],
        [EMPATHY, "6", "0.9221", "0.9143", "0.4167", "3", "1"]
    );
    assert!(text.contains("measures only in A: cpsycoun.safety, site-rubric.warmth"));
    assert!(text.contains("measures only in B: human.overall"));
}

#[test]
fn a_measure_everyone_scored_the_same_is_reported_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let a = cell(dir.path(), "a", &[(SAFETY, &[1.0, 1.0, 1.0])], &[]);
    let b = cell(dir.path(), "b", &[(SAFETY, &[1.0, 1.0, 1.0])], &[]);
    let report = serde_json::to_value(agree(&a, &b).unwrap()).unwrap();
    let m = measure(&report, SAFETY);
    assert_eq!(m["n"], 3);
    assert!(m["kappa_quadratic"].is_null());
    assert!(m["kappa_error"].as_str().unwrap().contains("undefined"));
    assert!(m["alpha_interval"].is_null());
    assert!(m["alpha_error"]
        .as_str()
        .unwrap()
        .contains("more than one distinct value"));
    assert_close(&m["mean_abs_diff"], 0.0, "mad");
}

/// Writes `body` to `name` in a temp dir and returns the error reading it gives.
fn read_error(name: &str, body: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, body).unwrap();
    let err = Ratings::read(&path).unwrap_err().to_string();
    let prefix = format!("{}:", path.display());
    assert!(err.starts_with(&prefix), "{err} does not name {prefix}");
    err[prefix.len()..].to_string()
}

#[test]
fn bad_csv_lines_name_file_and_line() {
    let head = "key,measure,score\nd1#1,cpsycoun.safety,1\n";
    let err = read_error("r.csv", &format!("{head}d2#1,cpsycoun.safety\n"));
    assert!(err.starts_with("3: expected 3 columns"), "{err}");
    let err = read_error("r.csv", &format!("{head}\nd2#1,cpsycoun.safety,high\n"));
    assert!(err.starts_with("4: score `high` is not a number"), "{err}");
    let err = read_error("r.csv", &format!("{head}d2#1,cpsycoun.safety,NaN\n"));
    assert!(
        err.starts_with("3: score `NaN` is not a finite number"),
        "{err}"
    );
    let err = read_error(
        "r.csv",
        &format!("{head}d2#1,x,0\nd1#1,cpsycoun.safety,0\n"),
    );
    assert_eq!(
        err,
        "4: duplicate rating of `d1#1` on `cpsycoun.safety` (first on line 2)"
    );
    let err = read_error("r.csv", &format!("{head}\"d2#1\",cpsycoun.safety,1\n"));
    assert!(
        err.starts_with("3: quoted fields are not supported"),
        "{err}"
    );
    let err = read_error("r.csv", &format!("{head}d2#1,,1\n"));
    assert!(err.starts_with("3: empty measure"), "{err}");
    let err = read_error("r.csv", "item,dimension,score\nd1#1,cpsycoun.safety,1\n");
    assert!(
        err.starts_with("1: the header must be `key,measure,score`"),
        "{err}"
    );
    let err = read_error("r.csv", "");
    assert!(err.contains("empty"), "{err}");
}

#[test]
fn bad_verdict_lines_name_file_and_line() {
    let ok = r#"{"key": "d1#1", "rubric": "cpsycoun", "mean": {"cpsycoun.safety": 1.0}}"#;
    let err = read_error("verdicts.jsonl", &format!("{ok}\n{{\"key\": \n"));
    assert!(err.starts_with("2: not a verdict line"), "{err}");
    let err = read_error(
        "verdicts.jsonl",
        &format!("{ok}\n{{\"rubric\": \"cpsycoun\", \"mean\": {{}}}}\n"),
    );
    assert!(
        err.starts_with("2: not a verdict line: missing field `key`"),
        "{err}"
    );
    let err = read_error("verdicts.jsonl", &format!("{ok}\n\n{ok}\n"));
    assert_eq!(
        err,
        "3: duplicate rating of `d1#1` on `cpsycoun.safety` (first on line 1)"
    );
}

#[test]
fn cli_reports_bad_input_and_a_cell_without_verdicts() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "key,measure,score\nd1#1,cpsycoun.safety,one\n").unwrap();
    let out = psy_agree(&judge_a(dir.path()), &bad, false);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:2: score `one` is not a number", bad.display())),
        "{stderr}"
    );

    let empty_cell = dir.path().join("runs/x/cells/never-judged");
    std::fs::create_dir_all(&empty_cell).unwrap();
    let out = psy_agree(&empty_cell, &bad, false);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no verdicts.jsonl in this directory"),
        "{stderr}"
    );
}
