//! Where a training step's time goes: the LoRA step of `benches/train.rs` (Qwen3-0.6B shape,
//! r16 all-linear, dropout 0.05, 1 x 512 tokens) timed phase by phase — body forward, fused
//! head + loss, backward, clipping + AdamW — for a few steps (the first includes page faults).
//!
//! Run: `cargo run --release --example train_phases [-- STEPS]`; `DROPOUT=0` disables the
//! adapter dropout; `STEP_ON=caller` runs each step on the main thread, outside the kernels' pool
//! (as psy did before `compute_pool::on_pool`), for an A/B on one host. Each step also prints
//! what `perf stat` would say of it (CPUs used, kernel share, page faults, context switches) and
//! how busy the host was (other processes, CPU time stolen by the hypervisor), so a slow step on
//! a new host shows its cause. The README's per-phase figures come from this.

use std::time::Instant;

/// As in the `psy` binary (src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use psy_lm::compute_pool::on_pool;
use psy_lm::runtime::burn::tensor::Device;
use psy_lm::runtime::lora::with_dropout;
use psy_lm::runtime::model::ids_tensor;
use psy_lm::runtime::{Architecture, CausalLm, LoraConfig, ModelConfig};
use psy_lm::training::optim::{accumulate_grads, clip_global_norm};
use psy_lm::training::{head_loss, AdamW, AdamWConfig, Batch, NamedGrads};

fn main() {
    psy::keep_freed_memory();
    let steps: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    let dropout: f64 = std::env::var("DROPOUT")
        .ok()
        .and_then(|x| x.parse().ok())
        .unwrap_or(0.05);
    // Qwen3-0.6B's shape, as benches/common/mod.rs.
    let mut c = ModelConfig::new(Architecture::Qwen3, 151936, 1024, 3072, 28, 16, 8, 128);
    c.rope_theta = 1_000_000.0;
    c.tie_word_embeddings = true;
    c.qk_norm = true;
    c.max_position_embeddings = 4096;
    let lora = LoraConfig {
        enabled: true,
        rank: 16,
        alpha: 32.0,
        dropout,
        target_modules: vec!["all-linear".into()],
    };
    let d = Device::flex().autodiff();
    let mut model = CausalLm::random(&c, &d)
        .attach_lora(&lora, 0)
        .expect("LoRA config");
    let len = 512;
    // The bench's token ids (row 0).
    let ids: Vec<u32> = (0..len)
        .map(|i| ((i * 7919 + 13) % c.vocab_size) as u32)
        .collect();
    let b = Batch {
        labels: vec![ids.iter().map(|&x| i64::from(x)).collect()],
        input_ids: vec![ids],
        weights: None,
    };
    let mut opt = AdamW::new(AdamWConfig::default());
    let on_caller = std::env::var("STEP_ON").is_ok_and(|v| v == "caller");
    for step in 0..steps {
        let (b, opt) = (&b, &mut opt);
        model = if on_caller {
            timed_step(model, opt, b, step)
        } else {
            on_pool(|| timed_step(model, opt, b, step))
        };
    }
}

/// One LoRA step with each phase timed and printed; returns the updated model.
fn timed_step(mut model: CausalLm, opt: &mut AdamW, b: &Batch, step: u64) -> CausalLm {
    let d = model.device();
    let u0 = usage();
    let t0 = Instant::now();
    let hidden = with_dropout(step, || model.forward_hidden(ids_tensor(&b.input_ids, &d)));
    let t1 = Instant::now();
    let loss = head_loss(hidden, model.head_weight(), b) / b.target_count() as f64;
    let value: f32 = loss.clone().inner().into_scalar();
    let t2 = Instant::now();
    let mut g = loss.backward();
    let t3 = Instant::now();
    let mut grads = NamedGrads::new();
    accumulate_grads(&model, &mut g, &mut grads, 1.0);
    clip_global_norm(&mut grads, 1.0);
    model = opt.step(model, &mut grads, 1e-4);
    let t4 = Instant::now();
    let u1 = usage();
    let s = |a: Instant, b: Instant| (b - a).as_secs_f64();
    println!(
        "step {step}: loss {value:.4} | body forward {:.2} s, head + loss {:.2} s, backward {:.2} s, optimizer {:.2} s, total {:.2} s | {}",
        s(t0, t1),
        s(t1, t2),
        s(t2, t3),
        s(t3, t4),
        s(t0, t4),
        u1.since(&u0, s(t0, t4))
    );
    model
}

/// The process's CPU time, page faults and context switches so far (all threads), and the
/// host's busy and stolen CPU time (`/proc/stat`): whether other processes or the hypervisor
/// took the CPUs a step waited for.
struct Usage {
    user_s: f64,
    system_s: f64,
    faults: i64,
    voluntary: i64,
    involuntary: i64,
    host_busy_s: f64,
    host_steal_s: f64,
}

impl Usage {
    /// What happened between `before` and `self`, `wall` seconds apart, in one line.
    fn since(&self, before: &Usage, wall: f64) -> String {
        let cpu = self.user_s + self.system_s - before.user_s - before.system_s;
        let others = self.host_busy_s - before.host_busy_s - cpu;
        format!(
            "CPUs used {:.2} (kernel {:.0}%), page faults {}, context switches {} voluntary + {} involuntary | host: other processes {:.2} CPUs, stolen {:.2} CPUs",
            cpu / wall,
            100.0 * (self.system_s - before.system_s) / cpu.max(1e-9),
            self.faults - before.faults,
            self.voluntary - before.voluntary,
            self.involuntary - before.involuntary,
            others.max(0.0) / wall,
            (self.host_steal_s - before.host_steal_s) / wall,
        )
    }
}

fn usage() -> Usage {
    // SAFETY: getrusage writes into the zeroed struct it is given and reads nothing else.
    let r = unsafe {
        let mut r: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut r);
        r
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    let (host_busy_s, host_steal_s) = host_cpu_seconds();
    Usage {
        user_s: secs(r.ru_utime),
        system_s: secs(r.ru_stime),
        faults: r.ru_minflt + r.ru_majflt,
        voluntary: r.ru_nvcsw,
        involuntary: r.ru_nivcsw,
        host_busy_s,
        host_steal_s,
    }
}

/// Busy (user, nice, system, irq, softirq) and stolen CPU seconds of the whole host since boot,
/// from the first line of `/proc/stat` (zeros where it cannot be read).
fn host_cpu_seconds() -> (f64, f64) {
    // SAFETY: sysconf reads a constant of the C library.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let at = |i: usize| ticks.get(i).copied().unwrap_or(0.0) / hz;
    // Fields: user nice system idle iowait irq softirq steal.
    (at(0) + at(1) + at(2) + at(5) + at(6), at(7))
}
