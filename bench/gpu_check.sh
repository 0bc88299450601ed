#!/usr/bin/env bash
# The GPU check in one go (bench/gpu_check.py; docs/benchmarks.md, "GPU check"):
#   bash bench/gpu_check.sh [--report work_dirs/gpu_check/report.md] [--quick] [--device auto|cuda|cpu]
# Stopped after GPU_CHECK_TIMEOUT seconds (default 600); the report keeps the checks finished by
# then. PYTHON (default python3) is the interpreter; the repository goes on PYTHONPATH, so fdrop_mm
# need not be installed (on the GPU machine, mmengine, mmcv-lite and mmpretrain come as wheels).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 \
    exec timeout "${GPU_CHECK_TIMEOUT:-600}" "$PYTHON" bench/gpu_check.py "$@"
