"""Run the paper's classification experiments (Tables 1-4, Fig. 6): a table's configs x seeds,
locally or through tools/dist_train.sh / tools/slurm_train.sh, skipping finished runs, then
write the table (tools/aggregate_results.py).

    python tools/run_sweep.py --table 2 --cells resnet110/fd --seeds 0 1 2     # one cell
    python tools/run_sweep.py --table 1 2 3 4 --seeds 0 1 2 --launcher slurm --partition p
    python tools/run_sweep.py --table 4 --dry-run                              # list commands
    python tools/run_sweep.py --tiny --table 1 --cells resnet20/baseline       # CPU smoke run

Each run trains a variant config written to ``<work-dir>/configs/<run>.py``: the table's base
config (configs/cifar/, configs/tinyimagenet/) plus the cell's regulariser (§5: Dropout,
SpatialDropout and FocusedDropout on the output of the penultimate group, DropBlock on the
outputs of the first two) and, for FocusedDropout, its hook. A run is ``<work-dir>/<run>/seed<k>``;
its ``done.json`` marks it finished, so a rerun skips it and resumes an interrupted one from its
last checkpoint. Cells shared by several tables (e.g. ResNet-56 + FD on CIFAR-100 in Table 2,
Table 4 and Fig. 6) are one run.
"""
import argparse
import dataclasses
import functools
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

TOOLS = Path(__file__).resolve().parent
if str(TOOLS) not in sys.path:  # the sibling tools, also when this file is imported
    sys.path.append(str(TOOLS))

from run_pipeline import REPO, Pipeline  # noqa: E402

# The paper states no rate for the compared regularisers; these are the usual ones
# (DropBlock's ImageNet drop_prob 0.1; block 5 suits 32x32 and 16x16 group outputs).
# Change them for a whole sweep with --cfg-options, e.g.
# model.backbone.stage_regularizer.cfg.drop_prob=0.3 (and a separate --work-dir).
DROPOUT = dict(type='Dropout', drop_prob=0.1)
SPATIAL_DROPOUT = dict(type='SpatialDropout', p=0.1)
DROPBLOCK = dict(type='DropBlock2d', drop_prob=0.1, block_size=5)
DROPBLOCK_STAGES = (0, 1)  # "the output of first two groups" (§5)
BASE_WEIGHT_DECAY = 5e-4  # configs/cifar/_base_/classifier_300e.py


@dataclasses.dataclass(frozen=True)
class Method:
    """One row setting: a regulariser and, for FocusedDropout, the hook's parameters (§4, §5.2)."""
    name: str
    regularizer: Optional[str] = None  # 'dropout', 'spatial_dropout', 'dropblock', 'focused'
    participation: float = 0.1
    weight_decay_multiplier: float = 2.0
    gamma_range: tuple = (0.3, 0.6)
    mode: str = 'focused'

    def overrides(self, backbone_type: str, tiny: bool = False) -> dict:
        """The config keys this method sets on top of a base config with that backbone."""
        from fdrop_mm.models.backbones.cifar import PENULTIMATE_STAGE
        penultimate = (PENULTIMATE_STAGE[backbone_type], )
        module, stages = {
            None: (None, None),
            'dropout': (DROPOUT, penultimate),
            'spatial_dropout': (SPATIAL_DROPOUT, penultimate),
            'dropblock': (DROPBLOCK, DROPBLOCK_STAGES),
            'focused': (dict(type='FocusedDropout', gamma_range=self.gamma_range,
                             opposite=self.mode == 'opposite'), penultimate),
        }[self.regularizer]
        overrides = {}
        if module is not None and self.mode != 'weight_decay_only':
            overrides['model'] = dict(backbone=dict(
                stage_regularizer=dict(cfg=dict(module), after_stages=stages)))
        if self.regularizer == 'focused':
            # A smoke run has a handful of steps: at 0.1 it might have no focused one.
            participation = max(self.participation, 0.5) if tiny and self.participation else \
                self.participation
            overrides['custom_hooks'] = [dict(
                type='FocusedDropoutHook', participation=participation,
                weight_decay_multiplier=self.weight_decay_multiplier, targets=None,
                gamma_range=self.gamma_range, mode=self.mode)]
        return overrides


def _fd(name, **settings):
    return Method(name, 'focused', **settings)


