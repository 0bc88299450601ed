"""bench/bench_train_step.py end to end on the CPU: three real Runners taking turns, one table."""
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_arms_take_turns_and_the_table_counts_every_round(tmp_path):
    results = tmp_path / 'results.md'
    proc = subprocess.run([sys.executable, 'bench/bench_train_step.py', '--rounds', '4', '--warmup', '1',
                           '--batch', '2', '--size', '32', '--run', 'test', '--results', str(results)],
                          cwd=REPO, capture_output=True, text=True, timeout=1800)  # 466 s measured on a loaded 2-core machine
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = results.read_text()
    assert '## Training step, CPU: run test' in text
    # the plain / focused column: "median (rounds) / median (rounds)", "–" for an empty group
    rows = [[cell.strip() for cell in line.strip('|').split('|')] for line in text.splitlines() if line.startswith('| ')]
    groups = {cells[0]: cells[5] for cells in rows if len(cells) == 7 and cells[0] != 'arm'}
    assert set(groups) == {'no hook', 'FD, participation 1.0', 'FD, participation 0.1'}, text
    assert groups['no hook'] == '1.000 (4) / –'
    assert re.fullmatch(r'– / \d\.\d{3} \(4\)', groups['FD, participation 1.0'])  # every round focused
    assert sum(int(n) for n in re.findall(r'\((\d+)\)', groups['FD, participation 0.1'])) == 4
