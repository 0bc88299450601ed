"""A pipeline stage's training killed with SIGKILL after epoch k resumes from epoch k when the
pipeline is rerun, to the weights of an uninterrupted run; a damaged done.json is reported by
path and costs no work; a stage whose inputs changed moves its earlier files aside and starts
afresh. Real processes throughout: tools/run_pipeline.py --stage on the tiny data, its
tools/train.py child killed as a node failure or the OOM killer would."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fdrop_mm.tiny_data import generate
from tests.conftest import REPO

STAGE = 'seed0/pretrain_fd'  # the FD arm: FocusedDropout's decisions and γ must survive the resume too
KILL_AFTER_EPOCH = 2  # of the tiny pretraining's 4
# Each wait for a run of the tiny pretraining (4 epochs of 38 iterations, a test, an extraction).
# The whole module took 40 min on the 2-core machine at load average 11-14 (the uninterrupted and
# the killed run side by side, then the rerun; the uninterrupted run alone about 39 min of it).
DEADLINE_S = 5400


def pipeline_command(work_dir: Path, data_root: Path):
    return [sys.executable, 'tools/run_pipeline.py', '--tiny', '--work-dir', str(work_dir),
            '--data-root', str(data_root), '--stage', STAGE]


def start(work_dir: Path, data_root: Path, log: Path) -> subprocess.Popen:
    """The driver on one stage, its output in ``log`` (a file: nobody reads a pipe while it trains)."""
    with open(log, 'w') as out:
        proc = subprocess.Popen(pipeline_command(work_dir, data_root), cwd=REPO, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    proc.log = log
    return proc


def finish(proc: subprocess.Popen, timeout: float = DEADLINE_S) -> str:
    proc.wait(timeout=timeout)
    output = proc.log.read_text()
    assert proc.returncode == 0, output[-4000:]
    return output


def children(pid: int):
    """The processes whose parent is ``pid``, with their command lines (from /proc)."""
    found = {}
    for stat in Path('/proc').glob('[0-9]*/stat'):
        try:
            parent = int(stat.read_text().rsplit(')', 1)[1].split()[1])
            if parent == pid:
                found[int(stat.parent.name)] = (stat.parent / 'cmdline').read_bytes().replace(b'\0', b' ').decode()
        except (OSError, ValueError, IndexError):
            continue  # the process ended while it was read
    return found


def wait_for(condition, proc: subprocess.Popen, what: str, timeout: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f'the driver ended before {what}: ' + proc.log.read_text()[-4000:]
        assert time.monotonic() < deadline, f'no {what} within {timeout} s'
        time.sleep(0.2)


def state_dict(checkpoint: Path) -> dict:
    return torch.load(checkpoint, map_location='cpu')['state_dict']


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """The stage run uninterrupted (``straight``) and, beside it, a run whose training is killed
    after epoch ``KILL_AFTER_EPOCH`` (``killed``), then rerun; the drivers' outputs."""
    root = tmp_path_factory.mktemp('resume')
    data = root / 'data'
    generate(data, only=('imagenet', ))
    straight = start(root / 'straight', data, root / 'straight.out')
    killed = start(root / 'killed', data, root / 'killed.out')
    stage_dir = root / 'killed' / STAGE
    pointer = stage_dir / 'last_checkpoint'
    # mmengine writes last_checkpoint once the checkpoint it names is complete
    wait_for(lambda: pointer.is_file() and pointer.read_text().strip().endswith(f'epoch_{KILL_AFTER_EPOCH}.pth'),
             killed, f'epoch_{KILL_AFTER_EPOCH}.pth')
    trainings = [pid for pid, command in children(killed.pid).items() if 'tools/train.py' in command]
    assert len(trainings) == 1, children(killed.pid)
    os.kill(trainings[0], signal.SIGKILL)
    killed.wait(timeout=600)
    killed_output = killed.log.read_text()
    assert not (stage_dir / f'epoch_{KILL_AFTER_EPOCH + 1}.pth').exists(), 'killed too late'
    rerun = start(root / 'killed', data, root / 'rerun.out')
    rerun_output = finish(rerun)
    straight_output = finish(straight)
    return dict(root=root, data=data, killed=(killed.returncode, killed_output), rerun=rerun_output,
                straight=straight_output)


