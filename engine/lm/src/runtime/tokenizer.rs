//! Tokenizer: a thin wrapper over HF `tokenizers`, loadable from `tokenizer.json`, an HF model
//! directory, or the vocabulary embedded in a GGUF file.
//!
//! Why one wrapper: the runtime needs more than ids — end-of-sequence ids (which live in
//! `tokenizer_config.json`, `generation_config.json` or GGUF metadata), the chat template source,
//! and streaming detokenisation — and the model code should not care where those came from.
//! For GGUF we rebuild the exact `tokenizers::Tokenizer` that the model's HF `tokenizer.json`
//! describes (byte-level BPE + the pre-tokenizer named by `tokenizer.ggml.pre`), so the ids are
//! identical to transformers'.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::Value;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::unicode::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior};

use super::gguf::{GgufError, GgufFile};
use super::grammar::token_trie::TokenTrie;

/// Qwen3's reasoning delimiters; exposed so generation can find/strip thinking blocks.
pub const THINK_START: &str = "<think>";
pub const THINK_END: &str = "</think>";

/// Qwen2/Qwen3's pre-tokenizer regex (from their `tokenizer.json`).
const QWEN2_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Llama 3's pre-tokenizer regex (digits in groups of up to three).
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("{path}: cannot read tokenizer file: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid tokenizer: {msg}")]
    Parse { path: PathBuf, msg: String },
    #[error("{path}: invalid tokenizer config: {msg}")]
    Config { path: PathBuf, msg: String },
    #[error("{path}: cannot build tokenizer from GGUF metadata: {msg}")]
    Gguf { path: PathBuf, msg: String },
    #[error(transparent)]
    GgufFile(#[from] GgufError),
    #[error(
        "{path}: no tokenizer found (expected tokenizer.json, a model directory or a .gguf file)"
    )]
    NotFound { path: PathBuf },
    #[error("encoding failed: {0}")]
    Encode(String),
    #[error("decoding failed: {0}")]
    Decode(String),
}

pub type Result<T, E = TokenizerError> = std::result::Result<T, E>;

/// A loaded tokenizer plus the special-token facts the runtime needs.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    source: PathBuf,
    bos: Option<u32>,
    eos: Vec<u32>,
    bos_token: Option<String>,
    eos_token: Option<String>,
    chat_template: Option<String>,
    /// Every token's bytes for grammar-constrained decoding, built on first use and shared by
    /// clones.
    grammar_vocab: Arc<OnceLock<Arc<TokenTrie>>>,
    /// Every token's text, lower-cased, for banned words; built on first use, shared by clones.
    lowercase_vocab: Arc<Mutex<Option<Arc<Vec<String>>>>>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("source", &self.source)
            .field("vocab_size", &self.vocab_size())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .finish()
    }
}

impl Tokenizer {
    /// Loads from a `tokenizer.json`, a directory holding one, or a `.gguf` file (detected by
    /// its magic bytes, so the extension does not matter).
    pub fn from_path(path: &Path) -> Result<Tokenizer> {
        if path.is_dir() {
            return Self::from_dir(path);
        }
        let mut magic = [0u8; 4];
        let is_gguf = std::fs::File::open(path)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
            .is_ok()
            && &magic == b"GGUF";
        if is_gguf {
            let gguf = GgufFile::open(path)?;
            return Self::from_gguf(&gguf);
        }
        if !path.exists() {
            return Err(TokenizerError::NotFound {
                path: path.to_path_buf(),
            });
        }
        Self::from_json_file(path)
    }

    /// An HF model directory: `tokenizer.json`, plus `tokenizer_config.json` /
    /// `generation_config.json` / `chat_template.jinja` when present.
    pub fn from_dir(dir: &Path) -> Result<Tokenizer> {
        let json = dir.join("tokenizer.json");
        if !json.is_file() {
            return Err(TokenizerError::NotFound {
                path: dir.to_path_buf(),
            });
        }
        Self::from_json_file(&json)
    }