BASELINE, FD, FD_NO_MWD = Method('baseline'), _fd('fd'), _fd('fd-no-mwd', weight_decay_multiplier=1.0)
MAIN_METHODS = [('Baseline', BASELINE), ('Dropout', Method('dropout', 'dropout')),
                ('SpatialDropout', Method('spatial-dropout', 'spatial_dropout')),
                ('DropBlock', Method('dropblock', 'dropblock')), ('FocusedDropout', FD)]
TABLE4_METHODS = [
    ('ResNet56', BASELINE),
    ('+Randomly MWD', _fd('random-mwd', mode='weight_decay_only')),
    ('+FocusedDropout without MWD', FD_NO_MWD),
    ('+Opposite approach without MWD', _fd('opposite-no-mwd', mode='opposite',
                                           weight_decay_multiplier=1.0)),
    ('+Opposite approach', _fd('opposite', mode='opposite')),
    ('+FocusedDropout', FD),
]
PARTICIPATION_METHODS = [(f'participation {p}', FD if p == 0.1 else _fd(f'fd-p{p}', participation=p))
                         for p in (0.0, 0.1, 0.2, 0.3, 0.4)]
GAMMA_METHODS = [(f'γ = {g}', _fd(f'fd-gamma{g}', gamma_range=(g, g))) for g in (0.3, 0.6, 0.9)] + [
    ('γ ~ U(0.3, 0.6)', FD)]
# Fig. 6c peaks at weight decay 1e-3, read as the focused steps' decay over a 5e-4 base
# (the paper gives neither value explicitly).
WEIGHT_DECAY_METHODS = [
    (f'{BASE_WEIGHT_DECAY * m:.0e} on focused steps (x{m:g})',
     {1: FD_NO_MWD, 2: FD}.get(m) or _fd(f'fd-wd-x{m}', weight_decay_multiplier=float(m)))
    for m in (1, 2, 4, 8)]

NETWORKS = [('ResNet20', 'resnet20'), ('ResNet56', 'resnet56'), ('ResNet110', 'resnet110'),
            ('VggNet19', 'vgg19bn'), ('DenseNet', 'densenet-bc100-k12'), ('WRN28', 'wrn28-10')]


@dataclasses.dataclass(frozen=True)
class Cell:
    row: str
    column: str
    network: str  # the config's network, e.g. resnet56; a cell's id is <network>/<method>
    config: str  # relative to the repository
    method: Method

    @property
    def id(self) -> str:
        return f'{self.network}/{self.method.name}'

    @property
    def run(self) -> str:
        """The run's name: the base config's name and the method."""
        return f'{Path(self.config).stem}_{self.method.name}'


@dataclasses.dataclass(frozen=True)
class Table:
    key: str
    title: str
    cells: List[Cell]


def _cifar(network, dataset):
    return f'configs/cifar/{network}_1xb128_{dataset}.py'


def _grid(methods, columns):
    """Cells of rows ``methods`` (label, Method) by ``columns`` (label, network, config)."""
    return [Cell(row, column, network, config, method)
            for row, method in methods for column, network, config in columns]


RESNET56_CIFAR100 = [('ResNet56', 'resnet56', _cifar('resnet56', 'cifar100'))]
TABLES = {t.key: t for t in [
    Table('1', 'Table 1: test accuracy (%) on CIFAR-10', _grid(
        MAIN_METHODS, [(label, net, _cifar(net, 'cifar10')) for label, net in NETWORKS])),
    Table('2', 'Table 2: test accuracy (%) on CIFAR-100', _grid(
        MAIN_METHODS, [(label, net, _cifar(net, 'cifar100')) for label, net in NETWORKS])),
    Table('3', 'Table 3: validation accuracy (%) on Tiny ImageNet', _grid(
        MAIN_METHODS, [('ResNet110', 'resnet110',
                        'configs/tinyimagenet/resnet110_1xb128_tinyimagenet.py')])),
    Table('4', 'Table 4: magnified weight decay and the opposite approach, CIFAR-100',
          _grid(TABLE4_METHODS, RESNET56_CIFAR100)),
    Table('6a', 'Fig. 6a: participation rate, CIFAR-100', _grid(PARTICIPATION_METHODS,
                                                              RESNET56_CIFAR100)),
    Table('6b', 'Fig. 6b: γ, CIFAR-100', _grid(GAMMA_METHODS, RESNET56_CIFAR100)),
    Table('6c', 'Fig. 6c: weight decay, CIFAR-100', _grid(WEIGHT_DECAY_METHODS, RESNET56_CIFAR100)),
]}

