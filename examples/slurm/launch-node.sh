#!/bin/bash
# One machine's launcher: train-stage.sbatch runs it once per node through `srun`, and `accelerate launch`
# starts GPUS_PER_NODE processes here that join the others at MASTER_ADDR:MASTER_PORT.
# Arguments: the `cai train ...` arguments that `cai run RECIPE --train-argv STAGE` printed.
set -euo pipefail
: "${SLURM_NNODES:?run through srun (SLURM_NNODES unset)}" "${SLURM_NODEID:?run through srun}"
: "${MASTER_ADDR:?export MASTER_ADDR (the first node)}" "${GPUS_PER_NODE:?export GPUS_PER_NODE}"
HERE=$(cd "$(dirname "$0")" && pwd)
exec "${ACCELERATE:-accelerate}" launch \
  --config_file "${ACCELERATE_CONFIG:-$HERE/multi-node.yaml}" \
  --num_machines "$SLURM_NNODES" \
  --machine_rank "$SLURM_NODEID" \
  --main_process_ip "$MASTER_ADDR" \
  --main_process_port "${MASTER_PORT:-29500}" \
  --num_processes "$((SLURM_NNODES * GPUS_PER_NODE))" \
  -m cai "$@"
