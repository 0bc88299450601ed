"""fdrop_mm.experiments.aggregate: mean ± std, best and final from hand-written mmengine logs."""
import csv
import json
import statistics

import pytest

from fdrop_mm.experiments.aggregate import summarize_run, write_tables
from fdrop_mm.experiments.tables import TABLES


def _write_run(run_dir, logs, done=True):
    """mmengine's layout: one <timestamp>/vis_data/scalars.json per (resumed) training."""
    for timestamp, validations in logs:
        vis_data = run_dir / timestamp / 'vis_data'
        vis_data.mkdir(parents=True)
        lines = []
        for epoch, top1 in validations:
            lines.append(dict(lr=0.1, loss=2.0, epoch=epoch, iter=epoch * 10, step=epoch * 10))
            lines.append({'accuracy/top1': top1, 'data_time': 0.01, 'time': 0.1, 'step': epoch})
        (vis_data / 'scalars.json').write_text(''.join(json.dumps(line) + '\n' for line in lines))
    if done:
        (run_dir / 'done.json').write_text('{}')


def test_aggregation_gives_mean_std_of_best_and_final(tmp_path):
    table = TABLES['4']
    baseline, fd = (next(c for c in table.cells if c.method.name == name) for name in ('baseline', 'fd'))
    histories = {0: [70.0, 73.5, 73.1], 1: [69.0, 74.25, 74.0], 2: [71.0, 72.0, 73.75]}
    for seed, accuracies in histories.items():
        _write_run(tmp_path / baseline.run / f'seed{seed}',
                   [('20260101_000000', list(enumerate(accuracies, start=1)))])
    # seed 0 resumed at epoch 2: the later log's epoch 2 replaces the first one's
    _write_run(tmp_path / fd.run / 'seed0', [('20260101_000000', [(1, 60.0), (2, 99.0)]),
                                             ('20260102_000000', [(2, 74.0), (3, 75.5)])])
    _write_run(tmp_path / fd.run / 'seed1', [('20260101_000000', [(1, 76.0), (2, 74.5)])])
    _write_run(tmp_path / fd.run / 'seed2', [('20260101_000000', [(1, 10.0)])], done=False)

    text = write_tables([table], tmp_path)
    rows = {(r['cell'], r['measure']): r for r in csv.DictReader(open(tmp_path / 'table4.csv'))}
    expected = {(baseline.id, 'best'): [max(h) for h in histories.values()],
                (baseline.id, 'final'): [h[-1] for h in histories.values()],
                (fd.id, 'best'): [75.5, 76.0], (fd.id, 'final'): [75.5, 74.5]}
    for key, values in expected.items():
        row = rows[key]
        assert float(row['mean']) == pytest.approx(statistics.mean(values))
        assert float(row['std']) == pytest.approx(statistics.stdev(values))
        assert int(row['n']) == len(values)
    assert rows[(fd.id, 'best')]['config'] == 'configs/cifar/table2/resnet56_fd_1xb128_cifar100.py'
    assert {row['unit'] for row in rows.values()} == {'%'}
    best = expected[baseline.id, 'best']
    final = expected[baseline.id, 'final']
    assert (f'| ResNet56 | {statistics.mean(best):.2f} ± {statistics.stdev(best):.2f} / '
            f'{statistics.mean(final):.2f} ± {statistics.stdev(final):.2f} |') in text
    assert 'Top-1 (%), mean ± sample std over n = 3 seeds (0, 1, 2;' in text
    assert '(n=2)' in text and f'{tmp_path / fd.run / "seed2"}' in text  # unfinished, left out
    assert rows[(table.cells[1].id, 'best')]['n'] == '0'  # no runs: an empty cell
    assert (tmp_path / 'table4.md').read_text() == text


def test_finished_run_without_accuracy_is_an_error(tmp_path):
    run_dir = tmp_path / 'run' / 'seed0'
    run_dir.mkdir(parents=True)
    with pytest.raises(ValueError, match=f'{run_dir}: no validation accuracy/top1 logged '
                                         r'\(no <timestamp>/vis_data/scalars.json'):
        summarize_run(run_dir)
    (run_dir / '20260101_000000' / 'vis_data').mkdir(parents=True)
    log = run_dir / '20260101_000000' / 'vis_data' / 'scalars.json'
    log.write_text(json.dumps(dict(loss=1.0, step=1)) + '\n')
    with pytest.raises(ValueError, match=f'{run_dir}: no validation accuracy/top1 logged \\({log}\\)'):
        summarize_run(run_dir)
