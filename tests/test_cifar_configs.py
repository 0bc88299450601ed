"""The classification configs of Tables 1-4 and Fig. 6, the sweep launcher and the aggregation:
every cell's config builds its model with the regulariser where §5 puts it, CPU smoke runs of
each dataset format through tools/run_sweep.py, skipping of finished runs, and mean ± std,
best and final from hand-written mmengine logs."""
import copy
import csv
import json
import statistics
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmpretrain.registry import HOOKS, MODELS

from fdrop_mm import FocusedDropout
from tests.conftest import REPO

sys.path.append(str(REPO / 'tools'))
import aggregate_results  # noqa: E402
import run_sweep  # noqa: E402

ALL_CELLS = [cell for table in run_sweep.TABLES.values() for cell in table.cells]
RUNS = list({cell.run: cell for cell in ALL_CELLS}.values())
REGULARIZER_TYPES = {'dropout': 'Dropout', 'spatial_dropout': 'Dropout2d',
                     'dropblock': 'DropBlock2d', 'focused': 'FocusedDropout'}


def test_tables_cover_the_paper():
    networks = ['resnet20', 'resnet56', 'resnet110', 'vgg19bn', 'densenet-bc100-k12', 'wrn28-10']
    methods = ['baseline', 'dropout', 'spatial-dropout', 'dropblock', 'fd']
    for key, dataset in (('1', 'cifar10'), ('2', 'cifar100')):
        cells = run_sweep.TABLES[key].cells
        assert sorted(c.id for c in cells) == sorted(f'{n}/{m}' for n in networks for m in methods)
        assert all(c.config == f'configs/cifar/{c.network}_1xb128_{dataset}.py' for c in cells)
    assert sorted(c.id for c in run_sweep.TABLES['3'].cells) == sorted(f'resnet110/{m}' for m in methods)
    ablations = [c for key in ('4', '6a', '6b', '6c') for c in run_sweep.TABLES[key].cells]
    assert {c.config for c in ablations} == {'configs/cifar/resnet56_1xb128_cifar100.py'}
    table4 = {c.row: c.method for c in run_sweep.TABLES['4'].cells}
    assert table4['+Randomly MWD'].mode == 'weight_decay_only'
    assert table4['+FocusedDropout without MWD'].weight_decay_multiplier == 1
    assert {table4['+Opposite approach'].mode, table4['+Opposite approach without MWD'].mode} == {
        'opposite'}
    assert sorted(c.method.participation for c in run_sweep.TABLES['6a'].cells) == [0, .1, .2, .3, .4]
    assert sorted(c.method.gamma_range for c in run_sweep.TABLES['6b'].cells) == [
        (.3, .3), (.3, .6), (.6, .6), (.9, .9)]
    # a setting shared by several tables is one run
    assert len({c.method for c in ALL_CELLS if c.method.name == 'fd'}) == 1


@pytest.fixture(scope='module')
def variants():
    """Every run's config: its base config merged with the overrides its variant file sets."""
    configs = {}
    for cell in RUNS:
        cfg = copy.deepcopy(run_sweep.load_base(cell.config))
        cfg.merge_from_dict(run_sweep.variant_overrides(cell))
        configs[cell.run] = cfg
    return configs


def test_variant_files_load_as_their_base_plus_overrides(variants, tmp_path):
    dropblock = next(c for c in run_sweep.TABLES['2'].cells if c.id == 'resnet20/dropblock')
    for cell in run_sweep.TABLES['4'].cells + [dropblock]:
        written = Config.fromfile(run_sweep.write_variant(cell, tmp_path, False, None))
        expected = variants[cell.run]
        for key in ('model', 'custom_hooks', 'optim_wrapper', 'train_dataloader', 'train_cfg'):
            assert written.get(key) == expected.get(key), (cell.run, key)


