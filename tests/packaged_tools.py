"""Running a codebase's own packaged tools/train.py (``<package>/.mim/tools/train.py``, what
``mim train`` runs) and reading its log: shared by tests/test_ecosystem.py and
tests/test_ecosystem_mmpose.py."""
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

TIMEOUT = 600  # seconds per tool run; a run takes 10-20 s on a quiet 2-core machine
TARGET = 'backbone.layer3'
TRAIN_LINE = re.compile(r'(?:Iter\(train\) \[\s*(?P<iter>\d+)/\d+\]|'
                        r'Epoch\(train\)\s+\[(?P<epoch>\d+)\]\[\s*(?P<batch>\d+)/\d+\])\s+(?P<fields>.*)')
RESUMED = re.compile(r'resumed epoch: (\d+), iter: (\d+)')


def packaged_train_py(package: str) -> Path:
    """``<package>/.mim/tools/train.py`` of the installed package: what ``mim train`` runs."""
    tool = Path(importlib.util.find_spec(package).origin).parent / '.mim' / 'tools' / 'train.py'
    assert tool.is_file(), f'{package} is installed without its packaged {tool}'
    return tool


def run(args, env, cwd) -> str:
    """Run ``args`` (a Python script and its arguments) with this Python; its output, checked."""
    done = subprocess.run([sys.executable, *map(str, args)], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=TIMEOUT)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f'{args[0]} exited {done.returncode}:\n{output[-6000:]}'
    return output


def training_steps(log: str):
    """[(position, fields)] of the training log lines: position is the iteration, or (epoch,
    batch) for an epoch-based run; fields maps each logged name to its value."""
    steps = []
    for line in log.splitlines():
        match = TRAIN_LINE.search(line)
        if match:
            position = (int(match['iter']) if match['iter'] else (int(match['epoch']), int(match['batch'])))
            steps.append((position, dict(re.findall(r'(\S+): (\S+)', match['fields']))))
    return steps
