"""The wheels the GPU check carries to the GPU machine, downloaded and checked against its image.

The GPU machine (one H200, the device tool's KINDS.md) runs Python 3.12 with the packages in
``IMAGE`` and reaches no registry; what else the check imports travels in the working tree as
the pure-Python wheels pinned in bench/gpu_wheels.txt and is installed there with
``pip install --no-deps --target``. ``download`` fetches exactly those wheels for that machine
(Python 3.12, manylinux x86_64 or py3-none-any, ``--no-deps``), one of each; ``check_closure``
fails unless every Requires-Dist of every wheel, for Python 3.12 on Linux x86_64, is met by a pin
of the list or by a package of the image (at its version where the image's version is known).
``--rehearsal-requirements`` prints what ``bash bench/gpu_check.sh --rehearse`` installs to stand
in for the image; ``--check-environment`` fails where that environment holds a package the
image lacks. docs/benchmarks.md, "GPU check", gives the steps.

    python bench/gpu_wheels.py [--list bench/gpu_wheels.txt] [--dest .gpu_wheels]
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

try:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name, parse_wheel_filename
except ImportError:  # a bare interpreter: pip carries its own copy
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.utils import canonicalize_name, parse_wheel_filename

REPO = Path(__file__).resolve().parents[1]
WHEEL_LIST = REPO / 'bench' / 'gpu_wheels.txt'
DEST = REPO / '.gpu_wheels'
CACHE = Path(os.environ.get('FDROP_CACHE', Path.home() / '.cache' / 'fdrop_mm')) / 'gpu_wheels'
SITE = '/tmp/site'  # where the wheels go on the GPU machine

# The image 'cuda' of the GPU machine: its Python packages as the device tool's KINDS.md lists
# them (read on such a machine 2026-11-17), versions where KINDS.md gives them (2026-11).
PYTHON_VERSION = '3.12.3'
IMAGE = frozenset(canonicalize_name(n) for n in """
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build
certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core
cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock
flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx
huggingface-hub humanize hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt
jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities
linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes
mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals networkx ninja numba
numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime
nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse
nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx
onnx-ir onnxruntime onnxscript opencv-python-headless optax opt-einsum opt-einsum-fx optimistix
orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy portalocker prometheus-client
propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions
pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist python-dateutil
pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image
scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six
sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl
tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics
torchvision tqdm transformers treescope triton typer typing-extensions typing-inspect urllib3 uvloop
wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp
""".split())
IMAGE_VERSIONS = {'torch': '2.11.0', 'numpy': '2.5.2', 'torchvision': '0.26.0', 'triton': '3.6.0',
                  'huggingface-hub': '1.33.0', 'safetensors': '0.8.0'}
# A requirement the image meets under another name: the same module (cv2), without GUI libraries.
PROVIDED_BY = {'opencv-python': 'opencv-python-headless'}
# The image's packages that the check imports (directly or through the wheels), installed with
# their own dependencies by the rehearsal; setuptools comes with torch 2.11 (< 82, so it still
# has pkg_resources, which mmengine imports for `mmpretrain::` base configs).
# python-dateutil (matplotlib's) is pinned to the last release before those that require tzdata,
# which the image lacks; the rest are the registry's newest.
REHEARSAL_PACKAGES = ['matplotlib', 'python-dateutil==2.9.0.post0', 'opencv-python-headless', 'rich', 'einops',
                      'pyyaml', 'pillow', 'packaging', 'markdown', 'click', 'zipp', 'timm']
# pip download for the GPU machine: CPython 3.12, manylinux x86_64 or pure Python, no dependencies
PLATFORMS = ['manylinux_2_28_x86_64', 'manylinux_2_27_x86_64', 'manylinux_2_17_x86_64', 'manylinux2014_x86_64',
             'manylinux1_x86_64', 'any']
TARGET_ENVIRONMENT = dict(python_version='3.12', python_full_version=PYTHON_VERSION, sys_platform='linux',
                          platform_system='Linux', platform_machine='x86_64', os_name='posix',
                          implementation_name='cpython', platform_python_implementation='CPython', extra='')


class WheelError(RuntimeError):
    """The wheel list, a download or the closure is wrong; the message says where."""


def read_pins(path: Path) -> dict:
    """{canonical name: version} from ``name==version`` lines (``#`` starts a comment)."""
    pins = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.split('#', 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r'([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][A-Za-z0-9.+!-]*)', line)
        if not match:
            raise WheelError(f'{path}:{number}: {line!r} is not `name==version` (every wheel is pinned)')
        name = canonicalize_name(match[1])
        if name in pins:
            raise WheelError(f'{path}:{number}: {match[1]} is pinned twice (two versions stop the whole install)')
        pins[name] = match[2]
    if not pins:
        raise WheelError(f'{path}: no pins')
    return pins


def download(pins: dict, dest: Path) -> list:
    """Exactly the pinned wheels in ``dest`` (others there removed), fetched once into CACHE."""
    CACHE.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, '-m', 'pip', 'download', '--quiet', '--disable-pip-version-check', '--no-deps',
               '--only-binary=:all:', '--python-version', '3.12', '--implementation', 'cp', '-d', str(CACHE),
               *[a for p in PLATFORMS for a in ('--platform', p)], *[f'{n}=={v}' for n, v in pins.items()]]
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        errors = [line for line in (proc.stdout + proc.stderr).splitlines() if 'is ignored' not in line]
        raise WheelError('pip download failed:\n' + '\n'.join(errors[-20:]))
    found = {}
    for wheel in CACHE.glob('*.whl'):
        name, version, _, _ = parse_wheel_filename(wheel.name)
        if pins.get(name) == str(version):
            if name in found:
                raise WheelError(f'two wheels of {name} {version} in {CACHE}: {found[name].name}, {wheel.name}')
            found[name] = wheel
    missing = sorted(set(pins) - set(found))
    if missing:
        raise WheelError(f'pip download left no wheel of {", ".join(missing)} in {CACHE}')
    dest.mkdir(parents=True, exist_ok=True)
    for stale in dest.glob('*.whl'):
        stale.unlink()
    for wheel in found.values():
        shutil.copy2(wheel, dest / wheel.name)
    return sorted(dest / w.name for w in found.values())