def test_every_cell_config_builds_with_the_papers_recipe(variants):
    init_default_scope('mmpretrain')
    for cell in RUNS:
        cfg = variants[cell.run]
        with torch.device('meta'):  # structure only: WRN-28-10 has 36.5 M parameters
            model = MODELS.build(cfg.model)
        stages = len(model.backbone.stages)
        regularizers = dict(model.backbone.stage_regularizers.items())
        kind = cell.method.regularizer
        if kind is None or cell.method.mode == 'weight_decay_only':
            assert not regularizers, cell.run
        else:  # §5: DropBlock on the first two groups, the others on the penultimate one
            expected = ['0', '1'] if kind == 'dropblock' else [str(stages - 2)]
            assert sorted(regularizers) == expected, cell.run
            assert {type(m).__name__ for m in regularizers.values()} == {REGULARIZER_TYPES[kind]}
        if kind == 'focused':
            hook = HOOKS.build(cfg.custom_hooks[0])
            assert (hook.participation, hook.weight_decay_multiplier, hook.mode) == (
                cell.method.participation, cell.method.weight_decay_multiplier, cell.method.mode)
            for module in regularizers.values():
                assert isinstance(module, FocusedDropout)
                assert (module.gamma_range, module.opposite) == (hook._template.gamma_range,
                                                                 hook._template.opposite)
        else:
            assert 'custom_hooks' not in cfg, cell.run
        optimizer = cfg.optim_wrapper.optimizer
        assert (optimizer.type, optimizer.lr, optimizer.momentum, optimizer.weight_decay) == (
            'SGD', 0.1, 0.9, 5e-4)
        wide = cell.network == 'wrn28-10'
        assert cfg.train_cfg.max_epochs == (200 if wide else 300)
        assert cfg.param_scheduler.milestones == ([60, 120, 160] if wide else [150, 225])
        assert cfg.param_scheduler.gamma == 0.1 and cfg.train_cfg.val_interval == 1
        transforms = [t.type for t in cfg.train_dataloader.dataset.pipeline]
        assert 'RandomCrop' in transforms and 'RandomFlip' in transforms
        assert model.head.fc.out_features == cfg.data_preprocessor.num_classes
        default_root = {10: 'data/cifar10', 100: 'data/cifar100', 200: 'data/tiny-imagenet-200'}
        assert cfg.train_dataloader.dataset.data_root == default_root[model.head.fc.out_features]


def test_data_roots_come_from_the_environment(monkeypatch, tmp_path):
    for variable, config in (('CIFAR10_ROOT', 'configs/cifar/resnet20_1xb128_cifar10.py'),
                             ('CIFAR100_ROOT', 'configs/cifar/resnet20_1xb128_cifar100.py'),
                             ('TINY_IMAGENET_200_ROOT',
                              'configs/tinyimagenet/resnet110_1xb128_tinyimagenet.py')):
        monkeypatch.setenv(variable, str(tmp_path / variable))
        cfg = Config.fromfile(REPO / config)
        assert cfg.train_dataloader.dataset.data_root == str(tmp_path / variable)
        assert cfg.val_dataloader.dataset.data_root == str(tmp_path / variable)


# ---------------------------------------------------------------- smoke runs and the sweep

def _sweep(root, *args):
    run_sweep.main(['--tiny', '--work-dir', str(root / 'work'), '--data-root', str(root / 'data'),
                    '--seeds', '0', *args])


# Tiny ImageNet's smoke run uses ResNet-20 in place of ResNet-110, whose 64x64 CPU iterations
# take seconds each; the ResNet-110 config itself is built above.
SMOKE = [('1', 'resnet20/baseline', 'resnet20_1xb128_cifar10_baseline', []),
         ('2', 'resnet20/fd', 'resnet20_1xb128_cifar100_fd', []),
         ('3', 'resnet110/dropblock', 'resnet110_1xb128_tinyimagenet_dropblock',
          ['--cfg-options', 'model.backbone.depth=20'])]


@pytest.fixture(scope='module')
def smoke(tmp_path_factory):
    """One CPU smoke run per dataset format (CIFAR-10, CIFAR-100, Tiny ImageNet), as a user
    runs them: tools/run_sweep.py --tiny, which generates the tiny data and trains with
    tools/train.py."""
    root = tmp_path_factory.mktemp('sweep')
    for table, cell, _, options in SMOKE:
        _sweep(root, '--table', table, '--cells', cell, *options)
    return root / 'work'


@pytest.mark.parametrize('table, cell, run, options', SMOKE, ids=[s[2] for s in SMOKE])
def test_smoke_run_trains_validates_and_is_tabulated(smoke, table, cell, run, options):
    work_dir = smoke / run / 'seed0'
    done = json.loads((work_dir / 'done.json').read_text())
    assert done['cell'] == cell and (work_dir / f'epoch_{run_sweep.TINY_EPOCHS}.pth').is_file()
    records = [json.loads(line) for log in work_dir.glob('*/vis_data/scalars.json')
               for line in log.read_text().splitlines()]
    accuracies = [r['accuracy/top1'] for r in records if 'accuracy/top1' in r]
    assert len(accuracies) == run_sweep.TINY_EPOCHS
    if run.endswith('_fd'):  # the hook ran focused steps
        assert any(r.get('fd/active') == 1.0 for r in records)
    rows = [r for r in csv.DictReader(open(smoke / f'table{table}.csv')) if r['cell'] == cell]
    best, final = (next(r for r in rows if r['measure'] == m) for m in ('best', 'final'))
    assert float(best['mean']) == pytest.approx(max(accuracies)) and best['n'] == '1'
    assert float(final['mean']) == pytest.approx(accuracies[-1])


