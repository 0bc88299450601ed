"""A whole model's checkpoint must fit the model: fdrop_mm.apis.test's checkpoint and
fdrop_mm.apis.train's load_from (tools/test.py, tools/train.py; fdrop_mm.checkpoint_files.check_checkpoint_fits),
on real Runners and checkpoint files."""
import json
import re
import subprocess
import sys
import uuid

import pytest
import torch
from mmengine.config import Config
from mmengine.fileio import load
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmpretrain.registry import MODELS

from fdrop_mm import apis
from fdrop_mm.checkpoint_files import check_checkpoint_fits
from tests.conftest import REPO, TINY_DETECTION, classifier_cfg

EMA = [dict(type='EMAHook')]


def with_test_split(cfg: dict) -> dict:
    """A classifier_cfg with its image folder as the test split, scored by top-1 accuracy."""
    in_order = dict(cfg['train_dataloader'], sampler=dict(type='DefaultSampler', shuffle=False))
    return dict(cfg, test_dataloader=in_order, test_evaluator=dict(type='Accuracy', topk=(1, )), test_cfg=dict())


@pytest.fixture(scope='module')
def classifier(image_folder, tmp_path_factory):
    """(config file, checkpoint) of a narrow ResNet-18 classifier trained 2 iterations with EMAHook
    (the checkpoint holds ``ema_state_dict`` too); the config file is without the hook."""
    work_dir = tmp_path_factory.mktemp('classifier')
    cfg = with_test_split(classifier_cfg(image_folder, work_dir, max_iters=2))
    Runner.from_cfg(Config(dict(cfg, custom_hooks=EMA))).train()
    config = work_dir / 'classifier.py'
    Config(cfg).dump(str(config))
    return config, work_dir / 'iter_2.pth'


def run_test(config, checkpoint, work_dir, cfg_options=None, allow_partial=False):
    """fdrop_mm.apis.test (tools/test.py's) in this process; the metrics it wrote."""
    metrics = work_dir / 'metrics.json'
    apis.test(str(config), str(checkpoint), work_dir=str(work_dir), metrics_out=str(metrics),
              allow_partial_load=allow_partial,
              cfg_options=dict(experiment_name=f'test_{uuid.uuid4().hex[:8]}', **(cfg_options or {})))
    return json.loads(metrics.read_text())


def hand_scores(config, state_dict, work_dir):
    """Softmax scores of the model of ``config`` with ``state_dict`` on the test split, in
    order, computed here from the logits of its forward pass."""
    cfg = Config.fromfile(str(config))
    runner = Runner.from_cfg(dict(cfg.to_dict(), work_dir=str(work_dir),
                                  experiment_name=f'hand_{uuid.uuid4().hex[:8]}'))
    runner.model.load_state_dict(state_dict)
    runner.model.eval()
    scores, labels = [], []
    with torch.no_grad():
        for batch in runner.test_dataloader:
            data = runner.model.data_preprocessor(batch, False)
            scores.append(runner.model(data['inputs'], mode='tensor').softmax(dim=1))
            labels += [int(sample.gt_label) for sample in data['data_samples']]
    return torch.cat(scores), torch.tensor(labels)


@pytest.mark.parametrize('hooks', [[], EMA], ids=['plain', 'ema'])
def test_own_checkpoint_with_ema_state_is_tested(classifier, tmp_path, hooks):
    """The strict check passes a checkpoint of the same model, and the test scores its
    ``state_dict`` (where EMAHook saved the averaged parameters), with and without EMAHook:
    the scores and top-1 are those computed here by hand from that state_dict."""
    config, ckpt = classifier
    saved = torch.load(ckpt)
    assert 'ema_state_dict' in saved
    expected, labels = hand_scores(config, saved['state_dict'], tmp_path / 'hand')
    with_hooks = tmp_path / 'config.py'
    Config(dict(Config.fromfile(str(config)).to_dict(), custom_hooks=hooks)).dump(str(with_hooks))
    dump = tmp_path / 'predictions.pkl'
    metrics = run_test(with_hooks, ckpt, tmp_path, cfg_options={'test_evaluator': [
        dict(type='Accuracy', topk=(1, )), dict(type='DumpResults', out_file_path=str(dump))]})
    scores = torch.stack([prediction['pred_score'] for prediction in load(str(dump))])
    torch.testing.assert_close(scores, expected)
    assert metrics['accuracy/top1'] == pytest.approx(
        100 * (expected.argmax(dim=1) == labels).float().mean().item())


