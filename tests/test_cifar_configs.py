"""The classification configs of Tables 1-4 and Fig. 6: every cell's committed config loads as its
base config plus its method, and builds its model with the regulariser where §5 puts it and the
paper's recipe; data roots come from the environment."""
import copy

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmpretrain.registry import HOOKS, MODELS

from fdrop_mm import FocusedDropout
from fdrop_mm.experiments.tables import TABLES, backbone_type
from tests.conftest import REPO

ALL_CELLS = [cell for table in TABLES.values() for cell in table.cells]
RUNS = list({cell.run: cell for cell in ALL_CELLS}.values())
REGULARIZER_TYPES = {'dropout': 'Dropout', 'spatial_dropout': 'Dropout2d',
                     'dropblock': 'DropBlock2d', 'focused': 'FocusedDropout'}


@pytest.fixture(scope='module')
def cell_configs():
    """Every run's config: its base config merged with its method's overrides, which is what its
    committed config holds (tests/test_experiments_tables.py checks the files' text, the test
    below that they load so); loading each base once keeps this fast."""
    bases = {config: Config.fromfile(REPO / config) for config in {cell.base_config for cell in RUNS}}
    configs = {}
    for cell in RUNS:
        cfg = copy.deepcopy(bases[cell.base_config])
        cfg.merge_from_dict(cell.method.overrides(backbone_type(cell.base_config)))
        configs[cell.run] = cfg
    return configs


def test_committed_configs_load_as_their_base_plus_overrides(cell_configs):
    dropblock = next(c for c in TABLES['2'].cells if c.id == 'resnet20/dropblock')
    for cell in TABLES['4'].cells + [dropblock]:
        committed = Config.fromfile(REPO / cell.config)
        expected = cell_configs[cell.run]
        for key in ('model', 'custom_hooks', 'optim_wrapper', 'train_dataloader', 'train_cfg'):
            assert committed.get(key) == expected.get(key), (cell.run, key)


def test_every_cell_config_builds_with_the_papers_recipe(cell_configs):
    init_default_scope('mmpretrain')
    for cell in RUNS:
        cfg = cell_configs[cell.run]
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
                assert (module.gamma_range, module.opposite) == (hook.gamma_range, hook.opposite)
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
