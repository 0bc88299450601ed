"""Run fdrop_mm's benchmarks and write bench/results.md (date, machine, tables, targets met/missed).

    .venv/bin/python bench/run_benchmarks.py                       # operator + training step
    .venv/bin/python bench/run_benchmarks.py --pipeline --setup    # + the README main job, setup

- operator: FocusedDropout forward + backward against the memory floor, nn.Dropout2d and
  DropBlock (bench/bench_operator.py); on CUDA also bfloat16 and channels_last.
- training step: ResNet-50 classifier step in a real Runner, FocusedDropoutHook at
  participation 1.0 and 0.1 against no hook (bench/bench_train_step.py); on CUDA also
  images/s at batch 64, 224×224, float32 and bfloat16 AMP.
- ``--pipeline``: wall time and peak memory of ``bash tools/run_demo.sh`` (the README's main
  job) with fresh --work-dir and --data-root, so no stage is skipped. Peak memory is the
  largest resident set of any single process of the job (``getrusage(RUSAGE_CHILDREN)``).
- ``--setup``: ``bash tools/setup_env.sh`` in a fresh ``git clone`` of this repository (the
  committed HEAD) with empty FDROP_CACHE and pip cache, then in a second fresh clone with
  those caches filled. Needs network access and ~15 GB of free disk under the temp dir.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import bench_operator  # bench/ is on sys.path: it is this script's folder
import bench_train_step

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent

# run a command, then report its wall time and the peak RSS of its largest process
_MEASURE_CHILD = '''
import json, resource, subprocess, sys, time
start = time.perf_counter()
with open(sys.argv[2], "w") as log:
    code = subprocess.call(sys.argv[3:], stdout=log, stderr=subprocess.STDOUT)
with open(sys.argv[1], "w") as f:
    json.dump(dict(returncode=code, seconds=time.perf_counter() - start,
                   peak_rss_mib=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024), f)
'''


def measure_command(cmd, log: Path, cwd=REPO, env=None) -> dict:
    """Wall seconds and peak RSS (MiB) of ``cmd`` and its descendants; raises naming the log on failure."""
    report = log.with_suffix('.json')
    subprocess.run([sys.executable, '-c', _MEASURE_CHILD, str(report), str(log), *map(str, cmd)],
                   cwd=cwd, env=env, check=True)
    result = json.loads(report.read_text())
    if result['returncode'] != 0:
        raise RuntimeError(f'{" ".join(map(str, cmd))} failed with exit code {result["returncode"]}; see {log}')
    return result


def operator_section(repeats) -> list:
    lines = ['## Operator: FocusedDropout forward + backward', ''] + bench_operator.cpu_section(repeats)
    lines.append('mmdet\'s DropBlock is an order of magnitude slower than the others: every call draws '
                 'a full-size (N, C, H, W) Bernoulli map, pads it and max-pools it 7×7, with several '
                 'full-size temporaries. The comparison configs use timm\'s DropBlock2d '
                 '(fdrop_mm/cifar_models.py), which runs near the floor.')
    lines.append('')
    if torch.cuda.is_available():
        lines += bench_operator.cuda_section(repeats)
    return lines


def step_section(repeats, iters, threads) -> list:
    lines = ['## Training step: FocusedDropoutHook in a ResNet-50 classifier step', '']
    batch, size = 8, 128
    results = bench_train_step.measure(repeats, iters, batch, size, threads)
    lines += bench_train_step.table(results, batch, size, repeats, iters, f'CPU, {threads} threads')
    if torch.cuda.is_available():
        batch, size = 64, 224
        for amp, label in ((False, 'float32'), (True, 'bfloat16 AMP')):
            results = bench_train_step.measure(repeats, max(iters, 20), batch, size, threads, amp=amp)
            lines += bench_train_step.table(results, batch, size, repeats, max(iters, 20),
                                            f'CUDA {torch.cuda.get_device_name()}, {label}')
    return lines


def pipeline_section(tmp: Path) -> list:
    result = measure_command(['bash', 'tools/run_demo.sh', '--work-dir', tmp / 'pipeline_work',
                              '--data-root', tmp / 'pipeline_data'], tmp / 'run_demo.log')
    return ['## README main job: `bash tools/run_demo.sh`', '',
            'Fresh --work-dir and --data-root (every stage runs, the tiny data is generated), '
            'the environment already set up.', '',
            '| wall time | peak memory (largest process) |', '|---|---|',
            f'| {result["seconds"] / 60:.1f} min | {result["peak_rss_mib"]:.0f} MiB |', '']


def setup_section(tmp: Path) -> list:
    env = {k: v for k, v in os.environ.items() if k not in ('VIRTUAL_ENV', 'FDROP_VENV', 'PYTHONPATH')}
    env.update(FDROP_CACHE=str(tmp / 'fdrop_cache'), PIP_CACHE_DIR=str(tmp / 'pip_cache'))
    rows = []
    for label in ('fresh: empty FDROP_CACHE and pip cache', 'cached: both caches from the fresh run'):
        clone = tmp / 'clone'
        subprocess.run(['git', 'clone', '-q', str(REPO), str(clone)], check=True)
        result = measure_command(['bash', 'tools/setup_env.sh'], tmp / f'setup_{len(rows)}.log', cwd=clone, env=env)
        subprocess.run(['rm', '-rf', str(clone)], check=True)  # keep the caches, drop the venv
        rows.append(f'| {label} | {result["seconds"] / 60:.1f} min |')
    return ['## Setup: `bash tools/setup_env.sh` in a fresh clone', '',
            '| caches | wall time |', '|---|---|', *rows, '']


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--repeats', type=int, default=15, help='operator: interleaved runs')
    parser.add_argument('--step-repeats', type=int, default=5, help='training step: interleaved A/B repeats')
    parser.add_argument('--step-iters', type=int, default=12, help='training step: iterations per run')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--pipeline', action='store_true', help="time the README's main job")
    parser.add_argument('--setup', action='store_true', help='time tools/setup_env.sh, fresh and cached')
    parser.add_argument('--out', default=str(BENCH / 'results.md'))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    lines = ['# fdrop_mm benchmarks', '', bench_operator.machine() + '.', '',
             'Ratios are measured in the same run, interleaved; absolute times hold for this machine only.', '']
    if not torch.cuda.is_available():
        lines += ['CUDA: not available here (torch.cuda.is_available() is False), so the CUDA timings '
                  '(float32, bfloat16, channels_last operator rows; ResNet-50 images/s with and without '
                  'FD) are skipped.', '']
    lines += operator_section(args.repeats)
    lines += step_section(args.step_repeats, args.step_iters, args.threads)
    with tempfile.TemporaryDirectory(prefix='fd_bench_') as tmp:
        if args.pipeline:
            lines += pipeline_section(Path(tmp))
        if args.setup:
            lines += setup_section(Path(tmp))
    lines.append(f'Command: `{" ".join([Path(sys.executable).name, *sys.argv])}`, '
                 f'{(time.perf_counter() - started) / 60:.1f} min.')
    text = '\n'.join(lines) + '\n'
    Path(args.out).write_text(text)
    print(text + f'\nwrote {args.out}')


if __name__ == '__main__':
    main()
