//! Shared by the benches.

use psy_lm::runtime::{Architecture, ModelConfig};

/// Qwen3-0.6B's shape: hidden 1024, 28 layers, 16/8 heads, head_dim 128, intermediate 3072,
/// vocab 151936, tied embeddings, q/k norms, RoPE theta 1e6.
pub fn qwen3_0_6b_shape() -> ModelConfig {
    let mut c = ModelConfig::new(Architecture::Qwen3, 151936, 1024, 3072, 28, 16, 8, 128);
    c.rope_theta = 1_000_000.0;
    c.tie_word_embeddings = true;
    c.qk_norm = true;
    c.max_position_embeddings = 4096;
    c
}

/// Whether a group is selected by the command-line filter: criterion filters benchmarks but
/// would still run each group's (slow) model setup.
pub fn wanted(group: &str) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-') && a.parse::<f64>().is_err())
        .collect();
    filters.is_empty()
        || filters
            .iter()
            .any(|f| group.contains(f.as_str()) || f.contains(group))
}
