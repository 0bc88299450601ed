"""What the benchmarks share: the machine line, the allocator setting, the spread of
per-round ratios, and writing one section of bench/results.md without touching the others."""
import ctypes
import os
import platform
import re
import statistics
from datetime import datetime, timezone
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / 'results.md'
TITLE = '# fdrop_mm benchmarks'


def machine() -> str:
    """Date, CPU model, cores, torch version and GPU, for the header of a results section."""
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            cpu = next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'
    return (f'{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {cpu}, {os.cpu_count()} cores, '
            f'torch {torch.__version__}, {gpu}')


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
    (up to the next ``## `` heading), else append it; every other section stays as it is."""
    path = Path(path)
    text = path.read_text() if path.exists() else TITLE + '\n'
    section = '\n'.join([f'## {heading}', '', *lines]).rstrip('\n') + '\n\n'
    pattern = re.compile(rf'^## {re.escape(heading)}\n.*?(?=^## |\Z)', re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text, count=1)
    else:
        text = text.rstrip('\n') + '\n\n' + section
    path.write_text(text.rstrip('\n') + '\n')
