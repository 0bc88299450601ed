"""The paper's classification tables (§5.1-5.2): Tables 1-4 and Fig. 6 as cells, each a committed
config.

A cell is a row (a method: a regulariser and, for FocusedDropout, the hook's settings) by a
column (a network on a dataset). Its config is the column's base config (configs/cifar/,
configs/tinyimagenet/: the stock mmpretrain bases, the baseline row) or, for the other rows, a
short config inheriting it with only the cell's regulariser and hook lines, in the folder of the
first table that has the cell (configs/cifar/table1, table2, table4, fig6,
configs/tinyimagenet/table3). A cell shared by several tables (ResNet-56 + FD on CIFAR-100 is
in Table 2, Table 4 and Fig. 6) is one config and one run. :func:`write_cell_configs` (through
tools/misc/write_table_configs.py) writes the configs; the test suite checks that the committed
files are what it writes.
"""
import dataclasses
import functools
import os
import textwrap
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from .launcher import REPO
from .stages import read_config

# The paper states no rate for the compared regularisers; these are the usual ones
# (DropBlock's ImageNet drop_prob 0.1; block 5 suits 32x32 and 16x16 group outputs).
DROPOUT = dict(type='Dropout', drop_prob=0.1)
SPATIAL_DROPOUT = dict(type='SpatialDropout', p=0.1)
DROPBLOCK = dict(type='DropBlock2d', drop_prob=0.1, block_size=5)
DROPBLOCK_STAGES = (0, 1)  # "the output of first two groups" (§5)
BASE_WEIGHT_DECAY = 5e-4  # configs/cifar/_base_/classifier_300e.py
HOOK_SETTINGS = ('participation', 'weight_decay_multiplier', 'gamma_range', 'mode')


@dataclasses.dataclass(frozen=True)
class Method:
    """One row setting: a regulariser and, for FocusedDropout, the hook's parameters (§4, §5.2).
    The defaults are the paper's FocusedDropout, and FocusedDropoutHook's."""
    name: str
    regularizer: Optional[str] = None  # 'dropout', 'spatial_dropout', 'dropblock', 'focused'
    participation: float = 0.1
    weight_decay_multiplier: float = 2.0
    gamma_range: tuple = (0.3, 0.6)
    mode: str = 'focused'

    def hook_changes(self) -> dict:
        """The hook settings this method changes from the paper's."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)
                if field.name in HOOK_SETTINGS and getattr(self, field.name) != field.default}

    def stage_regularizer(self, backbone_type: str) -> Optional[dict]:
        """The backbone's ``stage_regularizer`` for this method on that backbone, if any (§5:
        Dropout, SpatialDropout and FocusedDropout on the output of the penultimate group,
        DropBlock on the outputs of the first two); FocusedDropout's settings only where they
        differ from the paper's."""
        from fdrop_mm.models.backbones.cifar import PENULTIMATE_STAGE
        if self.regularizer is None or self.mode == 'weight_decay_only':
            return None
        penultimate = (PENULTIMATE_STAGE[backbone_type], )
        focused = dict(type='FocusedDropout')
        if 'gamma_range' in self.hook_changes():
            focused['gamma_range'] = self.gamma_range
        if self.mode == 'opposite':
            focused['opposite'] = True
        module, stages = {
            'dropout': (DROPOUT, penultimate),
            'spatial_dropout': (SPATIAL_DROPOUT, penultimate),
            'dropblock': (DROPBLOCK, DROPBLOCK_STAGES),
            'focused': (focused, penultimate),
        }[self.regularizer]
        return dict(cfg=dict(module), after_stages=stages)

    def hook(self) -> Optional[dict]:
        """FocusedDropoutHook's config for a FocusedDropout method (``targets=None``: it drives
        the backbone's module), None for the others."""
        if self.regularizer != 'focused':
            return None
        return dict(type='FocusedDropoutHook', **self.hook_changes())

    def overrides(self, backbone_type: str) -> dict:
        """The config keys this method sets on top of a base config with that backbone."""
        overrides = {}
        regularizer = self.stage_regularizer(backbone_type)
        if regularizer is not None:
            overrides['model'] = dict(backbone=dict(stage_regularizer=regularizer))
        if self.hook() is not None:
            overrides['custom_hooks'] = [self.hook()]
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
CONFIG_FOLDERS = {'cifar10': 'configs/cifar', 'cifar100': 'configs/cifar',
                  'tinyimagenet': 'configs/tinyimagenet'}


def base_config(network: str, dataset: str) -> str:
    """The column's config (relative to the repository), the table's baseline row."""
    return f'{CONFIG_FOLDERS[dataset]}/{network}_1xb128_{dataset}.py'


@dataclasses.dataclass(frozen=True)
class Cell:
    row: str
    column: str
    network: str  # e.g. resnet56; a cell's id is <network>/<method>
    dataset: str  # 'cifar10', 'cifar100' or 'tinyimagenet'
    method: Method
    config: str  # the cell's committed config, relative to the repository

    @property
    def id(self) -> str:
        return f'{self.network}/{self.method.name}'

    @property
    def base_config(self) -> str:
        return base_config(self.network, self.dataset)

    @property
    def run(self) -> str:
        """The run's name: its config's."""
        return Path(self.config).stem


@dataclasses.dataclass(frozen=True)
class Table:
    key: str
    title: str
    cells: List[Cell]

    @property
    def name(self) -> str:
        """'Table 2', 'Fig. 6a'."""
        return self.title.split(':')[0]