def test_sweep_skips_finished_runs_and_dry_run_lists_commands(smoke, capsys):
    run_dir = smoke / 'resnet20_1xb128_cifar10_baseline' / 'seed0'
    logs_before = sorted(run_dir.glob('*/vis_data'))
    capsys.readouterr()
    _sweep(smoke.parent, '--table', '1', '--cells', 'resnet20/baseline', 'resnet20/dropout',
           '--dry-run')
    out = capsys.readouterr().out
    assert f'# skip {run_dir} (done.json)' in out
    dropout_command = next(line for line in out.splitlines()
                           if 'resnet20_1xb128_cifar10_dropout' in line)
    assert 'tools/train.py' in dropout_command and '--work-dir' in dropout_command
    assert not (smoke / 'resnet20_1xb128_cifar10_dropout').exists()  # nothing ran
    _sweep(smoke.parent, '--table', '1', '--cells', 'resnet20/baseline')
    assert f'skip {run_dir} (complete)' in capsys.readouterr().out
    assert sorted(run_dir.glob('*/vis_data')) == logs_before
    for launcher, script in ((['--launcher', 'pytorch', '--gpus', '2'], 'dist_train.sh'),
                             (['--launcher', 'slurm', '--partition', 'gpu'], 'slurm_train.sh')):
        _sweep(smoke.parent, '--table', '4', '--cells', 'resnet56/opposite', '--dry-run', *launcher)
        command = capsys.readouterr().out.strip().splitlines()[-1]
        assert command.startswith('bash') and script in command
        assert 'resnet56_1xb128_cifar100_opposite.py' in command


def test_unknown_cell_is_an_error():
    with pytest.raises(SystemExit, match='no cell .*resnet57/fd'):
        run_sweep.parse_args(['--table', '2', '--cells', 'resnet57/fd'])


# ------------------------------------------------------------------------------ aggregation

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
    table = run_sweep.TABLES['4']
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

    text = aggregate_results.write_tables([table], tmp_path)
    rows = {(r['cell'], r['measure']): r for r in csv.DictReader(open(tmp_path / 'table4.csv'))}
    expected = {(baseline.id, 'best'): [max(h) for h in histories.values()],
                (baseline.id, 'final'): [h[-1] for h in histories.values()],
                (fd.id, 'best'): [75.5, 76.0], (fd.id, 'final'): [75.5, 74.5]}
    for key, values in expected.items():
        row = rows[key]
        assert float(row['mean']) == pytest.approx(statistics.mean(values))
        assert float(row['std']) == pytest.approx(statistics.stdev(values))
        assert int(row['n']) == len(values)
    best = expected[baseline.id, 'best']
    final = expected[baseline.id, 'final']
    assert (f'| ResNet56 | {statistics.mean(best):.2f} ± {statistics.stdev(best):.2f} / '
            f'{statistics.mean(final):.2f} ± {statistics.stdev(final):.2f} |') in text
    assert '(n=2)' in text and f'{tmp_path / fd.run / "seed2"}' in text  # unfinished, left out
    assert rows[(table.cells[1].id, 'best')]['n'] == '0'  # no runs: an empty cell
    assert (tmp_path / 'table4.md').read_text() == text


def test_finished_run_without_accuracy_is_an_error(tmp_path):
    run_dir = tmp_path / 'run' / 'seed0'
    run_dir.mkdir(parents=True)
    with pytest.raises(ValueError, match=f'{run_dir}: no validation accuracy/top1 logged '
                                         r'\(no <timestamp>/vis_data/scalars.json'):
        aggregate_results.summarize_run(run_dir)
    (run_dir / '20260101_000000' / 'vis_data').mkdir(parents=True)
    log = run_dir / '20260101_000000' / 'vis_data' / 'scalars.json'
    log.write_text(json.dumps(dict(loss=1.0, step=1)) + '\n')
    with pytest.raises(ValueError, match=f'{run_dir}: no validation accuracy/top1 logged \\({log}\\)'):
        aggregate_results.summarize_run(run_dir)
