"""tools/run_pipeline.py --pretrained ARM=PATH_OR_URL (fdrop_mm.experiments.published): a
checkpoint in mmpretrain's format, made here from the tiny config's model, stands in for an
arm's pretraining; anything but that arm's ResNet-50 ImageClassifier is refused naming the file."""
import functools
import http.server
import json
import subprocess
import sys
import threading

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from fdrop_mm.experiments.pipeline import Pipeline, result_row
from fdrop_mm.experiments.published import PublishedCheckpoint, parse_pretrained
from fdrop_mm.tiny_data import make_imagenet
from tests.conftest import REPO, TINY_DETECTION

TINY_PRETRAIN = 'configs/tiny/resnet50_tiny-imagenet.py'


def save_checkpoint(path, model, cfg):
    """What mmengine's Runner saves, reduced to what a published checkpoint has: the state and
    a meta with the config text."""
    torch.save(dict(state_dict=model.state_dict(), meta=dict(cfg=cfg.pretty_text, epoch=4)), path)
    return path


def build(config, scope, **model_changes):
    cfg = Config.fromfile(str(REPO / config))
    cfg.model.update(model_changes)
    with DefaultScope.overwrite_default_scope(scope):
        from mmengine.registry import MODELS
        return MODELS.build(cfg.model), cfg


@pytest.fixture(scope='module')
def classifier_checkpoint(tmp_path_factory):
    """The tiny pretraining config's ResNet-50 ImageClassifier, randomly initialised, saved in
    mmpretrain's format."""
    torch.manual_seed(0)
    model, cfg = build(TINY_PRETRAIN, 'mmpretrain')
    return save_checkpoint(tmp_path_factory.mktemp('published') / 'resnet50_published.pth', model, cfg)


@pytest.fixture
def tiny_pipeline(tmp_path):
    make_imagenet(tmp_path / 'data' / 'imagenet', seed=0, num_classes=20, train_per_class=1,
                  val_per_class=1)
    return functools.partial(Pipeline, work_dir=tmp_path / 'work', data_root=tmp_path / 'data', tiny=True,
                             arms=['baseline'])


def test_published_checkpoint_is_tested_and_transferred_without_training(tiny_pipeline, classifier_checkpoint,
                                                                        monkeypatch):
    from mmengine.runner.checkpoint import CheckpointLoader
    reads = []
    load = CheckpointLoader.load_checkpoint
    monkeypatch.setattr(CheckpointLoader, 'load_checkpoint',
                        lambda filename, *args, **kwargs: reads.append(filename) or load(filename, *args, **kwargs))
    pipeline = tiny_pipeline(pretrained={'baseline': str(classifier_checkpoint)})
    stage = pipeline.stage('seed0/pretrain_baseline')
    assert 'published checkpoint' in stage.description and str(classifier_checkpoint) in stage.description
    pipeline.check_published()
    record = pipeline.run_stage(stage.name)
    # checked before any stage, checked again, tested (tools/test.py: its own process), extracted
    assert reads.count(str(classifier_checkpoint)) == 1, 'read once in this process'
    assert not (stage.work_dir / 'train.out').exists(), 'a published checkpoint is not trained'
    assert 'accuracy/top1' in record['metrics'] and (stage.work_dir / 'test.out').is_file()
    assert record['published'] == str(classifier_checkpoint)
    backbone = torch.load(record['backbone'])
    assert backbone['meta']['published'] == str(classifier_checkpoint)
    source = torch.load(classifier_checkpoint)['state_dict']
    assert len(backbone['state_dict']) == 318
    for key, value in backbone['state_dict'].items():
        assert torch.equal(value, source[key]), key
    done = json.loads((stage.work_dir / 'done.json').read_text())
    assert done['inputs']['published']['size'] == classifier_checkpoint.stat().st_size
    assert len(done['inputs']['published']['sha256']) == 64
    assert pipeline.record(stage)[0] is not None, 'unchanged: complete'
    # the detector fine-tuned from it says so in the table
    row = result_row('baseline', 0, record, dict(checkpoint='det.pth', metrics={'pascal_voc/mAP': 0.5}))
    assert row['pretraining'] == f'published checkpoint: {classifier_checkpoint}'

    changed = classifier_checkpoint.parent / 'changed.pth'
    state = torch.load(classifier_checkpoint)
    state['state_dict']['head.fc.bias'] += 1
    torch.save(state, changed)
    changed.replace(classifier_checkpoint)  # another file at the same path
    fresh = tiny_pipeline(pretrained={'baseline': str(classifier_checkpoint)})
    assert fresh.record(fresh.stage(stage.name)) == (None, f'its inputs changed since {stage.work_dir / "done.json"} '
                                                           'was written')


