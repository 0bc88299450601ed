"""bench/results.md is written by bench/ code only, each section saying how it was taken, and the
benchmark figures quoted in README.md and docs/benchmarks.md are figures of bench/results.md
(written there by bench/quote_results.py).

Convention checked here: a number in the prose of docs/benchmarks.md (outside code blocks, inline
code and its "GPU check" section, which quotes bench/gpu_check.py's report) is a measurement and must
appear in bench/results.md; a configuration value is written as code (`--rounds 41`).
"""
import os
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / 'bench' / 'results.md'
NUMBER = re.compile(r'(?<![\w.-])\d+(?:\.\d+)?')  # not in names (ResNet-50, float32)
PROVENANCE = [r'- Command: `python (bench/\w+\.py)( [^`]*)?` \(\d+\.\d min\)',
              r'- Commit: ([0-9a-f]{40})( .*)?',
              r'- Machine: (.+), (\d+) cores, torch (\S+), (.+)',
              r'- Date: (\d{4}-\d\d-\d\d \d\d:\d\d)–(\d\d:\d\d) UTC',
              r'- Quietness: \*\*(quiet|loaded)\*\*: load average \(1 / 5 / 15 min\) (\d+\.\d\d / \d+\.\d\d / '
              r'\d+\.\d\d) before, (\d+\.\d\d / \d+\.\d\d / \d+\.\d\d) after .*other processes used (\d+\.\d\d) of '
              r'the \d+ cores on average during the run .*']


def sections(text: str) -> dict:
    """{heading: body} of the ``## `` sections of a markdown text."""
    parts = re.split(r'^## (.+)\n', text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def provenance(body: str) -> list:
    """The match of each provenance line, in order, from the first lines of a section's body."""
    lines = body.strip('\n').splitlines()[:len(PROVENANCE)]
    matches = [re.fullmatch(pattern, line) for pattern, line in zip(PROVENANCE, lines)]
    assert len(lines) == len(PROVENANCE) and all(matches), (
        'a section must start with its provenance lines (results_md.Provenance), found:\n' + '\n'.join(lines))
    return matches


def prose(markdown: str) -> str:
    """The markdown without fenced code blocks, inline code, link targets and the paper's equation numbers."""
    markdown = re.sub(r'^```.*?^```', '', markdown, flags=re.M | re.S)
    markdown = re.sub(r'Eqs?\. [\d–]+', '', markdown)
    markdown = re.sub(r'`[^`]*`', '', markdown)
    return re.sub(r'\]\([^)]*\)', ']', markdown)


def figures_missing_from_results(markdown: str) -> list:
    known = set(NUMBER.findall(RESULTS.read_text()))
    return sorted({n for n in NUMBER.findall(prose(markdown)) if n not in known}, key=float)


def test_every_results_section_says_how_it_was_taken():
    text = RESULTS.read_text()
    found = sections(text)
    assert found, 'bench/results.md has no sections'
    for heading, body in found.items():
        command, commit, *_ = provenance(body)
        script, sha = command.group(1), commit.group(1)
        assert (REPO / script).is_file(), f'section {heading!r}: {script} is not in bench/'
        known = subprocess.run(['git', 'cat-file', '-e', f'{sha}^{{commit}}'], cwd=REPO, capture_output=True)
        assert known.returncode == 0, f'section {heading!r}: commit {sha} is not in this repository'


def test_a_bench_run_writes_its_provenance_and_keeps_the_other_sections(tmp_path):
    results = tmp_path / 'results.md'
    results.write_text('# fdrop_mm benchmarks\n\n## Another run\n\nits table\n')
    args = ['--shapes', '2x8x8x8', '--dtypes', 'float32', '--layouts', 'contiguous', '--rounds', '2',
            '--run', 'test', '--results', str(results)]
    before = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    proc = subprocess.run([sys.executable, 'bench/bench_operator.py', *args], cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    after = datetime.now(timezone.utc)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    found = sections(results.read_text())
    assert found['Another run'] == '\nits table\n\n'
    command, commit, machine, date, quietness = provenance(found['Operator, CPU: run test'])
    assert command.group(0).startswith(f'- Command: `python bench/bench_operator.py {" ".join(args)}` (')
    head = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=REPO, capture_output=True, text=True, check=True)
    assert commit.group(1) == head.stdout.strip()
    with open('/proc/cpuinfo') as f:
        cpu = next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
    assert machine.groups()[:3] == (cpu, str(os.cpu_count()), torch.__version__)
    started = datetime.strptime(date.group(1), '%Y-%m-%d %H:%M').replace(tzinfo=timezone.utc)
    assert before <= started <= after
    assert all(float(v) >= 0 for v in quietness.group(2).split(' / ') + quietness.group(3).split(' / '))


def test_docs_quote_the_current_results():
    """README.md and docs/benchmarks.md carry every quote of bench/quote_results.py, as it writes
    them from bench/results.md now."""
    proc = subprocess.run([sys.executable, 'bench/quote_results.py', '--check'], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_readme_benchmark_figures_are_results_figures():
    readme = (REPO / 'README.md').read_text()
    bullet = [line for line in readme.splitlines() if line.startswith('- [Benchmarks](docs/benchmarks.md)')]
    assert len(bullet) == 1, "README's Documentation list has no single Benchmarks bullet"
    assert figures_missing_from_results(bullet[0]) == [], bullet[0]


def test_docs_benchmark_figures_are_results_figures():
    text = (REPO / 'docs' / 'benchmarks.md').read_text()
    docs = sections(text)
    assert 'GPU check' in docs
    quoted = '\n'.join([text.split('\n## ', 1)[0], *(body for heading, body in docs.items() if heading != 'GPU check')])
    assert figures_missing_from_results(quoted) == []


def test_compiled_operator_breaks_the_graph_only_at_the_module_gamma_draw():
    """docs/benchmarks.md: the functional compiles to one graph with no break; the module, driven
    as FocusedDropoutHook drives it, breaks once, at its eager γ draw (``torch.compiler.disable``),
    and compiles the masking as one graph."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    from fdrop_mm import FocusedDropout, focused_dropout
    x = torch.randn(4, 16, 14, 14)
    module = FocusedDropout().train()
    module.driven = True  # as the hook sets it: no warning about an undriven module
    for name, fn, args, breaks in (('functional', focused_dropout, (x, 0.5), []),
                                   ('module', module, (x,), ['_draw_gamma'])):
        torch._dynamo.reset()
        counters.clear()
        torch.compile(fn, backend='eager')(*args)
        reasons = list(counters['graph_break'])
        assert [n for n in ('_draw_gamma',) if any(n in r for r in reasons)] == breaks, (name, reasons)
        assert len(reasons) == len(breaks), (name, reasons)
        assert counters['stats']['unique_graphs'] == 1, (name, dict(counters['stats']))
