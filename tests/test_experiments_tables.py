"""fdrop_mm.experiments.tables: the cells of Tables 1-4 and Fig. 6 (§5.1-5.2) and their committed
configs, which must be what the generator writes."""
import pytest

from fdrop_mm.experiments.launcher import REPO
from fdrop_mm.experiments.tables import TABLES, cell_config_sources, select_cells

ALL_CELLS = [cell for table in TABLES.values() for cell in table.cells]
CELL_FOLDERS = ['configs/cifar/table1', 'configs/cifar/table2', 'configs/cifar/table4',
                'configs/cifar/fig6', 'configs/tinyimagenet/table3']


def test_tables_cover_the_paper():
    networks = ['resnet20', 'resnet56', 'resnet110', 'vgg19bn', 'densenet-bc100-k12', 'wrn28-10']
    methods = ['baseline', 'dropout', 'spatial-dropout', 'dropblock', 'fd']
    for key, dataset in (('1', 'cifar10'), ('2', 'cifar100')):
        cells = TABLES[key].cells
        assert sorted(c.id for c in cells) == sorted(f'{n}/{m}' for n in networks for m in methods)
        assert all(c.base_config == f'configs/cifar/{c.network}_1xb128_{dataset}.py' for c in cells)
    assert sorted(c.id for c in TABLES['3'].cells) == sorted(f'resnet110/{m}' for m in methods)
    assert {c.base_config for c in TABLES['3'].cells} == {
        'configs/tinyimagenet/resnet110_1xb128_tinyimagenet.py'}
    ablations = [c for key in ('4', '6a', '6b', '6c') for c in TABLES[key].cells]
    assert {c.base_config for c in ablations} == {'configs/cifar/resnet56_1xb128_cifar100.py'}
    table4 = {c.row: c.method for c in TABLES['4'].cells}
    assert table4['+Randomly MWD'].mode == 'weight_decay_only'
    assert table4['+FocusedDropout without MWD'].weight_decay_multiplier == 1
    assert {table4['+Opposite approach'].mode, table4['+Opposite approach without MWD'].mode} == {
        'opposite'}
    assert sorted(c.method.participation for c in TABLES['6a'].cells) == [0, .1, .2, .3, .4]
    assert sorted(c.method.gamma_range for c in TABLES['6b'].cells) == [
        (.3, .3), (.3, .6), (.6, .6), (.9, .9)]
    # a setting shared by several tables is one run, of one config
    assert len({c.method for c in ALL_CELLS if c.method.name == 'fd'}) == 1
    assert len({c.config for c in ALL_CELLS if c.id == 'resnet56/fd' and c.dataset == 'cifar100'}) == 1
    configs_of_run = {}
    for cell in ALL_CELLS:
        configs_of_run.setdefault(cell.run, set()).add((cell.base_config, cell.method))
    assert all(len(settings) == 1 for settings in configs_of_run.values())


def test_every_cell_has_its_committed_config_as_the_generator_writes_it():
    sources = cell_config_sources()
    for cell in ALL_CELLS:
        assert (REPO / cell.config).is_file(), cell.config
        if cell.method.name == 'baseline':
            assert cell.config == cell.base_config  # the baseline row is the base config itself
        else:
            assert cell.config in sources, cell.config
    committed = sorted(str(path.relative_to(REPO)) for folder in CELL_FOLDERS
                       for path in (REPO / folder).glob('*.py'))
    assert committed == sorted(sources), 'a stale or missing cell config: run tools/misc/write_table_configs.py'
    for config, text in sources.items():
        assert (REPO / config).read_text() == text, (
            f'{config} differs from what tools/misc/write_table_configs.py writes')


def test_unknown_table_or_cell_is_an_error():
    with pytest.raises(ValueError, match='no cell .*resnet57/fd.*; its cells: .*resnet56/fd'):
        select_cells(['2'], ['resnet57/fd'])
    with pytest.raises(ValueError, match=r"no table \['5'\]"):
        select_cells(['5'])
    assert [c.id for c in select_cells(['4'], ['resnet56/fd'])] == ['resnet56/fd']
