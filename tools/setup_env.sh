#!/usr/bin/env bash
# Fresh machine -> working OpenMMLab environment in .venv/ (idempotent).
#
# Pins: torch 2.14.1, torchvision 0.29.1, mmengine 0.10.7, mmcv 2.1.0 (with ops),
# mmdet 3.3.0, mmpretrain 1.2.0, pycocotools, mmsegmentation 1.2.2, mmaction2 1.2.0,
# mmpose 1.3.2, plus fdrop_mm itself (editable) and the test tools. mmaction2 goes in
# with --no-deps (it declares opencv-contrib-python, a second copy of cv2 next to
# opencv-python), and so does mmpose (it declares chumpy, which does not import on
# Python >= 3.11 and which no mmpose module imports); xtcocotools is built from its
# sdist, its wheel being built against numpy 1.x (pip caches the built wheel).
# mmcv 2.1.0 is source-only on PyPI and needs two fixes to build against torch 2.14:
# setuptools<70 (its setup.py imports pkg_resources) and -std=c++20 instead of its
# hard-coded -std=c++17 (torch 2.14 headers #error on anything older). The built
# wheel is cached in $FDROP_CACHE (default ~/.cache/fdrop_mm), keyed by torch
# version and CPU/CUDA, so the ~12 minute build happens once per machine.
#
# Environment:
#   FDROP_VENV      venv location (default: <repo>/.venv)
#   FDROP_CACHE     wheel cache (default: ~/.cache/fdrop_mm)
#   FDROP_MMCV_CUDA 1 to force mmcv's CUDA ops, 0 to force CPU-only ops;
#                   default: CUDA when nvcc is on PATH and torch sees a GPU.
#   MAX_JOBS        parallel compile jobs for mmcv (default: nproc)
set -Eeuo pipefail  # -E: the ERR trap also fires inside functions (pip_quiet)

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${FDROP_VENV:-$REPO/.venv}"
CACHE="${FDROP_CACHE:-$HOME/.cache/fdrop_mm}"
TORCH_PIN="torch==2.14.1"
TORCHVISION_PIN="torchvision==0.29.1"
MMCV_VERSION="2.1.0"

START=$SECONDS
STEP="starting"
STEP_START=$SECONDS
say() { printf '[setup_env] %s\n' "$*"; }
step() { took; STEP="$*"; STEP_START=$SECONDS; say "$*"; }
took() { [ "$STEP" = starting ] || say "  ($((SECONDS - STEP_START)) s)"; }
fail() {
  printf '[setup_env] ERROR: %s\n' "$*" >&2
  printf '[setup_env] ERROR: the step that failed: %s. Fix what the lines above say and rerun\n' "$STEP" >&2
  printf '[setup_env] ERROR: bash tools/setup_env.sh (it resumes: finished steps are quick)\n' >&2
  exit 1
}
trap 'fail "command failed at line $LINENO: $BASH_COMMAND"' ERR

PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check -q)
# pip with the one harmless warning filtered out: a pip.conf (ours lists file:// extra indexes)
# whose index lacks a project's folder makes pip print "WARNING: Location 'file://...' is ignored"
# once per package looked up, ~100 lines that bury the warnings that matter.
pip_quiet() {
  "${PIP[@]}" "$@" 2>&1 | { grep -v "^WARNING: Location 'file://[^']*' is ignored: it is neither a file nor a directory\.$" || true; }
}

if [ ! -x "$PY" ]; then
  step "creating virtual environment $VENV"
  python3 -m venv "$VENV" || fail "python3 -m venv $VENV failed (is python3-venv installed?)"
fi

step "installing $TORCH_PIN $TORCHVISION_PIN (from the local pip cache where present, ~1 min)"
pip_quiet install "$TORCH_PIN" "$TORCHVISION_PIN"

TORCH_VERSION="$("$PY" -c 'import torch; print(torch.__version__)')"
if [ -z "${FDROP_MMCV_CUDA:-}" ]; then
  if command -v nvcc >/dev/null 2>&1 && "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    FDROP_MMCV_CUDA=1
  else
    FDROP_MMCV_CUDA=0
  fi
fi
if [ "$FDROP_MMCV_CUDA" = 1 ]; then
  command -v nvcc >/dev/null 2>&1 || fail "FDROP_MMCV_CUDA=1 but nvcc is not on PATH"
  CUDA_TAG="cu$(nvcc --version | sed -n 's/.*release \([0-9]*\)\.\([0-9]*\).*/\1\2/p')"
else
  CUDA_TAG="cpu"
fi
MMCV_TAG="mmcv-$MMCV_VERSION-torch$TORCH_VERSION-$CUDA_TAG"
WHEEL_DIR="$CACHE/$MMCV_TAG"
if [ "$(cat "$VENV/.mmcv-build" 2>/dev/null || true)" = "$MMCV_TAG" ] && "$PY" -c 'import mmcv.ops' 2>/dev/null; then
  step "mmcv $MMCV_VERSION with ops already installed ($MMCV_TAG)"