# --tiny: the generated data (tools/make_tiny_data.py) and a schedule of a few iterations.
TINY_DATASETS = ('cifar10', 'cifar100', 'tinyimagenet')
TINY_BATCH = 8
TINY_SAMPLES = 16  # per split: 2 iterations per epoch
TINY_EPOCHS = 2


def to_source(value) -> str:
    """``value`` as config source, dicts written as ``dict(...)`` like hand-written configs."""
    if isinstance(value, dict):
        return 'dict(' + ', '.join(f'{k}={to_source(v)}' for k, v in value.items()) + ')'
    if isinstance(value, list):
        return '[' + ', '.join(map(to_source, value)) + ']'
    if isinstance(value, tuple):
        return '(' + ', '.join(map(to_source, value)) + (',)' if len(value) == 1 else ')')
    return repr(value)


def tiny_overrides(config, data_root: Path) -> dict:
    """A few CPU iterations on the generated data: ``TINY_SAMPLES`` images per split, batch
    ``TINY_BATCH``, ``TINY_EPOCHS`` epochs (each validated), CIFAR's md5 check replaced by its
    structure check."""
    dataset = dict(indices=TINY_SAMPLES)
    overrides = dict(train_cfg=dict(max_epochs=TINY_EPOCHS),
                     param_scheduler=dict(milestones=[TINY_EPOCHS - 1]),
                     default_hooks=dict(logger=dict(interval=1), checkpoint=dict(interval=1)))
    if config.train_dataloader.dataset.type == 'TinyImageNet':
        wnids = data_root / 'tiny-imagenet-200' / 'wnids.txt'
        num_classes = len(wnids.read_text().split())
        overrides['model'] = dict(head=dict(num_classes=num_classes))
        overrides['data_preprocessor'] = dict(num_classes=num_classes)
    else:
        dataset['verify_md5'] = False
    loader = dict(batch_size=TINY_BATCH, num_workers=0, persistent_workers=False, dataset=dataset)
    overrides.update(train_dataloader=loader, val_dataloader=loader, test_dataloader=loader)
    return overrides


def _merge(into: dict, other: dict) -> dict:
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
    return into


def _base_path(base: Path, directory: Path) -> str:
    """``base`` relative to ``directory`` inside the repository, so that it moves with it."""
    return os.path.relpath(base, directory) if directory.is_relative_to(REPO) else str(base)


@functools.lru_cache(maxsize=None)
def load_base(config: str):
    """A table's base config (loaded once per process: mmpretrain:: bases are slow to resolve)."""
    from mmengine.config import Config
    return Config.fromfile(REPO / config)


def variant_overrides(cell: Cell, tiny: bool = False, data_root: Optional[Path] = None) -> dict:
    """What the cell's variant config sets on top of its base config."""
    base = load_base(cell.config)
    overrides = cell.method.overrides(base.model.backbone.type, tiny)
    return _merge(tiny_overrides(base, data_root), overrides) if tiny else overrides


