#!/usr/bin/env bash
# The wheels the GPU machine needs, in one command (bench/gpu_wheels.py; docs/benchmarks.md, "GPU check"):
#   bash bench/gpu_wheels.sh [--list bench/gpu_wheels.txt] [--dest .gpu_wheels]
# downloads the pinned pure-Python wheels for Python 3.12 into the ignored .gpu_wheels/ (kept in
# ${FDROP_CACHE:-~/.cache/fdrop_mm}/gpu_wheels), checks every wheel's requirements against the list
# and the GPU machine's image, and prints the folder to carry and the install to run there first.
# PYTHON (default: .venv/bin/python where there is one, else python3) runs pip download.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
exec "$PYTHON" bench/gpu_wheels.py "$@"