    /// A `tokenizer.json`; the sibling config files in its directory are read too.
    pub fn from_json_file(path: &Path) -> Result<Tokenizer> {
        let bytes = std::fs::read(path).map_err(|source| TokenizerError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let inner =
            tokenizers::Tokenizer::from_bytes(&bytes).map_err(|e| TokenizerError::Parse {
                path: path.to_path_buf(),
                msg: e.to_string(),
            })?;
        let mut tok = Tokenizer {
            inner,
            source: path.to_path_buf(),
            bos: None,
            eos: Vec::new(),
            bos_token: None,
            eos_token: None,
            chat_template: None,
            grammar_vocab: Default::default(),
            lowercase_vocab: Default::default(),
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        tok.read_hf_configs(dir)?;
        tracing::debug!(path = %path.display(), vocab = tok.vocab_size(), eos = ?tok.eos, "loaded tokenizer.json");
        Ok(tok)
    }

    fn read_hf_configs(&mut self, dir: &Path) -> Result<()> {
        let mut eos: BTreeSet<u32> = BTreeSet::new();
        let cfg_path = dir.join("tokenizer_config.json");
        if let Some(cfg) = read_json(&cfg_path)? {
            self.bos_token = token_string(cfg.get("bos_token"));
            self.eos_token = token_string(cfg.get("eos_token"));
            self.bos = self.bos_token.as_deref().and_then(|t| self.token_to_id(t));
            if let Some(t) = self.eos_token.as_deref() {
                let id = self.token_to_id(t).ok_or_else(|| TokenizerError::Config {
                    path: cfg_path.clone(),
                    msg: format!("eos_token '{t}' is not in the vocabulary"),
                })?;
                eos.insert(id);
            }
            self.chat_template =
                match cfg.get("chat_template") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(Value::Array(list)) => Some(pick_named_template(list).ok_or_else(
                        || TokenizerError::Config {
                            path: cfg_path.clone(),
                            msg: "chat_template list has no usable {name, template} entry".into(),
                        },
                    )?),
                    Some(_) => {
                        return Err(TokenizerError::Config {
                            path: cfg_path.clone(),
                            msg: "chat_template is neither a string nor a list".into(),
                        })
                    }
                };
        }
        // transformers prefers a standalone chat_template.jinja over the config's entry.
        let jinja = dir.join("chat_template.jinja");
        if jinja.is_file() {
            self.chat_template =
                Some(
                    std::fs::read_to_string(&jinja).map_err(|source| TokenizerError::Io {
                        path: jinja.clone(),
                        source,
                    })?,
                );
        }
        let gen_path = dir.join("generation_config.json");
        if let Some(gen) = read_json(&gen_path)? {
            match gen.get("eos_token_id") {
                Some(Value::Number(n)) => eos.extend(n.as_u64().map(|v| v as u32)),
                Some(Value::Array(a)) => {
                    eos.extend(a.iter().filter_map(|v| v.as_u64()).map(|v| v as u32))
                }
                _ => {}
            }
            if self.bos.is_none() {
                self.bos = gen
                    .get("bos_token_id")
                    .and_then(Value::as_u64)
                    .map(|v| v as u32);
            }
        }
        self.eos = eos.into_iter().collect();
        Ok(())
    }

    /// Rebuilds the HF tokenizer from `tokenizer.ggml.*` metadata (BPE / `gpt2` model only).
    pub fn from_gguf(gguf: &GgufFile) -> Result<Tokenizer> {
        let path = gguf.path().to_path_buf();
        let err = |msg: String| TokenizerError::Gguf {
            path: path.clone(),
            msg,
        };
        let model = gguf
            .get_str("tokenizer.ggml.model")
            .ok_or_else(|| err("missing tokenizer.ggml.model".into()))?;
        if model != "gpt2" {
            return Err(err(format!(
                "tokenizer.ggml.model '{model}' is not supported (only byte-level BPE, 'gpt2')"
            )));
        }
        let tokens = gguf
            .get_str_array("tokenizer.ggml.tokens")
            .ok_or_else(|| err("missing or non-string tokenizer.ggml.tokens".into()))?;
        let merges = gguf
            .get_str_array("tokenizer.ggml.merges")
            .ok_or_else(|| err("missing or non-string tokenizer.ggml.merges".into()))?;
        let types: Vec<u64> = match gguf.get("tokenizer.ggml.token_type") {
            None => vec![1; tokens.len()],
            Some(v) => v
                .as_array()
                .and_then(|a| a.iter().map(|x| x.as_u64()).collect::<Option<Vec<_>>>())
                .ok_or_else(|| err("tokenizer.ggml.token_type is not an integer array".into()))?,
        };
        if types.len() != tokens.len() {
            return Err(err(format!(
                "{} token types for {} tokens",
                types.len(),
                tokens.len()
            )));
        }

        let mut vocab = tokenizers::models::bpe::Vocab::default();
        for (id, t) in tokens.iter().enumerate() {
            vocab.insert((*t).to_string(), id as u32);
        }
        let merges = merges
            .iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| err(format!("merge '{m}' is not 'left right'")))
            })
            .collect::<Result<Vec<_>>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| err(format!("BPE: {e}")))?;

        let pre = gguf.get_str("tokenizer.ggml.pre").unwrap_or("default");
        let byte_level_regex = |use_regex| ByteLevel::new(false, false, use_regex);
        let split = |re: &str| -> Result<PreTokenizerWrapper> {
            Split::new(
                SplitPattern::Regex(re.to_string()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map(PreTokenizerWrapper::from)
            .map_err(|e| err(format!("pre-tokenizer regex: {e}")))
        };
        let mut nfc = false;
        // Mirrors llama.cpp's table of `tokenizer.ggml.pre` names to pre-tokenizer regexes.
        let pre_tok: PreTokenizerWrapper = match pre {
            "default" | "gpt2" | "gpt-2" | "mpt" | "olmo" | "jais" => byte_level_regex(true).into(),
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" => {
                Sequence::new(vec![Digits::new(true).into(), byte_level_regex(true).into()]).into()
            }
            "qwen2" | "stablelm2" => {
                nfc = pre == "qwen2";
                Sequence::new(vec![split(QWEN2_REGEX)?, byte_level_regex(false).into()]).into()
            }
            "llama-bpe" | "llama3" | "smaug-bpe" => {
                Sequence::new(vec![split(LLAMA3_REGEX)?, byte_level_regex(false).into()]).into()
            }
            other => {
                return Err(err(format!(
                    "tokenizer.ggml.pre '{other}' is not supported (known: default/gpt2, smollm, starcoder, qwen2, llama-bpe)"
                )))
            }
        };

        let mut inner = tokenizers::Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(pre_tok));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        if nfc {
            inner.with_normalizer(Some(NFC));
        }
        // Control tokens (type 3) are special; user-defined ones (type 4) are plain added tokens.
        let mut special = Vec::new();
        let mut added = Vec::new();
        for (t, ty) in tokens.iter().zip(&types) {
            match ty {
                3 => special.push(AddedToken::from(*t, true)),
                4 => added.push(AddedToken::from(*t, false).normalized(false)),
                _ => {}
            }
        }
        inner.add_special_tokens(&special);
        inner.add_tokens(&added);

        let id_key = |k: &str| {
            gguf.get_u64(&format!("tokenizer.ggml.{k}"))
                .and_then(|v| u32::try_from(v).ok())
                .filter(|&v| (v as usize) < tokens.len())
        };
        let bos = id_key("bos_token_id");
        let mut eos: BTreeSet<u32> = BTreeSet::new();
        eos.extend(id_key("eos_token_id"));
        eos.extend(id_key("eot_token_id"));
        eos.extend(id_key("eom_token_id"));

        if gguf.get_bool("tokenizer.ggml.add_bos_token") == Some(true) {
            if let Some(b) = bos {
                let bos_str = tokens[b as usize].to_string();
                let post = TemplateProcessing::builder()
                    .try_single(format!("{bos_str} $A"))
                    .and_then(|t| t.try_pair(format!("{bos_str} $A {bos_str} $B")))
                    .map_err(|e| err(format!("post-processor: {e}")))?
                    .special_tokens(vec![(bos_str.clone(), b)])
                    .build()
                    .map_err(|e| err(format!("post-processor: {e}")))?;
                inner.with_post_processor(Some(post));
            }
        }

        let tok = Tokenizer {
            inner,
            source: path.clone(),
            bos,
            eos: eos.into_iter().collect(),
            bos_token: bos.map(|b| tokens[b as usize].to_string()),
            eos_token: id_key("eos_token_id").map(|e| tokens[e as usize].to_string()),
            chat_template: gguf.get_str("tokenizer.chat_template").map(str::to_string),
            grammar_vocab: Default::default(),
            lowercase_vocab: Default::default(),
        };
        tracing::debug!(path = %path.display(), pre, vocab = tok.vocab_size(), "built tokenizer from GGUF");
        Ok(tok)
    }

    /// The underlying HF tokenizer, for callers that need offsets or batch encoding.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    pub fn source(&self) -> &Path {
        &self.source
    }

    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        Ok(self
            .encode_full(text, add_special_tokens)?
            .get_ids()
            .to_vec())
    }

    /// Full encoding (ids, tokens, offsets).
    pub fn encode_full(
        &self,
        text: &str,
        add_special_tokens: bool,
    ) -> Result<tokenizers::Encoding> {
        self.inner
            .encode(text, add_special_tokens)
            .map_err(|e| TokenizerError::Encode(e.to_string()))
    }

    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special)
            .map_err(|e| TokenizerError::Decode(e.to_string()))
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Ids that end generation (tokenizer_config `eos_token` ∪ generation_config `eos_token_id`,
    /// or GGUF eos/eot/eom), sorted.
    pub fn eos_token_ids(&self) -> Vec<u32> {
        self.eos.clone()
    }

    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    pub fn bos_token(&self) -> Option<&str> {
        self.bos_token.as_deref()
    }

    pub fn eos_token(&self) -> Option<&str> {
        self.eos_token.as_deref()
    }

    /// The chat template source shipped with the tokenizer, if any.
    pub fn chat_template_source(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// `(<think>, </think>)` ids when the vocabulary has them (Qwen3: 151667, 151668).
    pub fn think_token_ids(&self) -> Option<(u32, u32)> {
        Some((self.token_to_id(THINK_START)?, self.token_to_id(THINK_END)?))
    }

    /// The bytes that `id` adds to decoded text, or `None` for added and special tokens (never
    /// part of constrained JSON). With a byte-level decoder (Qwen, SmolLM2, GPT-2 style) these
    /// are the token's exact bytes, partial UTF-8 included; with another decoder, the token's
    /// text decoded alone, and `None` when that is not whole characters.
    pub fn token_bytes(&self, id: u32) -> Option<Vec<u8>> {
        if self
            .inner
            .get_added_vocabulary()
            .simple_id_to_token(id)
            .is_some()
        {
            return None;
        }
        self.plain_token_bytes(id, byte_level_table())
    }

    fn plain_token_bytes(&self, id: u32, table: &HashMap<char, u8>) -> Option<Vec<u8>> {
        let piece = self.inner.id_to_token(id)?;
        if matches!(self.inner.get_decoder(), Some(DecoderWrapper::ByteLevel(_))) {
            // As the byte-level decoder does: map every character, or keep the raw text.
            return Some(
                piece
                    .chars()
                    .map(|c| table.get(&c).copied())
                    .collect::<Option<Vec<u8>>>()
                    .unwrap_or_else(|| piece.into_bytes()),
            );
        }
        let text = self.decode(&[id], true).ok()?;
        (!text.contains('\u{FFFD}')).then(|| text.into_bytes())
    }

    /// The slot [`super::generation::TextCodec::lowercase_vocab`] keeps its result in.
    pub(crate) fn lowercase_vocab_cache(&self) -> &Mutex<Option<Arc<Vec<String>>>> {
        &self.lowercase_vocab
    }

    /// Every token's bytes in a trie for grammar-constrained decoding; built once (about a
    /// second for a 150k vocabulary) and shared by clones of this tokenizer.
    pub fn grammar_vocab(&self) -> Arc<TokenTrie> {
        self.grammar_vocab
            .get_or_init(|| {
                let table = byte_level_table();
                let added = self.inner.get_added_tokens_decoder();
                let tokens = (0..self.vocab_size() as u32)
                    .map(|id| {
                        if added.contains_key(&id) {
                            None
                        } else {
                            self.plain_token_bytes(id, table)
                        }
                    })
                    .collect();
                Arc::new(TokenTrie::new(tokens))
            })
            .clone()
    }

    /// Incremental detokeniser for streaming generation.
    pub fn decode_stream(&self, skip_special: bool) -> DecodeStream<'_> {
        DecodeStream {
            tok: self,
            skip_special,
            ids: Vec::new(),
            prefix_offset: 0,
            read_offset: 0,
        }
    }
}

