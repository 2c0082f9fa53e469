//! Data parallelism in one process: `[train] devices` checked before any work, one replica
//! per device in its own thread, and the replicas' gradients reduced.
//!
//! The reduction is Burn 0.22's collective `all_reduce` (sum) where the backend has one: CUDA
//! (cubecl's NCCL-backed `all_reduce`; burn-dispatch routes collectives to the backends its
//! catalogue marks `distributed`, Cube and Remote). Flex has none: `burn-flex-0.22.1`
//! implements `DistributedOps` with the trait's defaults (`src/ops/transaction.rs`: "Flex does
//! not support collective operations"), whose `all_reduce` is `unimplemented!()`, and
//! burn-dispatch panics with "Distributed operations are not supported for device Flex" before
//! reaching it. So CPU replicas (threads sharing the one flex device) keep the hand-written
//! reduction: every replica's gradients moved to the first device and summed in device order.
//!
//! burn-train's data-parallel strategy is not used: it drives Burn's `Learner` and optimizers,
//! while psy's loop keeps its own AdamW state by checkpoint name for exact resume.

use burn::module::Module;
use burn::tensor::distributed::{
    all_reduce, DistributedConfig, DistributedContext, ReduceOperation,
};
use burn::tensor::Device;

use super::error::{Result, TrainError};
use super::loss::Batch;
use super::optim::NamedGrads;
use crate::compute_pool::on_pool;
use crate::runtime::{CausalLm, DevicePreference};

/// How the replicas' gradients become one sum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduction {
    /// One device: nothing to reduce.
    Single,
    /// Burn's collective `all_reduce` on every device at once (CUDA).
    Collective,
    /// Moved to the first device and summed there (flex, or a mix of backends).
    OnFirstDevice,
}

