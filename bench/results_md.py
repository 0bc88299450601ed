"""What the benchmarks share: the machine line, the provenance of a section (command, commit,
machine, date, how busy the machine was), the allocator setting, the spread of per-round ratios,
and writing one section of bench/results.md without touching the others."""
import ctypes
import os
import platform
import re
import resource
import shlex
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / 'results.md'
TITLE = '# fdrop_mm benchmarks'
PREAMBLE = ('Every section below is written by `bench/` code (`bench/bench_operator.py`, `bench/bench_train_step.py`, '
            '`bench/run_benchmarks.py`; see docs/benchmarks.md) and starts with the command that wrote it, the '
            'commit, the machine, the date and how busy the machine was. Ratios are medians of per-round ratios '
            'measured in the same round, with their IQR and range; absolute times hold for that machine only. A '
            'run replaces only its own section (keyed by its heading).')
BENCHMARKED_PATHS = ['fdrop_mm', 'bench', 'configs', ':(exclude)bench/results.md']  # what a section's figures depend on
QUIET_OTHER_CORES = 0.1  # a run is "quiet" when other processes used less than this many cores on average


def machine_parts() -> tuple:
    """(CPU model, cores, torch version, GPU name or 'no GPU')."""
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            cpu = next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'
    return cpu, os.cpu_count(), torch.__version__, gpu


def machine() -> str:
    """Date, CPU model, cores, torch version and GPU in one line."""
    cpu, cores, torch_version, gpu = machine_parts()
    return f'{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {cpu}, {cores} cores, torch {torch_version}, {gpu}'


def commit() -> str:
    """HEAD's hash, and the benchmarked files that differ from it (a run of uncommitted code says so)."""
    def git(*args):
        return subprocess.run(['git', *args], cwd=REPO, capture_output=True, text=True, check=True).stdout
    try:
        head = git('rev-parse', 'HEAD').strip()
        changed = git('status', '--porcelain', '--untracked-files=no', '--', *BENCHMARKED_PATHS).splitlines()
    except (OSError, subprocess.CalledProcessError) as error:
        return f'unknown ({REPO} is not a git checkout here: {getattr(error, "stderr", None) or error})'.strip()
    if not changed:
        return f'{head} (the benchmarked code, {", ".join(BENCHMARKED_PATHS[:-1])}/, as committed)'
    return f'{head} with uncommitted changes in {", ".join(line[3:] for line in changed)}'


