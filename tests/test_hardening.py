"""Faults: a training killed and resumed, autocast, degenerate activations, bad files.

Covered elsewhere, not repeated here: a corrupt or wrong-architecture checkpoint for
extract_backbone and a missing one for StrictPretrained (test_transfer), VOC annotations
with an unknown class or a box outside the image (test_detection_data).
"""
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from mmdet.registry import DATASETS, MODELS as DET_MODELS
from mmengine.config import Config
from mmengine.runner import Runner
from torch import nn

import fdrop_mm.datasets.voc  # noqa: F401  registers CheckedVOCDataset
from fdrop_mm import FocusedDropout, focused_mask
from fdrop_mm.tiny_data import make_imagenet, make_voc
from tests.conftest import REPO, build_test_split, classifier_cfg

INF, NAN = float('inf'), float('nan')

# --------------------------------------------------------------- kill and resume
PAUSE_HOOK = '''
import os
import time
from pathlib import Path

from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class PauseForKill(Hook):
    """With PAUSE_AFTER_ITER=n: after iteration n, write <work_dir>/paused and wait to be killed."""
    priority = 'LOWEST'

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == int(os.environ.get('PAUSE_AFTER_ITER', '-1')):
            Path(runner.work_dir, 'paused').touch()
            time.sleep(600)
'''


def train_process(config, work_dir, tmp_path, *extra, pause_after=None):
    """tools/train.py in a subprocess, its output in ``<tmp_path>/<work_dir name>[-resume].log``."""
    env = {**os.environ, 'PYTHONPATH': str(tmp_path)}
    if pause_after is not None:
        env['PAUSE_AFTER_ITER'] = str(pause_after)
    log = tmp_path / f'{work_dir.name}{"-resume" if extra else ""}.log'
    with open(log, 'w') as out:  # a file, not a pipe nobody reads while the test trains
        proc = subprocess.Popen([sys.executable, str(REPO / 'tools/train.py'), str(config), '--work-dir',
                                 str(work_dir), *extra], env=env, stdout=out, stderr=subprocess.STDOUT)
    proc.log = log
    return proc


# Each wait of a training subprocess: the whole kill-and-resume test took 232 s on the 2-core
# machine at load average 9 (three trainings, two at once); 3x that, with room.
TRAINING_DEADLINE_S = 900


def finish(proc, timeout=TRAINING_DEADLINE_S):
    proc.wait(timeout=timeout)
    assert proc.returncode == 0, proc.log.read_text()[-3000:]


@pytest.mark.slow
def test_killed_training_resumes_to_the_uninterrupted_weights(image_folder, tmp_path, monkeypatch):
    (tmp_path / 'pause_hook.py').write_text(PAUSE_HOOK)
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = classifier_cfg(image_folder, tmp_path / 'full', max_iters=8, custom_hooks=[
        dict(type='FocusedDropoutHook', participation=0.5, targets=['backbone.layer3']),
        dict(type='PauseForKill')],
        default_hooks=dict(logger=dict(type='LoggerHook', interval=4),
                           checkpoint=dict(type='CheckpointHook', interval=4, by_epoch=False)))
    cfg['custom_imports'] = dict(imports=['fdrop_mm', 'pause_hook'], allow_failed_imports=False)
    Config(cfg).dump(str(tmp_path / 'cfg.py'))

    killed = train_process(tmp_path / 'cfg.py', tmp_path / 'killed', tmp_path, pause_after=6)
    Runner.from_cfg(Config.fromfile(str(tmp_path / 'cfg.py'))).train()  # uninterrupted, meanwhile, here
    deadline = time.time() + TRAINING_DEADLINE_S
    while not (tmp_path / 'killed' / 'paused').exists():
        assert killed.poll() is None, killed.log.read_text()[-3000:]
        assert time.time() < deadline, 'the run to be killed never reached iteration 6'
        time.sleep(0.2)
    killed.send_signal(signal.SIGKILL)  # iterations 5 and 6 are lost: the last checkpoint is iter_4
    killed.wait(timeout=60)
    assert (tmp_path / 'killed' / 'iter_4.pth').is_file()
    assert not (tmp_path / 'killed' / 'iter_8.pth').exists()
    finish(train_process(tmp_path / 'cfg.py', tmp_path / 'killed', tmp_path, '--resume'))

    expected = torch.load(tmp_path / 'full' / 'iter_8.pth')
    resumed = torch.load(tmp_path / 'killed' / 'iter_8.pth')
    active = resumed['message_hub']['log_scalars']['train/fd/active'].data[0]
    assert list(active) == list(expected['message_hub']['log_scalars']['train/fd/active'].data[0])
    assert 0 < sum(active[4:]) < 4, 'FocusedDropout must run on some resumed iterations'
    assert expected['state_dict'].keys() == resumed['state_dict'].keys()
    for name, value in expected['state_dict'].items():
        assert torch.equal(resumed['state_dict'][name], value), name


