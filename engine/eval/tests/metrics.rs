//! Automatic metrics: BLEU and ROUGE-L match sacrebleu and rouge-score on a fixture they
//! computed (tests/fixtures/metrics.json, see its `provenance`); the reply statistics match
//! values worked out by hand.

use std::path::Path;

use psy_eval::metrics::{
    corpus_bleu, count_questions, distinct_n, distinct_tokens, label_leakage, length_vs_budget,
    question_rate, rouge_l, rouge_l_tokens, sentence_bleu, Bleu, BleuError, BleuTokenizer,
};
use serde_json::Value;

/// Measured: the values agree to the last one or two bits (e.g. 15.384615384615385 vs
/// ...383, Python's float formatting and division order); 1e-9 leaves room for libm
/// differences in exp/ln on other platforms.
const TOL: f64 = 1e-9;

fn fixture() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/metrics.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn assert_bleu(got: &Bleu, want: &Value, what: &str) {
    let close = |a: f64, b: &Value| (a - b.as_f64().unwrap()).abs() <= TOL;
    assert!(
        close(got.score, &want["score"]),
        "{what}: score {} vs {}",
        got.score,
        want["score"]
    );
    assert!(close(got.brevity_penalty, &want["bp"]), "{what}: bp");
    assert_eq!(got.sys_len, want["sys_len"].as_u64().unwrap(), "{what}");
    assert_eq!(got.ref_len, want["ref_len"].as_u64().unwrap(), "{what}");
    for n in 0..4 {
        assert_eq!(
            got.correct[n],
            want["counts"][n].as_u64().unwrap(),
            "{what}"
        );
        assert_eq!(got.total[n], want["totals"][n].as_u64().unwrap(), "{what}");
        assert!(
            close(got.precisions[n], &want["precisions"][n]),
            "{what}: precision {n}: {} vs {}",
            got.precisions[n],
            want["precisions"][n]
        );
    }
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap()
}

#[test]
fn tokenizers_match_sacrebleu() {
    let f = fixture();
    for p in f["pairs"].as_array().unwrap() {
        let hyp = s(&p["hyp"]);
        assert_eq!(
            BleuTokenizer::Mteval13a.tokenize(hyp.trim_end()),
            s(&p["tokens_13a"]),
            "{hyp:?}"
        );
    }
    for p in f["zh_pairs"].as_array().unwrap() {
        let hyp = s(&p["hyp"]);
        assert_eq!(
            BleuTokenizer::Zh.tokenize(hyp),
            s(&p["tokens_zh"]),
            "{hyp:?}"
        );
    }
}

#[test]
fn sentence_bleu_matches_sacrebleu() {
    let f = fixture();
    for p in f["pairs"].as_array().unwrap() {
        let got = sentence_bleu(s(&p["hyp"]), &[s(&p["ref"])], BleuTokenizer::Mteval13a);
        assert_bleu(&got, &p["sentence_bleu"], s(&p["hyp"]));
    }
    for p in f["zh_pairs"].as_array().unwrap() {
        let got = sentence_bleu(s(&p["hyp"]), &[s(&p["ref"])], BleuTokenizer::Zh);
        assert_bleu(&got, &p["sentence_bleu"], s(&p["hyp"]));
    }
}

#[test]
fn corpus_bleu_matches_sacrebleu_with_one_and_two_references() {
    let f = fixture();
    let pairs = f["pairs"].as_array().unwrap();
    let hyps: Vec<&str> = pairs.iter().map(|p| s(&p["hyp"])).collect();
    let one: Vec<Vec<&str>> = pairs.iter().map(|p| vec![s(&p["ref"])]).collect();
    assert_bleu(
        &corpus_bleu(&hyps, &one, BleuTokenizer::Mteval13a).unwrap(),
        &f["corpus_bleu"],
        "corpus",
    );
    let two: Vec<Vec<&str>> = pairs
        .iter()
        .zip(f["second_refs"].as_array().unwrap())
        .map(|(p, r2)| vec![s(&p["ref"]), s(r2)])
        .collect();
    assert_bleu(
        &corpus_bleu(&hyps, &two, BleuTokenizer::Mteval13a).unwrap(),
        &f["corpus_bleu_two_refs"],
        "corpus, two references",
    );
    let zh = f["zh_pairs"].as_array().unwrap();
    let zh_hyps: Vec<&str> = zh.iter().map(|p| s(&p["hyp"])).collect();
    let zh_refs: Vec<Vec<&str>> = zh.iter().map(|p| vec![s(&p["ref"])]).collect();
    assert_bleu(
        &corpus_bleu(&zh_hyps, &zh_refs, BleuTokenizer::Zh).unwrap(),
        &f["zh_corpus_bleu"],
        "zh corpus",
    );
    assert_eq!(
        corpus_bleu(&hyps[1..], &one, BleuTokenizer::Mteval13a),
        Err(BleuError::LengthMismatch {
            hyps: hyps.len() - 1,
            refs: one.len()
        })
    );
    let mut missing = one.clone();
    missing[3].clear();
    assert_eq!(
        corpus_bleu(&hyps, &missing, BleuTokenizer::Mteval13a),
        Err(BleuError::NoReference(3))
    );
}

