//! A DeepSpeed ZeRO-3 configuration (parameters, gradients and optimizer states partitioned
//! over every GPU), as PsyLLM's run used. Batch sizes, clipping and precision are `auto`: the
//! HF Trainer fills them from the job's YAML, so the two never disagree.

use serde_json::{json, Value};

pub(crate) fn zero3() -> Value {
    json!({
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "zero_allow_untested_optimizer": true,
        "bf16": { "enabled": "auto" },
        "fp16": { "enabled": "auto" },
        "zero_optimization": {
            "stage": 3,
            "overlap_comm": false,
            "contiguous_gradients": true,
            "sub_group_size": 1_000_000_000u64,
            "reduce_bucket_size": "auto",
            "stage3_prefetch_bucket_size": "auto",
            "stage3_param_persistence_threshold": "auto",
            "stage3_max_live_parameters": 1_000_000_000u64,
            "stage3_max_reuse_distance": 1_000_000_000u64,
            // Full weights are gathered when the model is saved, so the output directory holds
            // an ordinary HF checkpoint that psy loads.
            "stage3_gather_16bit_weights_on_model_save": true
        }
    })
}