def requirements(wheel: Path) -> list:
    """The wheel's Requires-Dist that apply on the GPU machine (no extras)."""
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(n for n in archive.namelist() if re.fullmatch(r'[^/]+\.dist-info/METADATA', n))
        lines = archive.read(metadata).decode().split('\n\n', 1)[0].splitlines()
    out = []
    for line in lines:
        if line.startswith('Requires-Dist:'):
            requirement = Requirement(line.split(':', 1)[1].strip())
            if requirement.marker is None or requirement.marker.evaluate(TARGET_ENVIRONMENT):
                out.append(requirement)
    return out


def check_closure(wheels: list, pins: dict) -> list:
    """Lines saying how each requirement is met; WheelError naming every one that is not."""
    met, unmet = [], []
    for wheel in wheels:
        name = parse_wheel_filename(wheel.name)[0]
        for requirement in requirements(wheel):
            needed = canonicalize_name(requirement.name)
            provider = PROVIDED_BY.get(needed, needed)
            if needed in pins:
                ok = requirement.specifier.contains(pins[needed], prereleases=True)
                where = f'the list ({pins[needed]})'
            elif provider in IMAGE:
                known = IMAGE_VERSIONS.get(provider)
                ok = known is None or requirement.specifier.contains(known, prereleases=True)
                where = f'the image ({provider} {known or "version not listed"})'
            else:
                unmet.append(f'{name} {pins[name]} requires {requirement}: neither bench/gpu_wheels.txt '
                             f'nor the image has {requirement.name}')
                continue
            (met if ok else unmet).append(f'{name} {pins[name]} requires {requirement}: '
                                          + (f'met by {where}' if ok else f'{where} does not satisfy it'))
    if unmet:
        raise WheelError('the wheel list is not closed:\n  ' + '\n  '.join(unmet))
    return met


def check_environment(python: str) -> list:
    """The distributions in ``python``'s environment; WheelError naming those the image lacks."""
    listing = subprocess.run([python, '-m', 'pip', 'list', '--format', 'json', '--disable-pip-version-check'],
                             capture_output=True, text=True, check=True).stdout
    installed = {canonicalize_name(d['name']): d['version'] for d in json.loads(listing)}
    extra = sorted(set(installed) - IMAGE)
    if extra:
        raise WheelError(f'{python} has {", ".join(extra)}, which the GPU machine\'s image lacks: '
                         'a rehearsal there would hide a missing wheel')
    for name, version in IMAGE_VERSIONS.items():
        if name in installed and installed[name].split('+')[0] != version:
            raise WheelError(f'{python} has {name} {installed[name]}, the image {version}')
    return [f'{n} {v}' for n, v in sorted(installed.items())]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--list', type=Path, default=WHEEL_LIST, help='the pins (default: %(default)s)')
    parser.add_argument('--dest', type=Path, default=DEST, help='folder of the wheels to carry (default: %(default)s)')
    parser.add_argument('--rehearsal-requirements', action='store_true',
                        help='print the requirements that stand in for the image, one a line, and exit')
    parser.add_argument('--check-environment', metavar='PYTHON',
                        help="fail where PYTHON's environment holds a package the image lacks, and exit")
    args = parser.parse_args(argv)
    try:
        if args.rehearsal_requirements:
            requirements = [f'{n}=={v}' for n, v in IMAGE_VERSIONS.items() if n != 'triton'] + REHEARSAL_PACKAGES
            unknown = sorted({canonicalize_name(Requirement(r).name) for r in requirements} - IMAGE)
            if unknown:
                raise WheelError(f'REHEARSAL_PACKAGES names {unknown}, which the image lacks')
            print('\n'.join(requirements))
            return 0
        if args.check_environment:
            print(f'[gpu_wheels] {args.check_environment}: only packages of the image: '
                  + ', '.join(check_environment(args.check_environment)))
            return 0
        pins = read_pins(args.list)
        wheels = download(pins, args.dest)
        met = check_closure(wheels, pins)
    except WheelError as error:
        print(f'[gpu_wheels] ERROR: {error}', file=sys.stderr)
        return 1
    size = sum(w.stat().st_size for w in wheels) / 2 ** 20
    print('\n'.join(f'[gpu_wheels]   {line}' for line in met))
    try:
        shown = args.dest.resolve().relative_to(REPO)
    except ValueError:
        shown = args.dest.resolve()
    print(f'[gpu_wheels] {len(wheels)} wheels, {size:.1f} MiB, every requirement met, in {shown}/.\n'
          f'[gpu_wheels] carry: {shown}\n'
          f'[gpu_wheels] install there first: python3 -m pip install -q --no-index --no-deps --no-compile '
          f'--no-cache-dir --upgrade --target {SITE} {shown}/*.whl && export PYTHONPATH={SITE}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
