//! Device selection: Burn's flex CPU backend always, CUDA when built with `--features cuda`.

use burn::tensor::Device;

use super::error::{Result, RuntimeError};

/// Which device to run the model on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DevicePreference {
    /// CUDA device 0 when compiled in, else the CPU; `PSY_DEVICE=cpu|cuda[:N]` overrides.
    #[default]
    Auto,
    /// Burn's flex backend (pure Rust, multi-threaded through rayon).
    Cpu,
    /// CUDA device by index (needs the `cuda` feature).
    Cuda(usize),
}

impl std::str::FromStr for DevicePreference {
    type Err = RuntimeError;

    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim().to_ascii_lowercase();
        match s.as_str() {
            "auto" | "" => Ok(Self::Auto),
            "cpu" | "flex" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|i| i.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| {
                    RuntimeError::Request(format!("unknown device `{s}` (cpu, cuda, cuda:N)"))
                }),
        }
    }
}

/// Resolves a preference to a Burn device; asking for CUDA in a CPU-only build is an error.
pub fn select_device(pref: DevicePreference) -> Result<Device> {
    let pref = match (pref, std::env::var("PSY_DEVICE")) {
        (DevicePreference::Auto, Ok(v)) => v.parse()?,
        (p, _) => p,
    };
    match pref {
        DevicePreference::Cpu => Ok(Device::flex()),
        #[cfg(feature = "cuda")]
        DevicePreference::Auto => Ok(Device::cuda(0)),
        #[cfg(not(feature = "cuda"))]
        DevicePreference::Auto => Ok(Device::flex()),
        #[cfg(feature = "cuda")]
        DevicePreference::Cuda(i) => Ok(Device::cuda(i)),
        #[cfg(not(feature = "cuda"))]
        DevicePreference::Cuda(_) => Err(RuntimeError::Unsupported(
            "this build has no CUDA support (rebuild with --features cuda)".into(),
        )),
    }
}
