//! End-to-end latency of one counseling turn (plan + prefill + up to 100 tokens), of turn 10
//! of a scripted session in `direct` and `two-phase` mode, and server throughput (requests/s
//! at concurrency 1, 4, 16) with SmolLM2 on the CPU.
//!
//! Run `scripts/setup.sh` first, then `cargo bench --bench session` (or
//! `cargo bench --bench session -- session/` for the 10-turn scenario alone). Sample counts are
//! small: one sample is a whole turn, or a whole wave of concurrent requests.

/// The `psy` binary's allocator (src/main.rs); each bench calls `psy::keep_freed_memory()` as
/// its `main` does, so that a turn here costs what it costs in `psy counsel`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use psy_core::dialogue::{Dialogue, Message};
use psy_lm::session::TurnOptions;
use serde_json::json;

/// `manifests/psyllm.toml` in `direct` mode, so that a turn is one prefill and one decode.
fn manifest() -> PathBuf {
    manifest_in("direct")
}

/// `manifests/psyllm.toml` with its prompting mode set to `mode`.
fn manifest_in(mode: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("psy-bench-{mode}.toml"));
    let base = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("manifests/psyllm.toml");
    std::fs::write(
        &path,
        format!(
            "schema = 1\nextends = \"{}\"\n[prompting]\nmode = \"{mode}\"\n",
            base.display()
        ),
    )
    .unwrap();
    path
}

/// The default model, or `PSY_BENCH_MODEL` (a GGUF path) to time another one the same way.
fn model() -> PathBuf {
    match std::env::var_os("PSY_BENCH_MODEL") {
        Some(path) => PathBuf::from(path),
        None => psy_lm::runtime::default_model_path().unwrap_or_else(|e| panic!("{e}")),
    }
}

const MESSAGE: &str = "I've been so tired lately and work is overwhelming.";

fn turn(c: &mut Criterion) {
    psy::keep_freed_memory();
    let mut counselor = psy::counselor(&manifest(), Some(&model())).unwrap();
    let opts = TurnOptions {
        max_new_tokens: Some(100),
        ..Default::default()
    };
    let dialogue = Dialogue::from_message(MESSAGE);
    let mut g = c.benchmark_group("turn");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(10));
    g.bench_function("plan+prefill+100 tokens (direct)", |b| {
        b.iter(|| {
            counselor
                .respond(&dialogue, &opts, &mut |_| ControlFlow::Continue(()))
                .unwrap()
        })
    });
    g.finish();
}

/// The client's side of the scripted 10-turn session (no crisis: every turn is drafted).
const SESSION: [&str; 10] = [
    "I've been so tired lately and work is overwhelming.",
    "I lie awake most nights going over everything I didn't finish.",
    "My manager keeps adding projects and I never say no.",
    "I think I'm scared that if I say no they'll see I can't cope.",
    "At home I'm short with my partner, and then I feel guilty about it.",
    "I used to run on weekends, but I haven't in months.",
    "Maybe I could talk to my manager, but I don't know how to start.",
    "I guess I could ask which project matters most this week.",
    "It feels strange to think about what I need for once.",
    "What would be a small first step for tomorrow?",
];

/// Turn 10 of [`SESSION`]: turns 1-9 are played once (their replies become the history and
/// each turn's breakdown is printed: plan, prefill with prompt tokens computed and reused,
/// decode, guard, drafts); then each sample replays turn
/// 9, untimed, so that the prompt cache holds what it holds after turn 9 in a live session,
/// and times turn 10.
fn session(c: &mut Criterion) {
    psy::keep_freed_memory();
    let opts = TurnOptions {
        max_new_tokens: Some(100),
        ..Default::default()
    };
    let mut g = c.benchmark_group("session");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(20));
    for mode in ["direct", "two-phase"] {
        let mut counselor = psy::counselor(&manifest_in(mode), Some(&model())).unwrap();
        let mut messages: Vec<Message> = Vec::new();
        let mut before_last = Dialogue::new(Vec::new());
        for (i, client) in SESSION.iter().enumerate() {
            messages.push(Message::user(*client));
            let dialogue = Dialogue::new(messages.clone());
            let t = counselor
                .respond(&dialogue, &opts, &mut |_| ControlFlow::Continue(()))
                .unwrap();
            let tm = &t.timings;
            eprintln!("{mode} turn {:2}: {}", i + 1, turn_line(tm));
            if i + 2 == SESSION.len() {
                before_last = dialogue;
            }
            messages.push(Message::assistant(t.reply));
        }
        messages.pop();
        let last = Dialogue::new(messages);
        g.bench_function(BenchmarkId::new("turn 10", mode), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    counselor
                        .respond(&before_last, &opts, &mut |_| ControlFlow::Continue(()))
                        .unwrap();
                    let t0 = Instant::now();
                    let t = counselor
                        .respond(&last, &opts, &mut |_| ControlFlow::Continue(()))
                        .unwrap();
                    spent += t0.elapsed();
                    // How many tokens turn 10 decodes depends on the prompt, so a prompt
                    // change moves the criterion figure: the breakdown says by how much.
                    eprintln!("{mode} turn 10 sample: {}", turn_line(&t.timings));
                }
                spent
            })
        });
    }
    g.finish();
}

/// Where a turn's time went: plan, prefill (tokens computed / reused), decode, drafts, guard.
fn turn_line(t: &psy_lm::session::TurnTimings) -> String {
    format!(
        "{:6.0} ms = plan {:4.0} + prefill {:5.0} ({:4} computed, {:4} reused) + decode {:5.0} \
         ({:3} tokens) + guard {:3.0} + other {:4.0}; drafts {}",
        t.total_ms,
        t.plan_ms,
        t.prefill_ms,
        t.prompt_tokens - t.prompt_tokens_cached,
        t.prompt_tokens_cached,
        t.decode_ms,
        t.completion_tokens,
        t.guard_ms,
        t.total_ms - t.plan_ms - t.prefill_ms - t.decode_ms - t.guard_ms,
        t.drafts
    )
}

fn server(c: &mut Criterion) {
    psy::keep_freed_memory();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (manifest, model) = (manifest(), model());
    let running = rt
        .block_on(psy::serve::start(
            move || psy::counselor(&manifest, Some(&model)),
            "127.0.0.1:0",
            psy::serve::ServeOptions::default(),
        ))
        .unwrap();
    let url = format!("http://{}/v1/chat/completions", running.addr);
    let client = reqwest::Client::new();
    let body = json!({"messages": [{"role": "user", "content": MESSAGE}], "max_tokens": 8});
    let mut g = c.benchmark_group("server");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(10));
    for n in [1usize, 4, 16] {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("requests", n), &n, |b, &n| {
            b.iter_custom(|iters| {
                let t0 = Instant::now();
                for _ in 0..iters {
                    rt.block_on(async {
                        let all: Vec<_> = (0..n)
                            .map(|_| {
                                let c = client.clone();
                                let (u, b) = (url.clone(), body.clone());
                                tokio::spawn(async move {
                                    let r = c.post(u).json(&b).send().await.unwrap();
                                    assert_eq!(r.status(), 200);
                                })
                            })
                            .collect();
                        for h in all {
                            h.await.unwrap();
                        }
                    });
                }
                t0.elapsed()
            })
        });
    }
    g.finish();
    rt.block_on(running.shutdown()).unwrap();
}

criterion_group!(benches, turn, session, server);
criterion_main!(benches);