/// Checks `[train] devices` before any work: each name parses and a CUDA device is listed
/// once; with `on_this_machine` (a real run, not a `--dry-run` plan for another machine) each
/// CUDA device also exists, and CPU replicas (threads on the one flex device) number no more
/// than the logical CPUs. Returns the reduction the run will use.
pub fn check_devices(
    names: &[String],
    on_this_machine: bool,
) -> std::result::Result<Reduction, String> {
    let mut cuda = Vec::new();
    let mut cpu = 0usize;
    for name in names {
        match name
            .parse::<DevicePreference>()
            .map_err(|e| format!("device `{name}`: {e}"))?
        {
            DevicePreference::Cuda(i) => {
                if cuda.contains(&i) {
                    return Err(format!(
                        "device `{name}` is listed twice (a collective needs distinct devices)"
                    ));
                }
                cuda.push(i);
            }
            DevicePreference::Cpu | DevicePreference::Auto => cpu += 1,
        }
    }
    let reduction = match (names.len(), cpu) {
        (0 | 1, _) => Reduction::Single,
        (_, 0) => Reduction::Collective,
        _ => Reduction::OnFirstDevice,
    };
    if !on_this_machine {
        return Ok(reduction);
    }
    if let Some(&max) = cuda.iter().max() {
        let present = cuda_device_count()?;
        if max >= present {
            return Err(format!(
                "{} devices listed ({}) but this machine has {present} CUDA device(s): `cuda:{max}` does not exist",
                names.len(),
                names.join(", ")
            ));
        }
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpu > cores {
        return Err(format!(
            "{cpu} CPU replicas listed but this machine has {cores} logical CPUs (each replica is one more thread on the same flex device)"
        ));
    }
    Ok(reduction)
}

#[cfg(feature = "cuda")]
fn cuda_device_count() -> std::result::Result<usize, String> {
    use burn::tensor::DeviceType;
    Ok(Device::enumerate(DeviceType::Cuda).into_iter().count())
}

#[cfg(not(feature = "cuda"))]
fn cuda_device_count() -> std::result::Result<usize, String> {
    Err(
        "CUDA devices listed but this build has no CUDA support (rebuild with --features cuda)"
            .into(),
    )
}

/// The replicas of one run: their devices, the reduction, and (for a collective) Burn's
/// communication context, alive for the whole run.
pub struct Replicas {
    pub devices: Vec<Device>,
    pub reduction: Reduction,
    _context: Option<DistributedContext>,
}

impl Replicas {
    /// `devices` are autodiff devices; the first holds the master weights.
    pub fn new(devices: Vec<Device>, reduction: Reduction) -> Self {
        let context = (reduction == Reduction::Collective).then(|| {
            DistributedContext::init(
                inner_devices(&devices),
                DistributedConfig {
                    all_reduce_op: ReduceOperation::Sum,
                },
            )
        });
        Replicas {
            devices,
            reduction,
            _context: context,
        }
    }

    /// Runs `window` over the replicas of `model` (micro-batch `m` on device `m % n`, each
    /// device in its own thread) with `run_share`, and returns the summed loss, the gradients
    /// summed over every micro-batch on the first device, and the token count.
    pub fn run<F>(
        &self,
        model: &CausalLm,
        window: &[Batch],
        run_share: F,
    ) -> Result<(f64, NamedGrads, usize)>
    where
        F: Fn(&CausalLm, Vec<(usize, &Batch)>) -> (f64, NamedGrads, usize) + Sync,
    {
        if self.reduction == Reduction::Single {
            // On a worker of the kernels' pool: no third thread that sleeps and wakes around
            // every parallel kernel (see `compute_pool`). Not for several replicas: their
            // threads wait for the pool, and a worker blocked on them could starve it.
            return Ok(on_pool(|| {
                run_share(model, window.iter().enumerate().collect())
            }));
        }
        let n = self.devices.len();
        let inner = inner_devices(&self.devices);
        let collective = self.reduction == Reduction::Collective;
        let replicas: Vec<CausalLm> = self.devices.iter().map(|d| model.clone().fork(d)).collect();
        let results = std::thread::scope(|s| {
            let handles: Vec<_> = replicas
                .into_iter()
                .enumerate()
                .map(|(i, replica)| {
                    let share: Vec<(usize, &Batch)> = window
                        .iter()
                        .enumerate()
                        .filter(|(m, _)| m % n == i)
                        .collect();
                    let (run_share, inner) = (&run_share, &inner);
                    s.spawn(move || {
                        let (loss, grads, tokens) = run_share(&replica, share);
                        let grads = if collective {
                            all_reduce_sum(grads, inner)
                        } else {
                            grads
                        };
                        (loss, grads, tokens)
                    })
                })
                .collect();
            handles
                .into_iter()
                .enumerate()
                .map(|(i, h)| {
                    h.join().map_err(|_| {
                        TrainError::Invalid(format!("training on device {i} panicked"))
                    })
                })
                .collect::<Result<Vec<_>>>()
        })?;
        let (mut loss_sum, mut tokens) = (0.0, 0);
        let mut grads = NamedGrads::new();
        for (i, (l, g, tk)) in results.into_iter().enumerate() {
            loss_sum += l;
            tokens += tk;
            if collective {
                // Every device holds the same sum after the all-reduce; keep the first's.
                if i == 0 {
                    grads = g;
                }
                continue;
            }
            for (name, t) in g {
                let t = t.to_device(&inner[0]);
                let merged = match grads.remove(&name) {
                    Some(acc) => acc + t,
                    None => t,
                };
                grads.insert(name, merged);
            }
        }
        Ok((loss_sum, grads, tokens))
    }
}

fn inner_devices(devices: &[Device]) -> Vec<Device> {
    devices
        .iter()
        .map(|d| d.clone().without_autodiff())
        .collect()
}

/// Sums `grads` over every device with Burn's collective: each device issues the all-reduces
/// in the same (name) order, then waits for them.
fn all_reduce_sum(grads: NamedGrads, devices: &[Device]) -> NamedGrads {
    let pending: Vec<_> = grads
        .into_iter()
        .map(|(name, g)| (name, all_reduce(g, ReduceOperation::Sum, devices.to_vec())))
        .collect();
    pending
        .into_iter()
        .map(|(name, c)| (name, c.resolve()))
        .collect()
}