else
  if ! ls "$WHEEL_DIR"/mmcv-*.whl >/dev/null 2>&1; then
    step "building mmcv $MMCV_VERSION ops ($CUDA_TAG, torch $TORCH_VERSION): about 12 minutes on 2 cores for CPU ops, longer with CUDA ops"
    # setuptools<70 for the build only (mmcv's setup.py imports pkg_resources); torch requires
    # >=77, so pip would report the temporary downgrade as a conflict: --no-warn-conflicts, and
    # setuptools goes back to >=77 right after the build
    pip_quiet install --no-warn-conflicts "setuptools<70" wheel ninja
    BUILD="$(mktemp -d)"
    pip_quiet download --no-deps --no-binary :all: --no-build-isolation "mmcv==$MMCV_VERSION" -d "$BUILD" \
      || fail "could not download the mmcv $MMCV_VERSION sdist"
    tar -xzf "$BUILD/mmcv-$MMCV_VERSION.tar.gz" -C "$BUILD"
    SRC="$BUILD/mmcv-$MMCV_VERSION"
    grep -q -- "-std=c++17" "$SRC/setup.py" || fail "mmcv setup.py no longer contains -std=c++17; review the C++20 patch"
    sed -i 's/-std=c++17/-std=c++20/g' "$SRC/setup.py"
    # mmcv builds CUDA ops whenever torch sees a GPU; hide it for a CPU-only build
    HIDE_GPUS=()
    [ "$FDROP_MMCV_CUDA" = 1 ] || HIDE_GPUS=(CUDA_VISIBLE_DEVICES=)
    mkdir -p "$WHEEL_DIR.partial"
    (cd "$SRC" && env "${HIDE_GPUS[@]}" MMCV_WITH_OPS=1 FORCE_CUDA="$FDROP_MMCV_CUDA" MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
      "$PY" -m pip --disable-pip-version-check wheel --no-build-isolation --no-deps . -w "$WHEEL_DIR.partial" \
      > "$BUILD/build.log" 2>&1) || { tail -n 40 "$BUILD/build.log" >&2; fail "mmcv build failed; full log: $BUILD/build.log"; }
    rm -rf "$WHEEL_DIR" && mv "$WHEEL_DIR.partial" "$WHEEL_DIR"
    rm -rf "$BUILD"
  else
    step "using the cached mmcv wheel in $WHEEL_DIR"
  fi
  pip_quiet install --no-deps --force-reinstall "$WHEEL_DIR"/mmcv-*.whl
  echo "$MMCV_TAG" > "$VENV/.mmcv-build"
fi
# torch 2.14 itself requires setuptools>=77; <81 still ships pkg_resources for older tools
pip_quiet install "setuptools>=77,<81"

step "installing mmengine, mmdet, mmpretrain, pycocotools, plotting and test tools"
pip_quiet install "mmengine==0.10.7" "mmdet==3.3.0" "mmpretrain==1.2.0" "pycocotools>=2.0.8" \
  "numpy<2.5" "opencv-python>=4.10" matplotlib tensorboard "timm==1.0.31" "grad-cam==1.5.7" "rich>=13" \
  "pytest>=8" "$TORCH_PIN" "$TORCHVISION_PIN" "mmcv==$MMCV_VERSION"

step "installing mmsegmentation 1.2.2 and mmaction2 1.2.0 (the seg and action extras)"
# ftfy and regex: import mmseg.models needs them (mmseg/utils/tokenizer.py), mmseg does not declare them
pip_quiet install "mmsegmentation==1.2.2" "prettytable==3.19.0" "ftfy==6.3.1" "regex==2026.12.2" \
  "decord==0.6.0" einops scipy matplotlib Pillow "numpy<2.5" "opencv-python>=4.10"
pip_quiet install --no-deps "mmaction2==1.2.0"

step "installing mmpose 1.3.2 (the pose extra; the first time builds xtcocotools, ~1-2 min)"
pip_quiet install --no-binary xtcocotools "xtcocotools==1.14.3" "json-tricks==3.17.3" "munkres==3.0.0" \
  scipy matplotlib "numpy<2.5" "opencv-python>=4.10"
pip_quiet install --no-deps "mmpose==1.3.2"

step "installing fdrop_mm (editable)"
pip_quiet install --no-deps --no-build-isolation -e "$REPO"

"$PY" - <<'PY' || fail "the installed stack does not import; see the traceback above"
import torch, mmengine, mmcv, mmcv.ops, mmdet, mmpretrain, fdrop_mm  # noqa: F401
import mmseg, mmseg.models, mmaction, mmaction.models  # noqa: F401  (fdrop_mm supplies mmaction's DRN files)
import mmpose, mmpose.models, mmpose.datasets  # noqa: F401  (mmpose.datasets imports xtcocotools)
print(f'[setup_env] ok: torch {torch.__version__}, mmengine {mmengine.__version__}, '
      f'mmcv {mmcv.__version__}, mmdet {mmdet.__version__}, mmpretrain {mmpretrain.__version__}, '
      f'mmseg {mmseg.__version__}, mmaction2 {mmaction.__version__}, mmpose {mmpose.__version__}')
PY
took
say "ready in $((SECONDS - START)) s: $VENV; the mmcv wheel is cached in $WHEEL_DIR"