/// Yields text deltas as ids arrive, emitting only complete UTF-8: a byte-level token can hold
/// part of a character, so we re-decode a short window and hold back text that still ends in a
/// replacement character. Decoding a window (not single tokens) also keeps decoders that depend
/// on neighbouring tokens (spaces, prefixes) right.
pub struct DecodeStream<'a> {
    tok: &'a Tokenizer,
    skip_special: bool,
    ids: Vec<u32>,
    prefix_offset: usize,
    read_offset: usize,
}

impl DecodeStream<'_> {
    /// Adds one id; returns the newly completed text, if any.
    pub fn step(&mut self, id: u32) -> Result<Option<String>> {
        self.ids.push(id);
        let prefix = self.tok.decode(
            &self.ids[self.prefix_offset..self.read_offset],
            self.skip_special,
        )?;
        let full = self
            .tok
            .decode(&self.ids[self.prefix_offset..], self.skip_special)?;
        if full.len() > prefix.len() && !full.ends_with('\u{FFFD}') && full.starts_with(&prefix) {
            let delta = full[prefix.len()..].to_string();
            self.prefix_offset = self.read_offset;
            self.read_offset = self.ids.len();
            Ok(Some(delta))
        } else {
            Ok(None)
        }
    }

    /// All ids fed so far.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }
}

