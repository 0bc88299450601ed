"""Write the benchmark figures that README.md and docs/benchmarks.md quote, from bench/results.md.

    python bench/quote_results.py [--run 1]     # rewrite the quotes
    python bench/quote_results.py --check       # exit 1 naming every quote that differs or is missing

A quote is the text between ``<!-- quote: NAME -->`` and ``<!-- /quote -->`` in those files;
each NAME is built from the ``run <run>`` sections of bench/results.md, its figures copied as
that file prints them, so a figure in the docs is always one of bench/results.md.
"""
import argparse
import re
import sys

from results_md import BENCH, RESULTS  # bench/ is this script's folder

REPO = BENCH.parent
DOCS = [REPO / 'README.md', REPO / 'docs' / 'benchmarks.md']
QUOTE = re.compile(r'(<!-- quote: ([\w-]+) -->)(.*?)(<!-- /quote -->)', re.S)


def sections(text: str) -> dict:
    parts = re.split(r'^## (.+)\n', text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def section(results: dict, heading: str) -> str:
    if heading not in results:
        raise SystemExit(f'quote_results.py: bench/results.md has no section "{heading}"; run '
                         'bench/run_benchmarks.py first (docs/benchmarks.md)')
    return results[heading]


def rows(body: str) -> list:
    """The cells of a section's table rows, header and rule left out."""
    table = [[c.strip() for c in line.strip().strip('|').split('|')] for line in body.splitlines()
             if line.startswith('| ') and not line.startswith('|---')]
    return table[1:]


def quietness(body: str) -> str:
    """``loaded: other processes used 1.23 of the 2 cores, 1-min load average 3.10 before; commit 1234abc``
    from the Quietness and Commit lines."""
    line = re.search(r'^- Quietness: \*\*(\w+)\*\*: load average \(1 / 5 / 15 min\) (\S+) .*? before, .*'
                     r'other processes used (\S+) of the (\d+) cores', body, re.M)
    if not line:
        raise SystemExit('quote_results.py: a section of bench/results.md has no Quietness line')
    verdict, load, others, cores = line.groups()
    commit = re.search(r'^- Commit: (\w+)', body, re.M)
    return (f'{verdict}: other processes used {others} of the {cores} cores, 1-min load average {load} before; '
            f'commit {commit.group(1)[:7] if commit else "unknown"}')


def span(values) -> str:
    """``1.34–2.45`` from printed figures (as printed), or the one figure."""
    values = sorted(values, key=float)
    return values[0] if values[0] == values[-1] else f'{values[0]}–{values[-1]}'


def interval(cell: str) -> str:
    """``1.013× (95% interval 1.005–1.020)`` from the table's ``1.013 (1.005–1.020)``."""
    median, rest = cell.split(' ', 1)
    return f'{median}× (95% interval {rest.strip("()")})'


def median_of(cell: str) -> str:
    return cell.split(' ')[0]


def operator_figures(body: str) -> dict:
    table = rows(body)
    fd = {kind: [median_of(r[5]) for r in table if r[1] == kind] for kind in ('float32', 'bfloat16')}
    return dict(fd_float32=span(fd['float32']), fd_bfloat16=span(fd['bfloat16']),
                read=span(r[6] for r in table),
                sums_float32=span(r[7] for r in table if r[1] == 'float32'),
                sums_bfloat16=span(r[7] for r in table if r[1] == 'bfloat16'),
                met=sum(r[9] == '**met**' for r in table), configurations=len(table))


def fused_figures(body: str) -> dict:
    found = re.search(r'Compiled, the FocusedDropout block costs (\S+) \((IQR [^,]+), [^)]*\)× the x·m block \(bound '
                      r'≤ \S+: \*\*(\w+)\*\*\); FD adds (\S+) ms to the block\. Eager: (\S+) \((IQR [^,]+), [^)]*\)×, '
                      r'FD adds (\S+) ms\.', body)
    if not found:
        raise SystemExit('quote_results.py: a fused section of bench/results.md lacks its summary sentence')
    ms = {r[0]: r[1] for r in rows(body)}
    c, c_iqr, c_met, c_added, e, e_iqr, e_added = found.groups()
    return (f'Compiled, the FD block costs {c}× ({c_iqr}) the compiled x·m block ({ms["compiled BN+ReLU + FocusedDropout"]} '
            f'against {ms["compiled BN+ReLU + x * m"]} ms; the compiled BN + ReLU alone {ms["compiled BN+ReLU"]} ms, '
            f'eager {ms["eager BN+ReLU"]} ms), bound **{c_met}**; eager, the FD block costs **{e}× ({e_iqr})** the '
            f'eager x·m block, FD adding {e_added} ms to {ms["eager BN+ReLU + x * m"]} ms')


def step_figures(body: str) -> dict:
    table = {r[0]: r for r in rows(body)}
    out = {}
    for arm, key in (('FD, participation 1.0', 'p10'), ('FD, participation 0.1', 'p01')):
        row = table[arm]
        out[key] = row[3]
        out[key + '_target'] = row[6].replace('**', '')
        out[key + '_groups'] = row[5]
    return out


def quotes(results: dict, run: str) -> dict:
    """{name: text} of every quote."""
    operator = section(results, f'Operator, CPU: run {run}')
    train, evaluated = (section(results, f'Operator fused with its producer (torch.compile{bn}), CPU: run {run}')
                        for bn in ('', ', BN eval'))
    step = results.get(f'Training step, CPU: run {run}')
    o = operator_figures(operator)
    verdict = ('missed in every configuration' if not o['met'] else
               f'missed in {o["configurations"] - o["met"]} of {o["configurations"]} configurations')
    taken = [operator, train, evaluated] + ([step] if step else [])
    loaded = 'loaded' if any('loaded' in quietness(b) for b in taken) else 'quiet'
    if step:
        s = step_figures(step)
        step_quote = (f'participation 1.0: {interval(s["p10"])} no hook, target {s["p10_target"]}; participation '
                      f'0.1: {interval(s["p01"])}, target {s["p01_target"]} (plain / focused median and rounds: '
                      f'{s["p01_groups"]}) ({quietness(step)}).')
        step_readme = (f'training step {median_of(s["p10"])}× at participation 1.0 and {median_of(s["p01"])}× at 0.1 '
                       f'(targets {s["p10_target"]}, {s["p01_target"]})')
    else:
        step_quote = (f'no section "Training step, CPU: run {run}" in `bench/results.md`: the training step has not '
                      'been measured with the current code.')
        step_readme = 'training step not yet measured with the current code'
    bound = ('**The 1.25× bound is missed in every configuration.**' if not o['met'] else
             f'The 1.25× bound is met in {o["met"]} of {o["configurations"]} configurations.')
    return {
        'operator': (f'FocusedDropout costs {o["fd_float32"]}× the floor in float32 and {o["fd_bfloat16"]}× in '
                     f'bfloat16 ({quietness(operator)}). {bound} From the references in the same rounds: '
                     f'`floor + x.sum()` {o["read"]}×, `floor + reference_channel(x)` {o["sums_float32"]}× in float32 '
                     f'and {o["sums_bfloat16"]}× in bfloat16.'),
        'fused-train': f'{fused_figures(train)} ({quietness(train)}).',
        'fused-eval': f'{fused_figures(evaluated)} ({quietness(evaluated)}).',
        'step': step_quote,
        'readme': (f'one run on a {loaded} machine: operator {o["fd_float32"]}× in float32 and '
                   f'{o["fd_bfloat16"]}× in bfloat16, bound {verdict}; a plain read '
                   f'of x alone costs {o["read"]}× there; {step_readme}'),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--run', default='1', help='the run whose sections are quoted')
    parser.add_argument('--check', action='store_true', help='only compare: exit 1 naming the quotes that differ')
    args = parser.parse_args()
    wanted = quotes(sections(RESULTS.read_text()), args.run)
    stale, used = [], set()
    for path in DOCS:
        text = path.read_text()

        def replace(match):
            name = match.group(2)
            if name not in wanted:
                raise SystemExit(f'quote_results.py: {path.relative_to(REPO)} quotes "{name}", which is none of '
                                 f'{", ".join(wanted)}')
            used.add(name)
            if match.group(3) != wanted[name]:
                stale.append(f'{path.relative_to(REPO)}: {name}')
            return match.group(1) + wanted[name] + match.group(4)
        new = QUOTE.sub(replace, text)
        if not args.check and new != text:
            path.write_text(new)
    if args.check and (stale or used != set(wanted)):
        sys.exit('quote_results.py --check: ' + '; '.join(
            [f'quoted nowhere: {", ".join(sorted(set(wanted) - used))}'] * bool(set(wanted) - used)
            + [f'differ from bench/results.md (run bench/quote_results.py): {"; ".join(stale)}'] * bool(stale)))
    print(f'quotes {"checked" if args.check else "written"}: {", ".join(sorted(used))}'
          + (f'; rewritten: {"; ".join(stale)}' if stale and not args.check else ''))


if __name__ == '__main__':
    main()
