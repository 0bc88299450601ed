"""bench/gpu_check.sh as the GPU machine will run it: its CPU mode here and in a rehearsal of that
machine's environment (Python 3.12, torch 2.11.0, numpy 2.5.2, only the carried wheels), the wheel
list's closure, the float64 reference mask, and the benchmark sections the check reads."""
import os
import re
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO

sys.path.insert(0, str(REPO / 'bench'))
import gpu_check  # noqa: E402  (bench/ is no package)

CPU_ROWS = {'operator': 'passed', 'amp-float16': 'skipped', 'amp-bfloat16': 'skipped',
            'train-float32 (CPU stand-in)': 'passed', 'with_cp': 'passed', 'benchmark': 'skipped'}
# the first rehearsal on a machine builds the stand-in environment: about 2 minutes of downloads here
REHEARSAL_TIMEOUT = 1200


def run_check(*args, env=None, timeout=900):
    return subprocess.run(['bash', str(REPO / 'bench/gpu_check.sh'), *map(str, args)], cwd=REPO,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout)


def assert_cpu_report(text):
    """Every check in its place, the skipped checks and parts named with their reasons."""
    assert 'no CUDA device: CPU mode' in text and '--quick' in text
    rows = dict(re.findall(r'^\| ([^|]+?) \| (passed|failed|skipped) \|', text, flags=re.M))
    assert rows == CPU_ROWS, text
    skipped = re.search(r'^Skipped: (.*)$', text, flags=re.M).group(1)
    for name in ('operator on CUDA against the reference (no CUDA device', 'benchmark (no CUDA device',
                 "amp-float16 (no CUDA device: mmengine's AmpOptimWrapper", 'amp-bfloat16 (no CUDA device'):
        assert name in skipped, skipped
    assert 'FocusedDropout on the CPU against the float64 reference' in text
    for dtype in ('float32', 'float16', 'bfloat16'):
        for layout in ('contiguous', 'channels_last'):
            assert re.search(rf'^\| {dtype} \| {layout} \| 784 \| \d+ \| \d+ \(of \d+ near\) \| \d \(of \d tied\) '
                             r'\| exact \|$', text, flags=re.M), text
    assert re.search(r'weight decay x2 inside [1-9]\d* focused optimizer steps, restored after', text)
    assert re.search(r'^Elapsed: \d+ s of the 180 s budget', text, flags=re.M)


@pytest.mark.slow
def test_cpu_mode_runs_what_it_can_and_names_what_it_skipped(tmp_path):
    report = tmp_path / 'gpu_check' / 'report.md'
    proc = run_check('--quick', '--device', 'cpu', '--report', report, '--work-dir', tmp_path / 'work',
                     env={'PYTHON': sys.executable})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = report.read_text()
    assert_cpu_report(text)
    assert 'mmcv 2.1.0 (ops hidden)' in text  # .venv's full mmcv, its ops hidden as mmcv-lite has none


@pytest.mark.slow
def test_rehearsal_in_the_gpu_machines_environment(tmp_path):
    """Python 3.12, torch 2.11.0, numpy 2.5.2 and only the carried wheels, as on the GPU machine."""
    report = tmp_path / 'report.md'
    proc = run_check('--rehearse', '--quick', '--report', report, '--work-dir', tmp_path / 'work',
                     timeout=REHEARSAL_TIMEOUT)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert re.search(r'\[rehearse\] python 3\.12\.\d+, torch 2\.11\.0\S*, numpy 2\.5\.2, setuptools', log), log[-4000:]
    text = report.read_text()
    assert re.search(r'python 3\.12\.\d+, torch 2\.11\.0\S*, numpy 2\.5\.2, mmengine 0\.10\.7, '
                     r'mmcv 2\.1\.0 \(no compiled ops\), mmpretrain 1\.2\.0, mmdet hidden', text), text
    assert 'and only the wheels of bench/gpu_wheels.txt on PYTHONPATH' in text
    assert_cpu_report(text)


@pytest.mark.slow
def test_rehearsal_with_a_wheel_missing_names_it(tmp_path):
    """lazy-importer removed from the list: importlib-metadata 10.2 needs it and the image lacks it."""
    broken = tmp_path / 'gpu_wheels.txt'
    lines = (REPO / 'bench/gpu_wheels.txt').read_text().splitlines()
    broken.write_text('\n'.join(line for line in lines if not line.startswith('lazy-importer==')) + '\n')
    assert len(broken.read_text().splitlines()) == len(lines) - 1
    proc = run_check('--rehearse', '--wheel-list', broken, '--quick', '--report', tmp_path / 'report.md',
                     timeout=REHEARSAL_TIMEOUT)
    assert proc.returncode != 0
    assert ('importlib-metadata 10.2.0 requires lazy-importer>=0.1; python_version < "3.15": neither '
            'bench/gpu_wheels.txt nor the image has lazy-importer') in proc.stderr, proc.stderr[-3000:]
    assert not (tmp_path / 'report.md').exists()  # stopped before the check


