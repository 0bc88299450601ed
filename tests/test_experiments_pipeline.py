"""fdrop_mm.experiments.pipeline end to end on tiny data through tools/run_pipeline.py, stage
skipping, and multi-process detection training, as a user runs them."""
import json
import os
import socket
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from fdrop_mm.experiments.pipeline import Pipeline
from fdrop_mm.experiments.stages import run_stage
from fdrop_mm.testing import make_imagenet, make_voc
from tests.conftest import REPO

TINY_DETECTION = REPO / 'configs/tiny/retinanet_r50_fpn_voc0712_tiny.py'


def run(cmd, env=None, timeout=1500):
    proc = subprocess.run([str(c) for c in cmd], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc.stdout


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture(scope='module')
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp('pipeline')
    stdout = run([sys.executable, 'tools/run_pipeline.py', '--tiny', '--work-dir', root / 'work',
                  '--data-root', root / 'data'])
    return root, stdout, json.loads((root / 'work' / 'results.json').read_text())


@pytest.mark.slow
def test_pipeline_learns_and_reports_both_arms(pipeline):
    root, stdout, results = pipeline
    rows = {r['arm']: r for r in results['rows']}
    assert set(rows) == {'baseline', 'fd', 'random-init'}
    # The detectors learn (an untrained RetinaNet scores 0.0 here), and the transfer changes what
    # they learn: each pretrained arm beats the detector trained the same way (same seed, same
    # iterations) from a random backbone. A backbone that silently failed to load would give the
    # random-init number exactly, since the run is deterministic. Seed 0 on the 2-core machine,
    # identical in two runs: baseline 0.1350, FD 0.1038, random init 0.0818; on a few hundred
    # synthetic images the margin between arms is noise, so only the order is asserted.
    floor = rows['random-init']['mAP']
    assert 0.02 < floor <= 1, floor
    for arm in ('baseline', 'fd'):
        assert floor < rows[arm]['mAP'] <= 1, (arm, rows[arm]['mAP'], floor)
    for arm in ('baseline', 'fd', 'random-init'):
        assert len(rows[arm]['class_ap']) == 20
    for arm in ('baseline', 'fd'):
        assert rows[arm]['top1'] > 40, 'pretraining must beat chance (20 classes, 5%) clearly'
        assert rows[arm]['source_checkpoint'].endswith('epoch_4.pth')
    table = (root / 'work' / 'results.md').read_text()
    assert '| baseline |' in table and '| fd |' in table and 'not the paper' in table
    assert table in stdout


@pytest.mark.slow
def test_detector_backbone_equals_the_extracted_backbone(pipeline):
    root, _, _ = pipeline
    backbone_file = root / 'work' / 'seed0' / 'pretrain_fd' / 'backbone.pth'
    extracted = torch.load(backbone_file)
    assert extracted['meta']['focused_dropout']['participation'] == 0.5
    init_default_scope('mmdet')
    from mmdet.registry import MODELS
    cfg = Config.fromfile(str(TINY_DETECTION))
    cfg.model.backbone.init_cfg.checkpoint = str(backbone_file)
    detector = MODELS.build(cfg.model)
    detector.init_weights()
    state = detector.backbone.state_dict()
    assert len(state) == len(extracted['state_dict'])
    for name, value in state.items():
        assert torch.equal(value, extracted['state_dict'][f'backbone.{name}']), name


@pytest.mark.slow
def test_rerun_skips_complete_stages(pipeline):
    root, _, results = pipeline
    stdout = run([sys.executable, 'tools/run_pipeline.py', '--tiny', '--work-dir', root / 'work',
                  '--data-root', root / 'data'], timeout=300)
    assert stdout.count('(complete)') == 5 and '$ ' not in stdout
    assert json.loads((root / 'work' / 'results.json').read_text()) == results


@pytest.mark.slow
def test_dist_train_two_processes_and_resume(tmp_path):
    voc = tmp_path / 'VOCdevkit'
    make_voc(voc, seed=0, voc07_trainval=12, voc07_test=4, voc12_trainval=4)
    work = tmp_path / 'work'
    options = ['--cfg-options', 'model.backbone.init_cfg=None', 'train_cfg.val_interval=100',
               'default_hooks.checkpoint.interval=1']
    env = {'PYTHON': sys.executable, 'VOC_ROOT': f'{voc}/'}
    run(['bash', 'tools/dist_train.sh', TINY_DETECTION, 2, '--work-dir', work, *options,
         'train_cfg.max_epochs=1'], env={**env, 'PORT': str(free_port())}, timeout=600)
    assert (work / 'epoch_1.pth').is_file()
    run(['bash', 'tools/dist_train.sh', TINY_DETECTION, 2, '--work-dir', work, '--resume', *options,
         'train_cfg.max_epochs=2'], env={**env, 'PORT': str(free_port())}, timeout=600)
    assert (work / 'epoch_2.pth').is_file()
    logs = sorted(work.glob('*/*.log'))
    assert len(logs) == 2 and 'resumed epoch: 1' in logs[1].read_text()
    assert 'Epoch(train) [2]' in logs[1].read_text() and 'Epoch(train) [1]' not in logs[1].read_text()


def test_complete_stage_is_rerun_when_its_inputs_change(tmp_path):
    pipeline = Pipeline(work_dir=tmp_path / 'work', data_root=tmp_path / 'data', tiny=True)
    made = []

    def produce(work_dir):
        output = work_dir / f'output{len(made)}.txt'
        output.write_text('trained')
        made.append(output)
        return dict(files=[str(output)])

    stage_dir = tmp_path / 'work' / 'stage'
    config = 'configs/tiny/resnet50_tiny-imagenet.py'
    inputs = pipeline.stage_inputs(config, ['randomness.seed=0'])
    run_stage(stage_dir, produce, inputs)
    run_stage(stage_dir, produce, pipeline.stage_inputs(config, ['randomness.seed=0']))
    assert len(made) == 1, 'same inputs: the complete stage is skipped'
    run_stage(stage_dir, produce, pipeline.stage_inputs(config, ['randomness.seed=1']))
    assert len(made) == 2, 'other options: rerun'
    make_imagenet(tmp_path / 'data' / 'imagenet', seed=0, num_classes=2, train_per_class=1,
                  val_per_class=1)
    run_stage(stage_dir, produce, pipeline.stage_inputs(config, ['randomness.seed=1']))
    assert len(made) == 3, 'regenerated data: rerun'
    derived = pipeline.stage_inputs('configs/tiny/resnet50_fd_tiny-imagenet.py', ['randomness.seed=1'])
    assert derived['config_sha256'] != pipeline.stage_inputs(config, [])['config_sha256']
    run_stage(stage_dir, produce, pipeline.stage_inputs(config, ['randomness.seed=1'], upstream=derived))
    assert len(made) == 4, 'another upstream stage: rerun'
    made[-1].unlink()
    run_stage(stage_dir, produce, pipeline.stage_inputs(config, ['randomness.seed=1'], upstream=derived))
    assert len(made) == 5, 'an output is missing: rerun'


def test_unknown_arm_is_an_error(tmp_path):
    with pytest.raises(ValueError, match=r"arms: unknown \['fd2'\]"):
        Pipeline(work_dir=tmp_path, data_root=tmp_path, arms=['fd2'])