def _tables() -> Dict[str, Table]:
    homes = {}  # (base config, method) -> the cell config, in the first table that has it

    def grid(methods, columns, folder):
        """Cells of rows ``methods`` (label, Method) by ``columns`` (label, network, dataset)."""
        cells = []
        for row, method in methods:
            for column, network, dataset in columns:
                base = base_config(network, dataset)
                config = base if method == BASELINE else homes.setdefault(
                    (base, method), f'{folder}/{network}_{method.name}_1xb128_{dataset}.py')
                cells.append(Cell(row, column, network, dataset, method, config))
        return cells

    resnet56_cifar100 = [('ResNet56', 'resnet56', 'cifar100')]
    return {table.key: table for table in [
        Table('1', 'Table 1: test accuracy (%) on CIFAR-10', grid(
            MAIN_METHODS, [(label, net, 'cifar10') for label, net in NETWORKS], 'configs/cifar/table1')),
        Table('2', 'Table 2: test accuracy (%) on CIFAR-100', grid(
            MAIN_METHODS, [(label, net, 'cifar100') for label, net in NETWORKS], 'configs/cifar/table2')),
        Table('3', 'Table 3: validation accuracy (%) on Tiny ImageNet', grid(
            MAIN_METHODS, [('ResNet110', 'resnet110', 'tinyimagenet')], 'configs/tinyimagenet/table3')),
        Table('4', 'Table 4: magnified weight decay and the opposite approach, CIFAR-100',
              grid(TABLE4_METHODS, resnet56_cifar100, 'configs/cifar/table4')),
        Table('6a', 'Fig. 6a: participation rate, CIFAR-100',
              grid(PARTICIPATION_METHODS, resnet56_cifar100, 'configs/cifar/fig6')),
        Table('6b', 'Fig. 6b: γ, CIFAR-100', grid(GAMMA_METHODS, resnet56_cifar100, 'configs/cifar/fig6')),
        Table('6c', 'Fig. 6c: weight decay, CIFAR-100',
              grid(WEIGHT_DECAY_METHODS, resnet56_cifar100, 'configs/cifar/fig6')),
    ]}


TABLES = _tables()


def select_cells(table_keys: Sequence[str], cell_ids: Optional[Sequence[str]] = None) -> List[Cell]:
    """The cells of the tables, restricted to ``cell_ids`` if given (each must exist)."""
    unknown = [key for key in table_keys if key not in TABLES]
    if unknown:
        raise ValueError(f'no table {unknown}; the tables: {" ".join(TABLES)}')
    cells = [cell for key in table_keys for cell in TABLES[key].cells]
    if not cell_ids:
        return cells
    known = {cell.id for cell in cells}
    unknown = [cell_id for cell_id in cell_ids if cell_id not in known]
    if unknown:
        raise ValueError(f'no cell {unknown} in table(s) {" ".join(table_keys)}; '
                         f'its cells: {" ".join(sorted(known))}')
    return [cell for cell in cells if cell.id in cell_ids]


@functools.lru_cache(maxsize=None)
def backbone_type(config: str) -> str:
    """The backbone type of a base config (loaded once per process: mmpretrain:: bases are slow
    to resolve)."""
    return read_config(config).model.backbone.type


def config_source(value) -> str:
    """``value`` as config source on one line, dicts as ``dict(...)`` as hand-written mm configs
    have them."""
    if isinstance(value, dict):
        return f'dict({keyword_source(value)})'
    if isinstance(value, list):
        return '[' + ', '.join(map(config_source, value)) + ']'
    if isinstance(value, tuple):
        return '(' + ', '.join(map(config_source, value)) + (', )' if len(value) == 1 else ')')
    return repr(value)


def keyword_source(mapping: dict) -> str:
    """``mapping`` as the keyword arguments of ``dict(...)``."""
    return ', '.join(f'{key}={config_source(value)}' for key, value in mapping.items())


def cell_config_sources() -> Dict[str, str]:
    """{config: its text} for every cell config other than the base configs: a header naming
    the cell's places in the tables, ``_base_``, and the method's stage regulariser and hook
    (:meth:`Method.overrides`)."""
    places: Dict[str, List[Tuple[Table, Cell]]] = {}
    for table in TABLES.values():
        for cell in table.cells:
            if cell.config != cell.base_config:
                places.setdefault(cell.config, []).append((table, cell))
    sources = {}
    for config, positions in places.items():
        cell = positions[0][1]
        where = '; '.join(f'{table.name} ({place.row}, {place.column})' for table, place in positions)
        header = textwrap.fill(
            f'{cell.id}, {where}: the base config with this method (§5). Written by '
            'tools/misc/write_table_configs.py from fdrop_mm/experiments/tables.py; change it there '
            'and rerun the tool.', width=100, initial_indent='# ', subsequent_indent='# ')
        base = os.path.relpath(REPO / cell.base_config, (REPO / config).parent)
        lines = [header, f'_base_ = {base!r}', '']
        regularizer = cell.method.stage_regularizer(backbone_type(cell.base_config))
        if regularizer is not None:  # split so that a line stays within 100 characters
            lines += ['model = dict(backbone=dict(stage_regularizer=dict(',
                      f'    {keyword_source(regularizer)})))']
        if cell.method.hook() is not None:
            lines.append(f'custom_hooks = [{config_source(cell.method.hook())}]')
        sources[config] = '\n'.join(lines) + '\n'
    return sources


def write_cell_configs(root: Path = REPO) -> List[Path]:
    """Write every cell config under ``root`` (see :func:`cell_config_sources`); return the paths."""
    paths = []
    for config, text in cell_config_sources().items():
        path = root / config
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        paths.append(path)
    return paths
