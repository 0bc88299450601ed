"""bench/gpu_check.sh in its CPU mode, as CI runs it: it starts, runs the checks a CPU allows, and
its report lists every check, the skipped ones with their reasons."""
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.slow
def test_cpu_mode_runs_what_it_can_and_names_what_it_skipped(tmp_path):
    report = tmp_path / 'gpu_check' / 'report.md'
    proc = subprocess.run(['bash', str(REPO / 'bench/gpu_check.sh'), '--quick', '--device', 'cpu',
                           '--report', str(report)], env={**os.environ, 'PYTHON': sys.executable},
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = report.read_text()
    assert 'no CUDA device: CPU mode' in text and '--quick --device cpu' in text
    rows = dict(re.findall(r'^\| ([^|]+?) \| (passed|failed|skipped) \|', text, flags=re.M))
    assert rows == {'operator': 'passed', 'benchmark': 'skipped', 'amp-float16': 'skipped',
                    'amp-bfloat16': 'skipped', 'train-float32 (CPU stand-in)': 'passed', 'with_cp': 'passed'}
    skipped = re.search(r'^Skipped: (.*)$', text, flags=re.M).group(1)
    for name in ('benchmark (no CUDA device', "amp-float16 (no CUDA device: mmengine's AmpOptimWrapper",
                 'amp-bfloat16 (no CUDA device'):
        assert name in skipped, skipped
    assert '| torch.bfloat16 | channels_last | equal | equal | equal |' in text
    assert re.search(r'weight decay x2 inside [1-9]\d* focused optimizer steps, restored after', text)