@pytest.mark.slow
def test_killed_stage_is_reported_and_resumes_from_its_last_epoch(runs):
    stage_dir = runs['root'] / 'killed' / STAGE
    returncode, output = runs['killed']
    assert returncode != 0
    assert f'stage failed (killed by SIGKILL): see {stage_dir / "train.out"}' in output
    rerun = runs['rerun']
    assert f'{stage_dir}: continuing the attempt that {stage_dir / "started.json"} records' in rerun
    checkpoint = stage_dir / f'epoch_{KILL_AFTER_EPOCH}.pth'
    assert f'{stage_dir}: resumed from epoch {KILL_AFTER_EPOCH} ({checkpoint})' in rerun
    assert f'--resume {checkpoint}' in rerun
    train_log = (stage_dir / 'train.out').read_text()  # the killed run's output, then the rerun's
    assert f'resumed epoch: {KILL_AFTER_EPOCH}' in train_log
    assert train_log.count('Epoch(train) [1]') > 0 and train_log.count(f'Epoch(train) [{KILL_AFTER_EPOCH + 1}]') > 0
    resumed_logs = [log for log in stage_dir.glob('*/*.log') if 'resumed epoch' in log.read_text()]
    assert len(resumed_logs) == 1 and 'Epoch(train) [1]' not in resumed_logs[0].read_text(), \
        'the resumed run trains only the epochs after the checkpoint'


@pytest.mark.slow
def test_resumed_stage_ends_with_the_uninterrupted_weights(runs):
    straight, killed = (runs['root'] / name / STAGE for name in ('straight', 'killed'))
    for name in ('epoch_4.pth', 'backbone.pth'):
        expected, resumed = state_dict(straight / name), state_dict(killed / name)
        assert expected.keys() == resumed.keys() and len(expected) > 300
        for key, value in expected.items():
            assert torch.equal(resumed[key], value), (name, key)
    hub = [torch.load(work / 'epoch_4.pth', map_location='cpu')['message_hub'] for work in (straight, killed)]
    active = [h['log_scalars']['train/fd/active'].data[0] for h in hub]
    assert list(active[0]) == list(active[1]), 'the same focused steps'
    done = [json.loads((work / 'done.json').read_text()) for work in (straight, killed)]
    assert done[0]['metrics'] == done[1]['metrics']


@pytest.mark.slow
def test_truncated_done_json_is_named_and_no_step_is_redone(runs):
    stage_dir = runs['root'] / 'killed' / STAGE
    done = stage_dir / 'done.json'
    record = json.loads(done.read_text())
    done.write_text(done.read_text()[:100])  # what a kill while it was written in place left
    proc = start(runs['root'] / 'killed', runs['data'], runs['root'] / 'truncated.out')
    output = finish(proc, timeout=900)
    assert f'[pipeline] rerun {stage_dir}: {done} is unreadable or corrupt (JSONDecodeError: ' in output
    assert 'Traceback' not in output and '$ ' not in output, 'nothing is trained or tested again'
    for step in ('train', 'test', 'extract_backbone'):
        assert f'{stage_dir}: {step}: done in an earlier attempt' in output
    rewritten = json.loads(done.read_text())
    assert {**rewritten, 'wall_s': None} == {**record, 'wall_s': None}


@pytest.mark.slow
def test_changed_inputs_move_the_earlier_attempt_aside_and_start_afresh(runs):
    """The same stage on a copy of the data elsewhere: its config reads another data root, so
    its inputs changed; its first attempt's files go to stale-<UTC>/ and training starts from
    scratch (stopped once it started)."""
    root = runs['root']
    stage_dir = root / 'straight' / STAGE
    before = sorted(path.name for path in stage_dir.iterdir())
    moved_data = root / 'data-copy'
    shutil.copytree(runs['data'], moved_data)
    proc = start(root / 'straight', moved_data, root / 'changed.out')
    try:
        wait_for(lambda: '$ ' in proc.log.read_text(), proc, 'training command', timeout=900)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=600)
    output = proc.log.read_text()
    assert f'[pipeline] rerun {stage_dir}: its inputs changed since {stage_dir / "done.json"} was written' in output
    assert (f'[pipeline] {stage_dir}: starting afresh, not resuming: its inputs changed (config_sha256) '
            f'since {stage_dir / "started.json"} was written') in output
    stale = [path for path in stage_dir.iterdir() if path.name.startswith('stale-')]
    assert len(stale) == 1 and f'moved to {stale[0]}' in output
    assert sorted(path.name for path in stale[0].iterdir()) == before
    assert 'epoch_4.pth' in before and 'done.json' in before and 'started.json' in before
    command = next(line for line in output.splitlines() if '$ ' in line)
    assert 'tools/train.py' in command and '--resume' not in command
    started, earlier = (json.loads((folder / 'started.json').read_text()) for folder in (stage_dir, stale[0]))
    assert started['steps'] == {} and started['inputs']['config_sha256'] != earlier['inputs']['config_sha256']
