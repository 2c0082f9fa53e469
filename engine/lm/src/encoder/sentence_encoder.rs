//! The public sentence encoder: texts in, one unit-length vector per text out, exactly as
//! sentence-transformers computes it for the same directory.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use burn::tensor::{Device, Int, Tensor, TensorData};
use tokenizers::{TruncationParams, TruncationStrategy};

use super::bottom_states::BottomStates;
use super::config::BertConfig;
use super::error::{EncoderError, Result};
use super::host_forward::{HostBert, TokenRow};
use super::model::BertModel;
use super::modules::SentencePipeline;
use super::pooling::Pooling;
use super::precision::EncoderPrecision;
use crate::runtime::weights::SafetensorsSource;

/// Texts run through the model together (sentence-transformers' default `batch_size`): bounds
/// the activations of a large call.
pub const MAX_BATCH: usize = 32;

/// A loaded sentence encoder (BERT + pooling [+ normalisation]) on the CPU.
pub struct Encoder {
    model: BertModel,
    tokenizer: tokenizers::Tokenizer,
    pooling: Pooling,
    normalize: bool,
    max_seq_length: usize,
    hidden_size: usize,
    dir: PathBuf,
    tokenizer_path: PathBuf,
    /// The weights in host memory for [`Encoder::embed`], copied on first use (the Burn model
    /// stays for training).
    host: OnceLock<Arc<HostBert>>,
    /// Lower blocks' states shared with adapted copies, once a copy exists.
    bottom: OnceLock<Arc<BottomStates>>,
    precision: EncoderPrecision,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("dir", &self.dir)
            .field("dim", &self.hidden_size)
            .field("pooling", &self.pooling)
            .field("normalize", &self.normalize)
            .field("max_seq_length", &self.max_seq_length)
            .field("precision", &self.precision)
            .finish()
    }
}

impl Encoder {
    /// Loads a sentence-transformers directory: `modules.json`, the transformer's
    /// `config.json`, `model.safetensors` and `tokenizer.json`, the pooling `config.json` and
    /// `sentence_bert_config.json`. See [`super::shared`] for the process-wide copy.
    /// The precision is `PSY_ENCODER_WEIGHTS`'s (f32 when unset).
    pub fn load(dir: &Path) -> Result<Self> {
        Self::load_with(dir, EncoderPrecision::from_env()?)
    }

    /// [`Encoder::load`] with the projections in `precision`.
    pub fn load_with(dir: &Path, precision: EncoderPrecision) -> Result<Self> {
        let pipeline = SentencePipeline::from_dir(dir)?;
        let tdir = &pipeline.transformer_dir;
        let config = BertConfig::from_file(&tdir.join("config.json"))?;
        let pooling = pipeline.pooling(config.hidden_size)?;
        let max_seq_length = pipeline.max_seq_length(config.max_position_embeddings)?;
        let tokenizer_path = tdir.join("tokenizer.json");
        let tokenizer = load_tokenizer(&tokenizer_path, max_seq_length)?;
        let device = Device::flex();
        let mut weights = SafetensorsSource::open(&tdir.join("model.safetensors"))?;
        let model = BertModel::load(&config, &mut weights, &device)?;
        Ok(Self {
            model,
            tokenizer,
            pooling,
            normalize: pipeline.normalize,
            max_seq_length,
            hidden_size: config.hidden_size,
            dir: dir.to_path_buf(),
            tokenizer_path,
            host: OnceLock::new(),
            bottom: OnceLock::new(),
            precision,
        })
    }

    /// How the projections multiply (`PSY_ENCODER_WEIGHTS` at load).
    pub fn precision(&self) -> EncoderPrecision {
        self.precision
    }

    /// Length of every embedding.
    pub fn dim(&self) -> usize {
        self.hidden_size
    }

    /// Tokens kept per text, `[CLS]` and `[SEP]` included; the rest is cut off.
    pub fn max_seq_length(&self) -> usize {
        self.max_seq_length
    }

