"""mmengine checkpoints under torch's default weights-only loading, through real Runners."""
import os
import pickle

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import HistoryBuffer
from mmengine.runner import Runner
from mmengine.runner.checkpoint import _load_checkpoint
from mmpretrain.registry import MODELS

from tests.conftest import classifier_cfg


def test_save_resume_load_from_and_pretrained_init(image_folder, tmp_path):
    first = Runner.from_cfg(Config(classifier_cfg(image_folder, tmp_path / 'a', max_iters=4)))
    first.train()
    ckpt = tmp_path / 'a' / 'iter_4.pth'
    assert ckpt.is_file()
    raw = torch.load(ckpt)  # the default weights-only load
    assert isinstance(raw['message_hub']['log_scalars']['train/loss'], HistoryBuffer)

    resumed = Runner.from_cfg(Config(classifier_cfg(
        image_folder, tmp_path / 'b', max_iters=6, resume=True, load_from=str(ckpt))))
    resumed.train()
    assert resumed.iter == 6
    # the resumed loss history continues the first run's
    losses = resumed.message_hub.get_scalar('train/loss').data[0]
    assert len(losses) == 6 and list(losses[:4]) == list(first.message_hub.get_scalar('train/loss').data[0])

    loaded = Runner.from_cfg(Config(classifier_cfg(image_folder, tmp_path / 'c', load_from=str(ckpt))))
    loaded.load_checkpoint(str(ckpt))
    for name, value in loaded.model.state_dict().items():
        assert torch.equal(value, raw['state_dict'][name]), name

    backbone = MODELS.build(dict(type='ResNet_CIFAR', depth=18, stem_channels=8, base_channels=8,
                                 init_cfg=dict(type='Pretrained', checkpoint=str(ckpt), prefix='backbone.')))
    backbone.init_weights()
    for name, value in backbone.state_dict().items():
        assert torch.equal(value, raw['state_dict'][f'backbone.{name}']), name


class RunsShell:
    def __reduce__(self):
        return os.system, ('touch pwned',)


class ReachesBeyondStatistics:
    def __reduce__(self):
        return getattr, (HistoryBuffer, 'register_statistics')


def test_code_execution_is_still_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({'state_dict': {}, 'payload': RunsShell()}, tmp_path / 'evil.pth')
    with pytest.raises(pickle.UnpicklingError, match='system'):
        _load_checkpoint(str(tmp_path / 'evil.pth'))
    assert not (tmp_path / 'pwned').exists()


def test_getattr_is_limited_to_history_buffer_statistics(tmp_path):
    torch.save({'payload': ReachesBeyondStatistics()}, tmp_path / 'evil.pth')
    with pytest.raises(pickle.UnpicklingError, match='register_statistics'):
        torch.load(tmp_path / 'evil.pth')
