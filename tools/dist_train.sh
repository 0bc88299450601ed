#!/usr/bin/env bash
# Multi-process training, as OpenMMLab's dist_train.sh, with torchrun:
#   tools/dist_train.sh CONFIG GPUS [train.py args]
# CONFIG: an mmpretrain, mmdet, mmseg or mmaction2 config, as for tools/train.py.
# GPUS is the number of processes on this node. Several nodes, as in mmdet/mmpretrain:
# run it once per node with NNODES (nodes in all, default 1), NODE_RANK (this node,
# 0..NNODES-1, default 0), MASTER_ADDR (node 0's address, default 127.0.0.1) and PORT
# (a free port on node 0, default 29500), e.g. on two nodes:
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 PORT=29500 tools/dist_train.sh CONFIG 8
#   NNODES=2 NODE_RANK=1 MASTER_ADDR=10.0.0.1 PORT=29500 tools/dist_train.sh CONFIG 8
# Without GPUs the processes train on the CPU with gloo (tests/test_multinode.py runs two
# one-process nodes on one machine over loopback).
set -euo pipefail
CONFIG=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PYTHON=${PYTHON:-python}

PYTHONPATH="$(dirname "$0")/..${PYTHONPATH:+:$PYTHONPATH}" \
"$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    "$(dirname "$0")/train.py" \
    "$CONFIG" \
    --launcher pytorch "${@:3}"
