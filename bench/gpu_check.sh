#!/usr/bin/env bash
# The GPU check in one go (bench/gpu_check.py; docs/benchmarks.md, "GPU check"):
#   bash bench/gpu_check.sh [--report work_dirs/gpu_check/report.md] [--work-dir work_dirs/gpu_check]
#       [--quick] [--device auto|cuda|cpu] [--budget S]
# Stopped after GPU_CHECK_TIMEOUT seconds (default 600); the report keeps the checks finished by
# then. PYTHON (default python3) is the interpreter; the repository goes on PYTHONPATH, so fdrop_mm
# need not be installed (on the GPU machine, mmengine, mmcv-lite and mmpretrain come as wheels:
# bash bench/gpu_wheels.sh).
#
#   bash bench/gpu_check.sh --rehearse [--wheel-list FILE] [gpu_check arguments]
# runs the check's CPU mode in an environment like the GPU machine's: Python 3.12 (pyenv's, or
# GPU_REHEARSAL_PYTHON), torch 2.11.0 with its dependencies, numpy 2.5.2 and the image's other
# packages that the check imports (bench/gpu_wheels.py --rehearsal-requirements), cached in
# ${FDROP_CACHE:-~/.cache/fdrop_mm}; plus only the wheels of bench/gpu_wheels.sh, installed with
# --no-deps --target as on that machine. Nothing from .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
export GPU_CHECK_STARTED=${GPU_CHECK_STARTED:-$(date +%s.%N)}

say() { printf '[rehearse] %s\n' "$*"; }
die() { printf '[rehearse] ERROR: %s\n' "$*" >&2; exit 1; }

python312() {  # the interpreter standing in for the GPU machine's Python 3.12.3
  if [ -n "${GPU_REHEARSAL_PYTHON:-}" ]; then echo "$GPU_REHEARSAL_PYTHON"; return; fi
  local root candidate
  root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
  for candidate in $(ls -d "$root"/versions/3.12.*/bin/python3.12 2>/dev/null | sort -V -r) python3.12; do
    if "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null; then
      echo "$candidate"; return
    fi
  done
  die "no Python 3.12 found (pyenv's versions/3.12.*, python3.12 on PATH); set GPU_REHEARSAL_PYTHON"
}

pip_filtered() {  # pip, without the one warning this machine's pip.conf prints per package looked up
  "$@" 2>&1 | { grep -v "^WARNING: Location 'file://[^']*' is ignored: it is neither a file nor a directory\.$" || true; }
  return "${PIPESTATUS[0]}"
}

rehearse() {
  local wheel_list=bench/gpu_wheels.txt
  if [ "${1:-}" = --wheel-list ]; then wheel_list=$2; shift 2; fi
  local start=$SECONDS base requirements key env site
  base=$(python312)
  requirements=$("$base" bench/gpu_wheels.py --rehearsal-requirements)
  key=$({ "$base" -c 'import platform; print(platform.python_version())'; echo "$requirements"; } | sha256sum | cut -c1-12)
  env="${FDROP_CACHE:-$HOME/.cache/fdrop_mm}/gpu-image-py3.12-$key"
  if [ -f "$env/.complete" ]; then
    say "the GPU machine's stand-in environment, cached: $env"
  else
    say "building the GPU machine's stand-in environment in $env (once per machine; several GB from the registry)"
    rm -rf "$env" "${env%-*}"-*  # this one, half built, and those of other requirements
    "$base" -m venv "$env"
    # shellcheck disable=SC2086  # one requirement a line
    pip_filtered "$env/bin/python" -m pip install -q --disable-pip-version-check $requirements ||
      die "pip could not install the stand-in environment's packages: $(echo $requirements)"
    "$env/bin/python" bench/gpu_wheels.py --check-environment "$env/bin/python" || die "see above"
    touch "$env/.complete"
    say "  built in $((SECONDS - start)) s"
  fi
  PYTHON="$env/bin/python" bash bench/gpu_wheels.sh --list "$wheel_list" --dest .gpu_wheels >/dev/null ||
    die "bench/gpu_wheels.sh --list $wheel_list failed (its error is above)"
  site=$(mktemp -d)/site
  # the install the GPU machine runs first (bench/gpu_wheels.sh prints it), into a fresh folder
  "$env/bin/python" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target "$site" .gpu_wheels/*.whl || die "installing .gpu_wheels/*.whl with --no-deps --target failed"
  say "$("$env/bin/python" -c 'import platform, torch, numpy, setuptools
print(f"python {platform.python_version()}, torch {torch.__version__}, numpy {numpy.__version__}, setuptools {setuptools.__version__}")'), \
wheels: $(cd .gpu_wheels && ls *.whl | tr '\n' ' ')(prepared in $((SECONDS - start)) s)"
  local status=0
  GPU_CHECK_STARTED='' GPU_CHECK_REHEARSAL="$wheel_list" PYTHONNOUSERSITE=1 PYTHONPATH="$site" PYTHON="$env/bin/python" \
    bash bench/gpu_check.sh --device cpu "$@" || status=$?  # its budget starts here
  rm -rf "$(dirname "$site")"
  say "rehearsal finished in $((SECONDS - start)) s, exit status $status"
  return "$status"
}

if [ "${1:-}" = --rehearse ]; then
  shift
  rehearse "$@"
  exit
fi
PYTHON=${PYTHON:-python3}
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 \
    exec timeout "${GPU_CHECK_TIMEOUT:-600}" "$PYTHON" bench/gpu_check.py "$@"