def test_reference_mask_follows_the_papers_rule():
    """Hand-computed: channel 1 has the larger mean; γ = 0.5 of its max 4 is 2, kept strictly above."""
    x = torch.tensor([[[[1., 1.], [1., 1.]], [[4., 2.], [3., 0.]]],   # sample 0: means 1, 2.25
                      [[[-1., -2.], [-3., -1.]], [[-5., -1.], [-2., -2.]]]])  # sample 1: peak <= 0
    keep, near, top, tied, _ = gpu_check.reference_keep(x, torch.tensor([0.5, 0.5]))
    assert top.tolist() == [1, 0] and tied == {}
    assert keep[0, 0].tolist() == [[True, False], [True, False]]  # 4 and 3 > 2; 2 is not
    assert keep[1].all()  # a reference channel with max <= 0 keeps the sample whole
    assert near[0, 0].tolist() == [[False, True], [False, False]]  # 2 is the threshold itself


def test_near_tied_channels_are_found():
    x = torch.zeros(1, 3, 4, 4)
    x[0, 0] = 1.0
    x[0, 1] = 1.0
    x[0, 1, 0, 0] = 1.0 + 2 ** -20  # a float32 sum may rank channel 0 or 1 first
    x[0, 2] = 0.5
    _, _, top, tied, _ = gpu_check.reference_keep(x, torch.tensor([0.5]))
    assert top.tolist() == [1] and tied == {0: [0, 1]}


@pytest.mark.slow
def test_benchmark_targets_are_read_from_the_benchmarks_sections(tmp_path):
    """The check's reading of bench_operator's and bench_train_step's tables, on their CPU sections."""
    results = tmp_path / 'results.md'
    for command in (['bench/bench_operator.py', '--shapes', '2x8x14x14,2x8x7x7', '--rounds', '2',
                     '--dtypes', 'float32', '--layouts', 'contiguous'],
                    ['bench/bench_train_step.py', '--rounds', '4', '--warmup', '1', '--batch', '2', '--size', '32']):
        proc = subprocess.run([sys.executable, *command, '--run', 'test', '--results', str(results)], cwd=REPO,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    sections = gpu_check.sections(results)
    operator = gpu_check.operator_targets(sections['Operator, CPU: run test'])
    assert [line.split(':')[0] for line, _ in operator] == ['operator 2×8×14×14 float32 contiguous']  # 7×7 not read
    ratio = float(re.search(r'FD ([\d.]+)× the floor', operator[0][0]).group(1))
    assert operator[0][1] == (ratio <= gpu_check.OPERATOR_TARGET)
    (line, met), = gpu_check.train_targets(sections['Training step, CPU: run test'], 'float32')
    speed = float(re.search(r'images/s with FD ([\d.]+)× without', line).group(1))
    figure = float(re.search(r'^\| FD, participation 0\.1 \| [^|]+ \| [^|]+ \| ([\d.]+) ',
                             sections['Training step, CPU: run test'], flags=re.M).group(1))
    assert abs(speed - 1 / figure) < 1e-3 and met == (speed >= gpu_check.TRAIN_TARGET)


def test_benchmark_starts_no_run_without_the_time_for_it(tmp_path):
    status, detail, _, skipped = gpu_check.check_benchmark('cuda', True, tmp_path, budget=0)
    assert status == 'skipped' and detail.startswith('0 of 3 sections written; no target measured')
    assert len(skipped) == 3 and all('not started' in part and '40 s needed' in part for part in skipped)


@pytest.mark.skipif(torch.cuda.is_available(), reason='needs the benchmark CLIs to fail: here they would run')
def test_benchmark_fails_when_its_runs_write_no_section(tmp_path):
    """Without CUDA the CLIs exit with an error: the check fails and names each, it does not pass."""
    status, detail, body, skipped = gpu_check.check_benchmark('cuda', True, tmp_path, budget=10 ** 6)
    assert status == 'failed' and skipped == []
    assert detail.startswith('0 of 3 sections written') and detail.count(': exit 1') == 3, detail
    assert 'no CUDA device here' in '\n'.join(body)