# ------------------------------------------------------------------------ autocast
@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_autocast_mask_equals_float32_mask_away_from_the_threshold(dtype):
    """A conv feature under CPU autocast differs from float32 by the rounding of ``dtype``, so
    only positions within a few rounding steps of the threshold (Eq. 4) may change side."""
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 64, 3, padding=1)
    images = torch.randn(8, 16, 20, 20)
    gamma = torch.linspace(0.3, 0.6, 8)
    feature32 = conv(images).relu()
    with torch.autocast('cpu', dtype=dtype):
        feature = conv(images).relu()
        mask = focused_mask(feature, gamma)[:, 0]
        assert FocusedDropout().train()(feature).dtype == dtype
    assert feature.dtype == dtype
    mask32 = focused_mask(feature32, gamma)[:, 0]

    channel = feature32.mean(dim=(2, 3)).argmax(dim=1)
    assert torch.equal(feature.float().mean(dim=(2, 3)).argmax(dim=1), channel)
    reference = feature32[torch.arange(8), channel]
    peak = reference.amax(dim=(1, 2), keepdim=True)
    threshold = gamma.view(8, 1, 1) * peak
    # the reference and the threshold each move by at most ~eps·peak under autocast
    rounding = 2 * torch.finfo(dtype).eps * peak
    assert torch.all((feature.float()[torch.arange(8), channel] - reference).abs() <= rounding)
    near_threshold = (reference - threshold).abs() <= 2 * rounding
    differ = mask != mask32
    assert not torch.any(differ & ~near_threshold)
    assert near_threshold.float().mean() < 0.1, 'the tolerance band must be narrow to mean anything'


# ---------------------------------------------------------- degenerate activations
def degenerate_inputs():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 4, 5, 5, generator=g)
    sprinkled_nan, sprinkled_inf, sprinkled_ninf = x.clone(), x.clone(), x.clone()
    for t, value in ((sprinkled_nan, NAN), (sprinkled_inf, INF), (sprinkled_ninf, -INF)):
        t.view(-1)[torch.randperm(t.numel(), generator=g)[:12]] = value
    mixed = x.clone()
    mixed[0] = 0
    mixed[1] = -x[1].abs()
    mixed[2] = NAN
    mixed[3, :, 1, 1] = INF
    mixed[4, 2] = -INF
    mixed[5, 1, 0, 0], mixed[5, 1, 0, 1] = INF, -INF  # channel mean inf - inf = NaN
    return {'zeros': torch.zeros(2, 3, 4, 4), 'negative': -torch.rand(2, 3, 4, 4, generator=g),
            'all -inf': torch.full((2, 3, 4, 4), -INF), 'all nan': torch.full((2, 3, 4, 4), NAN),
            'sprinkled nan': sprinkled_nan, 'sprinkled inf': sprinkled_inf,
            'sprinkled -inf': sprinkled_ninf, 'mixed': mixed}


@pytest.mark.parametrize('opposite', [False, True])
@pytest.mark.parametrize('name', list(degenerate_inputs()))
def test_degenerate_input_creates_no_nan(name, opposite):
    x = degenerate_inputs()[name].requires_grad_()
    module = FocusedDropout(gamma_range=(0.5, 0.5), opposite=opposite).train()
    out = module(x)
    mask = focused_mask(x.detach(), 0.5)
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    kept = (1 - mask if opposite else mask).bool().expand_as(x)
    # kept units are x unchanged (NaN and inf included), dropped units are exactly 0
    assert torch.equal(out[kept].isnan(), x[kept].isnan())
    assert torch.equal(out[kept].nan_to_num(), x[kept].detach().nan_to_num())
    assert torch.all(out[~kept] == 0)
    assert torch.isfinite(module.last_keep_ratio)
    upstream = torch.randn_like(x)
    out.backward(upstream)
    assert torch.equal(x.grad, torch.where(kept, upstream, 0))