@pytest.mark.parametrize('wrong', ['resnet18', 'detector'])
def test_a_checkpoint_that_is_not_the_arms_resnet50_classifier_is_refused(tiny_pipeline, tmp_path, wrong):
    if wrong == 'resnet18':
        model, cfg = build(TINY_PRETRAIN, 'mmpretrain', backbone=dict(type='ResNet', depth=18),
                           head=dict(type='LinearClsHead', num_classes=20, in_channels=512))
        message = r'does not fit the ResNet-50 ImageClassifier of configs/tiny/resnet50_tiny-imagenet.py: .*missing'
    else:
        model, cfg = build(str(TINY_DETECTION.relative_to(REPO)), 'mmdet', backbone=dict(
            type='ResNet', depth=50, init_cfg=None))
        message = r'is not an mmpretrain ImageClassifier checkpoint: it was trained as a RetinaNet'
    checkpoint = save_checkpoint(tmp_path / f'{wrong}.pth', model, cfg)
    pipeline = tiny_pipeline(pretrained={'baseline': str(checkpoint)})
    with pytest.raises(ValueError, match=f'--pretrained baseline={checkpoint}: {checkpoint} {message}'):
        pipeline.check_published()
    assert not (tmp_path / 'work' / 'seed0' / 'pretrain_baseline' / 'test.out').exists()


def test_url_goes_through_mmengines_loader(tiny_pipeline, classifier_checkpoint, tmp_path, monkeypatch):
    """A URL, served here on the loopback, is read by mmengine's CheckpointLoader (cached where
    torch hub caches), verified and saved in the stage folder."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(classifier_checkpoint.parent))
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f'http://127.0.0.1:{server.server_address[1]}/{classifier_checkpoint.name}'
        pipeline = tiny_pipeline(pretrained={'baseline': url})
        pipeline.check_published()
    finally:
        server.shutdown()
        server.server_close()
    fetched = tmp_path / 'work' / 'seed0' / 'pretrain_baseline' / 'published.pth'
    assert torch.equal(torch.load(fetched)['state_dict']['head.fc.weight'],
                       torch.load(classifier_checkpoint)['state_dict']['head.fc.weight'])
    assert list((tmp_path / 'torch_home' / 'hub' / 'checkpoints').iterdir())[0].name == classifier_checkpoint.name
    assert PublishedCheckpoint('baseline', url).inputs() == dict(source=url)


def test_a_stage_job_keeps_the_published_checkpoint(tiny_pipeline, classifier_checkpoint):
    """A Slurm job runs ``tools/run_pipeline.py <the pipeline's arguments> --stage NAME``: a job
    that lost ``--pretrained`` would quietly train the arm instead of testing the checkpoint."""
    pipeline = tiny_pipeline(pretrained={'baseline': str(classifier_checkpoint)})
    stage = pipeline.stage('seed0/pretrain_baseline')
    proc = subprocess.run([sys.executable, 'tools/run_pipeline.py', *pipeline.arguments(), '--stage', stage.name],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert not (stage.work_dir / 'train.out').exists(), 'the job trained the published arm'
    assert json.loads((stage.work_dir / 'done.json').read_text())['published'] == str(classifier_checkpoint)


def test_pretrained_option_errors(tmp_path):
    assert parse_pretrained(['baseline=a.pth', 'fd=https://x/y.pth'], ['baseline', 'fd']) == {
        'baseline': 'a.pth', 'fd': 'https://x/y.pth'}
    with pytest.raises(ValueError, match="'fd': expected ARM=PATH_OR_URL"):
        parse_pretrained(['fd'], ['baseline', 'fd'])
    with pytest.raises(ValueError, match="no pretraining arm 'fd2'"):
        parse_pretrained(['fd2=a.pth'], ['baseline', 'fd'])
    with pytest.raises(ValueError, match='fd given twice'):
        parse_pretrained(['fd=a.pth', 'fd=b.pth'], ['baseline', 'fd'])
    with pytest.raises(FileNotFoundError, match=f'--pretrained fd={tmp_path}/missing.pth: no such file'):
        Pipeline(work_dir=tmp_path, data_root=tmp_path, pretrained={'fd': str(tmp_path / 'missing.pth')})
    with pytest.raises(ValueError, match=r"no arm of \['baseline'\] starts from the fd pretraining"):
        Pipeline(work_dir=tmp_path, data_root=tmp_path, arms=['baseline'], pretrained={'fd': 'a.pth'})