#[test]
fn rouge_l_matches_rouge_score() {
    let f = fixture();
    for p in f["pairs"].as_array().unwrap() {
        let got = rouge_l(s(&p["ref"]), s(&p["hyp"]));
        let want = &p["rouge_l"];
        for (name, g) in [
            ("precision", got.precision),
            ("recall", got.recall),
            ("fmeasure", got.fmeasure),
        ] {
            let w = want[name].as_f64().unwrap();
            assert!((g - w).abs() <= TOL, "{}: {name} {g} vs {w}", s(&p["hyp"]));
        }
    }
}

#[test]
fn rouge_l_over_chinese_characters_by_hand() {
    // rouge-score's tokenizer keeps only a-z0-9, so Chinese scores 0 there.
    assert_eq!(rouge_l("我很难过", "我很难过").fmeasure, 0.0);
    // Per character: target 我/很/难/过, prediction 我/真/的/很/难/过: LCS 4.
    let r = rouge_l_tokens(
        &distinct_tokens("我很难过"),
        &distinct_tokens("我真的很难过"),
    );
    assert!((r.recall - 1.0).abs() < 1e-15 && (r.precision - 4.0 / 6.0).abs() < 1e-15);
    assert!((r.fmeasure - 0.8).abs() < 1e-15);
}

#[test]
fn distinct_n_counts_unique_ngrams_by_hand() {
    assert_eq!(
        distinct_tokens("Don't worry -- it's self-care, OK? 你好"),
        ["don't", "worry", "it's", "self-care", "ok", "你", "好"]
    );
    // Tokens: [i, feel, sad] [i, feel, sad, today] -> 7 unigrams, 4 unique;
    // bigrams: (i feel)(feel sad) + (i feel)(feel sad)(sad today) -> 5, 3 unique.
    let replies = ["I feel sad.", "i FEEL sad today"];
    let d1 = distinct_n(&replies, 1);
    assert_eq!((d1.unique, d1.total), (4, 7));
    assert!((d1.ratio - 4.0 / 7.0).abs() < 1e-15);
    let d2 = distinct_n(&replies, 2);
    assert_eq!((d2.unique, d2.total), (3, 5));
    assert_eq!(distinct_n(&[""], 2).ratio, 0.0);
}

#[test]
fn question_rate_by_hand() {
    assert_eq!(count_questions("How are you? What happened?!? Really？"), 3);
    let q = question_rate(&["How are you?", "I see.", "Why? And when?", "Okay."]);
    assert_eq!((q.asking.k, q.asking.n), (2, 4));
    assert!((q.questions_per_reply - 0.75).abs() < 1e-15);
    assert!(q.asking.low < 0.5 && q.asking.high > 0.5);
}

#[test]
fn length_vs_budget_by_hand() {
    // 4 words / 5, 6 words / 5 ("--" is not a word), 2 words / 10.
    let l = length_vs_budget(&[
        ("one two three four", 5),
        ("one two -- three four five six", 5),
        ("just two", 10),
    ]);
    assert_eq!((l.within.k, l.within.n), (2, 3));
    assert!((l.mean_ratio - (0.8 + 1.2 + 0.2) / 3.0).abs() < 1e-12);
    assert!((l.mean_words - 4.0).abs() < 1e-12);
}

#[test]
fn label_leakage_reuses_the_reply_rules_matcher() {
    let labels: Vec<String> = ["major depressive disorder", "ptsd", "gad"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let replies = [
        "This sounds like Major Depressive Disorder.",
        "You seem glad to be here.", // `gad` inside a word does not count
        "Some call it PTSD; others, GAD.",
        "What helps you sleep?",
    ];
    let l = label_leakage(&replies, &labels);
    assert_eq!((l.leaking.k, l.leaking.n), (2, 4));
    assert_eq!(
        l.leaks[0],
        (0, vec!["major depressive disorder".to_string()])
    );
    assert_eq!(l.leaks[1].0, 2);
    assert_eq!(l.leaks[1].1.len(), 2);
}
