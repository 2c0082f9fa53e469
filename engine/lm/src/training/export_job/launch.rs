//! The launch script and a DeepSpeed hostfile for one or many nodes.

use super::Cluster;

/// `launch.sh`: torchrun through `llamafactory-cli` (its `FORCE_TORCHRUN`, `NNODES`,
/// `NODE_RANK`, `MASTER_ADDR` variables), or DeepSpeed's own launcher with `hostfile`.
pub(crate) fn script(cluster: Cluster) -> String {
    format!(
        r#"#!/usr/bin/env bash
# Runs this job with LLaMA-Factory + DeepSpeed ZeRO-3 (written by `psy train --export-job`).
#
# One node ({g} GPUs):
#   ./launch.sh
# {n} node(s): on every node, with node 0's address,
#   NODE_RANK=<0..{last}> MASTER_ADDR=<node 0 address> ./launch.sh
# Or with DeepSpeed's launcher from node 0 (edit `hostfile` first; passwordless ssh):
#   LAUNCHER=deepspeed ./launch.sh
set -euo pipefail
cd "$(dirname "$0")"
export NNODES="${{NNODES:-{n}}}"
export NPROC_PER_NODE="${{NPROC_PER_NODE:-{g}}}"
export NODE_RANK="${{NODE_RANK:-0}}"
export MASTER_ADDR="${{MASTER_ADDR:-127.0.0.1}}"
export MASTER_PORT="${{MASTER_PORT:-29500}}"
if [ "${{LAUNCHER:-torchrun}}" = deepspeed ]; then
  exec deepspeed --hostfile hostfile --num_nodes "$NNODES" --num_gpus "$NPROC_PER_NODE" \
    "$(python3 -c 'import llamafactory, os; print(os.path.join(os.path.dirname(llamafactory.__file__), "launcher.py"))')" \
    train.yaml
fi
FORCE_TORCHRUN=1 exec llamafactory-cli train train.yaml
"#,
        n = cluster.nodes,
        g = cluster.gpus_per_node,
        last = cluster.nodes - 1,
    )
}

/// `hostfile` for DeepSpeed's launcher: one line per node with its GPU slots.
pub(crate) fn hostfile(cluster: Cluster) -> String {
    let mut s = String::from("# host slots=GPUS, one line per node (replace the names)\n");
    for i in 0..cluster.nodes {
        s.push_str(&format!("node{i} slots={}\n", cluster.gpus_per_node));
    }
    s
}
