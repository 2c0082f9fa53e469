//! Planning cost: a 10-turn dialogue through every built-in module (target: < 1 ms per turn).

use criterion::{criterion_group, criterion_main, Criterion};
use psy_core::dialogue::Dialogue;

fn plan_ten_turns(c: &mut Criterion) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let planner = psy::planner(&root.join("manifests/psyllm.toml")).expect("psyllm manifest");
    let text =
        std::fs::read_to_string(root.join("tests/fixtures/dialogues/ten-turns.jsonl")).unwrap();
    let dialogue = Dialogue::parse(&text, "ten-turns.jsonl").unwrap();
    assert_eq!(dialogue.client_turns().count(), 10);
    c.bench_function("plan/10-turn dialogue, all built-in modules", |b| {
        b.iter(|| planner.plan(std::hint::black_box(&dialogue)))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(5));
    targets = plan_ten_turns
}
criterion_main!(benches);
