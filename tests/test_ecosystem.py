"""FocusedDropout in stock mmsegmentation 1.2.2 and mmaction2 1.2.0 recipes (configs/mmseg,
configs/mmaction: the recipe, the README's hook lines, CPU adaptations), as a user runs them:

- through each package's own packaged tools/train.py (``<package>/.mim/tools/train.py``, what
  ``mim train`` runs) on tiny data in the package's real formats (ADE20K folders; mmaction2
  rawframes, and videos for SlowOnly, decoded by decord as the stock recipes do), then ``--resume`` with a longer
  schedule: both runs log a loss and FD masking (``fd/keep_ratio`` strictly inside (0, 1) on the
  focused steps), the second resumes at the first one's last iteration, and both print the
  package's metric (mIoU in [0, 100], top-1 accuracy in [0, 1]);
- through this repository's tools/train.py and tools/test.py;
- one recipe under 2-rank gloo DDP (tools/dist_train.sh CONFIG 2): identical replicas;
- and what the target returns in each recipe (the frame maps or clip volumes FD masks).
"""
import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from fdrop_mm.tiny_data.ade20k import make_ade20k
from fdrop_mm.tiny_data.rawframes import make_rawframes
from fdrop_mm.tiny_data.videos import make_videos
from tests.conftest import DUMP_HOOK, REPO, free_port
from tests.packaged_tools import RESUMED, TARGET, TIMEOUT, packaged_train_py, run, training_steps



@dataclass(frozen=True)
class Recipe:
    package: str  # 'mmseg' or 'mmaction'
    config: str  # relative to the repository
    default_target: bool  # the config leaves targets to the hook's default
    masks: str  # what the target returns, (N, C, H, W) maps or (N, C, T, H, W) clips

    @property
    def by_epoch(self) -> bool:
        return self.package == 'mmaction'

    @property
    def metric(self):
        """(the metric's name in the validation log line, its largest value)."""
        return ('mIoU', 100.0) if self.package == 'mmseg' else ('acc/top1', 1.0)

    @property
    def path(self) -> Path:
        return REPO / self.config


RECIPES = {
    'pspnet': Recipe('mmseg', 'configs/mmseg/pspnet_r50-d8_fd_tiny-ade20k.py', False, 'NCHW'),
    'deeplabv3plus': Recipe('mmseg', 'configs/mmseg/deeplabv3plus_r50-d8_fd_tiny-ade20k.py', True, 'NCHW'),
    'tsn': Recipe('mmaction', 'configs/mmaction/tsn_r50_fd_tiny-kinetics400-rawframes.py', False, 'NCHW'),
    'i3d': Recipe('mmaction', 'configs/mmaction/i3d_r50_fd_tiny-kinetics400-rawframes.py', True, 'NCTHW'),
    'slowonly': Recipe('mmaction', 'configs/mmaction/slowonly_r50_fd_tiny-kinetics400-videos.py', True, 'NCTHW'),
}

VAL_LINE = re.compile(r'(?:Iter|Epoch)\(val\).*?\s(?P<name>mIoU|acc/top1): (?P<value>\S+)')


@pytest.fixture(scope='module')
def data_env(tmp_path_factory):
    """The environment the configs read their data roots from, with the tiny sets made once;
    one thread per process (2 shared cores); this checkout's fdrop_mm first on the path."""
    data = tmp_path_factory.mktemp('data')
    make_ade20k(data / 'ADEChallengeData2016')
    make_rawframes(data / 'kinetics400')
    make_videos(data / 'kinetics400_videos')
    return {**os.environ, 'ADE20K_ROOT': str(data / 'ADEChallengeData2016'),
            'KINETICS_ROOT': str(data / 'kinetics400'), 'KINETICS_VIDEOS_ROOT': str(data / 'kinetics400_videos'),
            'OMP_NUM_THREADS': '1',
            'PYTHONPATH': os.pathsep.join([str(REPO), *filter(None, [os.environ.get('PYTHONPATH')])])}


def check_trained_and_masked(log: str, recipe: Recipe):
    """The training lines log a finite loss, and the focused ones a keep ratio inside (0, 1); the
    metric is printed inside its range. Returns the training steps."""
    steps = training_steps(log)
    assert steps, log[-3000:]
    assert all(math.isfinite(float(fields['loss'])) for _, fields in steps), steps
    focused = [fields for _, fields in steps if float(fields['fd/active']) == 1.0]
    assert focused, f'no focused step to show masking in {steps}'
    for fields in focused:
        assert 0.0 < float(fields['fd/keep_ratio']) < 1.0, fields
    name, largest = recipe.metric
    metrics = [float(m['value']) for m in VAL_LINE.finditer(log) if m['name'] == name]
    assert metrics, f'no {name} printed:\n{log[-3000:]}'
    assert all(0.0 <= value <= largest for value in metrics), metrics
    assert f"1 FocusedDropout module(s): ['{TARGET}']" in log
    return steps