/// GPT-2's byte-to-character table inverted: the character a byte-level BPE vocabulary writes
/// for each byte (printable Latin-1 stands for itself, the rest is shifted to U+0100..).
fn byte_level_table() -> &'static HashMap<char, u8> {
    static TABLE: OnceLock<HashMap<char, u8>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        let mut shifted = 0u32;
        (0..=255u8)
            .map(|b| {
                let c = if printable(b) {
                    char::from(b)
                } else {
                    shifted += 1;
                    char::from_u32(255 + shifted).unwrap_or('\u{FFFD}')
                };
                (c, b)
            })
            .collect()
    })
}

fn read_json(path: &Path) -> Result<Option<Value>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|source| TokenizerError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| TokenizerError::Config {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })
}

/// `bos_token`/`eos_token` are either a string or an AddedToken dict `{"content": ...}`.
fn token_string(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

/// transformers uses the template named "default" when several are given.
fn pick_named_template(list: &[Value]) -> Option<String> {
    let named: Vec<(&str, &str)> = list
        .iter()
        .filter_map(|e| Some((e.get("name")?.as_str()?, e.get("template")?.as_str()?)))
        .collect();
    named
        .iter()
        .find(|(n, _)| *n == "default")
        .or_else(|| named.first())
        .map(|(_, t)| t.to_string())
}
