//! The compute dtype of mixed precision and the casts that move modules and tensors into it.
//!
//! The f32 master weights are cast through the autodiff graph (`cast` is differentiable: its
//! backward casts the gradient back to the master's dtype), so gradients arrive on the masters
//! in f32 however the forward computed.

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{DType, Tensor};
use psy_core::train_spec::TrainPrecision;

use crate::runtime::CausalLm;

/// The tensor dtype the forward and backward compute in for `precision`.
pub fn compute_dtype(precision: TrainPrecision) -> DType {
    match precision {
        TrainPrecision::F32 => DType::F32,
        TrainPrecision::Bf16 => DType::BF16,
    }
}

/// Casts every float parameter to `dtype`, keeping its id.
struct CastMapper {
    dtype: DType,
}

impl ModuleMapper for CastMapper {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        Param::from_mapped_value(id, tensor.cast(self.dtype), mapper)
    }
}

/// `module` with its float parameters in `dtype`: itself (cloned) for f32, else a
/// differentiable cast whose graph leads back to `module`'s parameters.
pub fn in_dtype<M: Module>(module: &M, dtype: DType) -> M {
    match dtype {
        DType::F32 => module.clone(),
        _ => module.clone().map(&mut CastMapper { dtype }),
    }
}

/// The compute copy of `master` in `dtype`; the masters stay the graph's leaves, so
/// `accumulate_grads(master, ..)` collects their (f32) gradients after `backward`.
pub fn compute_copy(master: &CausalLm, dtype: DType) -> CausalLm {
    master.clone().map(&mut CastMapper { dtype })
}

/// `t` itself when already in `dtype`, else its (differentiable) cast.
pub fn to_dtype<const D: usize>(t: Tensor<D>, dtype: DType) -> Tensor<D> {
    if t.dtype() == dtype {
        t
    } else {
        t.cast(dtype)
    }
}

/// `t` in f32 (the loss, the attention's accumulators).
pub fn in_f32<const D: usize>(t: Tensor<D>) -> Tensor<D> {
    to_dtype(t, DType::F32)
}
