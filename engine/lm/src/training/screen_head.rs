//! Training the crisis guard's screen: low-rank adapters on the encoder's upper blocks and a
//! head of one hidden layer over the pooled sentence embedding,
//! with three cumulative level outputs (`>= moderate`, `>= high`, `imminent`, each a logistic
//! output trained with binary cross-entropy, so that the levels stay ordered) and a category
//! output (softmax cross-entropy, half weight). AdamW (psy's own, as in SFT) from a seeded
//! initialisation in a seeded order, so the same data and settings give the same screen.
//!
//! The trained tensors use the names `psy_safety::screen::head` reads; the head's inference
//! lives there, in plain Rust, and a test checks both compute the same outputs.

use burn::module::{Module, Param};
use burn::tensor::{activation, Device, Int, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::optim::{accumulate_grads, AdamW, AdamWConfig, NamedGrads};
use crate::encoder::adapter::{self, NamedTensor};
use crate::encoder::model::{mask_bias, BertLayer};
use crate::encoder::pooling::l2_normalize;
use crate::encoder::Encoder;
use crate::runtime::lora::with_dropout;

/// Weight of the category loss beside the level loss.
const CATEGORY_WEIGHT: f32 = 0.5;

/// A dense layer `[out, in]` with bias.
#[derive(Module, Debug)]
pub struct Dense {
    pub weight: Param<Tensor<2>>,
    pub bias: Param<Tensor<1>>,
}

impl Dense {
    /// PyTorch's `nn.Linear` initialisation (uniform in `±1/sqrt(in)`), from `rng`.
    fn new(out: usize, inp: usize, rng: &mut StdRng, device: &Device) -> Self {
        let bound = 1.0 / (inp as f32).sqrt();
        let mut draw =
            |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-bound..bound)).collect() };
        let w = draw(out * inp);
        let b = draw(out);
        Dense {
            weight: Param::from_tensor(Tensor::from_data(TensorData::new(w, [out, inp]), device)),
            bias: Param::from_tensor(Tensor::from_data(TensorData::new(b, [out]), device)),
        }
    }

    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        x.matmul(self.weight.val().transpose()) + self.bias.val().unsqueeze_dim(0)
    }
}

/// The head as a Burn module (field names are the tensor names).
#[derive(Module, Debug)]
pub struct ScreenHead {
    pub hidden: Dense,
    pub level: Dense,
    pub category: Dense,
}

impl ScreenHead {
    /// Level logits `[n, 3]` and category logits `[n, categories]`.
    pub fn forward(&self, x: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
        let h = activation::relu(self.hidden.forward(x));
        (self.level.forward(h.clone()), self.category.forward(h))
    }
}

/// Settings of one training run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HeadConfig {
    /// Width of the head's hidden layer.
    pub hidden: usize,
    /// Upper encoder blocks fine-tuned through low-rank adapters (0: a frozen encoder).
    pub tuned_layers: usize,
    pub rank: usize,
    /// Adapter scale (`alpha / rank` in PEFT's terms) and input dropout.
    pub scale: f64,
    pub dropout: f64,
    /// Texts per optimizer step.
    pub batch: usize,
    pub epochs: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    /// Optimizer steps over which the learning rate rises linearly to `learning_rate` (0: the
    /// full rate from the first step, as the shipped screen was trained). Members whose adapted
    /// blocks collapse in the first steps end at the prior's loss; a warm-up is the usual cure.
    pub warmup_steps: usize,
    pub seed: u64,
}

/// The share of the learning rate at optimizer step `step` (counted from 1) under a linear
/// warm-up of `warmup` steps.
pub fn warmup_share(step: u64, warmup: usize) -> f64 {
    if warmup == 0 {
        1.0
    } else {
        (step as f64 / warmup as f64).min(1.0)
    }
}

/// Labelled texts: `levels[i]` are the three cumulative targets (0 or 1), `category[i]` an
/// index below `categories`.
pub struct HeadData<'a> {
    pub texts: &'a [&'a str],
    pub levels: &'a [[f32; 3]],
    pub category: &'a [usize],
    pub categories: usize,
}

/// A trained screen: the head's and the encoder adapter's `(name, shape, values)`, and the mean
/// loss of each epoch.
pub struct TrainedHead {
    pub tensors: Vec<NamedTensor>,
    pub adapter: Vec<NamedTensor>,
    pub losses: Vec<f32>,
}

/// What trains: the encoder's upper blocks (adapters only) and the head.
#[derive(Module, Debug)]
struct Tuned {
    top: Vec<BertLayer>,
    head: ScreenHead,
}

/// One batch with the frozen lower blocks already applied.
struct Batch {
    hidden: TensorData,
    mask: TensorData,
    levels: TensorData,
    category: TensorData,
}

