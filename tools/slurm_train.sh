#!/usr/bin/env bash
# Training on a slurm cluster, as OpenMMLab's slurm_train.sh:
#   [GPUS=8 GPUS_PER_NODE=8 CPUS_PER_TASK=5 SRUN_ARGS=... GRES=gpu:8] \
#     tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py args]
# One task per GPU, each a rank of mmengine's slurm launcher (SLURM_PROCID, SLURM_NTASKS,
# SLURM_NODELIST). Run inside an allocation (an sbatch job: tools/run_pipeline.py and
# tools/run_sweep.py --launcher slurm) srun starts a step of it; elsewhere it allocates.
# GRES (default gpu:$GPUS_PER_NODE; empty: none, for CPU nodes, where the ranks use gloo).
# MASTER_PORT defaults to one derived from the job id inside an allocation, so that jobs
# sharing a node do not meet on one port; else 29500, mmengine's default.
set -euo pipefail
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=$4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
GRES=${GRES-gpu:$GPUS_PER_NODE}
PYTHON=${PYTHON:-python}
if [ -n "${SLURM_JOB_ID:-}" ]; then
  export MASTER_PORT=${MASTER_PORT:-$((20000 + SLURM_JOB_ID % 20000))}
fi

PYTHONPATH="$(dirname "$0")/..${PYTHONPATH:+:$PYTHONPATH}" \
srun -p "$PARTITION" \
    --job-name="$JOB_NAME" \
    ${GRES:+--gres="$GRES"} \
    --ntasks="$GPUS" \
    --ntasks-per-node="$GPUS_PER_NODE" \
    --cpus-per-task="$CPUS_PER_TASK" \
    --kill-on-bad-exit=1 \
    $SRUN_ARGS \
    "$PYTHON" -u "$(dirname "$0")/train.py" "$CONFIG" --work-dir="$WORK_DIR" --launcher=slurm "${@:5}"
