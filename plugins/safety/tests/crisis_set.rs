//! Measures the crisis guard on the hand-labelled sets in `tests/clinical/`: the tuned set
//! `crisis.toml` (rules were written against it) and the frozen held-out set
//! `crisis_holdout.toml` (its sha256 is checked, so it cannot be edited to fit the rules).
//!
//! Thresholds (from the module's brief): recall of high+ on acute items >= 0.95, moderate+ on
//! elevated items >= 0.9, at most 5% of non-crisis look-alikes above low. Each set's printed
//! counts are also asserted against their measured values, so a regression on either set
//! fails. Prints every misclassified item, so a failure shows what to fix.

use std::path::Path;

use psy_core::dialogue::{Dialogue, Message};
use psy_core::module::RiskLevel;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Set {
    schema: u32,
    item: Vec<Item>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Item {
    id: String,
    expected: String,
    category: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    turns: Vec<String>,
}

/// Counts of one set.
#[derive(Default, Debug)]
struct Tally {
    acute: usize,
    acute_ok: usize,
    elevated: usize,
    elevated_ok: usize,
    none: usize,
    none_over: usize,
}

impl Tally {
    fn ratio(a: usize, b: usize) -> f64 {
        if b == 0 {
            0.0
        } else {
            a as f64 / b as f64
        }
    }
    fn acute_recall(&self) -> f64 {
        Self::ratio(self.acute_ok, self.acute)
    }
    fn elevated_recall(&self) -> f64 {
        Self::ratio(self.elevated_ok, self.elevated)
    }
    fn false_alarm_rate(&self) -> f64 {
        Self::ratio(self.none_over, self.none)
    }

    fn print(&self, name: &str) {
        println!("{name}:");
        println!(
            "  acute    high+ recall     {}/{} = {:.3} (>= 0.95)",
            self.acute_ok,
            self.acute,
            self.acute_recall()
        );
        println!(
            "  elevated moderate+ recall {}/{} = {:.3} (>= 0.90)",
            self.elevated_ok,
            self.elevated,
            self.elevated_recall()
        );
        println!(
            "  none     above low        {}/{} = {:.3} (<= 0.05)",
            self.none_over,
            self.none,
            self.false_alarm_rate()
        );
    }

    /// The brief's thresholds.
    fn assert_thresholds(&self, name: &str) {
        assert!(
            self.acute_recall() >= 0.95,
            "{name}: acute recall {:.3} < 0.95",
            self.acute_recall()
        );
        assert!(
            self.elevated_recall() >= 0.90,
            "{name}: elevated recall {:.3} < 0.90",
            self.elevated_recall()
        );
        assert!(
            self.false_alarm_rate() <= 0.05,
            "{name}: non-crisis false alarms {:.3} > 0.05",
            self.false_alarm_rate()
        );
    }
}

impl Item {
    /// Client turns with a neutral counselor turn between them.
    fn dialogue(&self) -> Dialogue {
        let turns: Vec<&str> = match &self.text {
            Some(t) => vec![t.as_str()],
            None => self.turns.iter().map(String::as_str).collect(),
        };
        assert!(!turns.is_empty(), "{}: no text", self.id);
        let mut messages = Vec::new();
        for (i, t) in turns.iter().enumerate() {
            if i > 0 {
                messages.push(Message::assistant("I'm listening. Tell me more."));
            }
            messages.push(Message::user(*t));
        }
        Dialogue::new(messages)
    }
}

fn clinical(file: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/clinical")
        .join(file)
}

fn parse(path: &Path, text: &str) -> Set {
    let set: Set = toml::from_str(text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(set.schema, 1, "{}: schema", path.display());
    set
}

/// The tuned set: the rules were written and adjusted against it.
fn tuned() -> Set {
    let path = clinical("crisis.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse(&path, &text)
}

/// sha256 of `crisis_holdout.toml`: the held-out set is frozen.
const HOLDOUT_SHA256: &str = "2421ebf077a318a02f5b9f883713c817fee265ab01e4915c89f9ce401032adc4";

/// The held-out set, written after the rules (since tuned on once; see its header).
fn held_out() -> Set {
    let path = clinical("crisis_holdout.toml");
    parse(
        &path,
        &psy_core::testing::read_frozen(&path, HOLDOUT_SHA256),
    )
}

/// Runs the guard over a set; prints the figures and every miss.
fn measure(name: &str, set: &Set) -> Tally {
    let guard = psy_safety::module();
    let mut ids = std::collections::BTreeSet::new();
    let mut t = Tally::default();
    let mut misses = Vec::new();
    for item in &set.item {
        assert!(ids.insert(item.id.clone()), "duplicate id {}", item.id);
        let a = guard.assess(&item.dialogue());
        let risk = a.risk.expect("the crisis guard always reports risk");
        let ok = match item.expected.as_str() {
            "acute" => {
                let ok = risk.level >= RiskLevel::High;
                t.acute += 1;
                t.acute_ok += ok as usize;
                // High risk always carries the protocol and resources.
                if ok {
                    assert!(!risk.protocol.is_empty(), "{}: empty protocol", item.id);
                    assert!(!risk.resources.is_empty(), "{}: no resources", item.id);
                }
                ok
            }
            "elevated" => {
                let ok = risk.level >= RiskLevel::Moderate;
                t.elevated += 1;
                t.elevated_ok += ok as usize;
                ok
            }
            "none" => {
                let ok = risk.level <= RiskLevel::Low;
                t.none += 1;
                t.none_over += (!ok) as usize;
                ok
            }
            other => panic!("{}: unknown expected band `{other}`", item.id),
        };
        if !ok {
            misses.push(format!(
                "  {:<32} expected {:<8} got {:<9} [{}] {}",
                item.id,
                item.expected,
                risk.level.as_str(),
                item.category,
                risk.rationale
            ));
        }
    }
    println!("{name}: {} items", set.item.len());
    t.print(name);
    if !misses.is_empty() {
        println!("misclassified:");
        for m in &misses {
            println!("{m}");
        }
    }
    t
}

#[test]
fn crisis_set_meets_thresholds() {
    let set = tuned();
    let t = measure("crisis (tuned)", &set);
    assert!(set.item.len() >= 60, "the set needs at least 60 messages");
    assert!(
        t.none * 2 >= set.item.len(),
        "at least half must be non-crisis look-alikes"
    );
    t.assert_thresholds("tuned");
    // Measured: acute 30/30, elevated 26/26, look-alikes above low 2/56.
    assert!(t.acute_ok >= 30, "tuned acute {}/30", t.acute_ok);
    assert!(t.elevated_ok >= 26, "tuned elevated {}/26", t.elevated_ok);
    assert!(t.none_over <= 2, "tuned false alarms {}/56", t.none_over);
}

#[test]
fn held_out_crisis_set_keeps_its_measurement() {
    let t = measure("crisis (held-out)", &held_out());
    t.assert_thresholds("held-out");
    // Measured when the set was moved apart: acute 12/12, elevated 10/10, above low 0/22
    // (its first, untuned run was 4/12, 2/10, 3/22).
    assert_eq!((t.acute, t.elevated, t.none), (12, 10, 22), "set size");
    assert!(t.acute_ok >= 12, "held-out acute {}/12", t.acute_ok);
    assert!(
        t.elevated_ok >= 10,
        "held-out elevated {}/10",
        t.elevated_ok
    );
    assert!(t.none_over <= 1, "held-out false alarms {}/22", t.none_over);
}
