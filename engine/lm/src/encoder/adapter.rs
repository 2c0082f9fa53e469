//! Low-rank adapters on the encoder's upper blocks: how the crisis guard's screen fine-tunes
//! all-MiniLM-L6-v2 (a frozen encoder's mean-pooled vectors mostly say what a text is about,
//! not whether the writer is the one at risk), and how the fine-tuned encoder is rebuilt for
//! inference by merging the adapter into the weights (no cost per text).
//!
//! File format (safetensors): `encoder.layer.N.<projection>.lora_a` `[rank, in]` and
//! `.lora_b` `[out, rank]`, with the adapter's scale already folded into `lora_b`, so that
//! merging is `W += lora_b · lora_a`.

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::Rng;
use safetensors::{Dtype, SafeTensors};

use super::error::{EncoderError, Result};
use super::model::{BertLayer, BertModel};
use crate::runtime::lora::LoraAdapter;

/// A tensor as written to safetensors: name, shape, values.
pub type NamedTensor = (String, Vec<usize>, Vec<f32>);

/// Attaches fresh adapters (`A` uniform in `±1/sqrt(in)`, `B` zero: nothing changes until
/// training moves `B`) to every projection of `layer`, after freezing its own weights.
pub fn attach(
    layer: BertLayer,
    rank: usize,
    scale: f64,
    dropout: f64,
    rng: &mut StdRng,
    device: &Device,
) -> BertLayer {
    let mut layer = layer.no_grad();
    for (_, lin) in layer.projections_mut() {
        let [out, inp] = lin.weight.dims();
        let bound = 1.0 / (inp as f32).sqrt();
        let a: Vec<f32> = (0..rank * inp)
            .map(|_| rng.random_range(-bound..bound))
            .collect();
        lin.lora = Some(LoraAdapter {
            lora_a: Param::from_tensor(Tensor::from_data(TensorData::new(a, [rank, inp]), device)),
            lora_b: Param::from_tensor(Tensor::zeros([out, rank], device)),
            scale,
            dropout,
        });
    }
    layer
}

/// The adapters of `layers` (numbered from `first`) as `(name, shape, values)`, scale folded
/// into `lora_b`: what [`merge`] reads back.
pub fn export(layers: &mut [BertLayer], first: usize) -> Result<Vec<NamedTensor>> {
    let mut out = Vec::new();
    for (i, layer) in layers.iter_mut().enumerate() {
        for (name, lin) in layer.projections_mut() {
            let Some(ad) = &lin.lora else { continue };
            let prefix = format!("encoder.layer.{}.{name}", first + i);
            let read = |t: Tensor<2>| -> Result<(Vec<usize>, Vec<f32>)> {
                let shape = t.dims().to_vec();
                let v = t
                    .into_data()
                    .try_into_vec::<f32>()
                    .map_err(|e| EncoderError::Output(format!("{e:?}")))?;
                Ok((shape, v))
            };
            let (sa, va) = read(ad.lora_a.val())?;
            let (sb, vb) = read(ad.lora_b.val() * ad.scale)?;
            out.push((format!("{prefix}.lora_a"), sa, va));
            out.push((format!("{prefix}.lora_b"), sb, vb));
        }
    }
    Ok(out)
}

/// Adds the adapter in `bytes` (safetensors, format above; `origin` names it in errors) to
/// `model`'s weights. Every tensor must name an existing projection with matching shapes.
/// Returns the indices of the blocks it changed, ascending.
pub fn merge(model: &mut BertModel, bytes: &[u8], origin: &str) -> Result<Vec<usize>> {
    let err = |msg: String| EncoderError::Adapter {
        origin: origin.to_string(),
        msg,
    };
    let st = SafeTensors::deserialize(bytes).map_err(|e| err(format!("not safetensors: {e}")))?;
    let read = |name: &str| -> Result<(Vec<usize>, Vec<f32>)> {
        let t = st
            .tensor(name)
            .map_err(|_| err(format!("tensor `{name}` is missing")))?;
        if t.dtype() != Dtype::F32 {
            return Err(err(format!(
                "tensor `{name}` is {:?}, expected F32",
                t.dtype()
            )));
        }
        let v = t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Ok((t.shape().to_vec(), v))
    };
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();
    let layers = model.layers.len();
    let mut changed: Vec<usize> = Vec::new();
    for name in names.iter().filter(|n| n.ends_with(".lora_a")) {
        let prefix = &name[..name.len() - ".lora_a".len()];
        let rest = prefix
            .strip_prefix("encoder.layer.")
            .ok_or_else(|| err(format!("tensor `{name}` is not under `encoder.layer.N.`")))?;
        let (idx, proj) = rest
            .split_once('.')
            .ok_or_else(|| err(format!("tensor `{name}` names no projection")))?;
        let idx: usize = idx
            .parse()
            .ok()
            .filter(|&i| i < layers)
            .ok_or_else(|| err(format!("tensor `{name}`: the encoder has {layers} layers")))?;
        let (sa, a) = read(name)?;
        let (sb, b) = read(&format!("{prefix}.lora_b"))?;
        let layer = &mut model.layers[idx];
        let lin = layer
            .projections_mut()
            .into_iter()
            .find(|(p, _)| *p == proj)
            .map(|(_, l)| l)
            .ok_or_else(|| {
                err(format!(
                    "tensor `{name}`: no projection `{proj}` in a BERT layer"
                ))
            })?;
        let [out, inp] = lin.weight.dims();
        if sa.len() != 2 || sb.len() != 2 || sa[1] != inp || sb[0] != out || sa[0] != sb[1] {
            return Err(err(format!(
                "`{prefix}`: lora_a {sa:?} and lora_b {sb:?} do not fit a [{out}, {inp}] weight"
            )));
        }
        let device = lin.weight.val().device();
        let a = Tensor::<2>::from_data(TensorData::new(a, [sa[0], inp]), &device);
        let b = Tensor::<2>::from_data(TensorData::new(b, [out, sb[1]]), &device);
        let merged = lin.weight.val() + b.matmul(a);
        lin.weight = Param::from_tensor(merged);
        changed.push(idx);
    }
    if let Some(stray) = names
        .iter()
        .find(|n| !n.ends_with(".lora_a") && !n.ends_with(".lora_b"))
    {
        return Err(err(format!("unexpected tensor `{stray}`")));
    }
    changed.sort_unstable();
    changed.dedup();
    Ok(changed)
}
