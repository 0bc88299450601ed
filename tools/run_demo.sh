#!/usr/bin/env bash
# The README's main command: set up .venv (idempotent), generate the tiny
# ImageNet-format data if absent, and train ResNet-50 with FocusedDropout on CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_env.sh
.venv/bin/python tools/make_tiny_data.py --out data/tiny --only imagenet
exec .venv/bin/python tools/train.py configs/tiny/resnet50_fd_tiny-imagenet.py \
  --work-dir work_dirs/demo_resnet50_fd_tiny "$@"
