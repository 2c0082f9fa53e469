//! Access to flex f32 tensors on the host, plain or tracked by autodiff, for the fused kernels.

use burn::backend::flex::FlexTensor;
use burn::backend::BackendTypes;
use burn::backend::{Autodiff, Flex};
use burn::tensor::{DType, Tensor, TensorData};

/// Elements per rayon task of an element-wise kernel: 64 KiB of f32, enough to amortise the
/// scheduling, small enough to balance two threads.
pub(crate) const CHUNK: usize = 1 << 14;

/// A flex f32 tensor as the fused kernels take it.
pub(crate) enum FlexF32 {
    /// Inference or a forward without autodiff.
    Plain(FlexTensor),
    /// A tensor of the autodiff graph.
    Tracked(<Autodiff<Flex> as BackendTypes>::FloatTensorPrimitive),
}

impl FlexF32 {
    /// `t` as a flex f32 tensor, or `None` for other dtypes and backends.
    pub(crate) fn of<const D: usize>(t: &Tensor<D>) -> Option<Self> {
        if t.dtype() != DType::F32 {
            return None;
        }
        if t.is_autodiff() {
            t.clone()
                .try_into_primitive::<Autodiff<Flex>>()
                .ok()
                .map(FlexF32::Tracked)
        } else {
            t.clone()
                .try_into_primitive::<Flex>()
                .ok()
                .map(FlexF32::Plain)
        }
    }

    /// The values, without the graph.
    pub(crate) fn value(self) -> FlexTensor {
        match self {
            FlexF32::Plain(t) => t,
            FlexF32::Tracked(t) => t.into_primitive(),
        }
    }
}

/// `t` laid out contiguously (itself when it already is).
pub(crate) fn contiguous(t: FlexTensor) -> FlexTensor {
    if t.as_slice::<f32>().is_some() {
        t
    } else {
        t.to_contiguous()
    }
}

/// The f32 values of a contiguous tensor.
pub(crate) fn values(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>().expect("contiguous f32 tensor")
}

/// A contiguous flex tensor of `shape` holding `data`.
pub(crate) fn tensor(data: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(data, shape))
}

/// The dims of a flex tensor.
pub(crate) fn dims(t: &FlexTensor) -> Vec<usize> {
    t.layout().shape().to_vec()
}
