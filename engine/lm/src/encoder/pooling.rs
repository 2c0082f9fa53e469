//! Pooling of token states into one sentence vector, as sentence-transformers' `Pooling` module
//! does, and the L2 normalisation of its `Normalize` module.

use std::path::Path;

use burn::tensor::Tensor;
use serde_json::Value;

use super::error::{EncoderError, Result};

/// How token states become one vector (the `pooling_mode_*` flag set in `1_Pooling/config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Mean of the token states under the attention mask (`pooling_mode_mean_tokens`).
    Mean,
    /// The state of the first token, `[CLS]` (`pooling_mode_cls_token`).
    Cls,
}

impl Pooling {
    /// Reads a pooling `config.json`; exactly one implemented mode must be set, and
    /// `word_embedding_dimension` must be the model's hidden size.
    pub fn from_file(path: &Path, hidden_size: usize) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| EncoderError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let json: Value = serde_json::from_str(&text).map_err(|e| EncoderError::Parse {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        let field = |field: &str, msg: String| EncoderError::Field {
            path: path.to_path_buf(),
            field: field.into(),
            msg,
        };
        let dim = json
            .get("word_embedding_dimension")
            .ok_or_else(|| field("word_embedding_dimension", "missing".into()))?
            .as_u64()
            .ok_or_else(|| field("word_embedding_dimension", "not an integer".into()))?;
        if dim != hidden_size as u64 {
            return Err(field(
                "word_embedding_dimension",
                format!("{dim} differs from the model's hidden_size {hidden_size}"),
            ));
        }
        let modes: Vec<&str> = json
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, v)| k.starts_with("pooling_mode_") && v.as_bool() == Some(true))
            .map(|(k, _)| k.as_str())
            .collect();
        match modes.as_slice() {
            ["pooling_mode_mean_tokens"] => Ok(Self::Mean),
            ["pooling_mode_cls_token"] => Ok(Self::Cls),
            [] => Err(field("pooling_mode_*", "no pooling mode is set".into())),
            [one] => Err(EncoderError::UnsupportedPooling {
                path: path.to_path_buf(),
                mode: (*one).into(),
            }),
            // sentence-transformers concatenates several modes; nothing here needs that.
            several => Err(EncoderError::UnsupportedPooling {
                path: path.to_path_buf(),
                mode: several.join(" + "),
            }),
        }
    }

    /// `[batch, seq, hidden]` token states and a `[batch, seq]` 0/1 mask -> `[batch, hidden]`.
    pub fn pool(self, hidden: Tensor<3>, mask: Tensor<2>) -> Tensor<2> {
        let [b, _, h] = hidden.dims();
        match self {
            Self::Cls => hidden.narrow(1, 0, 1).reshape([b, h]),
            Self::Mean => {
                let mask = mask.unsqueeze_dim::<3>(2);
                let summed = (hidden * mask.clone()).sum_dim(1).reshape([b, h]);
                // sentence-transformers clamps the token count at 1e-9 (an all-padding row).
                let counts = mask.sum_dim(1).reshape([b, 1]).clamp_min(1e-9);
                summed / counts
            }
        }
    }
}

/// Rows scaled to unit L2 norm, as `torch.nn.functional.normalize` (norm clamped at 1e-12).
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = (x.clone() * x.clone()).sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    fn values(t: Tensor<2>) -> Vec<f32> {
        t.into_data().try_into_vec::<f32>().unwrap()
    }

    #[test]
    fn mean_pooling_ignores_padded_positions() {
        let d = Device::flex();
        // Row 0: two real tokens and one pad whose state must not count; row 1: three tokens.
        let hidden = Tensor::<3>::from_data(
            TensorData::new(
                vec![
                    1.0f32, 2.0, 3.0, 4.0, 100.0, 100.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0,
                ],
                [2, 3, 2],
            ),
            &d,
        );
        let mask = Tensor::<2>::from_data(
            TensorData::new(vec![1.0f32, 1.0, 0.0, 1.0, 1.0, 1.0], [2, 3]),
            &d,
        );
        let mean = values(Pooling::Mean.pool(hidden.clone(), mask.clone()));
        assert_eq!(mean, vec![2.0, 3.0, 2.0, 2.0]);
        assert_eq!(
            values(Pooling::Cls.pool(hidden, mask)),
            vec![1.0, 2.0, 1.0, 1.0]
        );
    }

    #[test]
    fn normalised_rows_have_unit_length_and_zero_stays_zero() {
        let d = Device::flex();
        let x = Tensor::<2>::from_data(TensorData::new(vec![3.0f32, 4.0, 0.0, 0.0], [2, 2]), &d);
        assert_eq!(values(l2_normalize(x)), vec![0.6, 0.8, 0.0, 0.0]);
    }

    #[test]
    fn pooling_config_names_the_unsupported_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let write = |body: &str| std::fs::write(&path, body).unwrap();
        write(r#"{"word_embedding_dimension": 4, "pooling_mode_mean_tokens": true}"#);
        assert_eq!(Pooling::from_file(&path, 4).unwrap(), Pooling::Mean);
        let e = Pooling::from_file(&path, 8).unwrap_err().to_string();
        assert!(e.contains("word_embedding_dimension"), "{e}");
        write(r#"{"word_embedding_dimension": 4, "pooling_mode_max_tokens": true}"#);
        let e = Pooling::from_file(&path, 4).unwrap_err().to_string();
        assert!(e.contains("pooling_mode_max_tokens"), "{e}");
        write(
            r#"{"word_embedding_dimension": 4, "pooling_mode_cls_token": true, "pooling_mode_mean_tokens": true}"#,
        );
        let e = Pooling::from_file(&path, 4).unwrap_err().to_string();
        assert!(
            e.contains("pooling_mode_cls_token + pooling_mode_mean_tokens"),
            "{e}"
        );
        write(r#"{"word_embedding_dimension": 4, "pooling_mode_mean_tokens": false}"#);
        let e = Pooling::from_file(&path, 4).unwrap_err().to_string();
        assert!(e.contains("no pooling mode"), "{e}");
    }
}