@pytest.mark.parametrize('fill', [0.0, -1.0, -INF])
def test_sample_without_positive_peak_passes_unchanged(fill):
    x = torch.rand(2, 3, 4, 4)
    x[1] = fill
    out = FocusedDropout().train()(x)
    assert torch.equal(out[1], x[1])


def test_channel_with_nan_mean_is_not_the_reference():
    x = torch.rand(3, 4, 6, 6)
    x[:, 2] += 10  # the reference channel...
    x[:, 2, 0, 0] = NAN  # ...unless its mean is NaN
    without = x.clone()
    without[:, 2] = -1
    assert torch.equal(focused_mask(x, 0.5), focused_mask(without, 0.5))


def test_infinite_peak_keeps_its_infinite_positions():
    x = torch.rand(1, 3, 4, 4)
    x[0, 1, 2, 3] = INF
    x[0, 1, 0, 0] = INF
    mask = focused_mask(x, 0.5)[0, 0]
    expected = torch.zeros(4, 4)
    expected[2, 3] = expected[0, 0] = 1
    assert torch.equal(mask, expected)


# ----------------------------------------------------------------------- bad files
@pytest.mark.parametrize('content', ['random bytes', 'truncated'])
def test_corrupt_checkpoint_for_strict_pretrained_names_the_file(tmp_path, content):
    bad = tmp_path / 'bad.pth'
    if content == 'truncated':
        torch.save({'state_dict': {'conv1.weight': torch.randn(64, 3, 7, 7)}}, bad)
        bad.write_bytes(bad.read_bytes()[:2048])
    else:
        bad.write_bytes(np.random.default_rng(0).bytes(4096))
    backbone = DET_MODELS.build(dict(type='ResNet', depth=18, _scope_='mmdet',
                                     init_cfg=dict(type='StrictPretrained', checkpoint=str(bad))))
    with pytest.raises(ValueError, match=f'cannot read checkpoint {re.escape(str(bad))}'):
        backbone.init_weights()


def test_empty_voc_image_list_names_the_file(tmp_path):
    root = tmp_path / 'VOCdevkit'
    make_voc(root, seed=0, voc07_trainval=2, voc07_test=2, voc12_trainval=2)
    image_list = root / 'VOC2007' / 'ImageSets' / 'Main' / 'test.txt'
    image_list.write_text('')
    with pytest.raises(ValueError, match=f'ann_file {re.escape(str(image_list))} lists no image ids'):
        build_test_split(root)


def test_voc_filter_removing_every_image_names_the_file(tmp_path):
    root = tmp_path / 'VOCdevkit'
    make_voc(root, seed=0, voc07_trainval=2, voc07_test=2, voc12_trainval=2)
    with pytest.raises(ValueError, match=r"filter_cfg \{'filter_empty_gt': True, 'min_size': 100000\} "
                                         r"removed all 2 images of .*VOC2007/ImageSets/Main/trainval\.txt"):
        DATASETS.build(dict(type='CheckedVOCDataset', _scope_='mmdet', data_root=str(root) + '/',
                            ann_file='VOC2007/ImageSets/Main/trainval.txt',
                            data_prefix=dict(sub_data_root='VOC2007/'),
                            filter_cfg=dict(filter_empty_gt=True, min_size=100000), pipeline=[]))


@pytest.mark.parametrize('resume', [False, True], ids=['load_from', 'resume'])
def test_corrupt_checkpoint_for_runner_names_the_file(image_folder, tmp_path, resume):
    bad = tmp_path / 'bad.pth'
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    runner = Runner.from_cfg(Config(classifier_cfg(image_folder, tmp_path / 'work', max_iters=2,
                                                   load_from=str(bad), resume=resume)))
    with pytest.raises(Exception, match=f'cannot read checkpoint {re.escape(str(bad))}'):
        runner.train()


def test_empty_imagenet_split_names_the_file(tmp_path):
    import fdrop_mm.datasets.classification  # noqa: F401  registers CheckedImageNet
    from mmpretrain.registry import DATASETS as CLS_DATASETS
    root = tmp_path / 'imagenet'
    make_imagenet(root, seed=0, num_classes=2, train_per_class=1, val_per_class=1)
    (root / 'meta' / 'train.txt').write_text('')
    with pytest.raises(ValueError, match=f'no images listed in {re.escape(str(root / "meta" / "train.txt"))}'):
        CLS_DATASETS.build(dict(type='CheckedImageNet', data_root=str(root), split='train'))
