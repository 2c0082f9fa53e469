//! End-to-end latency of one counseling turn (plan + prefill + up to 100 tokens) and server
//! throughput (requests/s at concurrency 1, 4, 16) with SmolLM2 on the CPU.
//!
//! Run `scripts/setup.sh` first, then `cargo bench --bench session`. Sample counts are small:
//! one sample is a whole turn, or a whole wave of concurrent requests.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use psy_core::dialogue::Dialogue;
use psy_lm::session::TurnOptions;
use serde_json::json;

/// `manifests/psyllm.toml` in `direct` mode, so that a turn is one prefill and one decode.
fn manifest() -> PathBuf {
    let path = std::env::temp_dir().join("psy-bench-direct.toml");
    let base = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("manifests/psyllm.toml");
    std::fs::write(
        &path,
        format!(
            "schema = 1\nextends = \"{}\"\n[prompting]\nmode = \"direct\"\n",
            base.display()
        ),
    )
    .unwrap();
    path
}

fn model() -> PathBuf {
    psy_lm::runtime::default_model_path().unwrap_or_else(|e| panic!("{e}"))
}

const MESSAGE: &str = "I've been so tired lately and work is overwhelming.";

fn turn(c: &mut Criterion) {
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

fn server(c: &mut Criterion) {
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

criterion_group!(benches, turn, server);
criterion_main!(benches);
