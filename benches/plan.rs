//! Planning cost: a 10-turn dialogue through every built-in module, with the sentence encoder
//! lent to modules (the target: < 5 ms per turn, encoder included, load excluded).
//!
//! `cached`: the same dialogue again (every text already embedded: the lexicons, the trajectory
//! and the head). `new turn`: a client message never seen before, as in a live session, so the
//! encoder runs on its pieces (the message, its sentences, the turn with the earlier ones).

/// As in the `psy` binary (src/main.rs): the planner's figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{criterion_group, criterion_main, Criterion};
use psy_core::dialogue::Dialogue;

fn plan_ten_turns(c: &mut Criterion) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let planner = psy::planner(&root.join("manifests/psyllm.toml")).expect("psyllm manifest");
    let text =
        std::fs::read_to_string(root.join("tests/fixtures/dialogues/ten-turns.jsonl")).unwrap();
    let dialogue = Dialogue::parse(&text, "ten-turns.jsonl").unwrap();
    assert_eq!(dialogue.client_turns().count(), 10);
    c.bench_function("plan/10-turn dialogue, all built-in modules, cached", |b| {
        b.iter(|| planner.plan(std::hint::black_box(&dialogue)))
    });
    let mut n = 0u64;
    c.bench_function(
        "plan/10-turn dialogue, all built-in modules, new turn",
        |b| {
            b.iter(|| {
                n += 1;
                let mut d = dialogue.clone();
                let last = d
                    .messages
                    .iter_mut()
                    .rev()
                    .find(|m| m.role == psy_core::dialogue::Role::User);
                if let Some(m) = last {
                    m.content = format!("{} It has been {n} days like this.", m.content);
                }
                planner.plan(std::hint::black_box(&d))
            })
        },
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(5));
    targets = plan_ten_turns
}
criterion_main!(benches);