    /// The directory the encoder was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Token ids the model sees for `text` (special tokens added, truncated).
    pub fn token_ids(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| self.tokenizer_error(e))?;
        Ok(enc.get_ids().to_vec())
    }

    /// One embedding per text, in order, as sentence-transformers' `encode` computes it. Up
    /// to [`MAX_BATCH`] texts at a time run through the model packed one after another without
    /// padding ([`super::host_forward`]); a text's embedding does not depend on the texts
    /// beside it.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let encodings = self.encode(texts)?;
        let mut out = Vec::with_capacity(texts.len());
        for (t, e) in texts.chunks(MAX_BATCH).zip(encodings.chunks(MAX_BATCH)) {
            out.extend(self.embed_packed(t, e));
        }
        Ok(out)
    }

    /// The host copy of the weights.
    fn host(&self) -> &Arc<HostBert> {
        self.host
            .get_or_init(|| Arc::new(HostBert::from_model(&self.model, self.precision)))
    }

    /// Embeds texts packed together. With adapted copies around, the lower blocks run only for
    /// texts no sharing encoder has read yet, and their states are kept for the others.
    fn embed_packed(&self, texts: &[&str], encodings: &[tokenizers::Encoding]) -> Vec<Vec<f32>> {
        let host = self.host();
        let h = host.hidden();
        let lengths: Vec<usize> = encodings.iter().map(|e| e.len()).collect();
        let bottom = self.bottom.get();
        let depth = bottom.map_or(0, |b| b.depth());
        let kept: Vec<Option<Arc<[f32]>>> = texts
            .iter()
            .zip(&lengths)
            .map(|(t, &len)| bottom.and_then(|b| b.get(t)).filter(|s| s.len() == len * h))
            .collect();
        let fresh: Vec<usize> = (0..texts.len()).filter(|&i| kept[i].is_none()).collect();
        let rows: Vec<TokenRow<'_>> = fresh
            .iter()
            .map(|&i| TokenRow {
                ids: encodings[i].get_ids(),
                type_ids: encodings[i].get_type_ids(),
            })
            .collect();
        let fresh_lengths: Vec<usize> = fresh.iter().map(|&i| lengths[i]).collect();
        let mut x = host.embed(&rows);
        host.run(&mut x, &fresh_lengths, 0..depth);
        if let Some(bottom) = bottom {
            let mut packed = Vec::with_capacity(lengths.iter().sum::<usize>() * h);
            let mut at = 0;
            for ((text, state), len) in texts.iter().zip(&kept).zip(&lengths) {
                match state {
                    Some(state) => packed.extend_from_slice(state),
                    None => {
                        let state = &x[at * h..(at + len) * h];
                        bottom.put(text, state);
                        packed.extend_from_slice(state);
                        at += len;
                    }
                }
            }
            x = packed;
        }
        host.run(&mut x, &lengths, depth..host.layers());
        host.pool(&x, &lengths, self.pooling, self.normalize)
    }

    /// Token ids, token type ids and the padding mask `[batch, seq]` of right-padded texts.
    pub fn padded(
        &self,
        batch: &[&tokenizers::Encoding],
    ) -> (Tensor<2, Int>, Tensor<2, Int>, Tensor<2>) {
        let (b, s) = (
            batch.len(),
            batch.iter().map(|e| e.len()).max().unwrap_or(0),
        );
        let mut ids = vec![0i64; b * s];
        let mut type_ids = vec![0i64; b * s];
        let mut mask = vec![0.0f32; b * s];
        for (row, enc) in batch.iter().enumerate() {
            let at = row * s;
            for (j, (&id, &ty)) in enc.get_ids().iter().zip(enc.get_type_ids()).enumerate() {
                ids[at + j] = i64::from(id);
                type_ids[at + j] = i64::from(ty);
                mask[at + j] = 1.0;
            }
        }
        let device = self.model.device();
        (
            Tensor::<2, Int>::from_data(TensorData::new(ids, [b, s]), &device),
            Tensor::<2, Int>::from_data(TensorData::new(type_ids, [b, s]), &device),
            Tensor::<2>::from_data(TensorData::new(mask, [b, s]), &device),
        )
    }

    /// Tokenizes `texts` as [`Encoder::embed`] does (special tokens, truncation).
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<tokenizers::Encoding>> {
        self.tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| self.tokenizer_error(e))
    }

    /// The BERT model.
    pub fn model(&self) -> &BertModel {
        &self.model
    }

    /// Pooling and whether vectors are normalised to unit length.
    pub fn pooling(&self) -> (Pooling, bool) {
        (self.pooling, self.normalize)
    }

    /// A copy of this encoder with a low-rank adapter merged into its weights (see
    /// [`super::adapter`]); `origin` names the adapter in errors and in the copy's name.
    /// The copy shares the blocks below the first one the adapter changes with this encoder:
    /// their weights, and the states of texts either encoder has read ([`BottomStates`]).
    pub fn with_adapter(&self, adapter: &[u8], origin: &str) -> Result<Encoder> {
        let mut model = self.model.clone();
        let changed = super::adapter::merge(&mut model, adapter, origin)?;
        let host = Arc::new(self.host().sharing(&model, |i| !changed.contains(&i)));
        let depth = changed.first().copied().unwrap_or(model.layers.len());
        let bottom = OnceLock::new();
        if depth > 0 {
            let shared = self
                .bottom
                .get_or_init(|| Arc::new(BottomStates::new(depth)));
            // A second adapter that changes a lower block than the first cannot share.
            if shared.depth() <= depth {
                let _ = bottom.set(Arc::clone(shared));
            }
        }
        Ok(Encoder {
            model,
            tokenizer: self.tokenizer.clone(),
            pooling: self.pooling,
            normalize: self.normalize,
            max_seq_length: self.max_seq_length,
            hidden_size: self.hidden_size,
            dir: self.dir.join(format!("+{origin}")),
            tokenizer_path: self.tokenizer_path.clone(),
            host: OnceLock::from(host),
            bottom,
            precision: self.precision,
        })
    }

    fn tokenizer_error(&self, e: tokenizers::Error) -> EncoderError {
        EncoderError::Tokenizer {
            path: self.tokenizer_path.clone(),
            msg: e.to_string(),
        }
    }
}

/// The directory's `tokenizer.json` with sentence-transformers' settings: truncation at
/// `max_seq_length` (the file's own truncation and fixed padding are replaced; batches are
/// padded by [`Encoder::embed`]).
fn load_tokenizer(path: &Path, max_seq_length: usize) -> Result<tokenizers::Tokenizer> {
    let err = |msg: String| EncoderError::Tokenizer {
        path: path.to_path_buf(),
        msg,
    };
    if !path.is_file() {
        return Err(err("file is missing".into()));
    }
    let mut tok = tokenizers::Tokenizer::from_file(path).map_err(|e| err(e.to_string()))?;
    tok.with_padding(None);
    tok.with_truncation(Some(TruncationParams {
        max_length: max_seq_length,
        strategy: TruncationStrategy::LongestFirst,
        ..Default::default()
    }))
    .map_err(|e| err(e.to_string()))?;
    Ok(tok)
}

/// Cosine similarity of two vectors (0 when either is all zeros).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let denom = norm(a) * norm(b);
    if denom == 0.0 {
        0.0
    } else {
        dot / denom
    }
}
