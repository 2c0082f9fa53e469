//! The public sentence encoder: texts in, one unit-length vector per text out, exactly as
//! sentence-transformers computes it for the same directory.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Int, Tensor, TensorData};
use tokenizers::{TruncationParams, TruncationStrategy};

use super::config::BertConfig;
use super::error::{EncoderError, Result};
use super::model::BertModel;
use super::modules::SentencePipeline;
use super::pooling::{l2_normalize, Pooling};
use crate::runtime::weights::SafetensorsSource;

/// Texts run through the model together: sentence-transformers' default `batch_size`. Bounds the
/// `[batch, heads, seq, seq]` attention scores of a large call.
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
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("dir", &self.dir)
            .field("dim", &self.hidden_size)
            .field("pooling", &self.pooling)
            .field("normalize", &self.normalize)
            .field("max_seq_length", &self.max_seq_length)
            .finish()
    }
}

impl Encoder {
    /// Loads a sentence-transformers directory: `modules.json`, the transformer's
    /// `config.json`, `model.safetensors` and `tokenizer.json`, the pooling `config.json` and
    /// `sentence_bert_config.json`. See [`super::shared`] for the process-wide copy.
    pub fn load(dir: &Path) -> Result<Self> {
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
        })
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

    /// One embedding per text, in order. Texts are sorted by length and grouped into batches
    /// of up to [`MAX_BATCH`] texts of similar length ([`length_batches`]), each padded to its
    /// longest text and masked, as sentence-transformers' `encode` does; padding never changes
    /// a text's embedding (beyond rounding).
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| self.tokenizer_error(e))?;
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(encodings[i].len()));
        let lengths: Vec<usize> = order.iter().map(|&i| encodings[i].len()).collect();
        let mut out = vec![Vec::new(); texts.len()];
        let mut at = 0;
        for size in length_batches(&lengths) {
            let chunk = &order[at..at + size];
            at += size;
            let batch: Vec<&tokenizers::Encoding> = chunk.iter().map(|&i| &encodings[i]).collect();
            for (&i, v) in chunk.iter().zip(self.embed_batch(&batch)?) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    /// Runs one right-padded batch through model, pooling and normalisation.
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
    pub fn with_adapter(&self, adapter: &[u8], origin: &str) -> Result<Encoder> {
        let mut model = self.model.clone();
        super::adapter::merge(&mut model, adapter, origin)?;
        Ok(Encoder {
            model,
            tokenizer: self.tokenizer.clone(),
            pooling: self.pooling,
            normalize: self.normalize,
            max_seq_length: self.max_seq_length,
            hidden_size: self.hidden_size,
            dir: self.dir.join(format!("+{origin}")),
            tokenizer_path: self.tokenizer_path.clone(),
        })
    }

    fn embed_batch(&self, batch: &[&tokenizers::Encoding]) -> Result<Vec<Vec<f32>>> {
        let (ids, type_ids, mask) = self.padded(batch);
        let hidden = self.model.forward(ids, type_ids, mask.clone());
        let mut pooled = self.pooling.pool(hidden, mask);
        if self.normalize {
            pooled = l2_normalize(pooled);
        }
        let flat = pooled
            .into_data()
            .try_into_vec::<f32>()
            .map_err(|e| EncoderError::Output(format!("{e:?}")))?;
        Ok(flat.chunks(self.hidden_size).map(<[f32]>::to_vec).collect())
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

/// A text joins a batch while it has at least this share of the batch's longest text's tokens
/// or while padding it wastes at most [`MAX_PADDING`] tokens: a planner's turn mixes a
/// ~60-token context view with ~10-token sentences, and padding the sentences to 60 tokens
/// doubled the encoder's work; among similar lengths, fewer larger batches run faster.
const MIN_LENGTH_SHARE: f32 = 0.75;

/// See [`MIN_LENGTH_SHARE`].
const MAX_PADDING: usize = 16;

/// Sizes of consecutive batches over token lengths sorted longest first: at most [`MAX_BATCH`]
/// texts each, and a new batch whenever a text is both shorter than [`MIN_LENGTH_SHARE`] of its
/// batch's first (longest) text and more than [`MAX_PADDING`] tokens shorter.
pub fn length_batches(sorted_lengths: &[usize]) -> Vec<usize> {
    let mut sizes: Vec<usize> = Vec::new();
    let mut longest = 0usize;
    for &len in sorted_lengths {
        let fits = len as f32 >= MIN_LENGTH_SHARE * longest as f32
            || longest.saturating_sub(len) <= MAX_PADDING;
        match sizes.last_mut() {
            Some(n) if *n < MAX_BATCH && fits => *n += 1,
            _ => {
                sizes.push(1);
                longest = len;
            }
        }
    }
    sizes
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_group_similar_lengths() {
        // A planner's new turn: the context view alone; message and sentence together (10
        // tokens is less than 0.75 * 22 but only 12 tokens of padding).
        assert_eq!(length_batches(&[62, 22, 10]), [1, 2]);
        // 60 down to 45 share a batch (45 >= 0.75 * 60); 43 does not (43 < 45, 17 tokens
        // short); the next batch takes every length within 16 tokens of 43; 26 starts anew.
        assert_eq!(length_batches(&[60, 50, 45, 43, 30, 27, 26]), [3, 3, 1]);
        assert_eq!(length_batches(&[]), Vec::<usize>::new());
        // Never more than MAX_BATCH texts in one batch.
        assert_eq!(
            length_batches(&[10; 70]),
            [MAX_BATCH, MAX_BATCH, 70 - 2 * MAX_BATCH]
        );
    }
}
