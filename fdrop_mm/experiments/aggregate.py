"""The classification runs of a sweep as tables laid out like the paper's Tables 1-4 and Fig. 6
(markdown and CSV): mean ± std over seeds of the paper's measure, the highest validation top-1
over the whole run (§5: "The highest validation accuracy over the full training course is
chosen as the result", optimistic), beside the final top-1.

A run is ``<work-dir>/<run>/seed<k>``; only runs with the ``done.json`` of a finished sweep run
count (unfinished ones are listed below the table). Validation results are read from mmengine's
logs, ``<run>/seed<k>/<timestamp>/vis_data/scalars.json`` (or the ``<timestamp>.json`` beside
it), all timestamps together, so a resumed run counts once.
"""
import json
from pathlib import Path
from typing import Sequence

from .records import read_record
from .results import format_mean_std, markdown_table, mean_std, write_table
from .stages import DONE
from .tables import Table

METRIC = 'accuracy/top1'
UNIT = '%'  # mmpretrain's Accuracy reports top-1 in percent


def validation_history(run_dir: Path) -> dict:
    """{step (the epoch): top-1} of every validation logged in ``run_dir``; where a resumed run
    repeats a step, the later log wins."""
    history, logs = {}, []
    for log_dir in sorted(p for p in run_dir.glob('*/vis_data') if p.is_dir()):
        log = log_dir / 'scalars.json'
        if not log.is_file():
            log = log_dir / f'{log_dir.parent.name}.json'
        if not log.is_file():
            continue
        logs.append(log)
        for number, line in enumerate(log.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as error:
                raise ValueError(f'{log}:{number}: not a JSON line ({error})') from error
            if METRIC in record:
                history[int(record['step'])] = float(record[METRIC])
    if not history:
        looked = ', '.join(map(str, logs)) or f'no <timestamp>/vis_data/scalars.json under {run_dir}'
        raise ValueError(f'{run_dir}: no validation {METRIC} logged ({looked})')
    return history


def summarize_run(run_dir: Path) -> dict:
    """The run's best and final validation top-1 and their epochs."""
    history = validation_history(run_dir)
    best_step = max(history, key=lambda step: (history[step], -step))
    final_step = max(history)
    return dict(best=history[best_step], best_epoch=best_step, final=history[final_step],
                final_epoch=final_step, validations=len(history))


def collect(table: Table, work_dir: Path):
    """Per cell: the finished runs' summaries by seed, and the unfinished run folders."""
    results, unfinished = {}, []
    for cell in table.cells:
        runs = {}
        for seed_dir in sorted((work_dir / cell.run).glob('seed*')):
            if read_record(seed_dir / DONE)[0] is None:  # missing, truncated or corrupt
                unfinished.append(seed_dir)
                continue
            runs[int(seed_dir.name[len('seed'):])] = summarize_run(seed_dir)
        results[cell] = runs
    return results, unfinished


def markdown(table: Table, results, unfinished) -> str:
    rows = list(dict.fromkeys(cell.row for cell in table.cells))
    columns = list(dict.fromkeys(cell.column for cell in table.cells))
    by_position = {(cell.row, cell.column): cell for cell in table.cells}
    seeds = sorted({seed for runs in results.values() for seed in runs})
    lines = [f'## {table.title}', '',
             f'Top-1 (%), mean ± sample std over n = {len(seeds)} seeds '
             f'({", ".join(map(str, seeds)) or "none yet"}; a cell with fewer runs gives its n); each '
             'cell: best over the run (the paper\'s measure) / final.', '']
    body = []
    for row in rows:
        cells = [row]
        for column in columns:
            runs = results[by_position[row, column]].values() if (row, column) in by_position else []
            best = format_mean_std([run['best'] for run in runs])
            final = format_mean_std([run['final'] for run in runs])
            cells.append('–' if not runs else f'{best} / {final}' + (
                f' (n={len(runs)})' if len(runs) != len(seeds) else ''))
        body.append(cells)
    lines += markdown_table(['', *columns], body)
    if unfinished:
        lines += ['', f'Not finished (no readable {DONE}), left out: ' + ', '.join(map(str, unfinished))]
    return '\n'.join(lines) + '\n'


def csv_rows(table: Table, results):
    for cell, runs in results.items():
        for measure in ('best', 'final'):
            values = [runs[seed][measure] for seed in sorted(runs)]
            mean, std = mean_std(values) if values else (None, None)
            yield dict(table=table.key, row=cell.row, column=cell.column, cell=cell.id,
                       config=cell.config, run=cell.run, measure=measure, unit=UNIT, mean=mean,
                       std=std, n=len(values), seeds=' '.join(map(str, sorted(runs))),
                       values=' '.join(f'{v:g}' for v in values))


def write_tables(tables: Sequence[Table], work_dir: Path) -> str:
    """Write ``table<key>.md`` and ``table<key>.csv`` into ``work_dir``; return the markdown."""
    texts = []
    for table in tables:
        results, unfinished = collect(table, work_dir)
        texts.append(write_table(work_dir, f'table{table.key}', markdown(table, results, unfinished),
                                   csv_rows=list(csv_rows(table, results))))
    return '\n'.join(texts)
