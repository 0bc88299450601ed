"""StopOnRequestHook on real mmengine Runners (tools/train.py's fdrop_mm.apis.train): a training
asked to stop (``<work_dir>/stop_requested``, what a Slurm job's batch script writes at the time
limit's warning) stops at an iteration boundary and exits 75; resumed, it ends with the weights
of an uninterrupted run (the oracle), iteration-based from a checkpoint at the stop, epoch-based
from the last epoch's; with two processes both ranks stop after the same iteration."""
import os
import re
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from fdrop_mm.apis import train
from fdrop_mm.engine.hooks.stop_on_request_hook import STOP_FILE, STOPPED_EXIT_CODE
from tests.conftest import REPO, classifier_cfg, free_port

# 16 images of the image_folder fixture in batches of 4
ITERATIONS_PER_EPOCH = 4


@HOOKS.register_module(force=True)
class RequestStopAfter(Hook):
    """Writes the stop file after iteration ``iteration`` (1-based), as a batch script would."""
    priority = 'NORMAL'

    def __init__(self, iteration):
        self.iteration = iteration

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.iteration:
            open(os.path.join(runner.work_dir, STOP_FILE), 'w').close()


def run(cfg: dict, path, resume=None):
    Config(cfg).dump(str(path))
    train(str(path), resume=resume)


def weights(checkpoint):
    return torch.load(checkpoint, map_location='cpu', weights_only=False)['state_dict']


def assert_same_weights(a, b):
    a, b = weights(a), weights(b)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def log_text(work_dir):
    return '\n'.join(log.read_text() for log in sorted(work_dir.glob('2*/2*.log')))


def stopped_run(cfg: dict, path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run(cfg, path)
    assert exit_info.value.code == STOPPED_EXIT_CODE


def test_iteration_based_training_stops_with_a_checkpoint_there_and_resumes_exactly(image_folder, tmp_path,
                                                                                   monkeypatch):
    monkeypatch.delenv('SLURM_JOB_ID', raising=False)  # outside a job an old stop file is stale
    full = tmp_path / 'full'
    full.mkdir()
    (full / STOP_FILE).touch()
    os.utime(full / STOP_FILE, (0, 0))  # left by a job killed after writing it: stale
    run(classifier_cfg(image_folder, full, max_iters=8), tmp_path / 'full.py')
    assert 'a stop request older than this run' in log_text(full) and not (full / STOP_FILE).exists()

    work = tmp_path / 'stopped'
    cfg = classifier_cfg(image_folder, work, max_iters=8,
                         custom_hooks=[dict(type='RequestStopAfter', iteration=3)])
    stopped_run(cfg, tmp_path / 'stopped.py')
    assert (work / 'last_checkpoint').read_text() == str(work / 'iter_3.pth')
    assert not (work / STOP_FILE).exists() and not (work / 'iter_8.pth').exists()
    assert (f'stopped on request ({work / STOP_FILE}) after iteration 3 (epoch 1, batch 3); saved '
            f'{work / "iter_3.pth"}') in log_text(work)
    run(cfg, tmp_path / 'stopped.py', resume='auto')
    assert_same_weights(work / 'iter_8.pth', full / 'iter_8.pth')


def epoch_cfg(image_folder, work_dir, **overrides):
    return classifier_cfg(image_folder, work_dir, train_cfg=dict(type='EpochBasedTrainLoop', max_epochs=3),
                          default_hooks=dict(logger=dict(type='LoggerHook', interval=5),
                                             checkpoint=dict(type='CheckpointHook', interval=1)),
                          **overrides)


@pytest.mark.slow
def test_epoch_based_training_stops_without_a_mid_epoch_checkpoint_and_resumes_exactly(image_folder,
                                                                                      tmp_path):
    full = tmp_path / 'full'
    run(epoch_cfg(image_folder, full), tmp_path / 'full.py')

    work = tmp_path / 'stopped'  # asked during epoch 2: stops there, resumes from epoch 1's end
    cfg = epoch_cfg(image_folder, work, custom_hooks=[
        dict(type='RequestStopAfter', iteration=ITERATIONS_PER_EPOCH + 2)])
    stopped_run(cfg, tmp_path / 'stopped.py')
    assert (work / 'last_checkpoint').read_text() == str(work / 'epoch_1.pth')
    assert sorted(path.name for path in work.glob('*.pth')) == ['epoch_1.pth']
    assert (f'after iteration 6 (epoch 2, batch 2); no mid-epoch checkpoint (EpochBasedTrainLoop would '
            f'not skip this epoch\'s seen batches on resume): a resumed run starts from '
            f'{work / "epoch_1.pth"}') in log_text(work)
    run(epoch_cfg(image_folder, work), tmp_path / 'resumed.py', resume='auto')  # not asked again
    assert_same_weights(work / 'epoch_3.pth', full / 'epoch_3.pth')

    late = tmp_path / 'late'  # asked in an epoch's last iteration: that epoch ends (checkpoint) first
    stopped_run(epoch_cfg(image_folder, late, custom_hooks=[
        dict(type='RequestStopAfter', iteration=ITERATIONS_PER_EPOCH)]), tmp_path / 'late.py')
    assert (late / 'last_checkpoint').read_text() == str(late / 'epoch_1.pth')
    assert 'after iteration 5 (epoch 2, batch 1); no mid-epoch checkpoint' in log_text(late)


RECORD_HOOK = '''
import os
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class RankRequestsAndRecords(Hook):
    """Rank 1 writes the stop file after iteration 3; each rank records the iterations it ran."""
    priority = 'NORMAL'

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        with open(os.path.join(runner.work_dir, f'rank{get_rank()}.iterations'), 'a') as out:
            out.write(f'{runner.iter + 1}\\n')
        if get_rank() == 1 and runner.iter + 1 == 3:
            open(os.path.join(runner.work_dir, 'stop_requested'), 'w').close()
'''


@pytest.mark.slow
def test_distributed_ranks_stop_after_the_same_iteration(image_folder, tmp_path):
    (tmp_path / 'rank_hook.py').write_text(RECORD_HOOK)
    work = tmp_path / 'work'
    cfg = classifier_cfg(image_folder, work, max_iters=20, custom_hooks=[dict(type='RankRequestsAndRecords')])
    cfg['custom_imports'] = dict(imports=['fdrop_mm', 'rank_hook'], allow_failed_imports=False)
    Config(cfg).dump(str(tmp_path / 'cfg.py'))
    env = {**os.environ, 'PYTHON': sys.executable, 'PORT': str(free_port()),
           'PYTHONPATH': os.pathsep.join([str(tmp_path), os.environ.get('PYTHONPATH', '')])}
    proc = subprocess.run(['bash', str(REPO / 'tools/dist_train.sh'), str(tmp_path / 'cfg.py'), '2'], env=env,
                          cwd=REPO, capture_output=True, text=True, timeout=1200)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0 and re.search(rf'exitcode\s*:\s*{STOPPED_EXIT_CODE}', output), output[-4000:]
    # rank 0 sees the file after iteration 3 or, if rank 1 wrote it after rank 0 looked, after
    # iteration 4 (whose gradients rank 1 computes after writing it): both stop there
    ran = [(work / f'rank{rank}.iterations').read_text().split() for rank in (0, 1)]
    assert ran[0] == ran[1] and ran[0] in (['1', '2', '3'], ['1', '2', '3', '4']), ran
    assert (work / 'last_checkpoint').read_text() == str(work / f'iter_{ran[0][-1]}.pth')