@pytest.mark.slow
@pytest.mark.parametrize('name', list(RECIPES))
def test_packaged_train_py_trains_masks_resumes_and_prints_the_metric(name, data_env, tmp_path):
    recipe = RECIPES[name]
    tool = packaged_train_py(recipe.package)
    work_dir = tmp_path / 'work'
    first = run([tool, recipe.path, '--work-dir', work_dir], data_env, tmp_path)
    first_steps = check_trained_and_masked(first, recipe)
    default_line = f'FD goes on the output of the penultimate stage, {TARGET}'
    assert (default_line in first) == recipe.default_target

    longer = 'train_cfg.max_epochs=2' if recipe.by_epoch else 'train_cfg.max_iters=8'
    second = run([tool, recipe.path, '--work-dir', work_dir, '--resume', '--cfg-options', longer],
                 data_env, tmp_path)
    second_steps = check_trained_and_masked(second, recipe)
    saved = 'epoch_1.pth' if recipe.by_epoch else 'iter_4.pth'
    assert f'resumed from the latest checkpoint {work_dir / saved}' in second
    (epoch, iteration), = RESUMED.findall(second)
    assert int(iteration) == 4 and int(epoch) == (1 if recipe.by_epoch else 0)
    if recipe.by_epoch:  # 4 steps an epoch: epoch 1 then epoch 2
        assert [p for p, _ in first_steps] == [(1, b) for b in range(1, 5)]
        assert [p for p, _ in second_steps] == [(2, b) for b in range(1, 5)]
    else:
        assert [p for p, _ in first_steps] == [1, 2, 3, 4]
        assert [p for p, _ in second_steps] == [5, 6, 7, 8]


@pytest.mark.slow
@pytest.mark.parametrize('name, checkpoint', [('deeplabv3plus', 'iter_4.pth'), ('tsn', 'epoch_1.pth')])
def test_our_tools_train_and_test_mmseg_and_mmaction_configs(name, checkpoint, data_env, tmp_path):
    recipe = RECIPES[name]
    work_dir = tmp_path / 'work'
    log = run([REPO / 'tools/train.py', recipe.path, '--work-dir', work_dir], data_env, tmp_path)
    check_trained_and_masked(log, recipe)
    metrics_out = tmp_path / 'metrics.json'
    run([REPO / 'tools/test.py', recipe.path, work_dir / checkpoint, '--work-dir', tmp_path / 'test',
         '--metrics-out', metrics_out], data_env, tmp_path)
    metric, largest = recipe.metric
    value = json.loads(metrics_out.read_text())[metric]
    assert 0.0 <= value <= largest


@pytest.mark.slow
def test_tsn_under_two_rank_gloo_ddp_ends_with_identical_replicas(data_env, tmp_path):
    """tools/dist_train.sh CONFIG 2 on CPUs: the ranks (different data and γ draws) end with the
    same parameters, those of the checkpoint rank 0 saved, after the same focused steps."""
    (tmp_path / 'dump_per_rank.py').write_text(DUMP_HOOK)
    config = tmp_path / 'tsn_ddp.py'
    config.write_text(
        f"_base_ = '{RECIPES['tsn'].path}'\n"
        "custom_imports = dict(imports=['fdrop_mm', 'dump_per_rank'], allow_failed_imports=False)\n"
        "custom_hooks = [dict(type='FocusedDropoutHook', targets=['backbone.layer3'], participation=0.5),\n"
        "                dict(type='DumpPerRank')]\n"
        "randomness = dict(seed=0, diff_rank_seed=True)\n"
        "env_cfg = dict(dist_cfg=dict(backend='gloo'))\n"
        "train_cfg = dict(max_epochs=2)  # 2 steps an epoch on each of 2 ranks\n"
        f"work_dir = '{tmp_path / 'work'}'\n")
    env = {**data_env, 'PYTHON': sys.executable, 'PORT': str(free_port()), 'GLOO_SOCKET_IFNAME': 'lo',
           'PYTHONPATH': os.pathsep.join([str(tmp_path), data_env['PYTHONPATH']])}
    done = subprocess.run(['bash', str(REPO / 'tools/dist_train.sh'), str(config), '2'], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]

    ranks = [torch.load(tmp_path / 'work' / f'rank{r}.pt') for r in (0, 1)]
    active = ranks[0]['active']
    assert len(active) == 4 and ranks[1]['active'] == active
    assert 0 < sum(active) < 4, 'the test needs focused and plain steps'
    saved = torch.load(tmp_path / 'work' / 'epoch_2.pth', map_location='cpu')['state_dict']
    for name, value in ranks[0]['params'].items():
        assert torch.equal(value, ranks[1]['params'][name]), name
        assert torch.equal(value, saved[name]), name


@pytest.mark.slow
@pytest.mark.parametrize('name', list(RECIPES))
def test_the_target_returns_frame_maps_or_clip_volumes(name):
    """What FD masks in each recipe: the model (built from the config) run on an input of the
    config's shape; the target's output is (N*segments, C, H, W) for TSN's 2-D ResNet over
    frames, (N, C, T, H, W) for the ResNet3d recipes, (N, C, H, W) for the segmentors."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    recipe = RECIPES[name]
    cfg = Config.fromfile(str(recipe.path))  # imports fdrop_mm (custom_imports)
    init_default_scope(cfg.default_scope)
    registry = importlib.import_module(f'{recipe.package}.registry')
    model = registry.MODELS.build(cfg.model).eval()
    shapes = []
    dict(model.named_modules())[TARGET].register_forward_hook(lambda m, a, out: shapes.append(tuple(out.shape)))
    batch = 2
    if recipe.package == 'mmseg':
        inputs = torch.rand(batch, 3, 64, 64)
    elif recipe.masks == 'NCHW':  # TSN: (N, segments, C, H, W), three one-frame segments
        inputs = torch.rand(batch, 3, 3, 56, 56)
    else:  # (N, clips, C, T, H, W), one clip of 8 frames
        inputs = torch.rand(batch, 1, 3, 8, 56, 56)
    with torch.no_grad():
        model(inputs, mode='tensor')
    (shape, ) = shapes
    if recipe.masks == 'NCTHW':
        assert len(shape) == 5 and shape[:2] == (batch, 1024)
    else:
        segments = 3 if recipe.package == 'mmaction' else 1
        assert len(shape) == 4 and shape[:2] == (batch * segments, 1024)
