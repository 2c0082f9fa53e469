//! Sentence-encoder latency (all-MiniLM-L6-v2 from `scripts/setup.sh`) on the CPU (flex)
//! backend with 2 threads: one ~30-token client message, as the planner embeds every turn, and
//! a batch of 64 messages, as evaluation does. Targets: < 20 ms and < 0.5 s.
//!
//! Run: `cargo bench --bench encoder` (`RAYON_NUM_THREADS` overrides the 2 threads).

use std::time::Duration;

/// As in the `psy` binary (src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use psy_lm::encoder::{default_encoder_dir, Encoder};

/// 31 tokens with `[CLS]` and `[SEP]`.
const MESSAGE: &str = "Lately I wake up at four every morning and can't stop thinking about \
                       whether I'll lose my job before the end of the year.";

/// 64 different client messages of 10-40 tokens.
fn messages() -> Vec<String> {
    let openings = [
        "I keep thinking that",
        "Since last month",
        "My sister says",
        "Honestly, I feel like",
        "At work",
        "When I try to sleep",
        "Every weekend",
        "I don't know why but",
    ];
    let rests = [
        "nothing I do is ever good enough for anyone around me.",
        "I have stopped answering my friends' messages.",
        "the panic comes back as soon as I get on the train.",
        "I argue with my partner about money almost every day and then regret it.",
        "I can't focus.",
        "my mind races through every mistake I made today and I feel sick about it.",
        "I drink more than I used to, just to stop feeling so tense.",
        "it is hard to get out of bed.",
    ];
    openings
        .iter()
        .flat_map(|o| rests.iter().map(move |r| format!("{o} {r}")))
        .collect()
}

fn encoder(c: &mut Criterion) {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // Read by rayon when its global pool starts (below, at load): both the tokenizer and
        // the GEMMs run on it.
        std::env::set_var("RAYON_NUM_THREADS", "2");
    }
    psy::keep_freed_memory();
    let dir = default_encoder_dir().expect("encoder assets");
    let enc = Encoder::load(&dir).expect("load all-MiniLM-L6-v2");
    let batch = messages();
    let batch: Vec<&str> = batch.iter().map(String::as_str).collect();
    let tokens = |texts: &[&str]| -> u64 {
        texts
            .iter()
            .map(|t| enc.token_ids(t).map_or(0, |ids| ids.len() as u64))
            .sum()
    };
    let mut group = c.benchmark_group("minilm-l6");
    group.sample_size(20);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(6));
    group.throughput(Throughput::Elements(tokens(&[MESSAGE])));
    group.bench_function(BenchmarkId::new("message", "1x31"), |b| {
        b.iter(|| enc.embed(&[MESSAGE]).expect("embed"))
    });
    group.throughput(Throughput::Elements(tokens(&batch)));
    group.bench_function(BenchmarkId::new("batch", batch.len()), |b| {
        b.iter(|| enc.embed(&batch).expect("embed"))
    });
    group.finish();
}

criterion_group!(benches, encoder);
criterion_main!(benches);
