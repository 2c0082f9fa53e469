//! Reports: the same result always writes the same files; the CSV and Markdown say what a
//! reader expects for a small hand-written report; the charts have one polygon per variant and
//! one bar per difference; a missing font never stops a report.

use std::collections::BTreeMap;
use std::path::Path;

use psy_eval::report::font::find_font_in;
use psy_eval::report::{
    render_csv, render_markdown, write_report, write_report_with_font, ChartFont, ChartNotes,
    Delta, ItemCounts, Measure, MeasureKind, Report, ReportError, Score, Variant,
};

fn score(n: usize, mean: f64, low: f64, high: f64, sd: f64) -> Score {
    Score {
        n,
        mean,
        low,
        high,
        sd,
        delta: None,
    }
}

fn with_delta(s: Score, n: usize, mean: f64, low: f64, high: f64) -> Score {
    Score {
        delta: Some(Delta { n, mean, low, high }),
        ..s
    }
}

fn provenance() -> BTreeMap<String, String> {
    [("git_commit", "abc123"), ("psy_version", "0.1.0")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Two variants × three measures (two rubric dimensions, one metric), numbers chosen by hand.
fn small_report() -> Report {
    let full = Variant {
        name: "full".into(),
        description: "all modules".into(),
        provenance: provenance(),
        items: ItemCounts {
            scored: 10,
            ..Default::default()
        },
        scores: [
            ("cpsycoun.professionalism", score(10, 2.1, 1.9, 2.3, 0.3)),
            ("cpsycoun.safety", score(10, 0.9, 0.7, 1.0, 0.316)),
            ("bleu4", score(10, 12.5, 10.25, 14.75, 3.5)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
    };
    let no_diag = Variant {
        name: "no-diag".into(),
        description: "without diagnostic modules".into(),
        provenance: provenance(),
        items: ItemCounts {
            scored: 9,
            failed: [("verdict never validated".to_string(), 1)].into(),
            failures: vec!["eval.jsonl:4: verdict never validated after 3 repairs".into()],
        },
        scores: [
            (
                "cpsycoun.professionalism",
                with_delta(score(9, 1.8, 1.5, 2.1, 0.4), 9, -0.3, -0.5, -0.1),
            ),
            (
                "cpsycoun.safety",
                with_delta(score(9, 0.9, 0.8, 1.0, 0.3), 9, 0.0, -0.1, 0.1),
            ),
            (
                "bleu4",
                with_delta(score(9, 11.0, 9.5, 12.5, 2.25), 9, -1.5, -3.0, 0.25),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
    };
    Report {
        name: "demo".into(),
        base: "full".into(),
        measures: vec![
            Measure {
                id: "cpsycoun.professionalism".into(),
                kind: MeasureKind::Rubric { min: 0.0, max: 3.0 },
            },
            Measure {
                id: "cpsycoun.safety".into(),
                kind: MeasureKind::Rubric { min: 0.0, max: 1.0 },
            },
            Measure {
                id: "bleu4".into(),
                kind: MeasureKind::Metric,
            },
        ],
        variants: vec![full, no_diag],
    }
}

/// A fuller ablation: three variants, the four CPsyCoun dimensions and three metrics.
fn ablation_report() -> Report {
    let dims = [
        ("cpsycoun.comprehensiveness", 2.0),
        ("cpsycoun.professionalism", 3.0),
        ("cpsycoun.authenticity", 3.0),
        ("cpsycoun.safety", 1.0),
    ];
    let metrics = ["bleu4", "distinct2", "question_rate"];
    let mut measures: Vec<Measure> = dims
        .iter()
        .map(|(id, max)| Measure {
            id: id.to_string(),
            kind: MeasureKind::Rubric {
                min: 0.0,
                max: *max,
            },
        })
        .collect();
    measures.extend(metrics.iter().map(|id| Measure {
        id: id.to_string(),
        kind: MeasureKind::Metric,
    }));
    // (name, description, fraction of each scale reached, metric means)
    let rows: [(&str, &str, [f64; 4], [f64; 3]); 3] = [
        (
            "full",
            "all modules, two-phase",
            [0.80, 0.75, 0.70, 0.95],
            [14.2, 0.62, 0.41],
        ),
        (
            "no-diagnosis",
            "without diagnostic modules",
            [0.72, 0.60, 0.66, 0.90],
            [13.1, 0.60, 0.37],
        ),
        (
            "direct",
            "direct mode (no reasoning phase)",
            [0.55, 0.50, 0.58, 0.93],
            [11.8, 0.55, 0.22],
        ),
    ];
    let base = rows[0];
    let variants = rows
        .iter()
        .map(|(name, desc, frac, mets)| {
            let mut scores = BTreeMap::new();
            for (i, (id, max)) in dims.iter().enumerate() {
                let mean = frac[i] * max;
                let mut s = score(
                    40,
                    mean,
                    mean - 0.08 * max,
                    (mean + 0.08 * max).min(*max),
                    0.2 * max,
                );
                if *name != base.0 {
                    let d = mean - base.2[i] * max;
                    s.delta = Some(Delta {
                        n: 40,
                        mean: d,
                        low: d - 0.06 * max,
                        high: d + 0.06 * max,
                    });
                }
                scores.insert(id.to_string(), s);
            }
            for (i, id) in metrics.iter().enumerate() {
                let mean = mets[i];
                let mut s = score(40, mean, mean * 0.9, mean * 1.1, mean * 0.3);
                if *name != base.0 {
                    let d = mean - base.3[i];
                    s.delta = Some(Delta {
                        n: 40,
                        mean: d,
                        low: d - 0.1 * mean.abs(),
                        high: d + 0.1 * mean.abs(),
                    });
                }
                scores.insert(id.to_string(), s);
            }
            Variant {
                name: name.to_string(),
                description: desc.to_string(),
                provenance: provenance(),
                items: ItemCounts {
                    scored: 40,
                    ..Default::default()
                },
                scores,
            }
        })
        .collect();
    Report {
        name: "modules".into(),
        base: "full".into(),
        measures,
        variants,
    }
}

const SMALL_CSV: &str = "\
variant,measure,kind,scale_min,scale_max,n,mean,ci_low,ci_high,sd,delta_n,delta_mean,delta_low,delta_high,scored_items,failed_items
full,cpsycoun.professionalism,rubric,0,3,10,2.1,1.9,2.3,0.3,,,,,10,0
full,cpsycoun.safety,rubric,0,1,10,0.9,0.7,1,0.316,,,,,10,0
full,bleu4,metric,,,10,12.5,10.25,14.75,3.5,,,,,10,0
no-diag,cpsycoun.professionalism,rubric,0,3,9,1.8,1.5,2.1,0.4,9,-0.3,-0.5,-0.1,9,1
no-diag,cpsycoun.safety,rubric,0,1,9,0.9,0.8,1,0.3,9,0,-0.1,0.1,9,1
no-diag,bleu4,metric,,,9,11,9.5,12.5,2.25,9,-1.5,-3,0.25,9,1
";

const SMALL_MD: &str = "\
# Evaluation report: demo

Base variant: `full`. Scores are `mean [low, high] (n)` with a 95% interval of the mean; differences are paired (variant − base, over the items both scored) with their 95% interval, marked `*` when the interval excludes zero.

## Variants

| variant | description | scored | failed |
|---|---|---:|---:|
| full (base) | all modules | 10 | 0 |
| no-diag | without diagnostic modules | 9 | 1 |

## Scores

| measure | scale | full | no-diag |
|---|---|---|---|
| cpsycoun.professionalism | 0–3 | 2.100 [1.900, 2.300] (n=10) | 1.800 [1.500, 2.100] (n=9) |
| cpsycoun.safety | 0–1 | 0.900 [0.700, 1.000] (n=10) | 0.900 [0.800, 1.000] (n=9) |
| bleu4 | metric | 12.500 [10.250, 14.750] (n=10) | 11.000 [9.500, 12.500] (n=9) |

## Differences from `full`

| measure | no-diag − full |
|---|---|
| cpsycoun.professionalism | -0.300 [-0.500, -0.100] * |
| cpsycoun.safety | 0.000 [-0.100, +0.100] |
| bleu4 | -1.500 [-3.000, +0.250] |

## Failed items

- **no-diag**: 1 failed (verdict never validated: 1)
  - `eval.jsonl:4: verdict never validated after 3 repairs`

## Charts

![radar.png](radar.png)

Vector version: [radar.svg](radar.svg)

## Provenance

### full

| key | value |
|---|---|
| git_commit | `abc123` |
| psy_version | `0.1.0` |

### no-diag

| key | value |
|---|---|
| git_commit | `abc123` |
| psy_version | `0.1.0` |
";

const FILES: [&str; 7] = [
    "report.json",
    "report.csv",
    "report.md",
    "radar.png",
    "radar.svg",
    "deltas.png",
    "deltas.svg",
];

fn read(dir: &Path, f: &str) -> Vec<u8> {
    std::fs::read(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"))
}

#[test]
fn csv_has_one_row_per_variant_and_measure_as_written_by_hand() {
    assert_eq!(render_csv(&small_report()), SMALL_CSV);
}

#[test]
fn markdown_table_matches_the_hand_written_report() {
    let charts = ChartNotes {
        files: vec!["radar.png".into(), "radar.svg".into()],
        notes: vec![],
    };
    let md = render_markdown(&small_report(), &charts);
    if md != SMALL_MD {
        for (i, (a, b)) in md.lines().zip(SMALL_MD.lines()).enumerate() {
            assert_eq!(a, b, "line {}", i + 1);
        }
    }
    assert_eq!(md, SMALL_MD);
}

#[test]
fn the_same_report_writes_byte_identical_files_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let report = ablation_report();
    write_report(&a, &report).unwrap();
    write_report(&b, &report).unwrap();
    for f in FILES {
        let bytes = read(&a, f);
        assert!(!bytes.is_empty(), "{f} is empty");
        assert_eq!(bytes, read(&b, f), "{f} differs between two writes");
    }
}

#[test]
fn report_json_reads_back_to_the_same_report() {
    let report = ablation_report();
    let json = psy_eval::report::render_json(&report);
    let back: Report = serde_json::from_str(&json).unwrap();
    // serde_json's default float parser may be off by one ulp, so numbers are compared closely.
    let (a, b) = (
        serde_json::to_value(&report).unwrap(),
        serde_json::to_value(&back).unwrap(),
    );
    assert_close(&a, &b, "$");
}

fn assert_close(a: &serde_json::Value, b: &serde_json::Value, at: &str) {
    use serde_json::Value::*;
    match (a, b) {
        (Number(x), Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!(
                (x - y).abs() <= 1e-12 * x.abs().max(1.0),
                "{at}: {x} vs {y}"
            );
        }
        (Array(x), Array(y)) => {
            assert_eq!(x.len(), y.len(), "{at}");
            for (i, (x, y)) in x.iter().zip(y).enumerate() {
                assert_close(x, y, &format!("{at}[{i}]"));
            }
        }
        (Object(x), Object(y)) => {
            assert_eq!(
                x.keys().collect::<Vec<_>>(),
                y.keys().collect::<Vec<_>>(),
                "{at}"
            );
            for (k, x) in x {
                assert_close(x, &y[k], &format!("{at}.{k}"));
            }
        }
        _ => assert_eq!(a, b, "{at}"),
    }
}

/// Opening tags of `tag` in an SVG document.
fn tags<'a>(svg: &'a str, tag: &str) -> Vec<&'a str> {
    let open = format!("<{tag} ");
    svg.match_indices(&open)
        .map(|(i, _)| &svg[i..i + svg[i..].find('>').unwrap()])
        .collect()
}

fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=\"");
    let start = tag.find(&key)? + key.len();
    Some(&tag[start..start + tag[start..].find('"')?])
}

#[test]
fn radar_svg_has_one_polygon_per_variant_and_deltas_svg_one_bar_per_difference() {
    for (report, bars) in [(small_report(), 3), (ablation_report(), 14)] {
        let tmp = tempfile::tempdir().unwrap();
        write_report(tmp.path(), &report).unwrap();
        let radar = String::from_utf8(read(tmp.path(), "radar.svg")).unwrap();
        assert_eq!(tags(&radar, "polygon").len(), report.variants.len());
        let deltas = String::from_utf8(read(tmp.path(), "deltas.svg")).unwrap();
        // Bars are the filled rectangles other than the white background.
        let bar_rects: Vec<_> = tags(&deltas, "rect")
            .into_iter()
            .filter(|t| attr(t, "fill").is_some_and(|f| f != "#FFFFFF" && f != "none"))
            .collect();
        assert_eq!(bar_rects.len(), bars, "{:#?}", bar_rects);
        if ChartFont::has_text(&psy_eval::report::chart_font()) {
            for m in &report.measures {
                assert!(radar.contains(&m.id) || !matches!(m.kind, MeasureKind::Rubric { .. }));
                assert!(deltas.contains(&m.id), "{} not labelled", m.id);
            }
        }
    }
}

#[test]
fn deltas_bars_point_the_way_of_the_difference() {
    // Professionalism fell (-0.3): its bar lies left of the zero line; the bars of the small
    // report are drawn in measure order.
    let tmp = tempfile::tempdir().unwrap();
    write_report(tmp.path(), &small_report()).unwrap();
    let deltas = String::from_utf8(read(tmp.path(), "deltas.svg")).unwrap();
    let bars: Vec<(i64, i64)> = tags(&deltas, "rect")
        .into_iter()
        .filter(|t| attr(t, "fill").is_some_and(|f| f != "#FFFFFF" && f != "none"))
        .map(|t| {
            let x = attr(t, "x").unwrap().parse().unwrap();
            let w = attr(t, "width").unwrap().parse().unwrap();
            (x, w)
        })
        .collect();
    // The safety delta is exactly zero: a bar of no width sits on the zero line.
    let (zero_x, zero_w) = bars[1];
    assert!(zero_w <= 1, "zero difference drawn {zero_w} px wide");
    let (prof_x, prof_w) = bars[0];
    assert!(prof_w > 10 && prof_x + prof_w <= zero_x + 1, "{bars:?}");
}

#[test]
fn charts_without_a_font_still_draw_and_the_report_says_so() {
    assert_eq!(find_font_in(&["/nonexistent/psy/font.ttf"]), None);
    let tmp = tempfile::tempdir().unwrap();
    let notes =
        write_report_with_font(tmp.path(), &ablation_report(), &ChartFont::Missing).unwrap();
    for f in FILES {
        assert!(!read(tmp.path(), f).is_empty(), "{f}");
    }
    let radar = String::from_utf8(read(tmp.path(), "radar.svg")).unwrap();
    assert_eq!(tags(&radar, "polygon").len(), 3);
    assert!(tags(&radar, "text").is_empty());
    let md = String::from_utf8(read(tmp.path(), "report.md")).unwrap();
    assert!(md.contains("no font found"), "{md}");
    assert!(notes.notes.iter().any(|n| n.contains("without text")));
}

#[test]
fn a_report_with_one_variant_and_no_rubric_skips_the_charts_it_cannot_draw() {
    let mut r = small_report();
    r.variants.truncate(1);
    r.measures.retain(|m| m.kind == MeasureKind::Metric);
    r.variants[0].scores.retain(|k, _| k == "bleu4");
    let tmp = tempfile::tempdir().unwrap();
    let notes = write_report(tmp.path(), &r).unwrap();
    assert!(notes.files.is_empty());
    assert!(!tmp.path().join("radar.png").exists());
    assert!(!tmp.path().join("deltas.png").exists());
    let md = String::from_utf8(read(tmp.path(), "report.md")).unwrap();
    assert!(md.contains("no radar chart"));
    assert!(md.contains("no deltas chart"));
}

#[test]
fn inconsistent_reports_are_refused_naming_the_variant_and_measure() {
    let mut r = small_report();
    r.base = "nope".into();
    let e = r.validate().unwrap_err().to_string();
    assert!(e.contains("base variant `nope`"), "{e}");

    let mut r = small_report();
    r.variants[1]
        .scores
        .insert("rouge_l".into(), score(1, 0.1, 0.0, 0.2, 0.1));
    let e = r.validate().unwrap_err().to_string();
    assert!(e.contains("`no-diag`") && e.contains("`rouge_l`"), "{e}");

    let mut r = small_report();
    r.variants[0].scores.get_mut("bleu4").unwrap().mean = f64::NAN;
    let tmp = tempfile::tempdir().unwrap();
    let e = write_report(tmp.path(), &r).unwrap_err();
    assert!(
        matches!(e, ReportError::Invalid(ref m) if m.contains("`full`, measure `bleu4`")),
        "{e}"
    );
}

/// Writes the sample ablation's report where a person can open it (`CARGO_TARGET_TMPDIR`).
#[test]
fn sample_ablation_report_for_inspection() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-sample");
    write_report(&dir, &ablation_report()).unwrap();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-sample-small");
    write_report(&dir, &small_report()).unwrap();
    // Five long dimension names and seven variants: labels and legend must still fit.
    let mut wide = ablation_report();
    let names = [
        "psyllm-v2.empathy_insight",
        "psyllm-v2.support_autonomy",
        "psyllm-v2.attunement_presence",
        "psyllm-v2.safety_boundaries",
        "crisis-safety.stayed_with_person",
    ];
    for (i, m) in wide.measures.iter_mut().take(4).enumerate() {
        m.id = names[i].to_string();
        m.kind = MeasureKind::Rubric { min: 1.0, max: 5.0 };
    }
    wide.measures.insert(
        4,
        Measure {
            id: names[4].into(),
            kind: MeasureKind::Rubric { min: 0.0, max: 1.0 },
        },
    );
    let old: Vec<String> = ablation_report()
        .measures
        .iter()
        .take(4)
        .map(|m| m.id.clone())
        .collect();
    for (k, v) in wide.variants.iter_mut().enumerate() {
        for (i, o) in old.iter().enumerate() {
            let mut s = v.scores.remove(o).unwrap();
            s.mean = 1.0 + s.mean * 1.3 + i as f64 * 0.2;
            v.scores.insert(names[i].to_string(), s);
        }
        v.scores.insert(
            names[4].to_string(),
            score(40, 0.9 - 0.1 * k as f64, 0.8, 1.0, 0.1),
        );
    }
    for extra in [
        "one-modality-cbt",
        "no-modalities",
        "icl-exemplars-only",
        "adapter-none",
        "two-phase-no-trace",
    ] {
        let mut v = wide.variants[1].clone();
        v.name = extra.into();
        for s in v.scores.values_mut() {
            s.mean *= 0.93;
        }
        wide.variants.push(v);
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-sample-wide");
    write_report(&dir, &wide).unwrap();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-sample-no-font");
    write_report_with_font(&dir, &ablation_report(), &ChartFont::Missing).unwrap();
}
