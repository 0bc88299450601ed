"""fdrop_mm.experiments.sweep: the smoke schedule given at launch, CPU smoke runs of each dataset
format, skipping of finished runs, the launchers' commands (tools/run_sweep.py --dry-run) and an
unknown cell."""
import csv
import json
import subprocess
import sys

import pytest
from mmengine.config import Config

from fdrop_mm.experiments.stages import parse_cfg_options
from fdrop_mm.experiments.sweep import TINY_EPOCHS, run_sweep, tiny_options
from fdrop_mm.experiments.tables import select_cells
from tests.conftest import REPO


def _cell(table, cell_id):
    return select_cells([table], [cell_id])[0]


def test_tiny_options_give_the_smoke_schedule_at_launch(tmp_path):
    (tmp_path / 'tiny-imagenet-200').mkdir()
    (tmp_path / 'tiny-imagenet-200' / 'wnids.txt').write_text('n01\nn02\nn03\n')
    for table, cell_id, participation in (('2', 'resnet20/fd', 0.5), ('6a', 'resnet56/fd-p0.0', 0.0),
                                          ('3', 'resnet110/dropblock', None)):
        cell = _cell(table, cell_id)
        cfg = Config.fromfile(REPO / cell.config)
        cfg.merge_from_dict(parse_cfg_options(tiny_options(cell, tmp_path)))
        assert cfg.train_cfg.max_epochs == TINY_EPOCHS and cfg.param_scheduler.milestones == [1]
        for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
            assert (loader.batch_size, loader.num_workers, loader.dataset.indices) == (8, 0, 16)
            assert loader.dataset.get('verify_md5', True) is (cell.dataset == 'tinyimagenet')
        if participation is None:
            assert cfg.model.head.num_classes == cfg.data_preprocessor.num_classes == 3
        else:  # raised so that a few steps include focused ones, 0 kept
            assert cfg.custom_hooks[0].participation == participation
    committed = Config.fromfile(REPO / _cell('2', 'resnet20/fd').config)
    assert committed.custom_hooks == [dict(type='FocusedDropoutHook')], 'the paper\'s 0.1 stays committed'


def _tool(root, *args):
    """tools/run_sweep.py --tiny on ``root``'s data and work folders, as a user runs it: stdout."""
    proc = subprocess.run([sys.executable, 'tools/run_sweep.py', '--tiny', '--work-dir', root / 'work',
                           '--data-root', root / 'data', '--seeds', '0', *args],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc.stdout


# Tiny ImageNet's smoke run uses ResNet-20 in place of ResNet-110, whose 64x64 CPU iterations
# take seconds each; the ResNet-110 config itself is built in tests/test_cifar_configs.py.
SMOKE = [('1', 'resnet20/baseline', 'resnet20_1xb128_cifar10', []),
         ('2', 'resnet20/fd', 'resnet20_fd_1xb128_cifar100', []),
         ('3', 'resnet110/dropblock', 'resnet110_dropblock_1xb128_tinyimagenet',
          ['model.backbone.depth=20'])]


@pytest.fixture(scope='module')
def smoke(tmp_path_factory):
    """One CPU smoke run per dataset format (CIFAR-10, CIFAR-100, Tiny ImageNet): the sweep with
    ``tiny``, which generates the tiny data and trains with tools/train.py."""
    root = tmp_path_factory.mktemp('sweep')
    for table, cell, _, options in SMOKE:
        run_sweep([table], tiny=True, work_dir=root / 'work', data_root=root / 'data', cells=[cell],
                  seeds=[0], cfg_options=options)
    return root / 'work'


@pytest.mark.slow
@pytest.mark.parametrize('table, cell, run, options', SMOKE, ids=[s[2] for s in SMOKE])
def test_smoke_run_trains_validates_and_is_tabulated(smoke, table, cell, run, options):
    work_dir = smoke / run / 'seed0'
    done = json.loads((work_dir / 'done.json').read_text())
    assert done['cell'] == cell and (work_dir / f'epoch_{TINY_EPOCHS}.pth').is_file()
    records = [json.loads(line) for log in work_dir.glob('*/vis_data/scalars.json')
               for line in log.read_text().splitlines()]
    accuracies = [r['accuracy/top1'] for r in records if 'accuracy/top1' in r]
    assert len(accuracies) == TINY_EPOCHS
    if cell.endswith('/fd'):  # the hook ran focused steps
        assert any(r.get('fd/active') == 1.0 for r in records)
    rows = [r for r in csv.DictReader(open(smoke / f'table{table}.csv')) if r['cell'] == cell]
    best, final = (next(r for r in rows if r['measure'] == m) for m in ('best', 'final'))
    assert float(best['mean']) == pytest.approx(max(accuracies)) and best['n'] == '1'
    assert float(final['mean']) == pytest.approx(accuracies[-1])


@pytest.mark.slow
def test_sweep_skips_finished_runs_and_dry_run_lists_commands(smoke):
    root = smoke.parent
    run_dir = smoke / 'resnet20_1xb128_cifar10' / 'seed0'
    logs_before = sorted(run_dir.glob('*/vis_data'))
    out = _tool(root, '--table', '1', '--cells', 'resnet20/baseline', 'resnet20/dropout', '--dry-run')
    assert f'# skip {run_dir} (done.json)' in out
    dropout_command = next(line for line in out.splitlines() if 'resnet20_dropout_1xb128_cifar10' in line)
    assert 'tools/train.py' in dropout_command and '--work-dir' in dropout_command
    assert 'configs/cifar/table1/resnet20_dropout_1xb128_cifar10.py' in dropout_command
    assert 'custom_hooks' not in dropout_command and 'verify_md5=False' in dropout_command
    assert not (smoke / 'resnet20_dropout_1xb128_cifar10').exists()  # nothing ran
    assert f'skip {run_dir} (complete)' in _tool(root, '--table', '1', '--cells', 'resnet20/baseline')
    assert sorted(run_dir.glob('*/vis_data')) == logs_before
    out = _tool(root, '--table', '4', '--cells', 'resnet56/opposite', '--dry-run', '--launcher', 'pytorch',
                '--gpus', '2')
    command = out.strip().splitlines()[-1]
    assert command.startswith('bash') and 'dist_train.sh' in command
    assert 'configs/cifar/table4/resnet56_opposite_1xb128_cifar100.py' in command
    assert 'custom_hooks.0.participation=0.5' in command
    out = _tool(root, '--table', '4', '--cells', 'resnet56/opposite', '--dry-run', '--launcher', 'slurm',
                '--partition', 'gpu')  # the sbatch scripts: the run, then the tables after it
    run, tables = out.split('# --- stage ')[1:]
    assert run.startswith('resnet56_opposite_1xb128_cifar100/seed0: sbatch --parsable')
    assert '#SBATCH --partition=gpu\n' in run and '#SBATCH --gres=gpu:1\n' in run
    assert 'tools/run_sweep.py --table 4 --seeds 0' in run
    assert '--stage resnet56_opposite_1xb128_cifar100/seed0' in run
    assert tables.startswith('tables: ')
    assert '--dependency=afterok:<resnet56_opposite_1xb128_cifar100/seed0>' in tables


def test_unknown_cell_is_an_error_before_anything_runs(tmp_path):
    proc = subprocess.run([sys.executable, 'tools/run_sweep.py', '--table', '2', '--cells', 'resnet57/fd',
                           '--work-dir', str(tmp_path / 'work')], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2 and "error: no cell ['resnet57/fd'] in table(s) 2" in proc.stderr
    assert not (tmp_path / 'work').exists()
