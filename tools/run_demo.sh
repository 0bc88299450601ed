#!/usr/bin/env bash
# The README's main command: set up .venv (idempotent), then the whole pipeline on tiny
# generated data on CPU: ResNet-50 pretraining with and without FocusedDropout,
# backbone transfer, RetinaNet fine-tune on the tiny VOCdevkit, VOC2007 mAP, table.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_env.sh
exec .venv/bin/python tools/run_pipeline.py --tiny "$@"