def test_ddp_saved_keys_fit(classifier, tmp_path):
    """Runner.load_checkpoint strips ``module.`` (a raw DDP state_dict); so does the check, which
    still refuses such a checkpoint that lacks a key, naming the model's key."""
    config, ckpt = classifier
    state = torch.load(ckpt)['state_dict']
    ddp = {f'module.{k}': v for k, v in state.items()}
    torch.save({'state_dict': ddp}, tmp_path / 'ddp.pth')
    del ddp['module.head.fc.bias']
    torch.save({'state_dict': ddp}, tmp_path / 'ddp_no_bias.pth')
    init_default_scope('mmpretrain')
    model = MODELS.build(Config.fromfile(str(config)).model)
    check_checkpoint_fits(model, tmp_path / 'ddp.pth')
    with pytest.raises(ValueError, match=r"does not fit the ImageClassifier: 1 missing: \['head\.fc\.bias'\]\. For a"):
        check_checkpoint_fits(model, tmp_path / 'ddp_no_bias.pth')


def test_mis_shaped_head_is_refused_or_partially_loaded_on_request(classifier, tmp_path):
    config, ckpt = classifier
    three_classes = {'model.head.num_classes': 3, 'model.data_preprocessor.num_classes': 3}
    message = (rf"checkpoint {re.escape(str(ckpt))} does not fit the ImageClassifier: 2 shape mismatches: "
               r"\['head\.fc\.weight: checkpoint \(2, 64\) vs model \(3, 64\)', "
               r"'head\.fc\.bias: checkpoint \(2,\) vs model \(3,\)'\]\. For a deliberate partial load")
    with pytest.raises(ValueError, match=message):
        run_test(config, ckpt, tmp_path / 'refused', three_classes)
    assert not (tmp_path / 'refused' / 'metrics.json').exists()

    run_test(config, ckpt, tmp_path / 'partial', three_classes, allow_partial=True)
    log, = (tmp_path / 'partial').glob('*/*.log')
    assert re.search(r'WARNING - checkpoint .* does not fit the ImageClassifier: 2 shape mismatches: '
                     r".*--allow-partial-load: loading only the matching keys", log.read_text())


def test_classifier_checkpoint_on_a_detector_is_refused(classifier, tmp_path):
    """As a user runs it: the process fails naming the keys, and writes no metrics."""
    _, ckpt = classifier
    proc = subprocess.run([sys.executable, 'tools/test.py', str(TINY_DETECTION), str(ckpt), '--work-dir',
                           str(tmp_path), '--metrics-out', str(tmp_path / 'm.json'),
                           '--cfg-options', 'model.backbone.init_cfg=None'],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    assert re.search(rf"ValueError: checkpoint {re.escape(str(ckpt))} does not fit the RetinaNet: "
                     r"\d+ missing: \['backbone\.layer1\.0\.conv3\.weight'.*; "
                     r"2 unexpected: \['head\.fc\.weight', 'head\.fc\.bias'\]; \d+ shape mismatches: "
                     r"\['backbone\.conv1\.weight: checkpoint \(8, 3, 3, 3\) vs model \(64, 3, 7, 7\)'",
                     proc.stderr), proc.stderr[-3000:]
    assert not (tmp_path / 'm.json').exists()


def test_detector_checkpoint_on_a_classifier_is_refused(classifier, detector_checkpoint, tmp_path):
    config, _ = classifier
    message = (rf"checkpoint {re.escape(str(detector_checkpoint))} does not fit the ImageClassifier: "
               r"2 missing: \['head\.fc\.weight', 'head\.fc\.bias'\]; \d+ unexpected: .*; "
               r"\d+ shape mismatches: \['backbone\.conv1\.weight")
    with pytest.raises(ValueError, match=message):
        run_test(config, detector_checkpoint, tmp_path)


def test_train_load_from_must_fit(classifier, tmp_path):
    config, ckpt = classifier
    three_classes = {'model.head.num_classes': 3, 'model.data_preprocessor.num_classes': 3}

    def train(work_dir, cfg_options=None, allow_partial=False):
        apis.train(str(config), work_dir=str(tmp_path / work_dir), allow_partial_load=allow_partial,
                   cfg_options=dict(load_from=str(ckpt), experiment_name=f'train_{uuid.uuid4().hex[:8]}',
                                    **(cfg_options or {})))

    with pytest.raises(ValueError, match=rf"checkpoint {re.escape(str(ckpt))} does not fit the ImageClassifier: "
                                         r"2 shape mismatches: \['head\.fc\.weight"):
        train('refused', three_classes)
    assert not list((tmp_path / 'refused').glob('*.pth')), 'refused before training'
    train('partial', three_classes, allow_partial=True)
    assert (tmp_path / 'partial' / 'iter_2.pth').is_file()
    train('fits')
    fine_tuned = torch.load(tmp_path / 'fits' / 'iter_2.pth')['state_dict']
    assert fine_tuned.keys() == torch.load(ckpt)['state_dict'].keys()
