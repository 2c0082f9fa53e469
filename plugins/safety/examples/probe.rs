//! Prints the crisis guard's assessment of each argument (a client message).
fn main() {
    for text in std::env::args().skip(1) {
        let d = psy_core::dialogue::Dialogue::from_message(text.clone());
        let r = psy_safety::assess_risk(&d, "US", &[], None);
        println!("{text}\n  -> {} | {}", r.level.as_str(), r.rationale);
        for e in &r.evidence {
            println!(
                "     {:?} {} {} {:?}",
                e.level, e.rule, e.category, e.evidence.text
            );
        }
    }
}