/// Trains the screen on `data` with `encoder` underneath: the lower blocks run once (frozen),
/// the upper `tuned_layers` blocks train through adapters together with the head, in batches
/// of similar length, in a seeded order.
pub fn train_head(
    encoder: &Encoder,
    data: &HeadData,
    config: &HeadConfig,
) -> Result<TrainedHead, String> {
    let n = data.texts.len();
    if n == 0 {
        return Err("no training examples".into());
    }
    if data.levels.len() != n || data.category.len() != n {
        return Err(format!(
            "{n} texts but {} level targets and {} categories",
            data.levels.len(),
            data.category.len()
        ));
    }
    if let Some(&c) = data.category.iter().find(|&&c| c >= data.categories) {
        return Err(format!(
            "category index {c} is not below {}",
            data.categories
        ));
    }
    let layers = encoder.model().layers.len();
    if config.tuned_layers > layers || config.batch == 0 {
        return Err(format!(
            "tuned_layers {} (the encoder has {layers}) or batch {} is out of range",
            config.tuned_layers, config.batch
        ));
    }
    let frozen = layers - config.tuned_layers;
    let encodings = encoder.encode(data.texts).map_err(|e| e.to_string())?;
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| (encodings[i].len(), i));
    let mut batches = Vec::new();
    for chunk in order.chunks(config.batch) {
        let encs: Vec<&tokenizers::Encoding> = chunk.iter().map(|&i| &encodings[i]).collect();
        let (ids, types, mask) = encoder.padded(&encs);
        let hidden = encoder
            .model()
            .forward_until(ids, types, mask.clone(), frozen);
        let b = chunk.len();
        batches.push(Batch {
            hidden: hidden.into_data(),
            mask: mask.into_data(),
            levels: TensorData::new(
                chunk
                    .iter()
                    .flat_map(|&i| data.levels[i])
                    .collect::<Vec<f32>>(),
                [b, 3],
            ),
            category: TensorData::new(
                chunk
                    .iter()
                    .map(|&i| data.category[i] as i64)
                    .collect::<Vec<i64>>(),
                [b, 1],
            ),
        });
    }

    let device = Device::flex().autodiff();
    let mut rng = StdRng::seed_from_u64(config.seed);
    let dim = encoder.dim();
    let top: Vec<BertLayer> = encoder.model().layers[frozen..]
        .iter()
        .map(|l| {
            adapter::attach(
                l.clone().to_device(&device),
                config.rank,
                config.scale,
                config.dropout,
                &mut rng,
                &device,
            )
        })
        .collect();
    let head = ScreenHead {
        hidden: Dense::new(config.hidden, dim, &mut rng, &device),
        level: Dense::new(3, config.hidden, &mut rng, &device),
        category: Dense::new(data.categories, config.hidden, &mut rng, &device),
    };
    let mut model = Tuned { top, head };
    let (pooling, normalize) = encoder.pooling();
    let mut opt = AdamW::new(AdamWConfig {
        weight_decay: config.weight_decay,
        ..AdamWConfig::default()
    });
    let mut losses = Vec::with_capacity(config.epochs);
    let mut step: u64 = 0;
    for _ in 0..config.epochs {
        let mut visit: Vec<usize> = (0..batches.len()).collect();
        for i in (1..visit.len()).rev() {
            visit.swap(i, rng.random_range(0..=i));
        }
        let mut total = 0.0f64;
        for &bi in &visit {
            let b = &batches[bi];
            step += 1;
            let loss = with_dropout(config.seed ^ step.wrapping_mul(0x9E37_79B9), || {
                let mut x = Tensor::<3>::from_data(b.hidden.clone(), &device);
                let mask = Tensor::<2>::from_data(b.mask.clone(), &device);
                let bias = mask_bias(mask.clone());
                for layer in &model.top {
                    x = layer.forward(x, bias.clone());
                }
                let mut pooled = pooling.pool(x, mask);
                if normalize {
                    pooled = l2_normalize(pooled);
                }
                let (lz, cz) = model.head.forward(pooled);
                let y = Tensor::<2>::from_data(b.levels.clone(), &device);
                // Binary cross-entropy with logits, stably: max(z, 0) - z y + log(1 + e^-|z|).
                let bce =
                    lz.clone().clamp_min(0.0) - lz.clone() * y + (lz.abs().neg().exp() + 1.0).log();
                let ids = Tensor::<2, Int>::from_data(b.category.clone(), &device);
                let ce = activation::log_softmax(cz, 1).gather(1, ids).mean().neg();
                bce.mean() + ce * CATEGORY_WEIGHT
            });
            let value = loss
                .clone()
                .into_data()
                .try_into_vec::<f32>()
                .map_err(|e| format!("reading the loss: {e:?}"))?;
            total += f64::from(value.first().copied().unwrap_or(f32::NAN));
            let mut g = loss.backward();
            let mut grads = NamedGrads::new();
            accumulate_grads(&model, &mut g, &mut grads, 1.0);
            let lr = config.learning_rate * warmup_share(step, config.warmup_steps);
            model = opt.step(model, &mut grads, lr);
        }
        losses.push((total / batches.len() as f64) as f32);
    }
    let read = |name: &str, t: Tensor<2>| -> Result<NamedTensor, String> {
        let shape = t.dims().to_vec();
        let v = t
            .into_data()
            .try_into_vec::<f32>()
            .map_err(|e| format!("reading {name}: {e:?}"))?;
        Ok((name.to_string(), shape, v))
    };
    let read1 = |name: &str, t: Tensor<1>| {
        read(name, t.unsqueeze_dim(0)).map(|(n, s, v)| (n, vec![s[1]], v))
    };
    let h = &model.head;
    let tensors = vec![
        read("hidden.weight", h.hidden.weight.val())?,
        read1("hidden.bias", h.hidden.bias.val())?,
        read("level.weight", h.level.weight.val())?,
        read1("level.bias", h.level.bias.val())?,
        read("category.weight", h.category.weight.val())?,
        read1("category.bias", h.category.bias.val())?,
    ];
    let adapter = adapter::export(&mut model.top, frozen).map_err(|e| e.to_string())?;
    Ok(TrainedHead {
        tensors,
        adapter,
        losses,
    })
}

#[cfg(test)]
mod tests {
    use super::warmup_share;

    #[test]
    fn the_warm_up_rises_linearly_then_holds() {
        assert_eq!(warmup_share(1, 0), 1.0);
        assert_eq!(warmup_share(1, 4), 0.25);
        assert_eq!(warmup_share(3, 4), 0.75);
        assert_eq!(warmup_share(4, 4), 1.0);
        assert_eq!(warmup_share(900, 4), 1.0);
    }
}