def write_variant(cell: Cell, directory: Path, tiny: bool, data_root: Optional[Path]) -> Path:
    """Write ``<directory>/<run>.py``: the cell's base config plus its method (and the smoke
    schedule with ``tiny``); return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f'{cell.run}.py'
    lines = [f'# Written by tools/run_sweep.py{" --tiny" if tiny else ""}: {cell.config} with '
             f'method {cell.method.name!r}.',
             f'_base_ = {_base_path(REPO / cell.config, directory)!r}', '']
    lines += [f'{key} = {to_source(value)}'
              for key, value in variant_overrides(cell, tiny, data_root).items()]
    path.write_text('\n'.join(lines) + '\n')
    return path


class _CommandOnly(Exception):
    """A dry run stops here, once the training command is known."""


class Sweep(Pipeline):
    """The pipeline's launchers (tools/run_pipeline.py), applied to the tables' cells."""

    def __init__(self, args):
        super().__init__(args)
        if args.tiny:
            self.env.update(CIFAR10_ROOT=str(args.data_root / 'cifar10'),
                            CIFAR100_ROOT=str(args.data_root / 'cifar100'),
                            TINY_IMAGENET_200_ROOT=str(args.data_root / 'tiny-imagenet-200'))

    def _run(self, cmd, log: Path):
        if self.args.dry_run:
            print(shlex.join(map(str, cmd)), flush=True)
            raise _CommandOnly
        super()._run(cmd, log)

    def run_cell(self, cell: Cell, seed: int) -> None:
        a = self.args
        config = write_variant(cell, a.work_dir / 'configs', a.tiny, a.data_root)
        work_dir = a.work_dir / cell.run / f'seed{seed}'
        options = [f'randomness.seed={seed}', 'resume=True', *a.cfg_options]

        def produce(work_dir):
            checkpoint = self.train(config, work_dir, options)
            return dict(cell=cell.id, config=str(config), seed=seed, checkpoint=str(checkpoint),
                        files=[str(checkpoint)])

        if not a.dry_run:
            self.stage(work_dir, produce)
        elif (work_dir / 'done.json').is_file():
            print(f'# skip {work_dir} (done.json)')
        else:
            try:
                self.train(config, work_dir, options)
            except _CommandOnly:
                pass

    def run(self):
        a = self.args
        if a.tiny:  # also for --dry-run: the variant configs read the data (class count)
            subprocess.run([sys.executable, TOOLS / 'make_tiny_data.py', '--out', a.data_root,
                            '--only', *TINY_DATASETS], check=True, cwd=REPO)
        cells = list({cell.run: cell for cell in select_cells(a.table, a.cells)}.values())
        for cell in cells:
            for seed in a.seeds:
                self.run_cell(cell, seed)
        if not a.dry_run:
            from aggregate_results import write_tables
            print(write_tables([TABLES[key] for key in a.table], a.work_dir))


def select_cells(table_keys, cell_ids) -> List[Cell]:
    """The cells of the tables, restricted to ``cell_ids`` if given (each must exist)."""
    cells = [cell for key in table_keys for cell in TABLES[key].cells]
    if not cell_ids:
        return cells
    known = {cell.id for cell in cells}
    unknown = [cell_id for cell_id in cell_ids if cell_id not in known]
    if unknown:
        raise SystemExit(f'run_sweep.py: error: no cell {unknown} in table(s) '
                         f'{" ".join(table_keys)}; its cells: {" ".join(sorted(known))}')
    return [cell for cell in cells if cell.id in cell_ids]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--table', nargs='+', required=True, choices=list(TABLES),
                        help='1-4: the paper\'s tables; 6a, 6b, 6c: Fig. 6\'s ablations')
    parser.add_argument('--cells', nargs='+', metavar='NETWORK/METHOD',
                        help='only these cells, e.g. resnet56/fd (default: all of the tables)')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2],
                        help='default 0 1 2 (the paper averages 3 runs)')
    parser.add_argument('--work-dir', type=Path, default=None,
                        help='default work_dirs/classification (with --tiny: _tiny appended)')
    parser.add_argument('--tiny', action='store_true',
                        help='CPU smoke runs: generated data in --data-root, a few iterations')
    parser.add_argument('--data-root', type=Path, default=Path('data/tiny'),
                        help='where --tiny generates its data (default data/tiny)')
    parser.add_argument('--dry-run', action='store_true',
                        help='write the variant configs (and with --tiny the data) and print '
                             'the commands, train nothing')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none')
    parser.add_argument('--gpus', type=int, default=1, help='processes (GPUs) per run')
    parser.add_argument('--partition', help='slurm partition (with --launcher slurm)')
    parser.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                        help='passed to every run (not part of the run name: use another '
                             '--work-dir for other settings)')
    args = parser.parse_args(argv)
    if args.launcher == 'slurm' and not args.partition:
        parser.error('--launcher slurm needs --partition')
    if args.launcher == 'none' and args.gpus != 1:
        parser.error('--gpus > 1 needs --launcher pytorch or slurm')
    args.work_dir = args.work_dir or Path(f'work_dirs/classification{"_tiny" if args.tiny else ""}')
    args.work_dir, args.data_root = args.work_dir.resolve(), args.data_root.resolve()
    select_cells(args.table, args.cells)  # fail on an unknown cell before anything runs
    return args


def main(argv=None):
    Sweep(parse_args(argv)).run()


if __name__ == '__main__':
    main()