def _busy_cpu_seconds() -> float:
    """CPU seconds all processes on this machine have spent since boot (user, nice, system, irq)."""
    with open('/proc/stat') as f:
        user, nice, system, _idle, _iowait, irq, softirq = map(int, f.readline().split()[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf('SC_CLK_TCK')


def _own_cpu_seconds() -> float:
    """CPU seconds of this process and of its children that have exited."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


LOADED_COMMIT = commit()  # the code this process imported (bench scripts import fdrop_mm with this module)


class Provenance:
    """Started before a section's run, ``lines()`` after it: the command that wrote the section, the
    commit this process loaded (and HEAD at the section's start where it moved), the machine, the
    date, and how busy the machine was: the load average before and after, and the cores other
    processes used meanwhile (all CPU time on the machine minus this process's and its exited
    children's; a VM does not see its neighbours)."""

    def __init__(self, command=None):
        script = Path(sys.argv[0]).resolve()
        shown = script.relative_to(REPO) if script.is_relative_to(REPO) else script
        self.command = command or shlex.join(['python', str(shown), *sys.argv[1:]])
        self.commit = commit()  # HEAD when the section starts, which spawned processes load
        self.started = datetime.now(timezone.utc)
        self.load_before = os.getloadavg()
        self._clock, self._busy, self._own = time.perf_counter(), _busy_cpu_seconds(), _own_cpu_seconds()

    def lines(self) -> list:
        wall = time.perf_counter() - self._clock
        others = max(0.0, (_busy_cpu_seconds() - self._busy) - (_own_cpu_seconds() - self._own)) / wall
        load_after = os.getloadavg()
        verdict = 'quiet' if others < QUIET_OTHER_CORES else 'loaded'
        cpu, cores, torch_version, gpu = machine_parts()
        return [f'- Command: `{self.command}` ({wall / 60:.1f} min)',
                f'- Commit: {LOADED_COMMIT}' + ('' if self.commit == LOADED_COMMIT else
                                                 f' (loaded when the process started; HEAD when this section '
                                                 f'started: {self.commit})'),
                f'- Machine: {cpu}, {cores} cores, torch {torch_version}, {gpu}',
                f'- Date: {self.started:%Y-%m-%d %H:%M}–{datetime.now(timezone.utc):%H:%M} UTC',
                f'- Quietness: **{verdict}**: load average (1 / 5 / 15 min) '
                f'{" / ".join(f"{v:.2f}" for v in self.load_before)} before, '
                f'{" / ".join(f"{v:.2f}" for v in load_after)} after (the run itself adds up to its threads); '
                f'other processes used {others:.2f} of the {cores} cores on average during the run '
                f'(quiet: below {QUIET_OTHER_CORES})', '']


def pin_malloc() -> str:
    """Make glibc reuse freed memory for large tensors instead of returning it to the OS.

    By default glibc maps every allocation above a moving threshold (at most 32 MiB) fresh
    from the kernel, which zero-fills it page by page on first touch; whether a 25 MiB
    output is served from the heap or page-faulted then depends on what was freed before,
    and the faults cost more than the arithmetic (at 16x256x56x56 float32 they are ~80% of
    the floor). With the thresholds pinned, every run measures the operators, not the
    kernel's page zeroing. Returns a line saying what was done.
    """
    try:
        libc = ctypes.CDLL('libc.so.6')
        m_trim_threshold, m_mmap_threshold = -1, -3
        if libc.mallopt(m_mmap_threshold, 1 << 30) == 1 and libc.mallopt(m_trim_threshold, (1 << 31) - 1) == 1:
            return ('glibc malloc pinned (M_MMAP_THRESHOLD 1 GiB, M_TRIM_THRESHOLD 2 GiB): freed tensors '
                    'are reused, not page-faulted anew')
    except (OSError, AttributeError):
        pass
    return 'default allocator (not glibc, or mallopt refused): large tensors may be page-faulted per call'


def spread(ratios) -> dict:
    """Median, quartiles and range of per-round ratios."""
    q1, median, q3 = statistics.quantiles(ratios, n=4, method='inclusive')
    return dict(median=median, q1=q1, q3=q3, low=min(ratios), high=max(ratios), rounds=len(ratios))


def fmt_quartiles(s: dict, digits: int = 2) -> str:
    """``IQR 1.20–1.25, range 1.10–1.40``."""
    f = f'.{digits}f'
    return f'IQR {s["q1"]:{f}}–{s["q3"]:{f}}, range {s["low"]:{f}}–{s["high"]:{f}}'


def fmt_spread(s: dict, digits: int = 2) -> str:
    """``1.23 (IQR 1.20–1.25, range 1.10–1.40)``."""
    return f'{s["median"]:.{digits}f} ({fmt_quartiles(s, digits)})'


def write_section(heading: str, lines, path: Path = RESULTS) -> None:
    """Put ``## heading`` and ``lines`` into ``path``: replace that section if it is there
    (up to the next ``## `` heading), else append it; every other section stays as it is, and
    the title and PREAMBLE head the file."""
    path = Path(path)
    text = path.read_text() if path.exists() else ''
    first = re.search(r'^## ', text, re.M)
    text = f'{TITLE}\n\n{PREAMBLE}\n\n' + (text[first.start():] if first else '')
    section = '\n'.join([f'## {heading}', '', *lines]).rstrip('\n') + '\n\n'
    pattern = re.compile(rf'^## {re.escape(heading)}\n.*?(?=^## |\Z)', re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text, count=1)
    else:
        text = text.rstrip('\n') + '\n\n' + section
    path.write_text(text.rstrip('\n') + '\n')
